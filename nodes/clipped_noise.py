"""Undo Noise Clipping: the denoiser's output with the bias of clipped noise removed."""
from ..deepot_core.tooling.clipped_noise import undo_noise_clipping
from ..deepot_core.tooling.degrade import MAX_NOISE_SIGMA
from .comfy_v3 import io
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "Undo Noise Clipping"


class UndoNoiseClipping(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_UndoNoiseClipping", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("Place it right after a Gaussian denoiser (DnCNN, FFDNet through Load Upscale Model) "
                         "whose input noise was clipped to 0..1, as in any saved image or Degrade Image. Such "
                         "denoisers were trained on unclipped noise, so they return the clipped pixel's mean: "
                         "shadows lifted, highlights lowered, about 0.83 of the contrast at σ = 50. This inverts "
                         "that mean pixel by pixel (+1.2 dB for KAIR's DnCNN and FFDNet at σ = 50), giving Deep OT "
                         "the MMSE-like image it starts from. Set noise_sigma to the noise's σ; 0 passes the "
                         "images through."),
            inputs=[
                io.Image.Input("images", tooltip="The denoiser's output."),
                io.Float.Input("noise_sigma", default=25.0, min=0.0, max=MAX_NOISE_SIGMA, step=0.5,
                               tooltip="σ of the Gaussian noise that was clipped, on the 0..255 scale (Degrade "
                                       "Image's noise_sigma); 0 = off."),
            ],
            outputs=[io.Image.Output(tooltip="The denoised images with the clipping bias undone (0..1).")],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, images, noise_sigma):
        return io.NodeOutput(undo_noise_clipping(images, noise_sigma))

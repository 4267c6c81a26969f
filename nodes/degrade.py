"""Degrade Image: synthetic degradations of clean photos, to make calibration pairs."""
from ..deepot_core.tooling.degrade import FILTERS, MAX_BLUR_SIGMA, MAX_NOISE_SIGMA, MAX_SCALE, degrade_images
from .comfy_v3 import io
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "Degrade Image"


class DegradeImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_DegradeImage", display_name=DISPLAY_NAME, category=CATEGORY + "/calibration",
            description=("Degrades clean photos the way your real inputs are degraded (blur → downscale → noise → "
                         "JPEG → optional upscale back), so that running your restorer on them gives calibration "
                         "pairs: Fit Latent Transport with natural = the clean photos, restored = the restorer's "
                         "output."),
            inputs=[
                io.Image.Input("images", tooltip="Clean photos to degrade (each image gets its own noise)."),
                io.Int.Input("scale", default=1, min=1, max=MAX_SCALE, step=1,
                             tooltip="Downscale factor k (1 = keep size; 4 for ×4 super-resolution)."),
                io.Combo.Input("filter", options=list(FILTERS), default="bicubic",
                               tooltip="Resampling filter of the downscale (and of the upscale back)."),
                io.Boolean.Input("antialias", default=True, tooltip="Low-pass before downscaling with "
                                                                    "bicubic/bilinear (like Pillow/MATLAB imresize)."),
                io.Boolean.Input("upscale_back", default=False, tooltip="Resize back to the original size at the "
                                                                        "end, for restorers that take same-size "
                                                                        "input."),
                io.Float.Input("noise_sigma", default=0.0, min=0.0, max=MAX_NOISE_SIGMA, step=0.5,
                               tooltip="Gaussian noise σ on the 0..255 scale (e.g. 25 or 50); 0 = none."),
                io.Int.Input("jpeg_quality", default=0, min=0, max=100, step=1,
                             tooltip="JPEG compression quality 1..99; 0 or 100 = no JPEG."),
                io.Float.Input("blur_sigma", default=0.0, min=0.0, max=MAX_BLUR_SIGMA, step=0.1,
                               tooltip="Gaussian blur σ in pixels, applied first; 0 = none."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the noise: the same seed gives the same degradation."),
            ],
            outputs=[io.Image.Output(tooltip="The degraded images (smaller when scale > 1 and upscale_back is "
                                             "off).")],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, images, scale, filter, antialias, upscale_back, noise_sigma, jpeg_quality, blur_sigma, seed):
        return io.NodeOutput(degrade_images(images, scale=scale, filter=filter, upscale_back=upscale_back,
                                            noise_sigma=noise_sigma, jpeg_quality=jpeg_quality,
                                            blur_sigma=blur_sigma, seed=seed, antialias=antialias))

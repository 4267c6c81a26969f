"""Harmonise Colours: give the natural photos the restored set's palette before encoding them."""
from ..deepot_core.colour import colour_gap, harmonise_colours
from .comfy_v3 import io
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "Harmonise Colours"


class HarmoniseColours(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_HarmoniseColours", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("Recolours the natural photos to the restored images' overall colour statistics (mean "
                         "and covariance of RGB), keeping their texture. Place it before VAE Encode of the natural "
                         "photos so the transport adds detail without recolouring toward their palette."),
            inputs=[
                io.Image.Input("natural", tooltip="Clean reference photos whose texture the transport learns."),
                io.Image.Input("restored", tooltip="The restoration model's outputs whose colours to match."),
            ],
            outputs=[
                io.Image.Output(display_name="natural", tooltip="The natural photos, recoloured; encode these for "
                                                               "Fit Latent Transport."),
                io.String.Output(display_name="report", tooltip="Colour gap (W2 between the sets' RGB Gaussians) "
                                                               "before → after."),
            ],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, natural, restored):
        before = colour_gap(natural, restored)
        out = harmonise_colours(natural, restored)
        after = colour_gap(out, restored)
        return io.NodeOutput(out, f"colour gap (RGB W2, 0..1 units): {before:.4f} → {after:.4f}")

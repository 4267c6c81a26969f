"""Harmonise Colours: give the natural photos the restored set's palette before encoding them."""
from ..deepot_core.colour import colour_gap, harmonise_colours
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "Harmonise Colours"


class HarmoniseColours:
    DESCRIPTION = ("Recolours the natural photos to the restored images' overall colour statistics (mean and "
                   "covariance of RGB), keeping their texture. Place it before VAE Encode of the natural photos "
                   "so the transport adds detail without recolouring toward their palette.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("natural", "report")
    OUTPUT_TOOLTIPS = ("The natural photos, recoloured; encode these for Fit Latent Transport.",
                       "Colour gap (W2 between the sets' RGB Gaussians) before → after.")
    FUNCTION = "harmonise"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "natural": ("IMAGE", {"tooltip": "Clean reference photos whose texture the transport learns."}),
                "restored": ("IMAGE", {"tooltip": "The restoration model's outputs whose colours to match."}),
            },
        }

    @node_errors(DISPLAY_NAME)
    def harmonise(self, natural, restored):
        before = colour_gap(natural, restored)
        out = harmonise_colours(natural, restored)
        after = colour_gap(out, restored)
        return (out, f"colour gap (RGB W2, 0..1 units): {before:.4f} → {after:.4f}")

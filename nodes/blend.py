"""PD Blend: pick points on the perception–distortion curve in pixel space."""
from typing import List

from ..deepot_core.blend import MAX_DETAIL_SIGMA, pd_sweep
from ..deepot_core.constants import DEFAULT_DETAIL_SIGMA, STRENGTH_MAX, STRENGTH_MIN
from ..deepot_core.errors import TransportInputError
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "PD Blend"


def parse_perceptions(text: str) -> List[float]:
    """'0, 0.25, 0.5, 1' → [0.0, 0.25, 0.5, 1.0]; empty text → []."""
    values = []
    for item in str(text).replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise TransportInputError(
                f"perceptions must be numbers separated by commas, like '0, 0.5, 1'; "
                f"could not read {item!r}.") from None
    return values


class PDBlend:
    DESCRIPTION = ("Blends the restored image with its transported decode: perception 0 = the restored image "
                   "(least distortion), 1 = full transport (most natural-looking). Connect 'reconstructed' (the "
                   "decode of the untransported latent) to add only the transport's change and skip the VAE's "
                   "own error. A list in 'perceptions' gives one image per value.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The blended images; with a perceptions list, every image at each value in turn.",)
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "restored": ("IMAGE", {"tooltip": "The restoration model's original output."}),
                "transported": ("IMAGE", {"tooltip": "VAE Decode of the transported latent."}),
                "perception": ("FLOAT", {"default": 1.0, "min": STRENGTH_MIN, "max": STRENGTH_MAX, "step": 0.05,
                                         "tooltip": "0 = restored image, 1 = full transport; outside 0..1 "
                                                    "extrapolates. Ignored when 'perceptions' lists values."}),
                "detail_sigma": ("FLOAT", {"default": DEFAULT_DETAIL_SIGMA, "min": 0.0, "max": MAX_DETAIL_SIGMA,
                                           "step": 0.1,
                                           "tooltip": "With 'reconstructed': keep only details finer than this "
                                                      "Gaussian σ (pixels) of the change, so colours stay the "
                                                      "restored image's. 0 = keep the whole change."}),
            },
            "optional": {
                "reconstructed": ("IMAGE", {"tooltip": "VAE Decode of the untransported latent (residual decode): "
                                                       "only the transport's change is added to 'restored'."}),
                "perceptions": ("STRING", {"default": "", "multiline": False,
                                           "tooltip": "Several perceptions at once, comma-separated (e.g. "
                                                      "'0, 0.25, 0.5, 1'): one output image per value. Empty = "
                                                      "use the perception widget."}),
            },
        }

    @node_errors(DISPLAY_NAME)
    def blend(self, restored, transported, perception, detail_sigma, reconstructed=None, perceptions=""):
        values = parse_perceptions(perceptions or "") or [perception]
        return (pd_sweep(restored, transported, values, reconstructed=reconstructed, detail_sigma=detail_sigma),)

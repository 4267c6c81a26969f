"""PD Blend: pick points on the perception–distortion curve in pixel space; a sweep previews as a labelled sheet."""
from typing import List

from ..deepot_core.blend import MAX_DETAIL_SIGMA, pd_sweep
from ..deepot_core.constants import DEFAULT_DETAIL_SIGMA, STRENGTH_MAX, STRENGTH_MIN
from ..deepot_core.errors import TransportInputError
from .comfy_v3 import io, ui
from .common import CATEGORY, VIDEO_TOOLTIP
from .guard import node_errors
from .sweep_preview import sweep_sheet

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


class PDBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_PDBlend", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("Blends the restored image with its transported decode: perception 0 = the restored "
                         "image (least distortion), 1 = full transport (most natural-looking). Connect "
                         "'reconstructed' (the decode of the untransported latent) to add only the transport's "
                         "change and skip the VAE's own error; that change's fine pyramid levels are kept within "
                         "the natural slope of photos (capped where a VAE over-renders, raised where it "
                         "under-renders), so perception 1 neither overshoots nor stops short. A list in "
                         "'perceptions' gives one image per value "
                         "and previews them on the node as a labelled sheet (one row per image)."),
            inputs=[
                io.Image.Input("restored", tooltip="The restoration model's original output."),
                io.Image.Input("transported", tooltip="VAE Decode of the transported latent."),
                io.Float.Input("perception", default=1.0, min=STRENGTH_MIN, max=STRENGTH_MAX, step=0.05,
                               tooltip="0 = restored image, 1 = full transport; outside 0..1 extrapolates. "
                                       "Ignored when 'perceptions' lists values."),
                io.Float.Input("detail_sigma", default=DEFAULT_DETAIL_SIGMA, min=0.0, max=MAX_DETAIL_SIGMA,
                               step=0.1, tooltip="With 'reconstructed': keep only details finer than this "
                                                 "Gaussian σ (pixels) of the change, so colours stay the restored "
                                                 "image's. 0 = keep the whole change."),
                # optional inputs: append new ones at the end (saved workflows store widgets by position)
                io.Image.Input("reconstructed", optional=True,
                               tooltip="VAE Decode of the untransported latent (residual decode): only the "
                                       "transport's change is added to 'restored'."),
                io.String.Input("perceptions", default="", multiline=False, optional=True,
                                tooltip="Several perceptions at once, comma-separated (e.g. '0, 0.25, 0.5, 1'): "
                                        "one output image per value, and a labelled preview sheet. Empty = use "
                                        "the perception widget."),
                io.Boolean.Input("video_frames", default=False, optional=True, tooltip=VIDEO_TOOLTIP),
            ],
            outputs=[io.Image.Output(tooltip="The blended images; with a perceptions list, every image at each "
                                             "value in turn.")],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, restored, transported, perception, detail_sigma, reconstructed=None, perceptions="",
                video_frames=False):
        values = parse_perceptions(perceptions or "")
        out = pd_sweep(restored, transported, values or [perception], reconstructed=reconstructed,
                       detail_sigma=detail_sigma, video=bool(video_frames))
        if not values:
            return io.NodeOutput(out)
        return io.NodeOutput(out, ui=ui.PreviewImage(sweep_sheet(out, values), cls=cls))

"""Apply Latent Transport: move every latent patch along the fitted W2 map."""
from ..deepot_core.constants import STRENGTH_MAX, STRENGTH_MIN
from ..deepot_core.errors import TransportInputError
from ..deepot_core.realistic import apply_to_clip
from ..deepot_core.transport import LatentTransport
from . import comfy_bridge as bridge
from .comfy_v3 import io
from .common import CATEGORY, VIDEO_TOOLTIP, Transport
from .guard import check_mask_not_empty, latent_samples, node_errors, with_samples

DISPLAY_NAME = "Apply Latent Transport"


def check_transport(transport, input_name: str = "transport") -> LatentTransport:
    if not isinstance(transport, LatentTransport):
        raise TransportInputError(
            f"'{input_name}' must be a LATENT_TRANSPORT, got {type(transport).__name__}; "
            "connect Fit Latent Transport or Load Latent Transport.")
    return transport


class ApplyLatentTransport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_ApplyLatentTransport", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("Transports every p×p patch of the latent with the fitted map (strength 1 = full "
                         "transport, 0 = unchanged). VAE Decode the result, and blend it with the restored image "
                         "in PD Blend."),
            inputs=[
                io.Latent.Input("latent", tooltip="The restored image, VAE-encoded with the VAE the transport was "
                                                  "fitted with."),
                Transport.Input("transport", tooltip="From Fit Latent Transport or Load Latent Transport."),
                io.Float.Input("strength", default=1.0, min=STRENGTH_MIN, max=STRENGTH_MAX, step=0.05,
                               tooltip="Position along the transport: 0 unchanged, 1 full, above 1 extrapolates, "
                                       "below 0 moves away from natural."),
                io.Mask.Input("mask", optional=True, tooltip="Where to transport (white = full strength, black = "
                                                             "unchanged); image or latent resolution."),
                io.Boolean.Input("video_frames", default=False, optional=True, tooltip=VIDEO_TOOLTIP),
            ],
            outputs=[io.Latent.Output(tooltip="The transported latent; every other key of the input LATENT is "
                                              "kept.")],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, latent, transport, strength, mask=None, video_frames=False):
        transport = check_transport(transport)
        samples = latent_samples(latent, "latent")
        check_mask_not_empty(mask, "mask")
        device = bridge.torch_device()
        out = apply_to_clip(transport, samples.to(device), strength, bool(video_frames),
                            mask=None if mask is None else mask.to(device), progress=bridge.Progress().stage())
        return io.NodeOutput(with_samples(latent, out.to(bridge.intermediate_device())))

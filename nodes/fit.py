"""Fit Latent Transport: patch statistics of natural (and restored) latents → the W2 map, report on the node."""
import torch

from ..deepot_core.constants import DEFAULT_EPS, DEFAULT_PATCH_SIZE, MAX_PATCH_SIZE
from ..deepot_core.errors import TransportInputError
from ..deepot_core.statistics import PatchStatistics
from ..deepot_core.transport import LatentTransport
from . import comfy_bridge as bridge
from .comfy_v3 import io, ui
from .common import CATEGORY, Transport
from .guard import check_mask_not_empty, latent_samples, node_errors

DISPLAY_NAME = "Fit Latent Transport"
#: Per-channel latent mean gap (in natural standard deviations) above which Harmonise Colours is advised.
PALETTE_GAP_ADVICE = 0.25


def palette_gap(source: PatchStatistics, target: PatchStatistics) -> torch.Tensor:
    """|mean_restored − mean_natural| per latent channel, in units of the natural channel's std."""
    channels, p2 = target.channels, target.patch_size ** 2
    mean_s = source.mean.view(channels, p2).mean(1)
    mean_t = target.mean.view(channels, p2).mean(1)
    std_t = target.covariance.diagonal().view(channels, p2).mean(1).clamp_min(1e-12).sqrt()
    return (mean_s - mean_t).abs() / std_t


def palette_hint(transport: LatentTransport) -> str:
    """One line on how far the two sets' colours are apart, and whether to harmonise them."""
    if transport.zero_shot:
        return ("colour gap: measured per image at apply time (zero-shot); if outputs drift toward the natural "
                "photos' palette, run Harmonise Colours on them before VAE Encode")
    gap = palette_gap(transport.source, transport.target)
    channel = int(gap.argmax())
    line = f"colour gap: latent channel means differ by up to {float(gap[channel]):.2f} natural std (channel {channel})"
    if float(gap[channel]) <= PALETTE_GAP_ADVICE:
        return line + " — small: no need to harmonise colours"
    if looks_paired(transport):
        return line + (" — large. Both sets hold the same number of patches, as calibration pairs do. If the "
                       "natural photos are the clean originals of the restored images, this gap is the "
                       "restorer's own colour shift (for noisy inputs, Undo Noise Clipping removes the usual "
                       "one): do not harmonise pairs. If they are two different collections, run Harmonise "
                       "Colours on the natural images before VAE Encode")
    return line + " — large: run Harmonise Colours on the natural images before VAE Encode"


def looks_paired(transport: LatentTransport) -> bool:
    """Equal patch counts in both sets: what calibration pairs (clean photos and their restorations) give.

    Harmonising pairs would copy the restorer's colour error onto the clean photos, so the advice differs.
    """
    return transport.source is not None and transport.source.count == transport.target.count


def _check_previous(previous, patch_size: int) -> None:
    if previous is None:
        return
    if not isinstance(previous, LatentTransport):
        raise TransportInputError(
            f"'previous' must be a LATENT_TRANSPORT, got {type(previous).__name__}; connect a Fit or Load node.")
    if previous.patch_size != patch_size:
        raise TransportInputError(
            f"'previous' was fitted with patch_size {previous.patch_size} but patch_size is {patch_size}; "
            f"set patch_size to {previous.patch_size} to keep accumulating.")


class FitLatentTransport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_FitLatentTransport", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("Fits the Deep Optimal Transport map: the Gaussian W2 map from the patch statistics of the "
                         "restored latents to those of natural photos. Without 'restored' the transport is "
                         "zero-shot (each image's own statistics are used at apply time). Connect 'previous' to "
                         "keep accumulating statistics over several runs. The report shows on the node."),
            inputs=[
                io.Latent.Input("natural", tooltip="Clean reference photos, VAE-encoded: the look to transport "
                                                   "toward."),
                io.Int.Input("patch_size", default=DEFAULT_PATCH_SIZE, min=1, max=MAX_PATCH_SIZE, step=2,
                             tooltip="Odd latent patch size p (1–9). Statistics have C·p² dimensions: larger p "
                                     "needs many more images."),
                io.Float.Input("eps", default=DEFAULT_EPS, min=0.0, max=1.0, step=1e-5, round=False,
                               tooltip="Eigenvalue floor of the restored covariance, relative to its mean "
                                       "eigenvalue; raise it if outputs get noisy or blotchy."),
                # optional inputs: append new ones at the end, saved workflows store sockets by name and widgets
                # by position
                io.Latent.Input("restored", optional=True, tooltip="The restoration model's outputs, VAE-encoded. "
                                                                  "Leave unconnected for a zero-shot transport."),
                io.Mask.Input("natural_mask", optional=True, tooltip="Where the natural photos count (white = use)."),
                io.Mask.Input("restored_mask", optional=True,
                              tooltip="Where the restored images count (white = use)."),
                Transport.Input("previous", optional=True, tooltip="A transport whose statistics are merged with "
                                                                   "these, to accumulate over several runs (same "
                                                                   "patch_size)."),
            ],
            outputs=[
                Transport.Output(display_name="transport", tooltip="The fitted transport: connect to Apply Latent "
                                                                   "Transport or Save Latent Transport."),
                io.String.Output(display_name="report", tooltip="Sample counts, dimension, W2 before → after, "
                                                               "warnings and a colour-gap hint."),
            ],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, natural, patch_size, eps, restored=None, natural_mask=None, restored_mask=None, previous=None):
        if isinstance(patch_size, bool) or int(patch_size) != patch_size or patch_size % 2 == 0:
            raise TransportInputError(
                f"patch_size must be odd (1, 3, 5, 7 or 9), got {patch_size}; set it to {int(patch_size) | 1}.")
        patch_size = int(patch_size)
        _check_previous(previous, patch_size)
        check_mask_not_empty(natural_mask, "natural_mask")
        check_mask_not_empty(restored_mask, "restored_mask")
        sets = [("natural", latent_samples(natural, "natural"), natural_mask)]
        if restored is not None:
            sets.append(("restored", latent_samples(restored, "restored"), restored_mask))
        frames = [s.shape[0] * (s.shape[2] if s.ndim == 5 else 1) for _, s, _ in sets]
        progress = bridge.Progress(sum(frames))
        device = bridge.torch_device()
        stats = {}
        for (name, samples, mask), offset in zip(sets, [0] + frames[:-1]):
            stats[name] = PatchStatistics(patch_size).update(
                samples.to(device), mask=None if mask is None else mask.to(device), progress=progress.stage(offset))
        target, source = stats["natural"], stats.get("restored")
        if previous is not None:
            target = previous.target.merge(target)
            if previous.source is not None:
                source = previous.source if source is None else previous.source.merge(source)
        transport = LatentTransport(source, target, eps=eps)
        report = transport.report() + "\n" + palette_hint(transport)
        return io.NodeOutput(transport, report, ui=ui.PreviewText(report))

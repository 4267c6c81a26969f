"""Make Realistic (Deep OT): one node from a restored IMAGE to a realistic one, over ``deepot_core.realistic``.

It runs the modular chain (Harmonise Colours → VAE Encode → Fit → Apply → VAE Decode twice → PD Blend with
``reconstructed``) through ComfyUI's own VAE object, so any VAE a user loads works, on the device ComfyUI's model
management gives it. The fit and both decodes do not depend on the perception or the detail band: they are kept
(``FIT_CACHE``), so moving the slider re-blends in a moment instead of refitting.
"""
import hashlib
import weakref
from collections import OrderedDict
from typing import Optional

import torch

from ..deepot_core.blend import MAX_DETAIL_SIGMA, pd_sweep
from ..deepot_core.constants import (DEFAULT_DETAIL_SIGMA, DEFAULT_EPS, DEFAULT_PATCH_SIZE, MAX_PATCH_SIZE,
                                     STRENGTH_MAX, STRENGTH_MIN)
from ..deepot_core.errors import TransportInputError
from ..deepot_core.image_ops import check_image
from ..deepot_core.realistic import FIT_STEPS, TRANSPORT_STEPS, decode_transport, fit_on_images
from . import comfy_bridge as bridge
from .apply import check_transport
from .blend import parse_perceptions
from .comfy_v3 import io, ui
from .common import CATEGORY, VIDEO_TOOLTIP, Transport
from .fit import palette_hint
from .guard import node_errors
from .sweep_preview import sweep_sheet

DISPLAY_NAME = "Make Realistic (Deep OT)"
#: Largest tile edge (pixels) for tiled encode/decode; 0 lets ComfyUI decide (it tiles by itself when short of
#: memory). VAE Decode (Tiled)'s range and step.
MAX_TILE_SIZE, TILE_STEP = 4096, 64
#: Overlap between tiles, as a fraction of the tile (VAE Decode (Tiled): 64 of 512).
TILE_OVERLAP = 1 / 8
#: Memory the kept fits may hold (each: the transport and two decoded batches on ComfyUI's intermediate device; a
#: 64-frame 512² clip takes 400 MB). The newest fit is always kept; older ones go first.
MAX_CACHED_BYTES = 1 << 30


class ComfyAutoencoder:
    """ComfyUI's VAE object as ``deepot_core.realistic`` expects an autoencoder: IMAGE ↔ latents.

    ``tile_size`` > 0 encodes and decodes in tiles of that many pixels, as VAE Encode/Decode (Tiled) do.
    """

    def __init__(self, vae, tile_size: int = 0):
        if not callable(getattr(vae, "encode", None)) or not callable(getattr(vae, "decode", None)):
            raise TransportInputError(f"'vae' must be a VAE, got {type(vae).__name__}; connect Load VAE or the VAE "
                                      "output of a checkpoint loader.")
        if tile_size and not callable(getattr(vae, "encode_tiled", None)):
            raise TransportInputError("this VAE cannot encode in tiles; set tile_size to 0.")
        self.vae, self.tile = vae, int(tile_size)
        compression = getattr(vae, "spacial_compression_encode", None)
        self.downscale = int(compression()) if callable(compression) else int(getattr(vae, "downscale_ratio", 1))

    def _overlap(self) -> int:
        return max(self.downscale, int(self.tile * TILE_OVERLAP))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self.tile:
            return self.vae.encode(images)
        return self.vae.encode_tiled(images, tile_x=self.tile, tile_y=self.tile, overlap=self._overlap())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if not self.tile:
            return self.vae.decode(latents)
        compression = self.vae.spacial_compression_decode()
        return self.vae.decode_tiled(latents, tile_x=self.tile // compression, tile_y=self.tile // compression,
                                     overlap=self._overlap() // compression)


def fingerprint(tensor: Optional[torch.Tensor]) -> Optional[str]:
    """A digest of a tensor's shape, dtype and bytes: equal exactly when the content is."""
    if tensor is None:
        return None
    data = tensor.detach().to("cpu").contiguous()
    digest = hashlib.blake2b(f"{tuple(data.shape)}{data.dtype}".encode(), digest_size=16)
    digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class FitCache:
    """The last few fits and decodes, keyed by everything they depend on (never by perception or detail σ).

    Objects (the VAE, a connected transport) are keyed by identity and held weakly: a key never matches an object
    that has been freed and replaced by another at the same address.
    """

    def __init__(self, budget: int = MAX_CACHED_BYTES):
        self.budget, self.entries = budget, OrderedDict()
        self.fits = 0  # how many times the expensive half ran (tests read it)

    def get(self, key, objects):
        entry = self.entries.get(key)
        if entry is None or any(ref() is not obj for ref, obj in zip(entry[0], objects)):
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def put(self, key, objects, value) -> None:
        self.entries[key] = ([weakref.ref(o) for o in objects], value)
        self.entries.move_to_end(key)
        while len(self.entries) > 1 and sum(self._bytes(v) for _, v in self.entries.values()) > self.budget:
            self.entries.popitem(last=False)

    @staticmethod
    def _bytes(value) -> int:
        decoded = value[0]
        return sum(t.numel() * t.element_size() for t in (decoded.transported, decoded.reconstructed))


FIT_CACHE = FitCache()


def _prepare(vae, restored, natural, transport, patch_size, eps, harmonise, tile_size, video, progress):
    """(TransportedDecode, report lines, reused?) for these inputs, from the cache when nothing it uses changed."""
    objects = (vae,) if transport is None else (vae, transport)
    key = (id(vae), fingerprint(restored), None if transport is not None else fingerprint(natural),
           None if transport is None else id(transport), int(patch_size), float(eps), bool(harmonise),
           int(tile_size), video)
    cached = FIT_CACHE.get(key, objects)
    if cached is not None:
        return cached[0], cached[1], True
    autoencoder = ComfyAutoencoder(vae, tile_size)
    device = bridge.torch_device()
    lines = []
    if transport is None:
        transport = fit_on_images(autoencoder, restored, natural, patch_size=patch_size, eps=eps,
                                  harmonise=harmonise, device=device, progress=progress.stage(0))
        lines.append(f"fitted on {natural.shape[0]} natural photo(s)"
                     f"{' (colours harmonised to the restored images)' if harmonise else ''} and the "
                     f"{restored.shape[0]} restored image(s) themselves")
        lines += [transport.report(), palette_hint(transport)]
    else:
        lines.append("transport connected: no fit" + ("; 'natural' is ignored" if natural is not None else ""))
        lines.append(transport.report())
    decoded = decode_transport(autoencoder, restored, transport, device=device,
                               progress=progress.stage(FIT_STEPS), video=video)
    FIT_CACHE.fits += 1
    FIT_CACHE.put(key, objects, (decoded, lines))
    return decoded, lines, False


class MakeRealistic(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_MakeRealistic", display_name=DISPLAY_NAME, category=CATEGORY,
            description=("One node from a restored image to a realistic one (Deep Optimal Transport). Connect the "
                         "restorer's output, a VAE and a dozen clean photos of the kind you restore (or a saved "
                         "transport). perception 0 is the restored image, 1 the most natural. It does what "
                         "Harmonise Colours → VAE Encode → Fit → Apply → VAE Decode (twice) → PD Blend do, and "
                         "keeps the fit: moving the slider only re-blends. The node shows the restored image "
                         "beside the result, and the fit report."),
            inputs=[
                io.Image.Input("restored", tooltip="The restoration model's output (upscaler, denoiser, ...): "
                                                   "one image or a batch."),
                io.Vae.Input("vae", tooltip="Any VAE: taesd/taesdxl/taesd3/taef1 (fast), a full SD1.5/SDXL/SD3/"
                                            "FLUX VAE, or pixel_space. Fit and reuse must use the same one."),
                io.Float.Input("perception", default=1.0, min=STRENGTH_MIN, max=STRENGTH_MAX, step=0.05,
                               tooltip="0 = the restored image (least distortion), 1 = the most natural; outside "
                                       "0..1 extrapolates. Ignored when 'perceptions' lists values."),
                # optional inputs: append new ones at the end (saved workflows store widgets by position)
                io.Image.Input("natural", optional=True,
                               tooltip="Clean photos of the kind you restore (a dozen is plenty; Load Image "
                                       "Folder): the look to learn. Not needed when 'transport' is connected."),
                Transport.Input("transport", optional=True,
                                tooltip="A fitted transport (Load Latent Transport, or this node's output from an "
                                        "earlier run): applied as it is, no fit."),
                io.String.Input("perceptions", default="", optional=True,
                                tooltip="Several perceptions at once, comma-separated (e.g. '0, 0.5, 1'): one "
                                        "output image per value, all previewed on the node. Empty = perception."),
                io.Int.Input("patch_size", default=DEFAULT_PATCH_SIZE, min=1, max=MAX_PATCH_SIZE, step=2,
                             optional=True, tooltip="Odd latent patch size of the fit (1–9); 3 is the method's."),
                io.Float.Input("detail_sigma", default=DEFAULT_DETAIL_SIGMA, min=0.0, max=MAX_DETAIL_SIGMA,
                               step=0.1, optional=True,
                               tooltip="Add only the transport's detail finer than this Gaussian σ (pixels), so "
                                       "colours stay the restored image's; 0 = the whole change."),
                io.Boolean.Input("harmonise", default=True, optional=True,
                                 tooltip="Recolour the natural photos to the restored images' palette before the "
                                         "fit (on for photos from another collection; off for calibration pairs "
                                         "of the same photos)."),
                io.Float.Input("eps", default=DEFAULT_EPS, min=0.0, max=1.0, step=1e-5, round=False, optional=True,
                               tooltip="Eigenvalue floor of the restored covariance (relative); raise it if outputs "
                                       "get blotchy."),
                io.Int.Input("tile_size", default=0, min=0, max=MAX_TILE_SIZE, step=TILE_STEP, optional=True,
                             tooltip="0 = ComfyUI decides (it tiles by itself when memory runs short); else encode "
                                     "and decode in tiles of this many pixels, as VAE Decode (Tiled) does, for "
                                     "large images on small GPUs."),
                io.Boolean.Input("video_frames", default=False, optional=True, tooltip=VIDEO_TOOLTIP),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The realistic images; with a perceptions list, "
                                                               "every image at each value in turn."),
                Transport.Output(display_name="transport", tooltip="The transport used: save it with Save Latent "
                                                                   "Transport to reuse without photos."),
                io.String.Output(display_name="report", tooltip="What was fitted or reused, the fit report and a "
                                                               "colour-gap hint."),
            ],
        )

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, restored, vae, perception, natural=None, transport=None, perceptions="",
                patch_size=DEFAULT_PATCH_SIZE, detail_sigma=DEFAULT_DETAIL_SIGMA, harmonise=True, eps=DEFAULT_EPS,
                tile_size=0, video_frames=False):
        if natural is None and transport is None:
            raise TransportInputError(
                "connect 'natural' (a dozen clean photos of the kind you restore, e.g. from Load Image Folder) to "
                "learn the look from, or 'transport' (Load Latent Transport) to apply a saved one.")
        if transport is not None:
            check_transport(transport)
        if tile_size and tile_size < TILE_STEP:
            raise TransportInputError(f"tile_size must be 0 (automatic) or at least {TILE_STEP} pixels, got "
                                      f"{tile_size}.")
        restored = check_image(restored, "restored")
        natural = None if natural is None else check_image(natural, "natural")
        values = parse_perceptions(perceptions or "") or [perception]
        progress = bridge.Progress(FIT_STEPS + TRANSPORT_STEPS + 1)
        decoded, lines, reused = _prepare(vae, restored, natural, transport, patch_size, eps, harmonise, tile_size,
                                          bool(video_frames), progress)
        device = bridge.torch_device()
        shown = [0.0] + values  # the restored image (perception 0) leads the preview: before and after
        both = pd_sweep(restored.to(device), decoded.transported.to(device), shown,
                        reconstructed=decoded.reconstructed.to(device), detail_sigma=detail_sigma,
                        video=bool(video_frames))
        progress.stage(FIT_STEPS + TRANSPORT_STEPS)(1, 1)
        out = both[restored.shape[0]:].to(bridge.intermediate_device())
        report = "\n".join(([("reused the fit and decodes of the last run with these inputs (only perception or "
                               "detail_sigma changed)")] if reused else []) + lines)
        sheet = sweep_sheet(both, shown)
        return io.NodeOutput(out, decoded.transport, report,
                             ui={**ui.PreviewText(report).as_dict(), **ui.PreviewImage(sheet, cls=cls).as_dict()})

"""The whole method on restored images in one call: restored IMAGE → realistic IMAGE, through any autoencoder.

With restored images r, natural photos n and an autoencoder (E, D):

    n' = harmonise(n → r)                                   (optional: the natural photos take r's palette)
    T  = W2 map from the patches of E(r) to those of E(n')   (or a transport fitted earlier)
    out(p) = pd_blend(r, D(T(E(r))), p, reconstructed = D(E(r)))

which is, step for step, the modular chain Harmonise Colours → VAE Encode → Fit → Apply → VAE Decode (twice) →
PD Blend. It is split where a host wants to cache: ``fit_on_images`` and ``decode_transport`` (encode, fit, apply,
decode twice) do not depend on the perception or the detail band; ``pd_sweep`` over their result is cheap.

An autoencoder is anything with ``encode(images [B,H,W,3]) → latents`` and ``decode(latents) → images``; its
optional ``downscale`` (pixels per latent cell) lets images of any size through: they are replicate-padded to a
multiple of it and the decodes cropped back, so the output has the restored image's size (a VAE on its own would
crop the image to the multiple).
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

from .blend import pd_sweep
from .colour import harmonise_colours
from .constants import DEFAULT_DETAIL_SIGMA, DEFAULT_EPS, DEFAULT_PATCH_SIZE
from .errors import TransportInputError
from .image_ops import check_image, pad_to_multiple
from .progress import ProgressCallback, report
from .statistics import PatchStatistics
from .transport import LatentTransport
from .validation import check_patch_size

#: Steps reported while fitting (harmonise, encode natural, encode restored, two statistics, the map) and while
#: transporting (encode, apply, two decodes): a host's progress bar counts these.
FIT_STEPS, TRANSPORT_STEPS = 6, 4


@dataclass
class TransportedDecode:
    """What every perception shares: the decodes of the transported and of the untransported restored latents."""
    transported: torch.Tensor
    reconstructed: torch.Tensor
    transport: LatentTransport


def _downscale(autoencoder) -> int:
    return max(1, int(getattr(autoencoder, "downscale", 1) or 1))


def encode_images(autoencoder, images: torch.Tensor) -> torch.Tensor:
    """E(images): RGB only, padded to the autoencoder's multiple."""
    rgb = check_image(images, "images")[..., :3].float()
    if rgb.shape[-1] == 1:
        rgb = rgb.expand(*rgb.shape[:-1], 3)
    return autoencoder.encode(pad_to_multiple(rgb, _downscale(autoencoder)))


def decode_latents(autoencoder, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """D(latents) as an IMAGE batch cropped to ``height``×``width`` (video decodes [B,T,H,W,C] become frames)."""
    images = autoencoder.decode(latents)
    if images.ndim == 5:
        images = images.reshape(-1, *images.shape[-3:])
    return images[:, :height, :width]


def _stage(progress: ProgressCallback, offset: int, total: int):
    return lambda step: report(progress, offset + step, total)


def fit_on_images(autoencoder, restored: torch.Tensor, natural: torch.Tensor,
                  patch_size: int = DEFAULT_PATCH_SIZE, eps: float = DEFAULT_EPS, harmonise: bool = True,
                  device: Optional[torch.device] = None, progress: ProgressCallback = None) -> LatentTransport:
    """The W2 map from the restored images' latent patches to the natural photos' (harmonised to them first).

    ``device`` is where the float64 statistics accumulate (default: the latents' own device).
    """
    patch_size = check_patch_size(patch_size)
    restored = check_image(restored, "restored")
    natural = check_image(natural, "natural")
    step = _stage(progress, 0, FIT_STEPS)
    if harmonise:
        natural = harmonise_colours(natural, restored)
    step(1)
    z_natural = encode_images(autoencoder, natural)
    step(2)
    z_restored = encode_images(autoencoder, restored)
    step(3)
    target = PatchStatistics(patch_size).update(z_natural if device is None else z_natural.to(device))
    step(4)
    source = PatchStatistics(patch_size).update(z_restored if device is None else z_restored.to(device))
    step(5)
    transport = LatentTransport(source, target, eps=eps,
                                metadata={"harmonised": bool(harmonise), "natural_images": natural.shape[0],
                                          "restored_images": restored.shape[0]})
    step(6)
    return transport


def apply_to_clip(transport: LatentTransport, latents: torch.Tensor, strength: float = 1.0,
                  video: bool = False, mask: Optional[torch.Tensor] = None, progress: ProgressCallback = None):
    """``transport.apply``; with ``video`` a batch of frame latents [T,C,H,W] is one clip [1,C,T,H,W] (5-D latents
    already are), which changes only a zero-shot transport: one source for the whole clip."""
    if not video or latents.ndim != 4:
        return transport.apply(latents, strength=strength, mask=mask, progress=progress)
    clip = latents.movedim(0, 1).unsqueeze(0)  # a mask of one per frame still applies frame by frame
    return transport.apply(clip, strength=strength, mask=mask, progress=progress)[0].movedim(0, 1)


def decode_transport(autoencoder, restored: torch.Tensor, transport: LatentTransport, strength: float = 1.0,
                     device: Optional[torch.device] = None, progress: ProgressCallback = None,
                     video: bool = False) -> TransportedDecode:
    """D(T(E(r))) and D(E(r)), both at the restored images' size; ``device`` is where the map runs.

    ``video``: the batch is one clip's frames, so a zero-shot transport takes its source statistics from the
    whole clip once instead of from every frame.
    """
    if not isinstance(transport, LatentTransport):
        raise TransportInputError(f"transport must be a LatentTransport, got {type(transport).__name__}; "
                                  "fit one or load a transport file.")
    restored = check_image(restored, "restored")
    height, width = restored.shape[1:3]
    step = _stage(progress, 0, TRANSPORT_STEPS)
    z = encode_images(autoencoder, restored)
    step(1)
    moved = apply_to_clip(transport, z if device is None else z.to(device), strength, video).to(z.device)
    step(2)
    transported = decode_latents(autoencoder, moved, height, width)
    step(3)
    reconstructed = decode_latents(autoencoder, z, height, width)
    step(4)
    return TransportedDecode(transported, reconstructed, transport)


def make_realistic(autoencoder, restored: torch.Tensor, perceptions: Sequence[float] = (1.0,),
                   natural: Optional[torch.Tensor] = None, transport: Optional[LatentTransport] = None,
                   patch_size: int = DEFAULT_PATCH_SIZE, eps: float = DEFAULT_EPS, harmonise: bool = True,
                   detail_sigma: float = DEFAULT_DETAIL_SIGMA, device: Optional[torch.device] = None,
                   video: bool = False) -> Tuple[torch.Tensor, LatentTransport]:
    """Realistic versions of ``restored`` at each perception (perception-major batch), and the transport used.

    Give ``natural`` photos to fit a transport on them and on ``restored`` itself, or a fitted ``transport``.
    ``video``: ``restored`` is one clip's frames, in order (``video.carry_detail``).
    """
    if transport is None:
        if natural is None:
            raise TransportInputError("give natural photos to learn the look from, or a fitted transport.")
        transport = fit_on_images(autoencoder, restored, natural, patch_size, eps, harmonise, device)
    decoded = decode_transport(autoencoder, restored, transport, device=device, video=video)
    out = pd_sweep(restored, decoded.transported, list(perceptions), reconstructed=decoded.reconstructed,
                   detail_sigma=detail_sigma, video=video)
    return out, transport

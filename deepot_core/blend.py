"""Perception–distortion blending in pixel space.

Plain blend (Freirich et al.: the PD curve interpolates the MMSE output and its
transport):  out = clip((1 − p)·restored + p·transported).

Residual decode (when the decode of the *untransported* latent is given):
Δ = D(T(z)) − D(z) is added to the restored image, so the VAE's own
reconstruction error never reaches the output and p = 0 is exactly the
restored image. Detail band (``detail_sigma`` > 0): only Δ − G_σ∗Δ is added, so
the output's low frequencies stay the restored image's own (no recolouring):

    out = clip(restored + p·(Δ − G_σ∗Δ)).
"""
from typing import Optional

import torch

from .constants import DEFAULT_DETAIL_SIGMA, STRENGTH_MAX, STRENGTH_MIN
from .errors import TransportInputError
from .image_ops import check_image, gaussian_blur, match_batches, match_sizes, split_alpha
from .validation import check_scalar

#: Largest detail σ in pixels; beyond it the band holds the low frequencies it is meant to exclude.
MAX_DETAIL_SIGMA = 64.0


def pd_blend(restored: torch.Tensor, transported: torch.Tensor, perception: float,
             reconstructed: Optional[torch.Tensor] = None,
             detail_sigma: float = DEFAULT_DETAIL_SIGMA) -> torch.Tensor:
    """Pick a point on the perception–distortion curve; IMAGE tensors [B,H,W,C] in, IMAGE out.

    ``perception`` 0 returns the restored image, 1 the full transport, −1..2
    allowed. Sizes are centre-cropped to the smallest, batch 1 broadcasts
    against N, grey and RGBA are accepted (the restored image's alpha is kept).
    ``detail_sigma`` only acts with ``reconstructed`` (0 turns the band off).
    """
    perception = check_scalar(perception, "perception", STRENGTH_MIN, STRENGTH_MAX)
    detail_sigma = check_scalar(detail_sigma, "detail_sigma", 0.0, MAX_DETAIL_SIGMA)
    images = [check_image(restored, "restored"), check_image(transported, "transported")]
    names = ["restored", "transported"]
    if reconstructed is not None:
        images.append(check_image(reconstructed, "reconstructed"))
        names.append("reconstructed")
    dtype = torch.promote_types(images[0].dtype, torch.float32)
    device = images[0].device
    images = [i.to(device=device, dtype=dtype) for i in images]
    images = match_batches(*match_sizes(*images), names=names)
    base, alpha = split_alpha(images[0])
    moved = split_alpha(images[1])[0]
    if reconstructed is None:
        out = base + perception * (moved - base)
    else:
        delta = moved - split_alpha(images[2])[0]
        if detail_sigma > 0:
            delta = delta - gaussian_blur(delta, detail_sigma)
        out = base + perception * delta
    out = out.clamp(0.0, 1.0)
    if alpha is not None:
        out = torch.cat([out, alpha], dim=-1)
    return out


def pd_sweep(restored, transported, perceptions, reconstructed=None, detail_sigma=DEFAULT_DETAIL_SIGMA):
    """``pd_blend`` at several perceptions, concatenated along the batch (perception-major)."""
    if len(perceptions) == 0:
        raise TransportInputError("give at least one perception value.")
    return torch.cat([pd_blend(restored, transported, p, reconstructed, detail_sigma) for p in perceptions])

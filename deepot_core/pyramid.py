"""Laplacian pyramid with the 5-tap binomial kernel (Burt & Adelson).

Why here, beside the method: PD Blend limits the detail it adds per pyramid level
(``blend.natural_slope_gains``), and the SWD metric compares patch statistics per level;
both use these bands, and ``collapse`` of them rebuilds the image exactly.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)   # separable low-pass kernel, sums to 16


def _kernel(channels: int, dtype, device) -> torch.Tensor:
    k = torch.tensor(BINOMIAL_5, dtype=dtype, device=device)
    k2 = k[:, None] * k[None, :]
    k2 = k2 / k2.sum()
    return k2.expand(channels, 1, 5, 5)


def _blur(x: torch.Tensor) -> torch.Tensor:
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    x = F.pad(x, (2, 2, 2, 2), mode=mode)
    return F.conv2d(x, _kernel(x.shape[1], x.dtype, x.device), groups=x.shape[1])


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur then keep every second pixel: [B,C,H,W] -> [B,C,ceil(H/2),ceil(W/2)]."""
    return _blur(x)[..., ::2, ::2]


def pyr_up(x: torch.Tensor, size) -> torch.Tensor:
    """Zero-insertion upsampling to ``size`` (H,W) followed by the blur (gain 4)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return 4.0 * _blur(up[..., : size[0], : size[1]])


def laplacian_pyramid_bchw(x: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """[B,C,H,W] -> ``levels`` band-pass images (finest first) + the Gaussian low-pass residual."""
    if not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be a non-negative int, got {levels!r}")
    if min(x.shape[-2:]) < 2 ** levels:
        raise ValueError(f"images of {x.shape[-2]}x{x.shape[-1]} pixels are too small for {levels} "
                         f"pyramid levels; use fewer levels or larger images")
    out = []
    cur = x
    for _ in range(levels):
        low = pyr_down(cur)
        out.append(cur - pyr_up(low, cur.shape[-2:]))
        cur = low
    out.append(cur)
    return out


def collapse(bands: Sequence[torch.Tensor]) -> torch.Tensor:
    """The inverse of ``laplacian_pyramid_bchw``: bands (finest first) + low-pass → [B,C,H,W]."""
    x = bands[-1]
    for band in reversed(bands[:-1]):
        x = pyr_up(x, band.shape[-2:]) + band
    return x

"""MATLAB-compatible bicubic ``imresize`` (with antialiasing when shrinking).

Why: NIQE's second scale is defined with MATLAB's imresize; other resamplers shift NIQE
values noticeably. Implemented as dense separable weight matrices (fine for metric-sized images).
"""
from __future__ import annotations

import math

import torch

CUBIC_A = -0.5            # Keys cubic used by MATLAB
KERNEL_WIDTH = 4.0        # support of the cubic kernel in input pixels


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax ** 2, ax ** 3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (CUBIC_A * ax3 - 5 * CUBIC_A * ax2 + 8 * CUBIC_A * ax - 4 * CUBIC_A) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True,
                  dtype=torch.float64) -> torch.Tensor:
    """[out_len, in_len] matrix of MATLAB imresize weights, borders mirrored ('symmetric')."""
    width = KERNEL_WIDTH / scale if (scale < 1 and antialias) else KERNEL_WIDTH
    x = torch.arange(1, out_len + 1, dtype=dtype)
    u = x / scale + 0.5 * (1 - 1 / scale)            # output -> input coordinate (1-based)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=dtype)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if (scale < 1 and antialias) else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # mirror indices outside 1..in_len: aux = [1..n, n..1], index = aux[(i-1) mod 2n]
    i0 = (idx.long() - 1) % (2 * in_len)
    i0 = torch.where(i0 >= in_len, 2 * in_len - 1 - i0, i0)
    m = torch.zeros(out_len, in_len, dtype=dtype)
    m.scatter_add_(1, i0, w)
    return m


def imresize(img: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """Resize [..., H, W] by ``scale`` like MATLAB ``imresize(img, scale, 'bicubic')``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = img.shape[-2:]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    mh = resize_matrix(h, out_h, scale, antialias, img.dtype).to(img.device)
    mw = resize_matrix(w, out_w, scale, antialias, img.dtype).to(img.device)
    return mh @ img @ mw.T

"""Sliced Wasserstein distance between Laplacian-pyramid patch distributions (Karras et al., ProGAN).

Why: a distribution-level, network-free texture/detail metric: Deep OT aims to move the
statistics of restored images towards those of clean ones, which this measures per band.

Common random numbers: both sets use the same seed for patch positions and the same
projections, so ``swd(a, b) == swd(b, a)`` and ``swd(a, a) == 0`` exactly.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ._inputs import ImageInput, image_list
from ...pyramid import laplacian_pyramid_bchw

DEFAULT_PATCHES_PER_IMAGE = 128   # ProGAN's descriptors per image and level
DEFAULT_PROJECTIONS = 512         # ProGAN: 4 directions x 128 repeats
NORMALIZE_MODES = ("per_set", "joint", "none")
STD_EPS = 1e-12
PROJECTION_SEED_OFFSET = 7919     # keeps projection draws apart from patch-position draws


def _sample_patches(levels_per_image: List[List[torch.Tensor]], level: int, patch: int,
                    n_per_image: int, seed: int) -> torch.Tensor:
    """Random patch_size² patches of one pyramid level from each image -> [N, C, p, p]."""
    gen = torch.Generator().manual_seed(seed * 1000 + level)
    out = []
    for pyr in levels_per_image:
        img = pyr[level][0]                      # [C,h,w]
        _, h, w = img.shape
        if h < patch or w < patch:
            raise ValueError(f"pyramid level {level} is {h}x{w} pixels, smaller than patch_size={patch}; "
                             f"use fewer levels, a smaller patch_size or larger images")
        ys = torch.randint(0, h - patch + 1, (n_per_image,), generator=gen)
        xs = torch.randint(0, w - patch + 1, (n_per_image,), generator=gen)
        r = torch.arange(patch)
        rows, cols = (ys[:, None] + r)[:, :, None], (xs[:, None] + r)[:, None, :]
        out.append(img[:, rows, cols].permute(1, 0, 2, 3))   # [n, C, p, p]
    return torch.cat(out, dim=0)


def _channel_stats(d: torch.Tensor):
    mean = d.mean(dim=(0, 2, 3), keepdim=True)
    std = d.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(STD_EPS)
    return mean, std


def _normalize(da: torch.Tensor, db: torch.Tensor, mode: str):
    if mode == "none":
        return da, db
    if mode == "per_set":   # ProGAN: each set by its own per-channel statistics
        (ma, sa), (mb, sb) = _channel_stats(da), _channel_stats(db)
        return (da - ma) / sa, (db - mb) / sb
    m, s = _channel_stats(torch.cat([da, db], dim=0))   # joint: keeps energy differences
    return (da - m) / s, (db - m) / s


def wasserstein_1d_sorted(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact W1 between empirical 1-D distributions given sorted columns a [Na,K], b [Nb,K] -> [K]."""
    na, nb = a.shape[0], b.shape[0]
    if na == nb:
        return (a - b).abs().mean(dim=0)
    # Integrate |Qa(t) - Qb(t)| over t in (0,1): the quantile functions are step functions
    # whose breakpoints are k/na and k/nb.
    t = torch.cat([torch.arange(1, na + 1, dtype=a.dtype) / na, torch.arange(1, nb + 1, dtype=a.dtype) / nb])
    t = torch.unique(t)
    t_prev = torch.cat([t.new_zeros(1), t[:-1]])
    mid, length = (t + t_prev) / 2, t - t_prev
    ia = (mid * na).long().clamp(max=na - 1)
    ib = (mid * nb).long().clamp(max=nb - 1)
    return (length[:, None] * (a[ia] - b[ib]).abs()).sum(dim=0)


def _sliced_w1(da: torch.Tensor, db: torch.Tensor, n_proj: int, gen: torch.Generator) -> float:
    fa, fb = da.flatten(1), db.flatten(1)
    dirs = torch.randn(fa.shape[1], n_proj, generator=gen, dtype=fa.dtype)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(fa @ dirs, dim=0)
    pb, _ = torch.sort(fb @ dirs, dim=0)
    return float(wasserstein_1d_sorted(pa, pb).mean())


def sliced_wasserstein_patches(images_a: ImageInput, images_b: ImageInput, levels: int = 4,
                               patch_size: int = 7,
                               n_patches_per_image: int = DEFAULT_PATCHES_PER_IMAGE,
                               n_projections: int = DEFAULT_PROJECTIONS, seed: int = 0,
                               normalize: str = "per_set") -> Dict[str, object]:
    """SWD between the patch distributions of two image sets, per Laplacian-pyramid level.

    Returns ``{"levels": [band-pass values, finest first], "lowpass": value on the Gaussian
    residual, "total": mean of the band-pass values}``. Values are raw distances (ProGAN
    reports them x1e3). ``normalize``: "per_set" (ProGAN: each set by its own per-channel
    mean/std, so global contrast per band is ignored), "joint" (both sets by pooled statistics,
    so lost detail energy counts) or "none". Images may be IMAGE batches or lists of
    differently sized images.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    for name, v in (("patch_size", patch_size), ("n_patches_per_image", n_patches_per_image),
                    ("n_projections", n_projections)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    list_a, list_b = image_list(images_a, "images_a"), image_list(images_b, "images_b")
    if list_a[0].shape[1] != list_b[0].shape[1]:
        raise ValueError("images_a and images_b must have the same number of channels")
    pyr_a = [laplacian_pyramid_bchw(x, levels) for x in list_a]
    pyr_b = [laplacian_pyramid_bchw(x, levels) for x in list_b]
    values = []
    for lv in range(levels + 1):
        da = _sample_patches(pyr_a, lv, patch_size, n_patches_per_image, seed)
        db = _sample_patches(pyr_b, lv, patch_size, n_patches_per_image, seed)
        da, db = _normalize(da, db, normalize)
        gen = torch.Generator().manual_seed(seed * 1000 + lv + PROJECTION_SEED_OFFSET)
        values.append(_sliced_w1(da, db, n_projections, gen))
    band = values[:levels]
    total = sum(band) / len(band) if band else values[-1]
    return {"levels": band, "lowpass": values[-1], "total": total}

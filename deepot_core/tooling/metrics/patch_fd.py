"""Fréchet distance between Gaussians fitted to raw pixel patches (an FID without a network).

Why: a cheap, dependency-free check that restored images have the second-order patch
statistics (local contrast, texture, colour correlations) of clean ones.
"""
from __future__ import annotations

import torch

from ._inputs import ImageInput, image_list

DEFAULT_PATCH_SIZE = 8
DEFAULT_MAX_PATCHES = 20000   # cap per set; enough for a 3*8*8 = 192-D covariance
EIG_FLOOR = 0.0               # negative eigenvalues from round-off are clipped to this


def _patches(images, patch: int, stride: int, max_patches: int, seed: int) -> torch.Tensor:
    rows = []
    for img in images:
        if min(img.shape[-2:]) < patch:
            raise ValueError(f"image of {img.shape[-2]}x{img.shape[-1]} pixels is smaller than "
                             f"patch_size={patch}")
        p = img.unfold(2, patch, stride).unfold(3, patch, stride)       # [1,C,nh,nw,p,p]
        rows.append(p.permute(0, 2, 3, 1, 4, 5).reshape(-1, img.shape[1] * patch * patch))
    x = torch.cat(rows, dim=0)
    if x.shape[0] > max_patches:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_patches]]
    return x


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(EIG_FLOOR).sqrt()) @ vecs.T


def frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float:
    """|mu_a - mu_b|² + tr(Ca + Cb - 2 (Ca^½ Cb Ca^½)^½), computed with symmetric eigendecompositions."""
    root_a = _sqrtm_psd(cov_a)
    inner = root_a @ cov_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(EIG_FLOOR).sqrt().sum()
    d = ((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt
    return float(d.clamp_min(0))


def patch_frechet_distance(images_a: ImageInput, images_b: ImageInput,
                           patch_size: int = DEFAULT_PATCH_SIZE, stride: int = None,
                           max_patches: int = DEFAULT_MAX_PATCHES, seed: int = 0) -> float:
    """Fréchet distance between Gaussian fits of the C·p·p-dim pixel patches of two image sets.

    Patches are taken on a grid with ``stride`` (default ``patch_size // 2``); above
    ``max_patches`` per set a seeded random subset is used (same seed for both sets, so the
    result is symmetric). Pixel values are in 0..1, so the distance is in (0..1)² units.
    """
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    stride = max(1, patch_size // 2) if stride is None else stride
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    list_a, list_b = image_list(images_a, "images_a"), image_list(images_b, "images_b")
    if list_a[0].shape[1] != list_b[0].shape[1]:
        raise ValueError("images_a and images_b must have the same number of channels")
    fa = _patches(list_a, patch_size, stride, max_patches, seed)
    fb = _patches(list_b, patch_size, stride, max_patches, seed)
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise ValueError("need at least 2 patches per set; use larger images or a smaller patch_size/stride")
    return frechet_distance(fa.mean(0), torch.cov(fa.T), fb.mean(0), torch.cov(fb.T))

"""NIQE, the "completely blind" natural image quality evaluator (Mittal et al., 2013).

Why: a no-reference perceptual-quality score (lower = more natural) for Deep OT outputs.
Follows the MATLAB release as reimplemented in BasicSR: Y channel (BT.601, rounded to
integers), 96×96 blocks, MSCN coefficients with the 7×7 window of the params file, AGGD
features of the coefficients and of their 4 neighbour products, two scales (the second by
MATLAB bicubic imresize ×0.5 with antialiasing), and a Mahalanobis-like distance to the
pristine multivariate Gaussian (``niqe_pris_params.npz``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from ._inputs import ImageInput, image_list
from .fidelity import rgb_to_y
from .matlab_resize import imresize

BLOCK_SIZE = 96                          # NIQE's recommended block size
MSCN_C = 1.0                             # stabiliser in (I - mu) / (sigma + C), 0-255 scale
GAMMA_GRID = (0.2, 10.0, 0.001)          # AGGD shape search grid (start, stop, step)
NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))   # horizontal, vertical, two diagonals
PIXEL_MAX = 255.0
_gamma = np.vectorize(math.gamma, otypes=[float])


@lru_cache(maxsize=1)
def _gamma_table():
    start, stop, step = GAMMA_GRID
    gam = np.arange(start, stop + step, step)
    gam = gam[gam <= stop + step / 2]
    r = _gamma(2 / gam) ** 2 / (_gamma(1 / gam) * _gamma(3 / gam))
    return gam, r


@lru_cache(maxsize=4)
def _load_params(path: str):
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"NIQE parameter file not found: {p}. It is BasicSR's "
                         f"basicsr/metrics/niqe_pris_params.npz (mu_pris_param, cov_pris_param, gaussian_window)")
    with np.load(p) as d:
        missing = {"mu_pris_param", "cov_pris_param", "gaussian_window"} - set(d.files)
        if missing:
            raise ValueError(f"{p} lacks {sorted(missing)}; use BasicSR's niqe_pris_params.npz")
        return (d["mu_pris_param"].astype(np.float64).reshape(-1), d["cov_pris_param"].astype(np.float64),
                d["gaussian_window"].astype(np.float64))


def _aggd(x: np.ndarray):
    """Fit an asymmetric generalised Gaussian to each row of x [N, M] -> alpha, beta_l, beta_r [N]."""
    gam, r_gam = _gamma_table()
    with np.errstate(invalid="ignore", divide="ignore"):
        neg, pos = x < 0, x > 0
        left = np.sqrt((x ** 2 * neg).sum(1) / neg.sum(1))
        right = np.sqrt((x ** 2 * pos).sum(1) / pos.sum(1))
        g = left / right
        rhat = np.abs(x).mean(1) ** 2 / (x ** 2).mean(1)
        rnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
        alpha = gam[np.argmin((r_gam[None, :] - rnorm[:, None]) ** 2, axis=1)]
        k = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left * k, right * k


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """18 NIQE features for each block of blocks [N, h, w]."""
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, bl, br = _aggd(flat)
    feats = [alpha, (bl + br) / 2]
    for shift in NEIGHBOUR_SHIFTS:
        prod = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(n, -1)
        alpha, bl, br = _aggd(prod)
        mean = (br - bl) * _gamma(2 / alpha) / _gamma(1 / alpha)
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def _mscn(img: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients with replicate borders."""
    k = window.flip(0, 1)[None, None]
    pad = (k.shape[-1] // 2, k.shape[-1] // 2, k.shape[-2] // 2, k.shape[-2] // 2)
    blur = lambda t: F.conv2d(F.pad(t[None, None], pad, mode="replicate"), k)[0, 0]  # noqa: E731
    mu = blur(img)
    sigma = (blur(img * img) - mu * mu).abs().sqrt()
    return (img - mu) / (sigma + MSCN_C)


def niqe_y(y255: torch.Tensor, params_path: Union[str, Path], block_size: int = BLOCK_SIZE) -> float:
    """NIQE of one luminance image [H, W] on the 0-255 scale."""
    mu_p, cov_p, window = _load_params(str(params_path))
    h, w = y255.shape
    nh, nw = h // block_size, w // block_size
    if nh * nw < 2:  # the feature covariance needs two blocks at least
        raise ValueError(
            f"NIQE needs at least two {block_size}×{block_size} blocks (e.g. {2 * block_size}×{block_size} "
            f"pixels), got a {h}×{w} image; measure larger crops.")
    img = y255[: nh * block_size, : nw * block_size].double()
    win = torch.from_numpy(window)
    feats = []
    for scale in (1, 2):
        norm = _mscn(img, win).numpy()
        bs = block_size // scale
        blocks = norm[: nh * bs, : nw * bs].reshape(nh, bs, nw, bs).transpose(0, 2, 1, 3).reshape(-1, bs, bs)
        feats.append(_block_features(blocks))
        if scale == 1:
            img = imresize(img / PIXEL_MAX, 0.5, antialias=True) * PIXEL_MAX
    dist = np.concatenate(feats, axis=1)
    mu_d = np.nanmean(dist, axis=0)
    cov_d = np.cov(dist[~np.isnan(dist).any(axis=1)], rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))


def niqe(images: ImageInput, params_path: Union[str, Path], crop_border: int = 0) -> torch.Tensor:
    """NIQE of each image (IMAGE [B,H,W,C] in 0..1, or a list of them) -> float64 tensor [B].

    RGB is converted to BT.601 Y (MATLAB rgb2ycbcr) and rounded to integers, as BasicSR
    and the MATLAB code do for 8-bit images; single-channel images are used as they are.
    Lower is better. ``params_path``: BasicSR's ``niqe_pris_params.npz``.
    """
    if not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    values = []
    for img in image_list(images, "images"):
        y = rgb_to_y(img) if img.shape[1] == 3 else img
        y = (y[0, 0] * PIXEL_MAX).round()
        if crop_border:
            y = y[crop_border:-crop_border, crop_border:-crop_border]
        values.append(niqe_y(y, params_path))
    return torch.tensor(values, dtype=torch.float64)

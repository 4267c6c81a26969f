"""The marginal of photos' finest detail, and the rank map that gives an image that marginal.

Why: second-order statistics (the W2 map, the per-level energy of ``blend``) leave the *shape* of the detail's
distribution free. A denoiser's output is flat where the photo had fine texture, and a transported decode keeps
much of that flatness: its finest Laplacian level is far more peaked than a photo's (kurtosis 16–20 where
256² photo crops hold 11). Photos agree on that shape: per image and normalised by its RMS, the finest level of
CBSD68, Kodak24 and Set14 follows a generalised Gaussian of shape β ≈ 0.63 (0.58–0.66 per collection,
``benchmarks/natural_marginal.py``; the wavelet-marginal law of Mallat 1989 and Simoncelli & Adelson 1996). ``match_marginal`` moves each image's
finest level onto that law by rank (Heeger & Bergen 1995), keeping its sign, its order and its energy: the
smallest coefficients rise, the largest do not spread further, and what second-order statistics fixed stays.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

#: Points in the quantile table of the prior; ranks between them interpolate linearly.
QUANTILE_POINTS = 1 << 14
#: Shapes accepted: below 0.2 the law is almost all zeros and spikes, above 4 almost uniform; photos ≈ 0.63.
SHAPE_RANGE = (0.2, 4.0)


def generalised_gaussian_kurtosis(shape: float) -> float:
    """Kurtosis E[x⁴]/E[x²]² of a generalised Gaussian of this shape (2: Gaussian, 3; 1: Laplace, 6)."""
    return math.exp(math.lgamma(5 / shape) + math.lgamma(1 / shape) - 2 * math.lgamma(3 / shape))


def shape_for_kurtosis(kurtosis: float) -> float:
    """The generalised-Gaussian shape with this kurtosis (bisection; kurtosis falls as the shape grows)."""
    lo, hi = SHAPE_RANGE
    if not generalised_gaussian_kurtosis(hi) <= kurtosis <= generalised_gaussian_kurtosis(lo):
        raise ValueError(f"kurtosis {kurtosis} lies outside the shapes {SHAPE_RANGE}")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if generalised_gaussian_kurtosis(mid) > kurtosis else (lo, mid)
    return 0.5 * (lo + hi)


@lru_cache(maxsize=8)
def _abs_quantiles(shape: float) -> torch.Tensor:
    """|x| at the probabilities (i + 0.5)/n of a unit-variance generalised Gaussian, float64 on the CPU.

    |x|^β / s^β is Gamma(1/β) distributed, so |x| = s·P⁻¹(1/β, u)^(1/β) with P the regularised lower incomplete
    gamma function, inverted by bisection (torch has P, not its inverse)."""
    u = (torch.arange(QUANTILE_POINTS, dtype=torch.float64) + 0.5) / QUANTILE_POINTS
    a = torch.tensor(1.0 / shape, dtype=torch.float64)
    lo, hi = torch.zeros_like(u), torch.full_like(u, 1.0)
    while bool((torch.special.gammainc(a, hi) < u).any()):
        hi = hi * 2
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = torch.special.gammainc(a, mid) < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    scale = math.exp(0.5 * (math.lgamma(1 / shape) - math.lgamma(3 / shape)))
    return scale * (0.5 * (lo + hi)) ** (1.0 / shape)


def match_marginal(coefficients: torch.Tensor, shape: float) -> torch.Tensor:
    """Each image's coefficients ([B,...]) given the generalised-Gaussian marginal of ``shape``, by rank.

    Per image, over all its channels and pixels: the k-th smallest |c| becomes the prior's quantile at
    (k + 0.5)/n, the sign is kept, and the result is scaled to the input's RMS. An image with no detail (RMS 0)
    is returned unchanged; exact zeros stay zero. Computed in float64, returned in the input's dtype."""
    lo, hi = SHAPE_RANGE
    if not lo <= shape <= hi:
        raise ValueError(f"the marginal's shape must lie in {SHAPE_RANGE}, got {shape}")
    flat = coefficients.reshape(coefficients.shape[0], -1).double()
    n = flat.shape[1]
    table = _abs_quantiles(float(shape)).to(flat.device)
    ranks = flat.abs().argsort(dim=1).argsort(dim=1).double()
    position = ((ranks + 0.5) / n * QUANTILE_POINTS - 0.5).clamp(0, QUANTILE_POINTS - 1)
    left = position.floor().long().clamp(max=QUANTILE_POINTS - 2)
    t = position - left
    target = table[left] * (1 - t) + table[left + 1] * t
    signed = flat.sign() * target  # exact zeros (flat, saturated areas) stay zero
    rms = flat.pow(2).mean(dim=1, keepdim=True).sqrt()
    signed_rms = signed.pow(2).mean(dim=1, keepdim=True).sqrt()
    matched = torch.where(signed_rms > 0, signed * (rms / signed_rms.clamp_min(1e-300)), flat)
    return matched.to(coefficients.dtype).reshape(coefficients.shape)

"""The marginal of photos' finest detail, and the rank map that gives an image that marginal.

Why: second-order statistics (the W2 map, the per-level energy of ``blend``) leave the *shape* of the detail's
distribution free. A denoiser's output is flat where the photo had fine texture, and a transported decode keeps
much of that flatness: on the benchmark's 256² crops its finest Laplacian level has kurtosis 16–20 where the
clean crops have 11–12. Photos agree on that shape: per image and normalised by its RMS, the finest level of
CBSD68, Kodak24 and Set14 follows a generalised Gaussian of shape β ≈ 0.63 (0.58–0.66 per collection,
``benchmarks/natural_marginal.py``; the wavelet-marginal law of Mallat 1989 and Simoncelli & Adelson 1996).
``match_marginal`` moves each image's finest level onto that law by rank (Heeger & Bergen 1995), keeping each
coefficient's sign, the order of their magnitudes and the level's energy: flat areas get small texture back,
edges stay where they are, and the energy the second-order rules chose is kept.

An option of PD Blend, off by default: it lowers the patch SWD in every space and task, and raises NIQE
(docs/natural_marginal.md).
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
    is returned unchanged; exact zeros stay zero. One sort per image, on the input's device and in its dtype
    (at least float32); energies are summed in float64."""
    lo, hi = SHAPE_RANGE
    if not lo <= shape <= hi:
        raise ValueError(f"the marginal's shape must lie in {SHAPE_RANGE}, got {shape}")
    dtype = torch.promote_types(coefficients.dtype, torch.float32)
    flat = coefficients.reshape(coefficients.shape[0], -1).to(dtype)
    n = flat.shape[1]
    # the prior's quantile for each rank, in sorted order (the same for every image of the batch), made on the
    # input's device: only the small table crosses from the CPU (float64 here: one elementwise pass, and in
    # float32 the ranks of a large image lose the tail's precision)
    table = _abs_quantiles(float(shape)).to(flat.device)
    position = ((torch.arange(n, device=flat.device, dtype=torch.float64) + 0.5) * (QUANTILE_POINTS / n) - 0.5)
    position = position.clamp(0, QUANTILE_POINTS - 1)
    left = position.floor().long().clamp(max=QUANTILE_POINTS - 2)
    t = position - left
    by_rank = (table[left] * (1 - t) + table[left + 1] * t).to(dtype)
    order = flat.abs().argsort(dim=1)
    target = torch.empty_like(flat).scatter_(1, order, by_rank.expand_as(flat))
    signed = flat.sign() * target  # exact zeros (flat, saturated areas) stay zero
    rms = flat.double().pow(2).mean(dim=1, keepdim=True).sqrt()
    signed_rms = signed.double().pow(2).mean(dim=1, keepdim=True).sqrt()
    scale = (rms / signed_rms.clamp_min(1e-300)).to(dtype)
    matched = torch.where(signed_rms > 0, signed * scale, flat)
    return matched.to(coefficients.dtype).reshape(coefficients.shape)

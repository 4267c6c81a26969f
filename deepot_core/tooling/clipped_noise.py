"""Undo the bias that clipped noise leaves in a Gaussian denoiser's output.

Why: Deep OT starts from the MMSE estimate. A photo saved with Gaussian noise is
clipped to 0..1, and the common denoisers (DnCNN, FFDNet) were trained on
unclipped noise. On clipped input they estimate the mean of the *clipped* noisy
pixel, g(x) = E[clip(x + n, 0, 1)], which lifts the shadows and lowers the
highlights: at σ = 50/255, g(0) = 0.078 and g(1) = 0.922. The output keeps about
0.83 of the photo's contrast at every scale, and no unpaired transport can put it
back (the natural set cannot say how much is missing). g is strictly increasing
on 0..1 (its slope is P(0 < x + n < 1)), so its inverse, applied pixel by pixel
to the denoiser's output, removes that bias: +1.2–1.3 dB for KAIR's DnCNN and
FFDNet at σ = 50 (benchmarks/noise_clipping.py).

IMAGE tensors [B,H,W,C] float in 0..1 in and out; alpha is passed through.
"""
import torch

from ..errors import TransportInputError
from ..image_ops import check_image
from ..validation import check_scalar
from .degrade import MAX_NOISE_SIGMA

#: Transport-file metadata key of the σ whose clipping bias was undone in the restored images at fit time, so
#: that the command line's ``apply`` treats new restored images the same way (absent: none was undone).
UNDO_CLIPPING_KEY = "undo_noise_clipping_sigma"
#: Safeguarded Newton steps on 0..1 (a bisection step wherever Newton leaves the bracket); g' ≥ 0.34 on
#: 0..1 for every σ up to 255, so 12 steps reach float precision (tests/test_clipped_noise.py checks it).
NEWTON_STEPS = 12


def clipped_noise_mean(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """g(x) = E[clip(x + n, 0, 1)] for n ~ N(0, σ²), σ on the 0..1 scale, elementwise."""
    if sigma <= 0:
        return x.clamp(0.0, 1.0)
    return _mean_and_slope(x, sigma)[0]


def _pdf(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * t * t) * 0.3989422804014327  # 1/√(2π)


def _mean_and_slope(x: torch.Tensor, sigma: float):
    """g(x) and g'(x) = P(0 < x + n < 1), from one evaluation of the two normal CDFs."""
    low, high = -x / sigma, (1.0 - x) / sigma
    cdf_low, cdf_high = torch.special.ndtr(low), torch.special.ndtr(high)
    slope = cdf_high - cdf_low
    return x * slope + sigma * (_pdf(low) - _pdf(high)) + (1.0 - cdf_high), slope


def undo_noise_clipping(images: torch.Tensor, noise_sigma: float) -> torch.Tensor:
    """The clean values x in 0..1 whose g(x) is the denoiser's output (σ on the 0..255 scale).

    Outputs below g(0) map to 0 and above g(1) to 1. σ = 0 returns a copy. Runs on
    the images' device in float32 (float64 stays float64) and returns their dtype.
    """
    images = check_image(images, "images")
    noise_sigma = check_scalar(noise_sigma, "noise_sigma", 0.0, MAX_NOISE_SIGMA)
    out_dtype = images.dtype
    work = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32)
    colour = work[..., :3] if work.shape[-1] == 4 else work
    if noise_sigma > 0:
        sigma = noise_sigma / 255.0
        target = colour.clamp(0.0, 1.0)
        low, high = torch.zeros_like(target), torch.ones_like(target)
        x = target.clone()
        for _ in range(NEWTON_STEPS):
            mean, slope = _mean_and_slope(x, sigma)
            residual = mean - target
            below = residual < 0
            low, high = torch.where(below, x, low), torch.where(below, high, x)
            step = x - residual / slope
            inside = (step >= low) & (step <= high)
            x = torch.where(inside, step, 0.5 * (low + high))
        ends = clipped_noise_mean(torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device), sigma)
        colour = torch.where(target <= ends[0], 0.0, torch.where(target >= ends[1], 1.0, x))
    out = torch.cat([colour, work[..., 3:]], dim=-1) if work.shape[-1] == 4 else colour
    return out.to(out_dtype, copy=True)


def recorded_noise_sigma(metadata) -> float:
    """The σ a transport file records under ``UNDO_CLIPPING_KEY`` (0 when absent), checked like an input."""
    value = (metadata or {}).get(UNDO_CLIPPING_KEY, 0.0)
    try:
        return check_scalar(value, f"the transport file's {UNDO_CLIPPING_KEY}", 0.0, MAX_NOISE_SIGMA)
    except TransportInputError as exc:
        raise TransportInputError(f"{exc} Refit the transport, or pass --undo-noise-clipping to override it.") \
            from None

"""Weight-free MMSE-style restorers for the demo: a Wiener denoiser and bicubic upsampling.

Why: Deep OT post-processes the output of a restorer trained for low MSE. Such an
output is smooth (it averages over all plausible originals); these two classical
estimators have the same character and need no downloads, so the demo runs anywhere.
IMAGE tensors [B,H,W,3] float in 0..1 in and out.
"""
import math

import torch
import torch.nn.functional as F

#: Orthonormal opponent-colour basis (rows): luminance, red–green, yellow–blue. Keeps white noise white.
OPPONENT = torch.tensor([
    [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
    [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
    [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
])
#: Reflect padding (pixels) before the FFT, so the periodic boundary does not leak edges across the frame.
WIENER_PAD = 16
#: Width of a radial frequency bin (in units of 1 / padded size) when estimating the power spectrum.
RADIAL_BIN = 1.0


def _check(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"{name} must be a float IMAGE tensor [B,H,W,3] in 0..1.")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [B,H,W,3], got {tuple(images.shape)}.")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or Inf.")
    return images


def _radial_index(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None] * max(h, w)
    fx = torch.fft.fftfreq(w)[None, :] * max(h, w)
    return torch.sqrt(fy ** 2 + fx ** 2).div(RADIAL_BIN).round().long()


def wiener_denoise(noisy: torch.Tensor, sigma255: float) -> torch.Tensor:
    """Isotropic empirical Wiener filter per opponent-colour channel for white Gaussian noise.

    The signal power at each radial frequency is the observed power minus the
    noise power σ²; the gain S/(S+σ²) is the linear MMSE estimator for a
    stationary, isotropic image model — a blurry, MSE-optimal-in-its-class output.
    """
    noisy = _check(noisy, "noisy")
    if not isinstance(sigma255, (int, float)) or not 0 <= sigma255 <= 255:
        raise ValueError(f"sigma255 must be a noise std on the 0-255 scale (0..255), got {sigma255!r}.")
    if sigma255 == 0:
        return noisy.clamp(0, 1)
    var = (sigma255 / 255.0) ** 2
    b, h, w, _ = noisy.shape
    x = torch.einsum("bhwc,oc->bohw", noisy.double(), OPPONENT.double())
    mean = x.mean(dim=(2, 3), keepdim=True)
    pad = min(WIENER_PAD, h - 1, w - 1)
    x = F.pad(x - mean, (pad, pad, pad, pad), mode="reflect") if pad > 0 else x - mean
    ph, pw = x.shape[-2:]
    spectrum = torch.fft.fft2(x)
    power = spectrum.abs() ** 2 / (ph * pw)
    index = _radial_index(ph, pw)
    bins = int(index.max()) + 1
    flat = power.reshape(b, 3, -1)
    sums = torch.zeros(b, 3, bins, dtype=flat.dtype).index_add_(2, index.reshape(-1), flat)
    counts = torch.bincount(index.reshape(-1), minlength=bins).to(flat.dtype)
    signal = (sums / counts.clamp_min(1) - var).clamp_min(0.0)
    gain = (signal / (signal + var))[:, :, index]  # [B,3,ph,pw]
    gain[:, :, 0, 0] = 1.0  # the mean was removed; keep whatever DC is left
    out = torch.fft.ifft2(spectrum * gain).real[:, :, pad:pad + h, pad:pad + w] + mean
    out = torch.einsum("bohw,oc->bhwc", out, OPPONENT.double())
    return out.clamp(0, 1).to(noisy.dtype)


def bicubic_upscale(low_res: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic ×``scale`` upsampling (the classical SR baseline), clamped to 0..1."""
    low_res = _check(low_res, "low_res")
    if not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer 1..16, got {scale!r}.")
    x = low_res.permute(0, 3, 1, 2).float()
    out = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).clamp(0, 1).to(low_res.dtype)

"""Full-reference fidelity metrics (PSNR, SSIM), one value per image.

Why: Deep OT trades a little fidelity for perceptual quality; these measure that cost.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._inputs import image_pair

SSIM_WINDOW = 11          # Gaussian window size of Wang et al. (2004)
SSIM_SIGMA = 1.5          # its standard deviation
SSIM_K1, SSIM_K2 = 0.01, 0.03
# ITU-R BT.601 luma as in MATLAB rgb2ycbcr (for RGB in 0..1, Y in 16/255..235/255).
Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
Y_OFFSET = 16.0 / 255.0


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB over all pixels and channels -> float tensor [B] (inf where equal)."""
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    x, y = image_pair(a, b)
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(data_range ** 2 / mse)).float()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] RGB in 0..1 -> [B,1,H,W] BT.601 luma (MATLAB rgb2ycbcr convention), 0..1 scale."""
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) + Y_OFFSET


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float64) -> torch.Tensor:
    """Normalised 2-D Gaussian window [size, size]."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, channels: str = "rgb") -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) -> float tensor [B].

    11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, 'valid' filtering (no padding),
    like the reference MATLAB code. ``channels="rgb"`` (default) averages the SSIM maps of
    the colour channels (as skimage with channel_axis and BasicSR on RGB do);
    ``channels="y"`` measures the BT.601 luma only (the usual SR-paper convention).
    """
    if channels not in ("rgb", "y"):
        raise ValueError(f"channels must be 'rgb' or 'y', got {channels!r}")
    x, y = image_pair(a, b)
    if channels == "y":
        if x.shape[1] != 3:
            raise ValueError("channels='y' needs RGB images (C = 3)")
        x, y = rgb_to_y(x), rgb_to_y(y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got "
                         f"{x.shape[-2]}x{x.shape[-1]}")
    c = x.shape[1]
    win = gaussian_window(dtype=x.dtype).to(x.device).expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)
    filt = lambda t: F.conv2d(t, win, groups=c)  # noqa: E731
    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x ** 2
    var_y = filt(y * y) - mu_y ** 2
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return smap.flatten(1).mean(dim=1).float()

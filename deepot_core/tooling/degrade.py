"""Synthetic degradations for calibration pairs: clean photos → inputs like the user's.

Calibration pairs (natural = clean photos, restored = the restorer's output on
degraded copies of them) only work when the degradation resembles the real one,
so the common ones are offered, applied in the usual camera-pipeline order:

    blur (Gaussian σ) → downscale ×k → Gaussian noise σ/255 → JPEG → optional upscale back.

Noise is drawn from one CPU generator seeded with ``seed``, image after image,
so each image gets its own noise and image i's noise does not depend on the
batch size or the device.
"""
import io

import torch
import torch.nn.functional as F

from ..errors import TransportInputError
from ..image_ops import check_image, gaussian_blur, split_alpha
from ..validation import check_scalar

#: Resampling filters offered, mapped to ``torch.nn.functional.interpolate`` modes.
FILTERS = {"bicubic": "bicubic", "bilinear": "bilinear", "area": "area", "nearest": "nearest-exact"}
#: Filters for which ``antialias`` means something to ``interpolate``.
ANTIALIAS_FILTERS = ("bicubic", "bilinear")
#: Largest downscale factor; beyond it little of a photo is left.
MAX_SCALE = 16
#: Largest noise σ on the 0..255 scale.
MAX_NOISE_SIGMA = 255.0
#: Largest blur σ in pixels.
MAX_BLUR_SIGMA = 32.0
#: JPEG qualities that mean "no JPEG" (100 still quantises, but users expect it to be off).
JPEG_OFF = (0, 100)


def _check_int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
        raise TransportInputError(f"{name} must be an integer in {low}..{high}, got {value!r}.")
    value = int(value)
    if not low <= value <= high:
        raise TransportInputError(f"{name} must be in {low}..{high}, got {value}.")
    return value


def _resize(images: torch.Tensor, height: int, width: int, filter: str, antialias: bool) -> torch.Tensor:
    """Resize [B,H,W,C] with the named filter (bicubic overshoot is clipped)."""
    x = images.permute(0, 3, 1, 2)
    kwargs = {}
    if filter in ANTIALIAS_FILTERS:
        kwargs = {"align_corners": False, "antialias": antialias}
    x = F.interpolate(x, size=(height, width), mode=FILTERS[filter], **kwargs)
    return x.permute(0, 2, 3, 1).clamp(0.0, 1.0)


def _add_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.stack([torch.randn(images.shape[1:], generator=generator, dtype=torch.float32)
                         for _ in range(images.shape[0])])
    return (images + noise.to(images) * (sigma / 255.0)).clamp(0.0, 1.0)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip every image through Pillow's JPEG encoder at ``quality``."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError:
        raise TransportInputError(
            "JPEG degradation needs Pillow: pip install pillow (or set jpeg_quality to 0).") from None
    out = []
    for image in images:
        array = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        grey = array.shape[-1] == 1
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if grey else array, mode="L" if grey else "RGB").save(
            buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(decoded.reshape(array.shape)))
    return torch.stack(out).to(images)


def degrade_images(images: torch.Tensor, scale: int = 1, filter: str = "bicubic", upscale_back: bool = False,
                   noise_sigma: float = 0.0, jpeg_quality: int = 0, blur_sigma: float = 0.0, seed: int = 0,
                   antialias: bool = True) -> torch.Tensor:
    """Degrade an IMAGE batch [B,H,W,C] (0..1); a new tensor, deterministic for a given ``seed``.

    ``scale`` k > 1 downscales to round(H/k)×round(W/k) with ``filter``;
    ``upscale_back`` returns to H×W with the same filter (for restorers that
    take same-size input). ``noise_sigma`` is on the 0..255 scale;
    ``jpeg_quality`` 1..99 compresses (0 or 100: off). RGBA keeps its alpha
    (resized alongside, never noised or compressed).
    """
    images = check_image(images, "images")
    scale = _check_int(scale, "scale", 1, MAX_SCALE)
    if filter not in FILTERS:
        raise TransportInputError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}.")
    noise_sigma = check_scalar(noise_sigma, "noise_sigma", 0.0, MAX_NOISE_SIGMA)
    jpeg_quality = _check_int(jpeg_quality, "jpeg_quality", 0, 100)
    blur_sigma = check_scalar(blur_sigma, "blur_sigma", 0.0, MAX_BLUR_SIGMA)
    seed = _check_int(seed, "seed", 0, 2 ** 64 - 1)
    height, width = images.shape[1:3]
    out_dtype = images.dtype
    x = images.float()
    if x.shape[-1] == 4:
        rgb, alpha = split_alpha(x)
    else:
        rgb, alpha = x, None
    if blur_sigma > 0:
        rgb = gaussian_blur(rgb, blur_sigma).clamp(0.0, 1.0)
    if scale > 1:
        small = (max(1, round(height / scale)), max(1, round(width / scale)))
        rgb = _resize(rgb, *small, filter, antialias)
        alpha = None if alpha is None else _resize(alpha, *small, filter, antialias)
    if noise_sigma > 0:
        rgb = _add_noise(rgb, noise_sigma, seed)
    if jpeg_quality not in JPEG_OFF:
        rgb = _jpeg(rgb, jpeg_quality)
    if scale > 1 and upscale_back:
        rgb = _resize(rgb, height, width, filter, antialias)
        alpha = None if alpha is None else _resize(alpha, height, width, filter, antialias)
    out = rgb if alpha is None else torch.cat([rgb, alpha], dim=-1)
    return out.to(out_dtype, copy=True)  # never the caller's tensor, even when nothing was asked

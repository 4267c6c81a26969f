"""Small IMAGE-tensor helpers ([B,H,W,C] float 0..1, ComfyUI's layout) shared by blend and colour code."""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

from .errors import TransportInputError


def check_image(image, name: str) -> torch.Tensor:
    """A float [B,H,W,C] tensor with 1, 3 or 4 channels and no NaN/Inf."""
    if not isinstance(image, torch.Tensor):
        raise TransportInputError(f"{name} must be an IMAGE tensor [B,H,W,C], got {type(image).__name__}.")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise TransportInputError(
            f"{name} must be an IMAGE [B,H,W,C] with 1, 3 or 4 channels, got shape {tuple(image.shape)}.")
    if image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise TransportInputError(f"{name} is empty (shape {tuple(image.shape)}).")
    if not image.is_floating_point():
        raise TransportInputError(f"{name} must be float in 0..1, got dtype {image.dtype}.")
    if not bool(torch.isfinite(image).all()):
        raise TransportInputError(f"{name} contains NaN or Inf; check the node that produced it.")
    return image


def split_alpha(image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """RGB part (grey expanded to 3 channels) and the alpha channel (or None)."""
    if image.shape[-1] == 4:
        return image[..., :3], image[..., 3:]
    if image.shape[-1] == 1:
        return image.expand(*image.shape[:-1], 3), None
    return image, None


def centre_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop [B,H,W,C] to height×width around its centre (VAEs crop to multiples of 8)."""
    h, w = image.shape[1:3]
    top, left = (h - height) // 2, (w - width) // 2
    return image[:, top:top + height, left:left + width]


def match_sizes(*images: torch.Tensor) -> List[torch.Tensor]:
    """Centre-crop every image to the smallest height and width among them."""
    height = min(i.shape[1] for i in images)
    width = min(i.shape[2] for i in images)
    return [centre_crop(i, height, width) for i in images]


def match_batches(*images: torch.Tensor, names: Sequence[str]) -> List[torch.Tensor]:
    """Broadcast batch 1 against batch N; other mismatches are an error."""
    sizes = {i.shape[0] for i in images}
    n = max(sizes)
    if sizes - {1, n}:
        listing = ", ".join(f"{name} {i.shape[0]}" for name, i in zip(names, images))
        raise TransportInputError(f"batch sizes differ ({listing}); give equal batches, or a batch of 1.")
    return [i.expand(n, *i.shape[1:]) if i.shape[0] == 1 else i for i in images]


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad [B,H,W,C] at the bottom/right to a multiple of an autoencoder's downscale (a VAE would crop)."""
    h, w = image.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    x = F.pad(image.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate")
    return x.permute(0, 2, 3, 1)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B,H,W,C] with reflect borders (replicate where the image is too small)."""
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = image.shape[-1]
    out = image.permute(0, 3, 1, 2)
    for dim in (2, 3):
        size = out.shape[dim]
        pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
        mode = "reflect" if radius < size else "replicate"
        out = F.pad(out, pad, mode=mode)
        k = kernel.reshape(1, 1, -1, 1) if dim == 2 else kernel.reshape(1, 1, 1, -1)
        out = F.conv2d(out, k.expand(c, 1, *k.shape[2:]), groups=c)
    return out.permute(0, 2, 3, 1)

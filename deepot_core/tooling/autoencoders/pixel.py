"""The VAE-free "latent" space of the original DOT: pixels themselves.

Why: lets the same transport code run on pixels or on TAESD latents; it has the
same interface as TAESDSpace (encode / decode / latent_channels / downscale).
"""
from __future__ import annotations

import torch

PIXEL_CHANNELS = 3


class PixelSpace:
    """encode: IMAGE [B,H,W,3] -> [B,3,H,W]; decode: the inverse, clamped to 0..1."""

    latent_channels = PIXEL_CHANNELS

    def __init__(self, downscale: int = 1):
        if downscale != 1:
            raise ValueError(f"PixelSpace works at full resolution; downscale must be 1, got {downscale!r}")
        self.downscale = 1

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or not images.is_floating_point():
            raise TypeError("images must be a float torch tensor [B,H,W,C] in 0..1 (ComfyUI IMAGE)")
        if images.ndim != 4 or images.shape[-1] != PIXEL_CHANNELS:
            raise ValueError(f"images must have shape [B,H,W,3], got {tuple(images.shape)}; "
                             f"drop an alpha channel with images[..., :3]")
        return images.permute(0, 3, 1, 2).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(latents) or not latents.is_floating_point():
            raise TypeError("latents must be a float torch tensor [B,3,H,W]")
        if latents.ndim != 4 or latents.shape[1] != PIXEL_CHANNELS:
            raise ValueError(f"pixel latents must have shape [B,3,H,W], got {tuple(latents.shape)}")
        return latents.clamp(0, 1).permute(0, 2, 3, 1).contiguous()

    def __repr__(self) -> str:
        return "PixelSpace()"

"""Boundary checks: every public entry point calls these, so bad input fails early and clearly."""
import math
import numbers
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .constants import MAX_PATCH_SIZE
from .errors import TransportInputError


def check_patch_size(patch_size) -> int:
    """An odd integer 1..MAX_PATCH_SIZE (odd so every patch has a centre pixel)."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral) and not (
        isinstance(patch_size, numbers.Real) and float(patch_size).is_integer()
    ):
        raise TransportInputError(
            f"patch_size must be an odd integer, got {patch_size!r}; use 1, 3, 5, 7 or 9."
        )
    p = int(patch_size)
    if p < 1 or p > MAX_PATCH_SIZE or p % 2 == 0:
        raise TransportInputError(
            f"patch_size must be odd and between 1 and {MAX_PATCH_SIZE}, got {p}; "
            "use 3 (the default) or another odd size."
        )
    return p


def check_scalar(value, name: str, low: float, high: float) -> float:
    """A finite real number inside [low, high]."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TransportInputError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TransportInputError(f"{name} must be a number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise TransportInputError(f"{name} must be a finite number, got {value}; use a value in {low}..{high}.")
    if value < low or value > high:
        raise TransportInputError(f"{name} must be in {low}..{high}, got {value}.")
    return value


def as_frames(latents, name: str = "latents") -> Tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """View image latents [B,C,H,W] or video latents [B,C,T,H,W] as frames [N,C,H,W].

    Returns the frames and a function that puts a same-shaped frame tensor back
    into the caller's layout. Video frames count as more samples.
    """
    if not isinstance(latents, torch.Tensor):
        raise TransportInputError(
            f"{name} must be a torch tensor, got {type(latents).__name__}; "
            "pass a LATENT's 'samples' tensor ([B,C,H,W] or [B,C,T,H,W])."
        )
    if not latents.is_floating_point():
        raise TransportInputError(f"{name} must be a floating-point tensor, got dtype {latents.dtype}.")
    if latents.ndim == 4:
        return latents, lambda frames: frames
    if latents.ndim == 5:
        b, c, t, h, w = latents.shape
        frames = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

        def restore(out: torch.Tensor) -> torch.Tensor:
            return out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)

        return frames, restore
    raise TransportInputError(
        f"{name} must have 4 dimensions [B,C,H,W] (images) or 5 [B,C,T,H,W] (video), "
        f"got shape {tuple(latents.shape)}."
    )


def check_not_empty(frames: torch.Tensor, name: str) -> None:
    """At least one frame with at least one pixel."""
    if frames.shape[0] == 0 or frames.shape[-1] == 0 or frames.shape[-2] == 0:
        raise TransportInputError(f"{name} is empty (shape {tuple(frames.shape)}); pass at least one image.")
    if frames.shape[1] == 0:
        raise TransportInputError(f"{name} has 0 channels (shape {tuple(frames.shape)}).")


def mask_factor(mask_hw: Tuple[int, int], latent_hw: Tuple[int, int]) -> Optional[int]:
    """The whole factor k with mask = k·latent + a crop remainder under k on both sides, or None.

    A latent of h×w comes from an image of (k·h + r)×(k·w + s) pixels, 0 ≤ r, s < k,
    where k is the VAE's downscale (1 for pixel space, 8 for SD, 16 or 32 for others)
    and VAE Encode crops r and s away. So a mask is accepted at latent resolution
    (k = 1) or at image resolution for one k on both axes; the largest fitting k is
    taken (several fit only latents a few pixels wide).
    """
    (mh, mw), (h, w) = mask_hw, latent_hw
    if h < 1 or w < 1:
        return None
    for k in range(min(mh // h, mw // w), 0, -1):
        if mh - k * h < k and mw - k * w < k:
            return k
    return None


def _mask_to_latent(m: torch.Tensor, h: int, w: int, name: str) -> torch.Tensor:
    """[N,1,mh,mw] at latent or image resolution → [N,1,h,w]: crop as VAE Encode does, average k×k blocks."""
    mh, mw = m.shape[-2:]
    if (mh, mw) == (h, w):
        return m
    k = mask_factor((mh, mw), (h, w))
    if k is None:
        raise TransportInputError(
            f"{name} is {mh}×{mw} but the latent is {h}×{w}: give the mask at latent resolution ({h}×{w}) or at "
            f"the image's (the latent times the VAE's downscale, e.g. {8 * h}×{8 * w} for an 8× VAE), "
            "with the image's aspect ratio.")
    top, left = (mh - k * h) // 2, (mw - k * w) // 2  # VAE Encode keeps the centre
    m = m[..., top:top + k * h, left:left + k * w]
    return F.avg_pool2d(m, k) if k > 1 else m


def prepare_mask(mask: Optional[torch.Tensor], frames: torch.Tensor, frames_per_item: int, name: str = "mask"):
    """Bring a 0..1 weight mask to [N,1,H,W] at the frames' resolution, or None.

    Accepts [H,W], [B,H,W] (ComfyUI MASK), [B,1,H,W] or [B,H,W,1], at latent
    resolution or at image resolution (see ``mask_factor``: centre-cropped like
    VAE Encode, then averaged over each latent pixel's k×k block). Other sizes are
    refused, naming both. A batch of 1 applies to every image; a batch of B to
    every frame of its video; a batch of B·T frame by frame.
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TransportInputError(f"{name} must be a torch tensor, got {type(mask).__name__}.")
    m = mask.detach()
    if m.ndim == 2:
        m = m[None]
    elif m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    elif m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 3:
        raise TransportInputError(
            f"{name} must be [H,W], [B,H,W] or [B,1,H,W], got shape {tuple(mask.shape)}."
        )
    if m.numel() == 0:
        raise TransportInputError(f"{name} is empty (shape {tuple(mask.shape)}).")
    m = m.to(device=frames.device, dtype=torch.float32)
    if not bool(torch.isfinite(m).all()):
        raise TransportInputError(f"{name} contains NaN or Inf; masks must hold weights in 0..1.")
    n, _, h, w = frames.shape
    items = n // max(frames_per_item, 1)
    if m.shape[0] == 1:
        m = m.expand(n, -1, -1)
    elif m.shape[0] == items and frames_per_item > 1:
        m = m.repeat_interleave(frames_per_item, dim=0)
    elif m.shape[0] != n:
        raise TransportInputError(
            f"{name} has batch {m.shape[0]} but the latents have {items} image(s)"
            + (f" of {frames_per_item} frames" if frames_per_item > 1 else "")
            + "; pass one mask, or one per image."
        )
    return _mask_to_latent(m[:, None], h, w, name).clamp(0.0, 1.0)

"""Input checks shared by the metrics: IMAGE tensors or lists of differently sized images."""
from __future__ import annotations

from typing import List, Sequence, Union

import torch

ImageInput = Union[torch.Tensor, Sequence[torch.Tensor]]


def _check_image_tensor(x, name: str) -> torch.Tensor:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"{name} must be a float torch tensor [B,H,W,C] in 0..1 (ComfyUI IMAGE), "
                        f"got {type(x).__name__}{'' if not torch.is_tensor(x) else ' of dtype ' + str(x.dtype)}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have shape [B,H,W,C] with C = 1 or 3, got {tuple(x.shape)}; "
                         f"drop an alpha channel with images[..., :3]")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    return x


def image_list(images: ImageInput, name: str = "images") -> List[torch.Tensor]:
    """Return a list of [1,C,H,W] float64 tensors from an IMAGE batch or a list of images."""
    if torch.is_tensor(images):
        batch = _check_image_tensor(images, name)
        return [b.permute(2, 0, 1).unsqueeze(0).double() for b in batch]
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise TypeError(f"{name} must be an IMAGE tensor [B,H,W,C] or a non-empty list of them")
    out: List[torch.Tensor] = []
    for i, item in enumerate(images):
        out.extend(image_list(item, f"{name}[{i}]"))
    channels = {t.shape[1] for t in out}
    if len(channels) > 1:
        raise ValueError(f"{name} mixes images with {sorted(channels)} channels; convert them to one colour mode")
    return out


def image_pair(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """Check two IMAGE batches of the same shape; return them as [B,C,H,W] float64."""
    a, b = _check_image_tensor(a, "a"), _check_image_tensor(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [B,H,W,C], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}; crop or resize one to match the other")
    return a.permute(0, 3, 1, 2).double(), b.permute(0, 3, 1, 2).double()

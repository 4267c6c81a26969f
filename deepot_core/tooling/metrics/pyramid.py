"""The Laplacian pyramid of IMAGE batches, as ProGAN's SWD uses it (the bands live in ``deepot_core.pyramid``)."""
from __future__ import annotations

from typing import List

import torch

from ...pyramid import laplacian_pyramid_bchw
from ._inputs import image_list


def laplacian_pyramid(images: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """IMAGE [B,H,W,C] -> list of ``levels + 1`` tensors [B,h,w,C]: band-pass (finest first), low-pass last.

    Band-pass levels are signed (not 0..1); summing ``pyr_up`` of the levels back up rebuilds
    the image exactly.
    """
    batch = image_list(images, "images")
    if len({tuple(t.shape) for t in batch}) > 1:
        raise ValueError("laplacian_pyramid needs one IMAGE batch of equal-sized images")
    x = torch.cat(batch, dim=0)
    return [lv.permute(0, 2, 3, 1).to(images.dtype if torch.is_tensor(images) else torch.float32)
            for lv in laplacian_pyramid_bchw(x, levels)]

"""Colour harmonisation: give the natural photos the restored set's palette, keep their texture.

Pooled RGB mean μ and covariance Σ of each set; every natural pixel t becomes

    t' = μ_S + C (t − μ_T),  C = Σ_T^-½ (Σ_T^½ Σ_S Σ_T^½)^½ Σ_T^-½,

the W2-optimal affine map between the two colour Gaussians, clipped to 0..1.
Fitted on another collection, the patch transport otherwise recolours every
output toward that collection (the luminance part matters most).
"""
from typing import List, Sequence, Union

import torch

from .errors import TransportInputError
from .gaussian_ot import gaussian_map, gaussian_w2
from .image_ops import check_image, split_alpha

#: Eigenvalue floor of the natural colour covariance (relative), for grey or single-colour sets.
COLOUR_EPS = 1e-4

Images = Union[torch.Tensor, Sequence[torch.Tensor]]


def _as_list(images: Images, name: str) -> List[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        return [check_image(images, name)]
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise TransportInputError(f"{name} must be an IMAGE tensor [B,H,W,C] or a non-empty list of them.")
    return [check_image(i, f"{name}[{k}]") for k, i in enumerate(images)]


def colour_moments(images: Images, name: str = "images"):
    """Pooled RGB mean (3) and covariance (3×3) in float64 over every pixel of every image."""
    total, s1, s2 = 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    for image in _as_list(images, name):
        rgb = split_alpha(image)[0].reshape(-1, 3).to(device="cpu", dtype=torch.float64)
        total += rgb.shape[0]
        s1 += rgb.sum(0)
        s2 += rgb.T @ rgb
    mean = s1 / total
    cov = (s2 - total * torch.outer(mean, mean)) / max(total - 1, 1)
    return mean, 0.5 * (cov + cov.T)


def colour_gap(natural: Images, restored: Images) -> float:
    """W2 distance between the two sets' RGB Gaussians (0..1 units): how different their palettes are."""
    return gaussian_w2(*colour_moments(natural, "natural"), *colour_moments(restored, "restored"))


def harmonise_colours(natural: Images, restored: Images) -> Images:
    """Recolour ``natural`` toward ``restored``'s pooled colour statistics; same structure out as in."""
    mean_t, cov_t = colour_moments(natural, "natural")
    mean_s, cov_s = colour_moments(restored, "restored")
    cmap = gaussian_map(mean_t, cov_t, mean_s, cov_s, eps=COLOUR_EPS)

    def recolour(image: torch.Tensor) -> torch.Tensor:
        image = check_image(image, "natural")
        rgb, alpha = split_alpha(image)
        dtype = torch.promote_types(rgb.dtype, torch.float32)  # half → float32; float64 keeps its precision
        matrix = cmap.matrix.to(device=rgb.device, dtype=dtype)
        bias = cmap.bias.to(device=rgb.device, dtype=dtype)
        out = (rgb.to(dtype) @ matrix.T + bias).clamp(0.0, 1.0).to(image.dtype)
        return out if alpha is None else torch.cat([out, alpha], dim=-1)

    if isinstance(natural, torch.Tensor):
        return recolour(natural)
    return type(natural)(recolour(i) for i in natural)

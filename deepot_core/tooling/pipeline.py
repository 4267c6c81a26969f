"""The end-to-end Deep OT recipe shared by the command line, the demo and the benchmark.

encode (a latent space) → PatchStatistics → LatentTransport → apply → decode the
transported *and* the untransported latent → ``pd_blend`` (plain, or residual
decode + detail band), with optional colour harmonisation of the natural photos
before they are encoded. The recipes:

- ``PAPER_RECIPE``: the published DOT — plain blend of the decoded transport.
- ``FULL_RECIPE``: harmonise colours → residual decode → detail band (σ = 2 px) →
  natural-slope cap and floor, for natural photos from another collection (unpaired, zero-shot).
- ``full_recipe(paired=True)``: the same without harmonising, for calibration pairs:
  the clean and restored versions of the same photos already share a palette, and
  their pooled colour covariance differs by exactly the contrast the restorer lost,
  which harmonising would strip from the natural set.

Images are IMAGE tensors [1,H,W,3] (lists of them where sizes differ). A latent
space is anything with ``encode``/``decode``/``latent_channels``/``downscale``
(see ``spaces``); the standard tasks and metrics live in ``experiments``.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..blend import pd_blend, pd_sweep
from ..colour import colour_gap, harmonise_colours
from ..constants import (DEFAULT_DETAIL_SIGMA, DEFAULT_EPS, DEFAULT_NATURAL_FLOORS, DEFAULT_NATURAL_SLOPES,
                         DEFAULT_PATCH_SIZE)
from ..errors import TransportInputError
from ..realistic import decode_latents, decode_transport, encode_images
from ..statistics import PatchStatistics
from ..transport import LatentTransport
from .spaces import PIXEL_SPACE, SPACE_KEY

Progress = Optional[Callable[[int, int], None]]

#: Perceptions every sweep reports unless told otherwise.
DEFAULT_PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Recipe:
    """How a transport is fitted and blended: colour harmonisation, residual decode, detail band σ, the
    per-level natural-slope cap and floor on that band (slopes None: both off; floors None: the cap alone), and
    the shape of the natural marginal given to its finest level (None, the default: off)."""
    name: str
    harmonise: bool
    residual: bool
    detail_sigma: float
    natural_slopes: Optional[Tuple[float, ...]] = DEFAULT_NATURAL_SLOPES
    natural_floors: Optional[Tuple[float, ...]] = DEFAULT_NATURAL_FLOORS
    natural_marginal: Optional[float] = None


PAPER_RECIPE = Recipe("paper", harmonise=False, residual=False, detail_sigma=0.0)
FULL_RECIPE = Recipe("full", harmonise=True, residual=True, detail_sigma=DEFAULT_DETAIL_SIGMA)


def full_recipe(paired: bool, detail_sigma: float = DEFAULT_DETAIL_SIGMA,
                natural_slopes: Optional[Tuple[float, ...]] = DEFAULT_NATURAL_SLOPES,
                natural_floors: Optional[Tuple[float, ...]] = DEFAULT_NATURAL_FLOORS,
                natural_marginal: Optional[float] = None) -> Recipe:
    """The full recipe for calibration pairs (no harmonising) or for unpaired natural photos."""
    return Recipe("full", harmonise=not paired, residual=True, detail_sigma=detail_sigma,
                  natural_slopes=natural_slopes, natural_floors=natural_floors, natural_marginal=natural_marginal)


# ---------------------------------------------------------------------------- encode / decode
#: Encode an IMAGE padded to the space's multiple; decode and crop back (the one copy lives in ``realistic``).
encode, decode = encode_images, decode_latents


def collect_statistics(space, images: Sequence[torch.Tensor], patch_size: int = DEFAULT_PATCH_SIZE,
                       progress: Progress = None) -> PatchStatistics:
    """Stream every image through the encoder into one PatchStatistics (memory stays flat)."""
    stats = PatchStatistics(patch_size)
    for i, image in enumerate(images):
        stats.update(encode(space, image))
        if progress is not None:
            progress(i + 1, len(images))
    return stats


def fit_transport(space, natural: Sequence[torch.Tensor], restored: Optional[Sequence[torch.Tensor]] = None,
                  patch_size: int = DEFAULT_PATCH_SIZE, eps: float = DEFAULT_EPS, harmonise: bool = False,
                  zero_shot: bool = False, space_name: str = PIXEL_SPACE, metadata: Optional[Dict] = None,
                  progress: Progress = None) -> LatentTransport:
    """Fit natural-photo statistics (and restored ones unless ``zero_shot``) into a LatentTransport.

    ``harmonise`` recolours the natural photos to the restored set's palette first
    (needs ``restored``, which zero-shot then uses for colour only). The space's
    name and the recipe go into the transport's metadata.
    """
    natural = list(natural)
    restored = None if restored is None else list(restored)
    if not natural:
        raise TransportInputError("no natural images to fit on; give at least one clean photo.")
    if not zero_shot and not restored:
        raise TransportInputError("no restored images to fit on; give the restorer's outputs or use zero-shot.")
    if harmonise and not restored:
        raise TransportInputError("harmonising colours needs the restored images as the colour reference.")
    info = {SPACE_KEY: space_name, "harmonised": bool(harmonise), "natural_images": len(natural),
            "restored_images": 0 if restored is None else len(restored)}
    if restored:
        info["colour_gap"] = colour_gap([i[..., :3] for i in natural], [i[..., :3] for i in restored])
    if harmonise:
        natural = harmonise_colours([i[..., :3] for i in natural], [i[..., :3] for i in restored])
    total = len(natural) + (0 if zero_shot else len(restored))

    def step(offset):
        return None if progress is None else (lambda done, _n: progress(offset + done, total))

    target = collect_statistics(space, natural, patch_size, step(0))
    source = None if zero_shot else collect_statistics(space, restored, patch_size, step(len(natural)))
    info.update(metadata or {})
    return LatentTransport(source, target, eps=eps, metadata=info)


def transport_image(space, transport: LatentTransport, restored: torch.Tensor,
                    strength: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decoded transport D(T(z)) and reconstruction D(z) of one restored IMAGE, both at its size."""
    decoded = decode_transport(space, restored, transport, strength=strength)
    return decoded.transported, decoded.reconstructed


def blend(restored: torch.Tensor, transported: torch.Tensor, reconstructed: torch.Tensor,
          perception: float, recipe: Recipe = FULL_RECIPE) -> torch.Tensor:
    """One point of the perception–distortion curve under ``recipe`` (plain or residual + detail band)."""
    restored = restored[..., :3]
    if recipe.residual:
        return pd_blend(restored, transported, perception, reconstructed=reconstructed,
                        detail_sigma=recipe.detail_sigma, natural_slopes=recipe.natural_slopes,
                       natural_floors=recipe.natural_floors, natural_marginal=recipe.natural_marginal)
    return pd_blend(restored, transported, perception)


def blend_sweep(restored: torch.Tensor, transported: torch.Tensor, reconstructed: torch.Tensor,
                perceptions: Sequence[float], recipe: Recipe = FULL_RECIPE) -> List[torch.Tensor]:
    """``blend`` at each perception, with the band made (blurred, capped) once: one IMAGE per perception."""
    restored = restored[..., :3]
    if recipe.residual:
        out = pd_sweep(restored, transported, perceptions, reconstructed=reconstructed,
                       detail_sigma=recipe.detail_sigma, natural_slopes=recipe.natural_slopes,
                       natural_floors=recipe.natural_floors, natural_marginal=recipe.natural_marginal)
    else:
        out = pd_sweep(restored, transported, perceptions)
    return list(out.chunk(len(perceptions)))


def sweep(space, transport: LatentTransport, restored: Sequence[torch.Tensor],
          perceptions: Sequence[float] = DEFAULT_PERCEPTIONS, recipe: Recipe = FULL_RECIPE,
          progress: Progress = None) -> Dict[float, List[torch.Tensor]]:
    """Transport every restored image once and blend it at every perception → {perception: [images]}."""
    out: Dict[float, List[torch.Tensor]] = {float(p): [] for p in perceptions}
    for i, image in enumerate(restored):
        moved, recon = transport_image(space, transport, image)
        for p, blended in zip(out, blend_sweep(image, moved, recon, list(out), recipe)):
            out[p].append(blended)
        if progress is not None:
            progress(i + 1, len(restored))
    return out

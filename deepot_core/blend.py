"""Perception–distortion blending in pixel space.

Plain blend (Freirich et al.: the PD curve interpolates the MMSE output and its
transport):  out = clip((1 − p)·restored + p·transported).

Residual decode (when the decode of the *untransported* latent is given):
Δ = D(T(z)) − D(z) is added to the restored image, so the VAE's own
reconstruction error never reaches the output and p = 0 is exactly the
restored image. Detail band (``detail_sigma`` > 0): only Δ − G_σ∗Δ is added, so
the output's low frequencies stay the restored image's own (no recolouring):

    out = clip(restored + p·(Δ − G_σ∗Δ)).

Natural slope (``natural_slopes``, on by default with residual decode): some decoders
render a transported latent with more fine detail than any photo holds (TAEF1, TAESD3 and
TAESDXL by a third to a half more than the clean photos at the finest pyramid level), so
perception 1 overshot. Photos are close to scale-invariant: a Laplacian level holds at most
about s× the energy of the next coarser one (s = 1.5, 1.0, 0.9 from the finest, rounded from
the ratios of Kodak24, 1.60/0.99/0.87, and of the CBSD68 fit photos, 1.54/0.89/0.72). Per
image, each of the finest levels of the added band gets the largest gain in [0, 1] that keeps
the output's level within that slope of the *restored image's* next coarser level (never below
the restored image's own energy). The reference is what the restorer kept, not the output's own
coarser level: a decoder that over-renders level k+1 would otherwise raise level k's allowance in
turn, and that cascade cost TAEF1 −3.9 dB on Set14 ×4 SR (−3.05 without it; docs/collections.md).
Where the decoder renders faithfully the caps do not bind and the output is unchanged;
perception scales the capped band, so the curve stays monotone.

Natural floor (``natural_floors``, with the slopes): the opposite failure. TAESD renders a
transported latent with too little fine detail (2.0× the restored image's finest-level energy
where photos hold 3.6×), so its perception 1 stopped short. Three photos in four hold at least
1.2× the next coarser level's energy at the finest level (the lower quartile: Kodak24 1.25,
CBSD68 1.20); where the full band leaves the output below that, its gain is raised until the
floor is reached, at most ``NATURAL_FLOOR_MAX_GAIN`` (2×). Between floor and cap the band is
left as decoded.

Natural marginal (``natural_marginal``, off by default; ``NATURAL_MARGINAL_SHAPE`` is the photos' 0.63): energy per
level fixes how much detail there is, not its shape. A denoised image stays flat where the photo had fine texture,
and its transported decode keeps its finest level far more peaked than a photo's. Given a shape, the finest level
of restored + band gets the generalised-Gaussian marginal of that shape (``natural_marginal.match_marginal``: rank
map, energy kept), the change is kept to that level, and it joins the band, so perception scales it and
perception 0 is still the restored image. It brings the patch SWD down in every space and task, but NIQE up
(×4 SR in TAEF2: 4.96 → 7.77 at perception 1): the texture it raises in flat areas reads as noise to a
no-reference measure, so it is an option for research, not the default (docs/natural_marginal.md).

Video (``video``, off by default): the batch is the frames of one clip. The band is carried along the clip's motion
(``video.ClipMotion``), so the detail moves with the picture instead of re-forming in every frame, and the slope
gains are chosen once for the clip, from the pooled energies of the band as carried (docs/video.md).
"""
from typing import List, Optional, Sequence

import torch

from .constants import (DEFAULT_DETAIL_SIGMA, DEFAULT_NATURAL_FLOORS, DEFAULT_NATURAL_SLOPES,
                        NATURAL_FLOOR_MAX_GAIN, STRENGTH_MAX, STRENGTH_MIN)
from .errors import TransportInputError
from .image_ops import check_image, gaussian_blur, match_batches, match_sizes, split_alpha
from .natural_marginal import SHAPE_RANGE, match_marginal
from .pyramid import collapse, laplacian_pyramid_bchw
from .validation import check_scalar
from .video import ClipMotion, match_spectrum

#: Largest detail σ in pixels; beyond it the band holds the low frequencies it is meant to exclude.
MAX_DETAIL_SIGMA = 64.0
#: Largest natural slope accepted (a level may hold this many times the next coarser level's energy).
MAX_NATURAL_SLOPE = 100.0


def _check_slopes(slopes) -> List[float]:
    if slopes is None:
        return []
    values = [check_scalar(s, "natural_slopes", 0.0, MAX_NATURAL_SLOPE) for s in slopes]
    if any(v <= 0 for v in values):
        raise TransportInputError(f"natural_slopes must be positive, got {list(slopes)}; give None to turn the cap off.")
    return values


def _check_floors(floors, slopes: List[float]) -> List[float]:
    """Floors per level (finest first, 0: none), each at most that level's slope, no more levels than slopes."""
    if floors is None:
        return []
    values = [check_scalar(f, "natural_floors", 0.0, MAX_NATURAL_SLOPE) for f in floors]
    if len(values) > len(slopes):
        raise TransportInputError(f"natural_floors has {len(values)} levels but natural_slopes only {len(slopes)}; "
                                  "give a slope for every floored level.")
    over = [k for k, (f, s) in enumerate(zip(values, slopes)) if f > s]
    if over:
        raise TransportInputError(f"natural_floors {values} exceed natural_slopes {slopes} at level {over[0]}; "
                                  "a floor must not lie above its level's cap: lower the floor, raise the slope or "
                                  "give natural_floors=None.")
    return values


def _root(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Largest g with a·g² + 2b·g + c = target (the energy of restored + g·band), where one exists; else 1."""
    disc = (b * b - a * (c - target)).clamp(min=0)
    return torch.where(a > 0, (-b + disc.sqrt()) / a.clamp(min=torch.finfo(a.dtype).tiny), torch.ones_like(a))


def _largest_gain(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Largest g in [0, 1] with a·g² + 2b·g + c ≤ cap (the energy of restored + g·band), per image."""
    return torch.where(a + 2 * b + c <= cap, torch.ones_like(a), _root(a, b, c, cap).clamp(0.0, 1.0))


def _floor_gain(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, floor: torch.Tensor,
                max_gain: float) -> torch.Tensor:
    """Where the full band leaves the level below ``floor``, the gain in (1, max_gain] that reaches it; else 1
    (also with no band: ``_root`` gives 1)."""
    under = a + 2 * b + c < floor
    return torch.where(under, _root(a, b, c, floor).clamp(1.0, max_gain), torch.ones_like(a))


def natural_slope_gains(base: torch.Tensor, band: torch.Tensor,
                        slopes: Sequence[float] = DEFAULT_NATURAL_SLOPES,
                        floors: Sequence[float] = DEFAULT_NATURAL_FLOORS) -> torch.Tensor:
    """Per image and finest pyramid level, the gain on ``band`` that keeps ``base + band`` within the natural slope.

    ``base`` and ``band`` are [B,C,H,W]; returns [B, len(slopes)] gains (finest first). Level k of the output may
    hold at most ``slopes[k]`` × the energy of the restored image's level k+1 (or the restored image's own level-k
    energy, if that is more): gains in [0, 1]. Where ``floors[k]`` is given and the full band leaves level k below
    ``floors[k]`` × that level k+1, the gain rises to reach it, at most ``NATURAL_FLOOR_MAX_GAIN``. Energies are
    means over pixels and channels, in float64.
    """
    slopes = _check_slopes(slopes)
    floors = _check_floors(floors, slopes)
    levels = len(slopes)
    return _gains(laplacian_pyramid_bchw(base, levels + 1), laplacian_pyramid_bchw(band, levels + 1), slopes, floors)


def _gains(bands_r: List[torch.Tensor], bands_h: List[torch.Tensor], slopes: Sequence[float],
           floors: Sequence[float] = (), per_clip: bool = False) -> torch.Tensor:
    """Per image, or with ``per_clip`` one gain per level for the whole batch (a clip's frames), from its pooled
    energies, so the gains do not flicker as content enters and leaves the frame."""
    dims = (0, 1, 2, 3) if per_clip else (1, 2, 3)

    def energy(x):
        return x.double().pow(2).mean(dim=dims).expand(x.shape[0])

    def cross(x, y):
        return (x.double() * y.double()).mean(dim=dims).expand(x.shape[0])

    levels = len(slopes)
    gains = torch.ones(bands_r[0].shape[0], levels, dtype=torch.float64, device=bands_r[0].device)
    for k in range(levels - 1, -1, -1):
        a, b, c = energy(bands_h[k]), cross(bands_h[k], bands_r[k]), energy(bands_r[k])
        kept = energy(bands_r[k + 1])  # what the restorer kept one level coarser, never the decoder's own
        g = _largest_gain(a, b, c, torch.maximum(slopes[k] * kept, c))
        if k < len(floors) and floors[k] > 0:
            g = torch.where(g < 1, g, _floor_gain(a, b, c, floors[k] * kept, NATURAL_FLOOR_MAX_GAIN))
        gains[:, k] = g
    return gains


def _natural_slope_band(base: torch.Tensor, band: torch.Tensor, slopes: Sequence[float],
                        floors: Sequence[float] = (), shown: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``band`` with its finest pyramid levels scaled by ``natural_slope_gains`` (IMAGE layout in and out).

    With ``shown`` (video mode: one shot's band as it will be shown, carried) the gains are one per level for the
    whole shot and judged on ``shown``: a frame then shows an earlier frame's detail, which is not correlated with
    this frame's own detail (a denoiser's fresh residue) the way its own band was, so the output's energy differs
    from the one each frame's own band would give."""
    h, w = base.shape[1:3]
    levels = min(len(slopes), max(0, min(h, w).bit_length() - 2))  # the pyramid needs 2^(levels+1) pixels
    if levels == 0:
        return band
    slopes, floors = list(slopes)[:levels], list(floors)[:levels]
    bands = laplacian_pyramid_bchw(band.permute(0, 3, 1, 2), levels + 1)
    judged = bands if shown is None else laplacian_pyramid_bchw(shown.permute(0, 3, 1, 2), levels + 1)
    gains = _gains(laplacian_pyramid_bchw(base.permute(0, 3, 1, 2), levels + 1), judged, slopes,
                   floors, per_clip=shown is not None).to(band.dtype)
    bands = [x * gains[:, k, None, None, None] if k < levels else x for k, x in enumerate(bands)]
    return collapse(bands).permute(0, 2, 3, 1)


def _video_band(base: torch.Tensor, delta: torch.Tensor, motion: ClipMotion, slopes: Sequence[float],
                floors: Sequence[float], marginal: Optional[float]) -> torch.Tensor:
    """Video mode's band: each shot shows its first frame's band, carried along the motion and given the mean
    power spectrum of the shot's own bands (``_carried_typical``), held to the natural slope's cap by one gain per
    level for the shot, judged on that shown band.

    The gains scale the frames' own bands before they are carried, as video mode off scales them: a gain is a
    filter of the whole frame, and applied after the carry it would also filter the seams where carried detail
    meets a frame's own (revealed edges, objects of their own), which then change from frame to frame."""
    shots = motion.shots()
    if slopes:
        shown = _carried_typical(motion, delta, shots)
        delta = torch.cat([_natural_slope_band(base[a:b], delta[a:b], slopes, floors,
                                               shown=shown[a:b] if b - a > 1 else None) for a, b in shots])
    if marginal is not None:
        delta = _natural_marginal_band(base, delta, marginal)
    return _carried_typical(motion, delta, shots)


def _carried_typical(motion: ClipMotion, bands: torch.Tensor, shots) -> torch.Tensor:
    """``bands`` [T,H,W,C] carried along the clip (``ClipMotion.carry``), each shot of two frames or more given the
    mean power spectrum of its frames' own bands (``video.match_spectrum``): a carried draw is one draw, shown in
    every frame, and it should look like the typical one, not like a stray."""
    carried = motion.carry(bands)
    out = [carried[a:b] if b - a == 1 else
           match_spectrum(carried[a:b].permute(0, 3, 1, 2), bands[a:b].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
           for a, b in shots]
    return torch.cat(out)


def _check_marginal(shape) -> Optional[float]:
    if shape is None:
        return None
    return check_scalar(shape, "natural_marginal", *SHAPE_RANGE)


def _natural_marginal_band(base: torch.Tensor, band: torch.Tensor, shape: float) -> torch.Tensor:
    """``band`` plus the change that gives the finest pyramid level of ``base + band`` the photos' marginal
    (IMAGE layout in and out); that change is itself kept to the finest level, so coarser levels stay."""
    if min(base.shape[1:3]) < 2:
        return band
    full = (base + band).permute(0, 3, 1, 2)
    finest = laplacian_pyramid_bchw(full, 1)[0]
    change = laplacian_pyramid_bchw(match_marginal(finest, shape) - finest, 1)[0]
    return band + change.permute(0, 2, 3, 1)


def _blend_step(restored, transported, reconstructed, detail_sigma, natural_slopes, natural_floors,
                natural_marginal=None, video=False):
    """(base, alpha, step) with out = clip(base + p·step): everything that does not depend on the perception, so a
    sweep checks, crops, blurs and caps once, not once per value."""
    detail_sigma = check_scalar(detail_sigma, "detail_sigma", 0.0, MAX_DETAIL_SIGMA)
    slopes = _check_slopes(natural_slopes)
    floors = _check_floors(natural_floors, slopes) if slopes else []
    marginal = _check_marginal(natural_marginal)
    images = [check_image(restored, "restored"), check_image(transported, "transported")]
    names = ["restored", "transported"]
    if reconstructed is not None:
        images.append(check_image(reconstructed, "reconstructed"))
        names.append("reconstructed")
    dtype = torch.promote_types(images[0].dtype, torch.float32)
    device = images[0].device
    images = [i.to(device=device, dtype=dtype) for i in images]
    images = match_batches(*match_sizes(*images), names=names)
    base, alpha = split_alpha(images[0])
    moved = split_alpha(images[1])[0]
    if reconstructed is None:
        return base, alpha, moved - base
    delta = moved - split_alpha(images[2])[0]
    if detail_sigma > 0:
        delta = delta - gaussian_blur(delta, detail_sigma)
    if video:
        return base, alpha, _video_band(base, delta, ClipMotion(base), slopes, floors, marginal)
    if slopes:
        delta = _natural_slope_band(base, delta, slopes, floors)
    if marginal is not None:
        delta = _natural_marginal_band(base, delta, marginal)
    return base, alpha, delta


def _at(base, alpha, step, perception) -> torch.Tensor:
    out = (base + perception * step).clamp(0.0, 1.0)
    return out if alpha is None else torch.cat([out, alpha], dim=-1)


def pd_blend(restored: torch.Tensor, transported: torch.Tensor, perception: float,
             reconstructed: Optional[torch.Tensor] = None,
             detail_sigma: float = DEFAULT_DETAIL_SIGMA,
             natural_slopes: Optional[Sequence[float]] = DEFAULT_NATURAL_SLOPES,
             natural_floors: Optional[Sequence[float]] = DEFAULT_NATURAL_FLOORS,
             natural_marginal: Optional[float] = None, video: bool = False) -> torch.Tensor:
    """Pick a point on the perception–distortion curve; IMAGE tensors [B,H,W,C] in, IMAGE out.

    ``perception`` 0 returns the restored image, 1 the full transport, −1..2
    allowed. Sizes are centre-cropped to the smallest, batch 1 broadcasts
    against N, grey and RGBA are accepted (the restored image's alpha is kept).
    ``detail_sigma``, ``natural_slopes`` (the per-level cap), ``natural_floors``
    (the per-level floor) and ``natural_marginal`` (the shape of the finest level's
    marginal) only act with ``reconstructed`` (σ 0 turns the band off; slopes None
    turn cap and floor off, floors None only the floor, marginal None the marginal). ``video``: the batch is the
    frames of one clip, in order: the band's gains are chosen once for the clip and the band is carried along the
    clip's motion (``video.ClipMotion``), so the added detail moves with the picture.
    """
    perception = check_scalar(perception, "perception", STRENGTH_MIN, STRENGTH_MAX)
    return _at(*_blend_step(restored, transported, reconstructed, detail_sigma, natural_slopes, natural_floors,
                            natural_marginal, video), perception)


def pd_sweep(restored, transported, perceptions, reconstructed=None, detail_sigma=DEFAULT_DETAIL_SIGMA,
             natural_slopes=DEFAULT_NATURAL_SLOPES, natural_floors=DEFAULT_NATURAL_FLOORS,
             natural_marginal=None, video=False):
    """``pd_blend`` at several perceptions, concatenated along the batch (perception-major)."""
    if len(perceptions) == 0:
        raise TransportInputError("give at least one perception value.")
    values = [check_scalar(p, "perception", STRENGTH_MIN, STRENGTH_MAX) for p in perceptions]
    parts = _blend_step(restored, transported, reconstructed, detail_sigma, natural_slopes, natural_floors,
                        natural_marginal, video)
    return torch.cat([_at(*parts, p) for p in values])

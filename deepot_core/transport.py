"""LatentTransport: fit the Gaussian W2 map between two sets of patch statistics and apply it.

T(x) = μt + A(x − μs) acts on every centred p×p latent patch (see
``gaussian_ot`` for A and its guard, ``patch_apply`` for the fast fold). With
``source=None`` the transport is *zero-shot*: the source statistics are
estimated on every call from each image (or video) being transported, so only
natural-image statistics are needed.
"""
import math
import time
from typing import Dict, List, Optional

import torch

from .constants import (DEFAULT_EPS, DEFAULT_NATURAL_FLOORS, DEFAULT_NATURAL_SLOPES, NATURAL_FLOOR_MAX_GAIN,
                        SAMPLES_PER_DIM_WARNING, STRENGTH_MAX, STRENGTH_MIN)
from .errors import TransportInputError
from .gaussian_ot import condition_number, eigen_floor, gaussian_map, gaussian_w2, symmetric_eigvalsh
from .patch_apply import apply_patch_map, blend_identity, fused_kernel
from .progress import ProgressCallback
from .statistics import PatchStatistics
from .validation import as_frames, check_not_empty, check_scalar, prepare_mask


def _check_pair(source: Optional[PatchStatistics], target: PatchStatistics) -> None:
    for name, stats in (("target", target), ("source", source)):
        if stats is not None and not isinstance(stats, PatchStatistics):
            raise TypeError(f"{name} must be PatchStatistics (or None for zero-shot), got {type(stats).__name__}.")
    target._require_samples(2)
    if source is None:
        return
    source._require_samples(2)
    if source.patch_size != target.patch_size:
        raise TransportInputError(
            f"source statistics use patch_size {source.patch_size} but target {target.patch_size}; "
            "compute both with the same patch_size.")
    if source.channels != target.channels:
        raise TransportInputError(
            f"source latents have {source.channels} channels but target latents {target.channels}; "
            "encode the restored and the natural images with the same VAE.")


def fit_warnings(stats: PatchStatistics, name: str) -> List[str]:
    """Human-readable warnings about a set of statistics (too few samples, skipped NaNs)."""
    out = []
    if stats.count < SAMPLES_PER_DIM_WARNING * stats.dim:
        out.append(
            f"only {stats.count:.0f} {name} samples for D = {stats.dim}: results will be noisy — "
            "add images or lower patch_size")
    if stats.skipped:
        out.append(f"{stats.skipped} {name} patches held NaN/Inf and were skipped")
    return out


def channel_shift(mean_source: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-channel source mean, rounded to the compute dtype so subtracting it from the latent is exact-ish."""
    return mean_source.reshape(channels, -1).mean(dim=1).to(dtype).to(torch.float64)


def centred_map(gmap, strength: float, shift: torch.Tensor, patch_size: int):
    """The strength-t map acting on the latent minus ``shift`` (per channel): (M, M·S + t·b).

    T_t(x) = M x + t b with M = tA + (1−t)I. Feeding u = x − S instead keeps
    the float32 products small: a flat or near-singular source has gains of
    1e6, and M x + t b would then cancel two huge numbers. The bias M·S + t·b
    = t(μt − A(μs − S)) + (1−t)S is formed in float64, where it is exact.
    """
    matrix, bias = blend_identity(gmap.matrix, gmap.bias, strength)
    s_vec = shift.to(torch.float64).repeat_interleave(patch_size * patch_size)
    offset = gmap.mean_source - s_vec
    centred_bias = strength * (gmap.mean_target - gmap.matrix @ offset) + (1.0 - strength) * s_vec
    return matrix, centred_bias


def _all_finite(x: torch.Tensor) -> bool:
    """No NaN/Inf in ``x``: one reduction, one host sync, no mask tensor.

    NaN and ±Inf propagate through a sum; a sum that overflows although every
    value is finite reads as "not finite", which only sends the caller down its
    slower, exact path.
    """
    if x.numel() == 0:
        return True
    return bool(torch.isfinite(x.sum()))


def _no_nan_or_inf(x: torch.Tensor) -> bool:
    """Exact check (no overflow false alarm), for the slow path: two reductions."""
    return x.numel() == 0 or (bool(torch.isfinite(x.amax())) and bool(torch.isfinite(x.amin())))


class LatentTransport:
    """The fitted map plus the statistics it came from; ``apply`` runs it on latents."""

    def __init__(self, source: Optional[PatchStatistics], target: PatchStatistics, eps: float = DEFAULT_EPS,
                 metadata: Optional[Dict] = None, created: Optional[float] = None, fitted_map=None):
        _check_pair(source, target)
        self.eps = check_scalar(eps, "eps", 0.0, 1.0)
        self.source = source
        self.target = target
        self.metadata = dict(metadata or {})
        self.created = time.time() if created is None else float(created)
        self.map = None
        self._diagnostics: Optional[Dict] = None
        if source is not None and fitted_map is not None:
            self.map = fitted_map  # a loaded file's stored map: bit-identical to the one saved
        elif source is not None:
            self.map = gaussian_map(source.mean, source.covariance, target.mean, target.covariance, self.eps)
        self._device_cache: Dict = {}

    # -------------------------------------------------------------- construction
    @classmethod
    def fit(cls, source, target, eps: float = DEFAULT_EPS, patch_size: Optional[int] = None,
            metadata: Optional[Dict] = None) -> "LatentTransport":
        """Fit from PatchStatistics (or latent tensors, with ``patch_size``); ``source=None`` is zero-shot."""
        def as_stats(value, name):
            if value is None or isinstance(value, PatchStatistics):
                return value
            if isinstance(value, torch.Tensor):
                if patch_size is None:
                    raise TransportInputError(f"pass patch_size when {name} is a latent tensor.")
                return PatchStatistics(patch_size).update(value)
            raise TypeError(f"{name} must be PatchStatistics, a latent tensor or None, got {type(value).__name__}.")

        if target is None:
            raise TransportInputError("target (natural-image) statistics are required; only source may be None.")
        return cls(as_stats(source, "source"), as_stats(target, "target"), eps=eps, metadata=metadata)

    @property
    def patch_size(self) -> int:
        return self.target.patch_size

    @property
    def channels(self) -> int:
        return self.target.channels

    @property
    def dim(self) -> int:
        return self.target.dim

    @property
    def zero_shot(self) -> bool:
        return self.source is None

    def __repr__(self) -> str:
        kind = "zero-shot" if self.zero_shot else f"source n={self.source.count:.0f}"
        return (f"LatentTransport(channels={self.channels}, patch_size={self.patch_size}, {kind}, "
                f"target n={self.target.count:.0f}, eps={self.eps:g})")

    # --------------------------------------------------------------- diagnostics
    @property
    def diagnostics(self) -> Dict:
        """Counts, D, condition numbers, W2 before/after, warnings — computed on first use and kept.

        Lazy because for large D its eigendecompositions cost more than the fit itself;
        ``apply`` never needs them.
        """
        if self._diagnostics is None:
            self._diagnostics = self._diagnose()
        return self._diagnostics

    def _diagnose(self) -> Dict:
        t_mean, t_cov = self.target.mean, self.target.covariance
        d = {
            "channels": self.channels, "patch_size": self.patch_size, "dim": self.dim,
            "zero_shot": self.zero_shot, "eps": self.eps,
            "target_count": self.target.count, "target_skipped": self.target.skipped,
            "target_condition": condition_number(t_cov),
            "warnings": fit_warnings(self.target, "natural"),
        }
        if self.source is not None:
            s_mean, s_cov = self.source.mean, self.source.covariance
            a = self.map.matrix
            values = symmetric_eigvalsh(s_cov)
            d.update({
                "source_count": self.source.count, "source_skipped": self.source.skipped,
                "source_condition": condition_number(s_cov, values),
                "source_eigenvalues_floored": int((values < eigen_floor(s_cov, self.eps)).sum()),
                "w2_before": gaussian_w2(s_mean, s_cov, t_mean, t_cov),
                # the source Gaussian pushed through the map: N(A(μs − μs) + μt, A Σs A)
                "w2_after": gaussian_w2(self.map.mean_target, a @ s_cov @ a, t_mean, t_cov),
                "map_max_gain": float(symmetric_eigvalsh(a)[-1]),
            })
            d["warnings"] = fit_warnings(self.source, "restored") + d["warnings"]
        return d

    def report(self) -> str:
        """A short multi-line summary for humans (the Fit node's STRING output, the CLI's ``info``)."""
        d = self.diagnostics
        lines = [f"Latent transport: {d['channels']} channels, patch {d['patch_size']}×{d['patch_size']}, "
                 f"D = {d['dim']}, eps {d['eps']:g}"]
        if self.zero_shot:
            lines.append(f"zero-shot: source statistics come from each image at apply time; "
                         f"natural samples {d['target_count']:.0f}")
        else:
            lines.append(f"samples: restored {d['source_count']:.0f}, natural {d['target_count']:.0f}")
            lines.append(f"W2 (per dim) before → after: {d['w2_before'] / math.sqrt(d['dim']):.4g} → "
                         f"{d['w2_after'] / math.sqrt(d['dim']):.2g}")
            if d["source_eigenvalues_floored"]:
                lines.append(f"{d['source_eigenvalues_floored']} flat source directions held at the eps floor")
        lines += [f"warning: {w}" for w in d["warnings"]]
        slopes = "/".join(f"{s:g}" for s in DEFAULT_NATURAL_SLOPES)
        floors = "/".join(f"{s:g}" for s in DEFAULT_NATURAL_FLOORS)
        lines.append(f"PD Blend keeps the added detail within the natural slope of photos (each of the finest "
                     f"pyramid levels ≤ {slopes}× the next coarser, the finest ≥ {floors}×, with at most "
                     f"{NATURAL_FLOOR_MAX_GAIN:g}× the decoded detail), measured on each image: decoders that over- "
                     "or under-render transported latents neither overshoot nor stop short, so perception 1 is the "
                     "most natural point")
        return "\n".join(lines)

    # --------------------------------------------------------------------- apply
    def _compute_dtype(self, latents: torch.Tensor) -> torch.dtype:
        # float64 only where it is cheap and asked for (CPU float64 input); float32 everywhere else.
        if latents.dtype == torch.float64 and latents.device.type == "cpu":
            return torch.float64
        return torch.float32

    def _prepared(self, strength: float, device, dtype):
        """Map, centred bias, fused kernel and channel shift for this strength, cached per device and dtype."""
        key = (strength, str(device), dtype)
        if key not in self._device_cache:
            if len(self._device_cache) > 16:
                self._device_cache.clear()
            shift = channel_shift(self.map.mean_source, self.channels, dtype)
            matrix, bias = centred_map(self.map, strength, shift, self.patch_size)
            fused = fused_kernel(matrix, bias, self.channels, self.patch_size)
            self._device_cache[key] = tuple(t.to(device=device, dtype=dtype) for t in (matrix, bias, *fused, shift))
        return self._device_cache[key]

    def _check_latents(self, frames: torch.Tensor) -> None:
        check_not_empty(frames, "latents")
        if frames.shape[1] != self.channels:
            raise TransportInputError(
                f"this transport was fitted on {self.channels}-channel latents but got {frames.shape[1]} channels; "
                f"use the VAE the transport was fitted with (or fit a new one for this VAE).")

    def apply(self, latents: torch.Tensor, strength: float = 1.0, mask: Optional[torch.Tensor] = None,
              progress: ProgressCallback = None) -> torch.Tensor:
        """Transport every patch of ``latents`` ([B,C,H,W] or [B,C,T,H,W]); same shape, dtype and device.

        ``strength`` t moves along the W2 geodesic x + t(T(x) − x): 0 identity, 1 full, −1..2.
        ``mask`` (0..1, latent or image resolution) limits where the latent changes.
        """
        strength = check_scalar(strength, "strength", STRENGTH_MIN, STRENGTH_MAX)
        frames, restore = as_frames(latents)
        self._check_latents(frames)
        frames_per_item = 1 if latents.ndim == 4 else latents.shape[2]
        weights = prepare_mask(mask, frames, frames_per_item)
        dtype = self._compute_dtype(latents)
        z = frames.detach().to(dtype)
        if self.zero_shot:
            out = self._apply_zero_shot(z, strength, frames_per_item, progress)
        else:
            matrix, bias, fw, fb, shift = self._prepared(strength, z.device, dtype)
            out = apply_patch_map(z, matrix, bias, self.patch_size, fused=(fw, fb), progress=progress, shift=shift)
        if weights is not None:
            out = z + weights.to(dtype) * (out - z)
        out = self._finite_in(latents.dtype, out, z, strength, weights, frames_per_item)
        return restore(out.to(latents.dtype))

    def _apply_zero_shot(self, z, strength, frames_per_item, progress):
        """Per image (or per video): its own patch statistics as the source, then the usual map."""
        outputs = []
        items = z.shape[0] // frames_per_item
        for i in range(items):
            group = z[i * frames_per_item:(i + 1) * frames_per_item]
            source = PatchStatistics(self.patch_size).update(group)
            source._require_samples(2)
            gmap = gaussian_map(source.mean, source.covariance, self.target.mean, self.target.covariance, self.eps)
            shift = channel_shift(gmap.mean_source, self.channels, z.dtype)
            matrix, bias = centred_map(gmap, strength, shift, self.patch_size)
            outputs.append(apply_patch_map(group, matrix.to(z), bias.to(z), self.patch_size, shift=shift.to(z)))
            if progress is not None:
                progress(i + 1, items)
        return torch.cat(outputs)

    def _finite_in(self, out_dtype, out, z, strength, weights, frames_per_item):
        """Clamp to the output dtype's range; redo in float64 if float32 overflowed (finite in → finite out:
        what even float64 cannot hold saturates with its sign, and an ∞ − ∞ becomes 0).

        One reduction over the output decides (a single host sync on a GPU); only
        when it is not finite do we look at the input, to tell NaN/Inf latents
        (an error) from float32 overflow (recomputed in float64).
        """
        finite = _all_finite(out)
        if finite and torch.finfo(out_dtype).max >= torch.finfo(out.dtype).max:
            return out  # nothing can overflow on the way to the output dtype
        if not finite and not _no_nan_or_inf(z):
            raise TransportInputError(
                "latents contain NaN or Inf; check the VAE Encode output (an fp16 VAE can overflow — try fp32/bf16).")
        if not finite:
            z64 = z.double().cpu()
            if self.zero_shot:
                out = self._apply_zero_shot(z64, strength, frames_per_item, None)
            else:
                matrix, bias = blend_identity(self.map.matrix, self.map.bias, strength)
                out = apply_patch_map(z64, matrix, bias, self.patch_size)
            if weights is not None:
                out = z64 + weights.double().cpu() * (out - z64)
            out = out.to(z.device)
        info = torch.finfo(out_dtype)
        return out.nan_to_num_(0.0, info.max, info.min).clamp_(info.min, info.max)

    # ----------------------------------------------------------- save and load
    def save(self, path, metadata: Optional[Dict] = None, overwrite: bool = False):
        """Write a ``.safetensors`` file (atomically; refuses to replace a file unless ``overwrite``)."""
        from .serialization import save_transport
        return save_transport(self, path, metadata=metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> "LatentTransport":
        """Read and validate a file written by ``save``; refuses foreign or damaged files."""
        from .serialization import load_transport
        return load_transport(path)

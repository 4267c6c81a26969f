"""Streaming, mergeable mean and covariance of every stride-1 interior p×p latent patch.

A patch centred at (y, x) of a [C,H,W] latent is the vector of its C·p² values,
channel-major (c, dy, dx) — the order of ``torch.nn.functional.unfold``. We keep
the sufficient statistics (n, μ, M2) with M2 = Σ w·(x − μ)(x − μ)ᵀ in float64 and
merge chunks with Chan's pairwise update, which is exact and avoids the
cancellation of raw power sums. Chunks are reduced where the latents live (a GPU
input stays on the GPU; only the D×D result moves) in float32 on a GPU (float64 is
1/64 speed on consumer cards) after subtracting the chunk mean, and in float64 on
the CPU. Memory stays flat: the unfolded patches of one strip at a time.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .constants import DEFAULT_PATCH_SIZE, MAX_FEATURE_DIM, STATS_STRIP_ELEMENTS
from .errors import TransportInputError
from .progress import ProgressCallback, report
from .validation import as_frames, check_not_empty, check_patch_size, prepare_mask


def _merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s exact merge of two (n, μ, M2) triples."""
    n = n_a + n_b
    if n_b == 0:
        return n_a, mean_a, m2_a
    if n_a == 0:
        return n_b, mean_b, m2_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
    return n, mean, m2


def _shifted_frame(frame: torch.Tensor, dtype: torch.dtype, patch_size: int):
    """One frame [1,C,H,W] in ``dtype`` minus its per-channel mean, that shift, and the bad-patch map.

    Covariance is shift-invariant; removing the channel means first keeps the
    chunk Gram matrix free of cancellation, so no centred copy of the unfolded
    patches is needed. The bad map [H−2r, W−2r] (None when all is finite) marks
    interior patches that touch a NaN/Inf pixel; those pixels are zeroed.
    """
    x = frame.to(dtype)
    finite = torch.isfinite(x)
    if bool(finite.all()):
        shift = x.mean(dim=(0, 2, 3))
        return x - shift[None, :, None, None], shift.to(torch.float64), None
    pixel_bad = (~finite).any(dim=1, keepdim=True).to(dtype)
    bad = F.max_pool2d(pixel_bad, patch_size, stride=1)[0, 0] > 0
    x = torch.where(finite, x, torch.zeros((), dtype=dtype, device=x.device))
    good = (~pixel_bad.bool()).to(dtype)
    shift = (x * good).sum(dim=(0, 2, 3)) / good.sum().clamp_min(1.0)
    return (x - shift[None, :, None, None]) * good, shift.to(torch.float64), bad


def _chunk_moments(x: torch.Tensor, weights: Optional[torch.Tensor]):
    """(n, μ, M2) in float64 of the columns of ``x`` [D, L] (weighted), or None when the weight is 0."""
    if weights is None:
        n = float(x.shape[1])
        total = x.sum(dim=1)
        gram = x @ x.T
    else:
        n = float(weights.sum())
        if n <= 0:
            return None
        total = x @ weights
        gram = (x * weights) @ x.T
    total, gram = total.double(), gram.double()
    mean = total / n
    m2 = gram - torch.outer(total, mean)
    return n, mean, 0.5 * (m2 + m2.T)


class PatchStatistics:
    """Sufficient statistics of latent patches: feed batches with ``update``, read ``mean``/``covariance``."""

    def __init__(self, patch_size: int = DEFAULT_PATCH_SIZE):
        self.patch_size = check_patch_size(patch_size)
        self.channels: Optional[int] = None
        self._count = 0.0
        self._mean: Optional[torch.Tensor] = None
        self._m2: Optional[torch.Tensor] = None
        self.skipped = 0  # patches left out because they held NaN or Inf

    # ------------------------------------------------------------------ reading
    @property
    def dim(self) -> Optional[int]:
        """Feature dimension D = C·p² (None before the first update)."""
        return None if self.channels is None else self.channels * self.patch_size ** 2

    @property
    def count(self) -> float:
        """Number of patches seen (their total weight when masks were given)."""
        return float(self._count)

    @property
    def mean(self) -> torch.Tensor:
        self._require_samples(1)
        return self._mean.clone()

    @property
    def covariance(self) -> torch.Tensor:
        """Unbiased covariance M2 / (n − 1), float64, D×D."""
        self._require_samples(2)
        cov = self._m2 / (self._count - 1.0)
        return 0.5 * (cov + cov.T)

    @property
    def scatter(self) -> torch.Tensor:
        """M2 = Σ (x − μ)(x − μ)ᵀ, the raw sum that merges exactly."""
        self._require_samples(1)
        return self._m2.clone()

    def _require_samples(self, needed: int) -> None:
        if self._mean is None or self._count < needed:
            extra = f" ({self.skipped} patches were skipped for NaN/Inf)" if self.skipped else ""
            raise TransportInputError(
                f"these patch statistics hold {self.count:g} samples{extra}, need at least {needed}; "
                "feed more (or larger) images, or check that the mask is not all zero."
            )

    def __repr__(self) -> str:
        return (f"PatchStatistics(patch_size={self.patch_size}, channels={self.channels}, "
                f"count={self.count:g}, skipped={self.skipped})")

    # ----------------------------------------------------------------- updating
    def update(self, latents: torch.Tensor, mask: Optional[torch.Tensor] = None,
               progress: ProgressCallback = None) -> "PatchStatistics":
        """Accumulate every interior patch of ``latents`` ([B,C,H,W] or [B,C,T,H,W]).

        ``mask`` holds 0..1 weights (latent or image resolution, one per image or
        one for all); a patch counts with the weight at its centre. Patches with
        NaN/Inf are skipped and counted in ``skipped``. Returns ``self``.
        """
        frames, _ = as_frames(latents)
        check_not_empty(frames, "latents")
        frames_per_item = 1 if latents.ndim == 4 else latents.shape[2]
        weights = prepare_mask(mask, frames, frames_per_item)
        self._check_channels(frames.shape[1], commit=False)  # committed only once the pass completes
        p, r = self.patch_size, self.patch_size // 2
        n_frames, c, h, w = frames.shape
        if h < p or w < p:
            raise TransportInputError(
                f"latents of {h}×{w} are smaller than patch_size {p}; "
                f"use a smaller patch_size or larger images (at least {p * 8}×{p * 8} pixels for an /8 VAE)."
            )
        dim = c * p * p
        compute_dtype = torch.float64 if frames.device.type == "cpu" else torch.float32
        rows_per_strip = max(1, STATS_STRIP_ELEMENTS // (dim * (w - 2 * r)))
        strips = [(y0, min(y0 + rows_per_strip, h - 2 * r)) for y0 in range(0, h - 2 * r, rows_per_strip)]
        n_acc, mean_acc, m2_acc = 0.0, None, None
        skipped = 0
        for i in range(n_frames):
            frame, shift, bad = _shifted_frame(frames[i:i + 1], compute_dtype, p)
            for y0, y1 in strips:
                block = frame[0, :, y0:y1 + 2 * r]
                # [D, L], centres at rows y0+r .. y1+r-1 (at p = 1 the pixels themselves: a view, no copy)
                x = block.reshape(c, -1) if p == 1 else F.unfold(block[None], p)[0]
                wt = None if weights is None else weights[i, 0, y0 + r:y1 + r, r:w - r].reshape(-1).to(compute_dtype)
                if bad is not None:
                    bad_here = bad[y0:y1].reshape(-1)
                    skipped += int(bad_here.sum())
                    keep = (~bad_here).to(compute_dtype)
                    wt = keep if wt is None else wt * keep
                moments = _chunk_moments(x, wt)
                if moments is None:
                    continue
                n_c, mean_c, m2_c = moments
                mean_c = mean_c + shift.repeat_interleave(p * p)
                n_acc, mean_acc, m2_acc = _merge_moments(n_acc, mean_acc, m2_acc, n_c, mean_c, m2_c)
            report(progress, i + 1, n_frames)
        if m2_acc is not None and not bool(torch.isfinite(m2_acc).all()):
            raise TransportInputError(
                "these latents are too large to square in float64 (|values| beyond about 1e150); "
                "they are not VAE latents — check the node that produced them.")
        # Commit: nothing above touched self, so a cancelled or failed pass leaves the statistics unchanged.
        self._check_channels(c)
        self.skipped += skipped
        if n_acc > 0:
            self._absorb(n_acc, mean_acc.cpu(), m2_acc.cpu())
        return self

    def _check_channels(self, channels: int, commit: bool = True) -> None:
        dim = channels * self.patch_size ** 2
        if dim > MAX_FEATURE_DIM:
            raise TransportInputError(
                f"{channels} channels × patch_size {self.patch_size}² gives D = {dim} features, more than "
                f"{MAX_FEATURE_DIM}; use a smaller patch_size."
            )
        if self.channels is None:
            if commit:
                self.channels = channels
        elif channels != self.channels:
            raise TransportInputError(
                f"these statistics were built from {self.channels}-channel latents but got {channels} channels; "
                "use latents from the same VAE for every update."
            )

    def _absorb(self, n, mean, m2) -> None:
        if self._mean is None:
            self._count, self._mean, self._m2 = float(n), mean, m2
        else:
            self._count, self._mean, self._m2 = _merge_moments(self._count, self._mean, self._m2, n, mean, m2)
            self._count = float(self._count)

    # ------------------------------------------------------------------ merging
    def copy(self) -> "PatchStatistics":
        out = PatchStatistics(self.patch_size)
        out.channels, out._count, out.skipped = self.channels, self._count, self.skipped
        out._mean = None if self._mean is None else self._mean.clone()
        out._m2 = None if self._m2 is None else self._m2.clone()
        return out

    def merge(self, other: "PatchStatistics") -> "PatchStatistics":
        """A new object equal to one pass over both sets of latents (neither input changes)."""
        if not isinstance(other, PatchStatistics):
            raise TypeError(f"can only merge PatchStatistics, got {type(other).__name__}.")
        if other.patch_size != self.patch_size:
            raise TransportInputError(
                f"cannot merge statistics of patch_size {self.patch_size} and {other.patch_size}; "
                "fit both with the same patch_size."
            )
        out = self.copy()
        if other.channels is None:
            return out
        out._check_channels(other.channels)
        out.skipped += other.skipped
        if other._mean is not None:
            out._absorb(other._count, other._mean.clone(), other._m2.clone())
        return out

    __add__ = merge

    def all_reduce(self, group=None) -> "PatchStatistics":
        """Sum the statistics over every rank of a ``torch.distributed`` group, in place; returns self.

        Without an initialised process group this does nothing, so the same
        script runs alone or under ``torchrun``. Every rank ends with the pooled
        statistics (gathered and merged exactly, in rank order).
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = torch.device("cpu")
        if dist.get_backend(group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        world = dist.get_world_size(group)
        meta = torch.tensor([self.patch_size, -1 if self.channels is None else self.channels,
                             self.skipped], dtype=torch.float64, device=device)
        metas = [torch.empty_like(meta) for _ in range(world)]
        dist.all_gather(metas, meta, group=group)
        channels = {int(m[1]) for m in metas if int(m[1]) >= 0}
        sizes = {int(m[0]) for m in metas}
        if len(sizes) > 1 or len(channels) > 1:
            raise TransportInputError(
                f"ranks disagree on patch_size {sorted(sizes)} or channels {sorted(channels)}; "
                "use the same VAE and patch_size on every rank."
            )
        if not channels:
            return self
        self.channels = channels.pop()
        dim = self.dim
        packed = torch.zeros(1 + dim + dim * dim, dtype=torch.float64, device=device)
        if self._mean is not None:
            packed[0] = self._count
            packed[1:1 + dim] = self._mean.to(device)
            packed[1 + dim:] = self._m2.reshape(-1).to(device)
        gathered = [torch.empty_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed, group=group)
        n, mean, m2 = 0.0, None, None
        for g in gathered:
            g = g.cpu()
            n_g = float(g[0])
            if n_g > 0:
                n, mean, m2 = _merge_moments(n, mean, m2, n_g, g[1:1 + dim], g[1 + dim:].reshape(dim, dim))
        self.skipped = int(sum(int(m[2]) for m in metas))
        if mean is not None:
            self._count, self._mean, self._m2 = float(n), mean, m2
        return self

    # ----------------------------------------------------------- serialisation
    def state_tensors(self, prefix: str) -> dict:
        """The raw sufficient statistics as named float64 tensors (for safetensors)."""
        self._require_samples(1)
        return {
            f"{prefix}.count": torch.tensor([self._count], dtype=torch.float64),
            f"{prefix}.mean": self._mean.contiguous(),
            f"{prefix}.scatter": self._m2.contiguous(),
            f"{prefix}.skipped": torch.tensor([self.skipped], dtype=torch.int64),
        }

    @classmethod
    def from_state_tensors(cls, tensors: dict, prefix: str, patch_size: int, channels: int) -> "PatchStatistics":
        """Rebuild from ``state_tensors`` output; shapes are checked by the caller."""
        out = cls(patch_size)
        out.channels = channels
        out._count = float(tensors[f"{prefix}.count"][0])
        out._mean = tensors[f"{prefix}.mean"].to(torch.float64).clone()
        out._m2 = tensors[f"{prefix}.scatter"].to(torch.float64).clone()
        out.skipped = int(tensors[f"{prefix}.skipped"][0])
        return out

    @classmethod
    def from_latents(cls, latents, patch_size: int = DEFAULT_PATCH_SIZE, mask=None) -> "PatchStatistics":
        return cls(patch_size).update(latents, mask=mask)

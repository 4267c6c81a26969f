"""Closed-form optimal transport between Gaussians (Dowson & Landau; Olkin & Pukelsheim).

For N(μs, Σs) → N(μt, Σt) the W2-optimal map is T(x) = μt + A(x − μs) with

    A = Σs^-½ (Σs^½ Σt Σs^½)^½ Σs^-½,

symmetric positive semi-definite, and the squared distance is

    W2² = ‖μs − μt‖² + tr Σs + tr Σt − 2 tr (Σs^½ Σt Σs^½)^½.

Everything runs in float64 through symmetric eigendecompositions. Guard: the
source eigenvalues are floored at ``eps · mean eigenvalue`` (and an absolute
floor), so Σs^-½ stays bounded when the source is flat, rank-deficient (fewer
samples than dimensions) or has a channel that never varies; full-rank,
well-conditioned sources are untouched, so the map stays exact there.
Negative eigenvalues from round-off are clamped to zero before every root.
"""
import math
from dataclasses import dataclass

import torch

from .constants import ABSOLUTE_EIGEN_FLOOR, DEFAULT_EPS
from .errors import TransportInputError


def symmetric_eigh(matrix: torch.Tensor):
    """Eigen-decomposition of the symmetrised float64 matrix (robust to tiny asymmetry)."""
    m = matrix.to(torch.float64)
    if not bool(torch.isfinite(m).all()):
        raise TransportInputError("a covariance holds NaN/Inf; the latents it came from are not usable.")
    try:
        return torch.linalg.eigh(0.5 * (m + m.T))
    except RuntimeError as exc:  # LinAlgError: LAPACK did not converge
        raise TransportInputError(
            f"a covariance could not be decomposed ({exc}); the latents are degenerate — "
            "feed more varied images or raise eps.") from None


def symmetric_eigvalsh(matrix: torch.Tensor) -> torch.Tensor:
    """Eigenvalues only (ascending) of the symmetrised float64 matrix: about twice as fast as ``eigh``."""
    m = matrix.to(torch.float64)
    if not bool(torch.isfinite(m).all()):
        raise TransportInputError("a covariance holds NaN/Inf; the latents it came from are not usable.")
    try:
        return torch.linalg.eigvalsh(0.5 * (m + m.T))
    except RuntimeError as exc:
        raise TransportInputError(f"a covariance could not be decomposed ({exc}); raise eps.") from None


def _common_scale(*covariances: torch.Tensor) -> float:
    """Mean variance of the larger covariance: dividing by it keeps every product below overflow.

    A is invariant under Σs, Σt ↦ kΣs, kΣt, and W2 scales by √k, so nothing is lost.
    """
    scale = max(float(torch.diagonal(c.to(torch.float64)).abs().mean()) for c in covariances)
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def psd_power(matrix: torch.Tensor, power: float, floor: float = 0.0) -> torch.Tensor:
    """M^power for a symmetric PSD matrix, eigenvalues clamped below at ``floor``."""
    values, vectors = symmetric_eigh(matrix)
    values = values.clamp_min(floor)
    if power < 0 and floor <= 0:
        raise ValueError("a negative power needs a positive eigenvalue floor")
    return (vectors * values.pow(power)) @ vectors.T


def eigen_floor(covariance: torch.Tensor, eps: float) -> float:
    """The floor under the source eigenvalues: eps × mean eigenvalue, never below the absolute floor."""
    mean_eig = float(torch.diagonal(covariance).sum()) / max(covariance.shape[0], 1)
    return max(eps * max(mean_eig, 0.0), ABSOLUTE_EIGEN_FLOOR)


@dataclass
class GaussianMap:
    """T(x) = mean_target + matrix (x − mean_source), all float64."""

    matrix: torch.Tensor
    mean_source: torch.Tensor
    mean_target: torch.Tensor

    @property
    def bias(self) -> torch.Tensor:
        """b in T(x) = A x + b."""
        return self.mean_target - self.matrix @ self.mean_source


def transport_matrix(cov_source: torch.Tensor, cov_target: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """A = Σs^-½ (Σs^½ Σt Σs^½)^½ Σs^-½ with the source eigenvalues floored (see module doc)."""
    scale = _common_scale(cov_source, cov_target)
    cov_source = cov_source.to(torch.float64) / scale
    cov_target = cov_target.to(torch.float64) / scale
    values, vectors = symmetric_eigh(cov_source)
    values = values.clamp_min(eigen_floor(cov_source, eps))
    s_half = (vectors * values.sqrt()) @ vectors.T
    s_inv_half = (vectors * values.rsqrt()) @ vectors.T
    middle = psd_power(s_half @ cov_target @ s_half, 0.5)
    a = s_inv_half @ middle @ s_inv_half
    return 0.5 * (a + a.T)


def gaussian_map(mean_source, cov_source, mean_target, cov_target, eps: float = DEFAULT_EPS) -> GaussianMap:
    """The W2-optimal affine map between two Gaussians given by their moments."""
    return GaussianMap(
        matrix=transport_matrix(cov_source, cov_target, eps),
        mean_source=mean_source.to(torch.float64),
        mean_target=mean_target.to(torch.float64),
    )


def gaussian_w2(mean_a, cov_a, mean_b, cov_b) -> float:
    """W2 distance (not squared) between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    scale = _common_scale(cov_a, cov_b)
    cov_a, cov_b = cov_a.double() / scale, cov_b.double() / scale
    a_half = psd_power(cov_a, 0.5)
    cross_trace = symmetric_eigvalsh(a_half @ cov_b @ a_half).clamp_min(0.0).sqrt().sum()  # tr (·)^½
    mean_term = float((((mean_a.double() - mean_b.double()) / math.sqrt(scale)) ** 2).sum())
    cov_term = float(torch.trace(cov_a) + torch.trace(cov_b) - 2.0 * cross_trace)
    return math.sqrt(scale) * max(mean_term + max(cov_term, 0.0), 0.0) ** 0.5


def condition_number(covariance: torch.Tensor, values: torch.Tensor = None) -> float:
    """Largest over smallest eigenvalue (inf for a singular matrix); pass ``values`` if already known."""
    values = symmetric_eigvalsh(covariance) if values is None else values
    top, bottom = float(values[-1]), float(values[0])
    if top <= 0:
        return float("inf")
    return top / bottom if bottom > 0 else float("inf")

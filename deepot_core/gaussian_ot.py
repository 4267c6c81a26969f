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
from dataclasses import dataclass

import torch

from .constants import ABSOLUTE_EIGEN_FLOOR, DEFAULT_EPS


def symmetric_eigh(matrix: torch.Tensor):
    """Eigen-decomposition of the symmetrised float64 matrix (robust to tiny asymmetry)."""
    m = matrix.to(torch.float64)
    return torch.linalg.eigh(0.5 * (m + m.T))


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
    values, vectors = symmetric_eigh(cov_source)
    values = values.clamp_min(eigen_floor(cov_source, eps))
    s_half = (vectors * values.sqrt()) @ vectors.T
    s_inv_half = (vectors * values.rsqrt()) @ vectors.T
    middle = psd_power(s_half @ cov_target.to(torch.float64) @ s_half, 0.5)
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
    a_half = psd_power(cov_a, 0.5)
    cross = psd_power(a_half @ cov_b.to(torch.float64) @ a_half, 0.5)
    mean_term = float(((mean_a.double() - mean_b.double()) ** 2).sum())
    cov_term = float(torch.trace(cov_a.double()) + torch.trace(cov_b.double()) - 2.0 * torch.trace(cross))
    return max(mean_term + max(cov_term, 0.0), 0.0) ** 0.5


def condition_number(covariance: torch.Tensor) -> float:
    """Largest over smallest eigenvalue (inf for a singular matrix)."""
    values = symmetric_eigh(covariance)[0]
    top, bottom = float(values[-1]), float(values[0])
    if top <= 0:
        return float("inf")
    return top / bottom if bottom > 0 else float("inf")

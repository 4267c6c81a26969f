"""gaussian_ot's guarantees in detail: float64 everywhere, the eigenvalue floor, extreme scales, condition numbers.

Each assertion here was missing until mutation testing (benchmarks/mutation.py)
showed a deliberate bug passing every other test.
"""
import math

import pytest
import torch

from deepot_core import TransportInputError, gaussian_map, gaussian_w2, transport_matrix
from deepot_core.gaussian_ot import condition_number, eigen_floor, psd_power, symmetric_eigh, symmetric_eigvalsh


def spd(d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (m @ m.T + d * torch.eye(d, dtype=torch.float64)).to(dtype)


def test_float32_moments_give_a_float64_map():
    cs, ct = spd(4, 0, torch.float32), spd(4, 1, torch.float32)
    ms, mt = torch.randn(4), torch.randn(4)
    gmap = gaussian_map(ms, cs, mt, ct)
    assert gmap.matrix.dtype == gmap.mean_source.dtype == gmap.mean_target.dtype == torch.float64
    exact = transport_matrix(cs.double(), ct.double())
    torch.testing.assert_close(gmap.matrix, exact, rtol=0, atol=1e-12)  # the float32 inputs, in float64 throughout
    assert transport_matrix(cs, ct).dtype == torch.float64
    assert symmetric_eigh(cs)[0].dtype == torch.float64 and symmetric_eigvalsh(cs).dtype == torch.float64


def test_eps_is_passed_through_to_the_matrix():
    cs, ct = spd(3, 2) - 2.9 * torch.eye(3, dtype=torch.float64), spd(3, 3)  # a nearly flat source direction
    for eps in (0.0, 0.05, 0.5):
        torch.testing.assert_close(gaussian_map(torch.zeros(3), cs, torch.zeros(3), ct, eps).matrix,
                                   transport_matrix(cs, ct, eps))
    assert not torch.allclose(transport_matrix(cs, ct, 0.0), transport_matrix(cs, ct, 0.5))


@pytest.mark.parametrize("source_scale, target_scale", [(1e160, 1e-160), (1e-160, 1e160)])
def test_extreme_but_finite_scales_stay_finite(source_scale, target_scale):
    """Dividing both covariances by the larger one's mean variance keeps every product inside float64."""
    eye = torch.eye(3, dtype=torch.float64)
    a = transport_matrix(source_scale * eye, target_scale * eye)
    assert bool(torch.isfinite(a).all())
    w2 = gaussian_w2(torch.zeros(3), source_scale * eye, torch.zeros(3), target_scale * eye)
    expected = math.sqrt(3) * abs(math.sqrt(source_scale) - math.sqrt(target_scale))  # closed form for k·I
    assert w2 == pytest.approx(expected, rel=1e-6)


def test_psd_power_floor_and_sign_rules():
    m = spd(3, 4)
    torch.testing.assert_close(psd_power(m, 0.0), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^a negative power needs a positive eigenvalue floor$"):
        psd_power(m, -0.5)
    floored = psd_power(torch.diag(torch.tensor([0.25, 4.0], dtype=torch.float64)), -0.5, floor=1.0)
    torch.testing.assert_close(floored, torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64)))


def test_eigen_floor_is_eps_times_the_mean_eigenvalue():
    assert eigen_floor(torch.tensor([[4.0]], dtype=torch.float64), 0.1) == pytest.approx(0.4)
    assert eigen_floor(torch.diag(torch.tensor([0.25, 0.75], dtype=torch.float64)), 0.1) == pytest.approx(0.05)
    assert eigen_floor(torch.zeros(2, 2, dtype=torch.float64), 0.1) == 1e-12  # the absolute floor


def test_condition_number_uses_the_extreme_eigenvalues():
    diag = torch.diag(torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64))
    assert condition_number(diag) == pytest.approx(16.0)
    assert condition_number(diag * 0.1) == pytest.approx(16.0)  # top below 1
    assert condition_number(diag, values=torch.tensor([1.0, 3.0, 4.0])) == pytest.approx(4.0)  # given values win
    assert condition_number(torch.diag(torch.tensor([0.0, 2.0], dtype=torch.float64))) == math.inf
    assert condition_number(torch.zeros(2, 2, dtype=torch.float64)) == math.inf


def test_decomposition_refusals_say_what_to_do():
    bad = torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=torch.float64)
    for decompose in (symmetric_eigh, symmetric_eigvalsh):
        with pytest.raises(TransportInputError,
                           match=r"^a covariance holds NaN/Inf; the latents it came from are not usable\.$"):
            decompose(bad)


def test_lapack_failures_become_input_errors(monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("did not converge")

    monkeypatch.setattr(torch.linalg, "eigh", fails)
    monkeypatch.setattr(torch.linalg, "eigvalsh", fails)
    with pytest.raises(TransportInputError, match=r"^a covariance could not be decomposed \(did not converge\); "
                                                  r"the latents are degenerate — feed more varied images or raise "
                                                  r"eps\.$"):
        symmetric_eigh(spd(2, 5))
    with pytest.raises(TransportInputError,
                       match=r"^a covariance could not be decomposed \(did not converge\); raise eps\.$"):
        symmetric_eigvalsh(spd(2, 5))

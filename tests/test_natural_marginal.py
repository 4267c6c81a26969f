"""PD Blend's natural marginal (issue 10; an option, off by default): the finest detail gets the photos' shape.

The prior is checked against sampling, the rank map by its invariants (sign, order, energy) over any
sizes, and the blend on a fixture that stands in for a denoiser: the photos' fine detail is sparse and
heavy-tailed, the restored image keeps only its strongest part, and the "decoded transport" puts the
energy back with the restored image's peaked shape. With the marginal, perception 1 ends nearer the
photos, the curve still falls monotonically, and only the finest level changes.
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepot_core import TransportInputError, pd_blend
from deepot_core.constants import NATURAL_MARGINAL_SHAPE
from deepot_core.natural_marginal import (QUANTILE_POINTS, SHAPE_RANGE, _abs_quantiles,
                                          generalised_gaussian_kurtosis, match_marginal, shape_for_kurtosis)
from deepot_core.pyramid import laplacian_pyramid_bchw

from test_natural_slope import PERCEPTIONS


def sample_generalised_gaussian(shape, n, seed, scale=1.0):
    """Unit-variance generalised-Gaussian samples (times ``scale``): |x|^β/s^β is Gamma(1/β)."""
    g = torch.Generator().manual_seed(seed)
    one = torch.tensor(1.0, dtype=torch.float64)
    gamma = torch.distributions.Gamma(one / shape, one)
    torch.manual_seed(seed)
    magnitude = gamma.sample((n,)) ** (1.0 / shape)
    sign = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    s = math.exp(0.5 * (math.lgamma(1 / shape) - math.lgamma(3 / shape)))
    return scale * s * sign * magnitude


def finest(images):
    return torch.cat([laplacian_pyramid_bchw(x.permute(0, 3, 1, 2).double(), 1)[0].flatten() for x in images])


def kurtosis(values):
    return float(values.pow(4).mean() / values.pow(2).mean() ** 2)


# ------------------------------------------------------------------------------------------------- the prior
@pytest.mark.parametrize("shape", [0.4, NATURAL_MARGINAL_SHAPE, 1.0, 2.0])
def test_the_prior_quantiles_are_those_of_a_sampled_generalised_gaussian(shape):
    table = _abs_quantiles(shape)
    assert table.shape == (QUANTILE_POINTS,) and bool((table[1:] >= table[:-1]).all())
    samples = sample_generalised_gaussian(shape, 400_000, seed=1).abs()
    probabilities = torch.tensor([0.25, 0.5, 0.9, 0.99], dtype=torch.float64)
    index = (probabilities * QUANTILE_POINTS - 0.5).round().long()
    torch.testing.assert_close(table[index], torch.quantile(samples, probabilities), rtol=0.03, atol=0.003)
    assert float(table.pow(2).mean()) == pytest.approx(1.0, abs=0.01)  # unit variance (tails cut at 1/2n)


def test_shape_two_is_the_gaussian():
    u = (torch.arange(QUANTILE_POINTS, dtype=torch.float64) + 0.5) / QUANTILE_POINTS
    torch.testing.assert_close(_abs_quantiles(2.0), math.sqrt(2) * torch.special.erfinv(u), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.25, 3.5))
def test_shape_for_kurtosis_inverts_the_kurtosis(shape):
    assert shape_for_kurtosis(generalised_gaussian_kurtosis(shape)) == pytest.approx(shape, rel=1e-6)


def test_known_kurtoses_and_out_of_range_refused():
    assert generalised_gaussian_kurtosis(2.0) == pytest.approx(3.0)
    assert generalised_gaussian_kurtosis(1.0) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="outside the shapes"):
        shape_for_kurtosis(1.5)  # lighter-tailed than shape 4 allows


# --------------------------------------------------------------------------------------------- the rank map
@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), channels=st.integers(1, 4), h=st.integers(1, 24), w=st.integers(2, 24),
       seed=st.integers(0, 2 ** 16), shape=st.floats(*SHAPE_RANGE),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       scale=st.floats(1e-4, 10.0))
def test_the_rank_map_keeps_sign_order_and_energy(batch, channels, h, w, seed, shape, dtype, scale):
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(batch, channels, h, w, generator=g, dtype=torch.float64)).to(dtype)
    y = match_marginal(x, shape)
    assert y.shape == x.shape and y.dtype == dtype and bool(torch.isfinite(y).all())
    assert torch.equal(torch.sign(y), torch.sign(x))
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for xi, yi in zip(x.double().flatten(1), y.double().flatten(1)):
        torch.testing.assert_close(yi.pow(2).mean().sqrt(), xi.pow(2).mean().sqrt(), rtol=tol, atol=0)
        order = xi.abs().argsort()
        assert bool((yi.abs()[order].diff() >= -tol * float(yi.abs().max())).all())  # |c| keeps its order


def test_the_rank_map_gives_the_prior_shape_and_is_idempotent():
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = match_marginal(x, NATURAL_MARGINAL_SHAPE)
    for yi in y.flatten(1):
        assert kurtosis(yi) == pytest.approx(generalised_gaussian_kurtosis(NATURAL_MARGINAL_SHAPE), rel=0.1)
    torch.testing.assert_close(match_marginal(y, NATURAL_MARGINAL_SHAPE), y, rtol=1e-6, atol=1e-9)
    # each image is matched on its own: a quiet image is not scaled to its loud neighbour
    loud = torch.cat([x[:1], 0.01 * x[1:]])
    out = match_marginal(loud, NATURAL_MARGINAL_SHAPE)
    assert float(out[1].pow(2).mean().sqrt()) == pytest.approx(float(loud[1].pow(2).mean().sqrt()), rel=1e-9)


def test_no_detail_and_exact_zeros_stay_as_they_are():
    zero = torch.zeros(1, 3, 8, 8)
    assert torch.equal(match_marginal(zero, 0.63), zero)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    x[..., :8, :] = 0  # a saturated half: no texture is invented there
    y = match_marginal(x, 0.63)
    assert torch.equal(y[..., :8, :], x[..., :8, :])
    torch.testing.assert_close(y.pow(2).mean(), x.pow(2).mean())


@pytest.mark.parametrize("shape", [0.1, 5.0, float("nan")])
def test_a_shape_outside_the_range_is_refused(shape):
    with pytest.raises(ValueError, match="shape must lie in"):
        match_marginal(torch.randn(1, 1, 4, 4), shape)
    r = torch.rand(1, 8, 8, 3)
    with pytest.raises(TransportInputError, match="natural_marginal"):
        pd_blend(r, r, 1.0, reconstructed=r, natural_marginal=shape)


# ---------------------------------------------------------------------------------------------- in PD Blend
def _smooth_base(seed, size=64):
    g = torch.Generator().manual_seed(seed)
    n = torch.rand(1, 3, size // 16, size // 16, generator=g)
    return 0.2 + 0.6 * torch.nn.functional.interpolate(n, size=(size, size), mode="bicubic",
                                                       align_corners=False).clamp(0, 1).permute(0, 2, 3, 1)


@pytest.fixture(scope="module")
def flattened():
    """Photos: smooth base + sparse heavy-tailed fine detail. Restored: the detail soft-thresholded (what an
    MMSE denoiser keeps). Decoded transport: the restored detail scaled back to the photos' energy (the right
    amount, the denoiser's peaked shape)."""
    clean, restored, moved = [], [], []
    for s in range(8):
        base = _smooth_base(s)
        detail = sample_generalised_gaussian(0.5, base.numel(), seed=100 + s, scale=0.05).view_as(base).float()
        kept = detail.sign() * (detail.abs() - 0.05).clamp(min=0)
        gain = float(detail.pow(2).mean().sqrt() / kept.pow(2).mean().sqrt())
        clean.append((base + detail).clamp(0, 1))
        restored.append((base + kept).clamp(0, 1))
        moved.append((base + gain * kept).clamp(0, 1))
    return clean, restored, moved


def marginal_distance(outputs, clean):
    """W2 between the pooled finest-level coefficients of two image sets (1-D: sort and compare)."""
    a, b = finest(outputs).sort().values, finest(clean).sort().values
    return float((a - b).pow(2).mean().sqrt())


def _curve(fixture, marginal):
    clean, restored, moved = fixture
    return [marginal_distance([pd_blend(r, m, p, reconstructed=r, detail_sigma=0.0, natural_marginal=marginal)
                      for r, m in zip(restored, moved)], clean) for p in PERCEPTIONS]


def test_the_fixture_is_too_peaked_and_the_marginal_brings_it_to_the_photos(flattened):
    clean, restored, moved = flattened
    as_decoded = [pd_blend(r, m, 1.0, reconstructed=r, detail_sigma=0.0, natural_marginal=None)
                  for r, m in zip(restored, moved)]
    matched = [pd_blend(r, m, 1.0, reconstructed=r, detail_sigma=0.0, natural_marginal=NATURAL_MARGINAL_SHAPE)
               for r, m in zip(restored, moved)]
    k_clean, k_decoded, k_matched = kurtosis(finest(clean)), kurtosis(finest(as_decoded)), kurtosis(finest(matched))
    assert k_decoded > 1.5 * k_clean  # the fixture tells the cases apart
    assert abs(k_matched - k_clean) < 0.5 * abs(k_decoded - k_clean)


def test_with_the_marginal_the_curve_falls_monotonically_and_ends_nearer(flattened):
    without, with_marginal = _curve(flattened, None), _curve(flattened, NATURAL_MARGINAL_SHAPE)
    assert all(b < a for a, b in zip(with_marginal, with_marginal[1:])), with_marginal
    assert with_marginal[0] == without[0]  # perception 0 is the restored image either way
    assert without[-1] >= without[0]  # as decoded, the right energy in the wrong shape gets no nearer
    assert with_marginal[-1] < 0.9 * without[-1], (with_marginal, without)


def test_only_the_finest_level_changes_and_perception_zero_is_exact(flattened):
    _, restored, moved = flattened
    r, m = restored[0], moved[0]
    assert torch.equal(pd_blend(r, m, 0.0, reconstructed=r, natural_marginal=NATURAL_MARGINAL_SHAPE), r)
    on = pd_blend(r, m, 1.0, reconstructed=r, detail_sigma=0.0, natural_slopes=None,
                  natural_marginal=NATURAL_MARGINAL_SHAPE)
    off = pd_blend(r, m, 1.0, reconstructed=r, detail_sigma=0.0, natural_slopes=None)
    bands_on = laplacian_pyramid_bchw(on.permute(0, 3, 1, 2).double(), 3)
    bands_off = laplacian_pyramid_bchw(off.permute(0, 3, 1, 2).double(), 3)
    change = [float((a - b).pow(2).mean()) for a, b in zip(bands_on, bands_off)]
    assert change[0] > 1e-6
    assert all(c < 0.1 * change[0] for c in change[2:]), change  # the next level feels the clip only


def test_tiny_images_are_left_alone():
    r = torch.rand(1, 1, 5, 3)
    m = torch.rand(1, 1, 5, 3)
    torch.testing.assert_close(pd_blend(r, m, 1.0, reconstructed=r * 0.5, natural_marginal=NATURAL_MARGINAL_SHAPE),
                               pd_blend(r, m, 1.0, reconstructed=r * 0.5))


def test_off_by_default():
    """The marginal is an option: without it PD Blend is the slope-capped band as decoded (NIQE, see the docs)."""
    g = torch.Generator().manual_seed(5)
    r, m = torch.rand(1, 32, 32, 3, generator=g), torch.rand(1, 32, 32, 3, generator=g)
    torch.testing.assert_close(pd_blend(r, m, 1.0, reconstructed=r * 0.9),
                               pd_blend(r, m, 1.0, reconstructed=r * 0.9, natural_marginal=None), rtol=0, atol=0)
    assert not torch.allclose(pd_blend(r, m, 1.0, reconstructed=r * 0.9),
                              pd_blend(r, m, 1.0, reconstructed=r * 0.9, natural_marginal=NATURAL_MARGINAL_SHAPE))

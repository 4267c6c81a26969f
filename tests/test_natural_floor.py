"""PD Blend's natural floor (issue 10): a decoder that under-renders the transport still reaches natural detail.

A fixture stands in for TAESD: the "decoded transport" holds only a fifth of the detail the
clean photos lack, so perception 1 stops far short of them. With the floor the finest level of
the added band is raised (at most 2×) until the output holds the photos' lower-quartile ratio
to the next coarser level; the curve still falls monotonically, and ends nearer the photos.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepot_core import TransportInputError, pd_blend, pd_sweep
from deepot_core.blend import _floor_gain, natural_slope_gains
from deepot_core.constants import DEFAULT_NATURAL_FLOORS, DEFAULT_NATURAL_SLOPES, NATURAL_FLOOR_MAX_GAIN
from deepot_core.image_ops import gaussian_blur
from deepot_core.pyramid import laplacian_pyramid_bchw

from test_natural_slope import PERCEPTIONS, curve, distance, photo


@pytest.fixture(scope="module")
def under_rendered():
    clean = [photo(s) for s in range(8)]
    restored = [gaussian_blur(x, 1.5) for x in clean]
    moved = [r + 0.2 * (x - r) for x, r in zip(clean, restored)]  # a decoder that renders a fifth of the detail
    return clean, restored, moved


def _curve(fixture, floors):
    clean, restored, moved = fixture
    return [distance([pd_blend(r, m, p, reconstructed=r, natural_floors=floors) for r, m in zip(restored, moved)],
                     clean) for p in PERCEPTIONS]


def _floored_energies(restored, band, gain):
    """As the rule sees them: the output's finest level (restored level + gain × band level) and the restored
    image's own next coarser level, its reference."""
    rb = laplacian_pyramid_bchw(restored.permute(0, 3, 1, 2).double(), 4)
    hb = laplacian_pyramid_bchw(band.permute(0, 3, 1, 2).double(), 4)
    return float((rb[0] + gain * hb[0]).pow(2).mean()), float(rb[1].pow(2).mean())


def test_the_floor_brings_an_under_rendered_band_nearer_the_photos(under_rendered):
    without, with_floor = _curve(under_rendered, None), _curve(under_rendered, DEFAULT_NATURAL_FLOORS)
    assert with_floor[0] == pytest.approx(without[0])  # perception 0 is the restored image either way
    assert all(b < a for a, b in zip(with_floor, with_floor[1:])), with_floor
    # nearer by 10 % (the floor's reference is the restored image's own coarser level, which this blur weakened)
    assert with_floor[-1] < 0.95 * without[-1], (with_floor, without)


def test_the_floor_reaches_the_photos_ratio_or_stops_at_twice_the_band(under_rendered):
    clean, restored, moved = under_rendered
    floor = DEFAULT_NATURAL_FLOORS[0]
    reached = stopped = 0
    for r, m in [(r, m) for r, m in zip(restored, moved)] + [(r, r + 0.1 * (m - r)) for r, m in zip(restored, moved)]:
        gains = natural_slope_gains(r.permute(0, 3, 1, 2), (m - r).permute(0, 3, 1, 2))
        gain = float(gains[0, 0])
        assert 1.0 < gain <= NATURAL_FLOOR_MAX_GAIN and torch.equal(gains[0, 1:], torch.ones(2, dtype=torch.float64))
        e0, e1 = _floored_energies(r, m - r, gain)
        if gain < NATURAL_FLOOR_MAX_GAIN:
            assert e0 == pytest.approx(floor * e1, rel=1e-6)  # raised exactly to the floor
            reached += 1
        else:
            assert e0 < floor * e1  # twice the band was not enough: it stops there
            stopped += 1
    assert reached and stopped  # the fixture exercises both ends


def test_floors_none_is_the_cap_alone(under_rendered):
    clean, restored, moved = under_rendered
    r, m = restored[0], moved[0]
    capped_only = pd_blend(r, m, 1.0, reconstructed=r, natural_floors=None)
    assert float((capped_only - pd_blend(r, m, 1.0, reconstructed=r)).abs().max()) > 1e-3
    assert torch.equal(capped_only, pd_blend(r, m, 1.0, reconstructed=r, natural_floors=()))
    assert torch.equal(capped_only, pd_blend(r, m, 1.0, reconstructed=r, natural_floors=(0.0,)))
    # no slopes, no rule at all: the floor does not act alone
    assert torch.equal(pd_blend(r, m, 1.0, reconstructed=r, natural_slopes=None),
                       pd_blend(r, m, 1.0, reconstructed=r, natural_slopes=None, natural_floors=None))


def test_the_sweep_floors_like_the_blend(under_rendered):
    clean, restored, moved = under_rendered
    r, m = restored[2], moved[2]
    sweep = pd_sweep(r, m, [0.5, 1.0], reconstructed=r)
    torch.testing.assert_close(sweep[1:], pd_blend(r, m, 1.0, reconstructed=r), rtol=0, atol=0)
    torch.testing.assert_close(sweep[:1], pd_blend(r, m, 0.5, reconstructed=r), rtol=0, atol=0)


def test_an_over_rendered_band_is_still_capped_not_floored():
    """The 3× fixture of the cap: the floor changes nothing where the cap binds."""
    clean = [photo(s) for s in range(4)]
    restored = [gaussian_blur(x, 1.5) for x in clean]
    moved = [r + 3.0 * (x - r) for x, r in zip(clean, restored)]
    fixture = (clean, restored, moved)
    assert curve(fixture, DEFAULT_NATURAL_SLOPES) == _curve(fixture, None)


def test_the_floor_gain_closed_form():
    """E(g) = a g² + 2b g + c: below the floor at g = 1 the gain rises to the root (at most 2); at or above the
    floor, or with no band, it stays 1."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    a, b, c = t(1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0), t(0.0, 0.0, 0.0, 0.0, -1.0, -3.0, -3.0), t(1, 1, 1, 1, 1, 10, 9)
    floor = t(2.5, 20.0, 1.5, 5.0, 4.0, 4.0, 4.0)
    got = _floor_gain(a, b, c, floor, 2.0)
    # 1 + g² = 2.5 → √1.5; 20 is out of reach → 2; 1.5 < E(1) = 2 → 1; a = 0 → 1;
    # g² − 2g + 1 = 4 → g = 3 → 2; a band that first lowers the energy: E(1) = 5 ≥ 4 → 1, though E = 4 again at
    # g = 3 + √3; E(1) = 4 exactly (roots 1 and 5) → 1
    torch.testing.assert_close(got, t(1.5 ** 0.5, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0))


def test_a_floor_below_one_binds_at_its_own_level_only():
    """Floors (0, 0.9): none at the finest level (its gain is the cap's), 0.9× at the next one, which a strongly
    blurred image with a faint band falls below."""
    clean = photo(5)
    base = gaussian_blur(clean, 3.0)
    band = 0.2 * (clean - gaussian_blur(clean, 0.7))
    b_c, h_c = base.permute(0, 3, 1, 2), band.permute(0, 3, 1, 2)
    floored = natural_slope_gains(b_c, h_c, DEFAULT_NATURAL_SLOPES, (0.0, 0.9))
    capped = natural_slope_gains(b_c, h_c, DEFAULT_NATURAL_SLOPES, ())
    assert float(floored[0, 1]) > 1.0 and float(capped[0, 1]) == 1.0
    assert torch.equal(floored[:, 2], capped[:, 2])  # the coarser level is computed first, unchanged


def test_a_floor_equal_to_its_cap_is_accepted_and_met():
    base = gaussian_blur(photo(6), 1.5)
    band = 0.3 * (photo(6) - base)
    slopes = (1.5, 1.0, 0.9)
    gains = natural_slope_gains(base.permute(0, 3, 1, 2), band.permute(0, 3, 1, 2), slopes, (1.5,))
    e0, e1 = _floored_energies(base, band, float(gains[0, 0]))
    assert 1.0 < float(gains[0, 0]) < NATURAL_FLOOR_MAX_GAIN and e0 == pytest.approx(1.5 * e1, rel=1e-6)
    pd_blend(base, base + band, 1.0, reconstructed=base, natural_slopes=slopes, natural_floors=(1.5,))


@pytest.mark.parametrize("floors,slopes,words", [
    ((1.2, 0.5, 0.5, 0.5), (1.5, 1.0, 0.9),
     "natural_floors has 4 levels but natural_slopes only 3; give a slope for every floored level."),
    ((1.6,), (1.5, 1.0, 0.9),
     "natural_floors [1.6] exceed natural_slopes [1.5, 1.0, 0.9] at level 0; a floor must not lie above its "
     "level's cap: lower the floor, raise the slope or give natural_floors=None."),
    ((1.2, 1.1), (1.5, 1.0), "natural_floors [1.2, 1.1] exceed natural_slopes [1.5, 1.0] at level 1; a floor"),
    ((-0.1,), (1.5,), "natural_floors must be in 0.0..100.0, got -0.1."),
    ((float("nan"),), (1.5,), "natural_floors must be a finite number, got nan"),
])
def test_bad_floors_are_refused(floors, slopes, words):
    image = photo(0)
    with pytest.raises(TransportInputError) as err:
        pd_blend(image, photo(1), 1.0, reconstructed=image, natural_slopes=slopes, natural_floors=floors)
    assert str(err.value).startswith(words)
    with pytest.raises(TransportInputError):
        natural_slope_gains(image.permute(0, 3, 1, 2), photo(1).permute(0, 3, 1, 2), slopes, floors)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(16, 48), channels=st.sampled_from([1, 3]), seed=st.integers(0, 10_000),
       scale=st.floats(0.0, 5.0), floor=st.floats(0.1, 1.5))
def test_floored_levels_stay_between_floor_and_cap(size, channels, seed, scale, floor):
    """Any base and band: gains in [0, 2]; a floored level ends at least at its floor × the restored image's next
    coarser level (unless twice the band is not enough) and never above its cap."""
    slopes = DEFAULT_NATURAL_SLOPES
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(2, channels, size, size, generator=g, dtype=torch.float64)
    band = scale * torch.randn(2, channels, size, size, generator=g, dtype=torch.float64)
    gains = natural_slope_gains(base, band, slopes, (floor,))
    assert bool(((gains >= 0) & (gains <= NATURAL_FLOOR_MAX_GAIN)).all())
    levels = len(slopes)
    rb, hb = laplacian_pyramid_bchw(base, levels + 1), laplacian_pyramid_bchw(band, levels + 1)
    out = [r + (gains[:, k, None, None, None] * h if k < levels else h) for k, (r, h) in enumerate(zip(rb, hb))]
    e = [x.pow(2).mean(dim=(1, 2, 3)) for x in out]
    e_base, kept = rb[0].pow(2).mean(dim=(1, 2, 3)), rb[1].pow(2).mean(dim=(1, 2, 3))
    cap = torch.maximum(slopes[0] * kept, e_base)
    assert bool((e[0] <= cap * (1 + 1e-9) + 1e-15).all())
    at_max = gains[:, 0] >= NATURAL_FLOOR_MAX_GAIN
    assert bool(((e[0] >= floor * kept * (1 - 1e-9) - 1e-15) | at_max | (hb[0].pow(2).sum(dim=(1, 2, 3)) == 0)).all())

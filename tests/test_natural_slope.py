"""PD Blend's natural-slope cap (issue 10): perception 1 stays the most natural point when a decoder over-renders.

A fixture stands in for TAEF1 and TAESD3: the "decoded transport" holds three times the
detail the clean photos lack. Uncapped, the distances overshoot past perception 0.5; capped,
they fall all the way to 1. Where the band already respects the slope, nothing changes.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepot_core import TransportInputError, pd_blend
from deepot_core.blend import natural_slope_gains
from deepot_core.constants import DEFAULT_NATURAL_SLOPES
from deepot_core.image_ops import gaussian_blur
from deepot_core.tooling.metrics import sliced_wasserstein_patches
from deepot_core.pyramid import collapse, laplacian_pyramid_bchw

PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def photo(seed, size=64, channels=3):
    """About scale-invariant like a photo: equal noise energy in each octave, bilinear upsampled."""
    g = torch.Generator().manual_seed(seed)
    x = 0
    for k in range(5):
        n = torch.rand(1, channels, max(1, size // 2 ** k), max(1, size // 2 ** k), generator=g)
        x = x + torch.nn.functional.interpolate(n, size=(size, size), mode="bilinear", align_corners=False)
    return (x / 5).permute(0, 2, 3, 1)


@pytest.fixture(scope="module")
def over_rendered():
    clean = [photo(s) for s in range(8)]
    restored = [gaussian_blur(x, 1.5) for x in clean]            # an MMSE-like loss of fine detail
    moved = [r + 3.0 * (x - r) for x, r in zip(clean, restored)]   # a decoder that renders 3× the missing detail
    return clean, restored, moved


def distance(outputs, clean):
    return float(sliced_wasserstein_patches(outputs, clean, levels=3, patch_size=7, seed=0,
                                            normalize="joint")["total"])


def curve(over_rendered, slopes):
    clean, restored, moved = over_rendered
    return [distance([pd_blend(r, m, p, reconstructed=r, natural_slopes=slopes) for r, m in zip(restored, moved)],
                     clean) for p in PERCEPTIONS]


def test_over_rendered_detail_overshoots_without_the_cap(over_rendered):
    """The fixture tells the cases apart: uncapped, perception 1 is further from the photos than 0.5."""
    d = curve(over_rendered, None)
    assert d[PERCEPTIONS.index(1.0)] > 1.5 * d[PERCEPTIONS.index(0.5)]


def test_with_the_cap_distances_fall_monotonically_to_perception_one(over_rendered):
    d = curve(over_rendered, DEFAULT_NATURAL_SLOPES)
    assert all(b < a for a, b in zip(d, d[1:])), d
    # and perception 1 is much closer to the photos than the restored images (the cap measures against the
    # restored image's own coarser level, which this blur also weakened, so it keeps less than all the detail)
    assert d[-1] < 0.7 * d[0]


def test_a_band_within_the_slope_is_left_alone():
    base = gaussian_blur(photo(1), 3.0)  # a smooth photo: its fine levels far below the slope
    band = 0.05 * (photo(2) - gaussian_blur(photo(2), 2.0))  # a little detail: far below the slope
    gains = natural_slope_gains(base.permute(0, 3, 1, 2), band.permute(0, 3, 1, 2), floors=())
    assert torch.equal(gains, torch.ones_like(gains))
    moved = base + band
    torch.testing.assert_close(pd_blend(base, moved, 1.0, reconstructed=base, detail_sigma=0.0, natural_floors=None),
                               pd_blend(base, moved, 1.0, reconstructed=base, detail_sigma=0.0, natural_slopes=None),
                               rtol=0, atol=1e-6)


def test_gains_are_per_image(over_rendered):
    clean, restored, moved = over_rendered
    calm = restored[1] + 0.05 * (clean[1] - restored[1])
    r, m = torch.cat([restored[0], restored[1]]), torch.cat([moved[0], calm])
    gains = natural_slope_gains(r.permute(0, 3, 1, 2), (m - r).permute(0, 3, 1, 2))
    assert gains[0, 0] < 0.9 and gains[1, 0] > 1  # one image capped, the calm one floored
    batch = pd_blend(r, m, 1.0, reconstructed=r)
    torch.testing.assert_close(batch[:1], pd_blend(restored[0], moved[0], 1.0, reconstructed=restored[0]))
    torch.testing.assert_close(batch[1:], pd_blend(restored[1], calm, 1.0, reconstructed=restored[1]))


def test_small_images_use_the_levels_they_have():
    """8 px: two levels fit (and bind on an over-rendered band); 3 px: none, so the blend is uncapped."""
    base = gaussian_blur(photo(3, size=8), 1.0)
    moved = base + 4.0 * (photo(3, size=8) - base)
    capped = pd_blend(base, moved, 1.0, reconstructed=base, detail_sigma=0.0)
    uncapped = pd_blend(base, moved, 1.0, reconstructed=base, detail_sigma=0.0, natural_slopes=None)
    assert float((capped - uncapped).abs().max()) > 0.01
    # exactly two levels at 8 px, one at 4-7 px (it binds there too), none below 4 px
    b_c, h_c = base.permute(0, 3, 1, 2), (moved - base).permute(0, 3, 1, 2)
    gains = natural_slope_gains(b_c, h_c, DEFAULT_NATURAL_SLOPES[:2])
    bands = laplacian_pyramid_bchw(h_c, 3)
    manual = collapse([x * gains[:, k, None, None, None] if k < 2 else x for k, x in enumerate(bands)])
    torch.testing.assert_close(capped, (base + manual.permute(0, 2, 3, 1)).clamp(0, 1).float(), rtol=0, atol=1e-6)
    small_base, small_moved = base[:, :5, :5], moved[:, :5, :5]
    assert float((pd_blend(small_base, small_moved, 1.0, reconstructed=small_base, detail_sigma=0.0)
                  - pd_blend(small_base, small_moved, 1.0, reconstructed=small_base, detail_sigma=0.0,
                             natural_slopes=None)).abs().max()) > 0.01
    tiny_base, tiny_moved = base[:, :3, :3], moved[:, :3, :3]
    torch.testing.assert_close(pd_blend(tiny_base, tiny_moved, 1.0, reconstructed=tiny_base),
                               pd_blend(tiny_base, tiny_moved, 1.0, reconstructed=tiny_base, natural_slopes=None))


def brute_force_gains(base, band, slopes, steps=4001):
    """Independent reference: per image, coarse to fine, the largest grid gain whose level energy fits."""
    levels = len(slopes)
    rb = laplacian_pyramid_bchw(base, levels + 1)
    hb = laplacian_pyramid_bchw(band, levels + 1)
    grid = torch.linspace(0, 1, steps, dtype=torch.float64)
    out = torch.ones(base.shape[0], levels, dtype=torch.float64)
    for i in range(base.shape[0]):
        for k in range(levels - 1, -1, -1):
            r, h = rb[k][i].double(), hb[k][i].double()
            kept = float(rb[k + 1][i].double().pow(2).mean())  # the restored image's own next coarser level
            energies = torch.stack([(r + g * h).pow(2).mean() for g in grid])
            cap = max(slopes[k] * kept, float(r.pow(2).mean()))
            fits = (energies <= cap * (1 + 1e-12)).nonzero()
            g = float(grid[fits[-1]]) if len(fits) else 0.0
            out[i, k] = g
    return out


@pytest.mark.parametrize("seed,scale,slopes", [(0, 0.3, DEFAULT_NATURAL_SLOPES), (1, 2.0, DEFAULT_NATURAL_SLOPES),
                                               (2, 1.0, (0.7, 2.5)), (3, -1.5, (1.2, 0.8, 1.1))])
def test_gains_are_the_largest_that_fit(seed, scale, slopes):
    """Against a grid search: the closed-form gain is the largest in [0, 1] keeping each level within the slope
    (the energies follow a quadratic; a band anti-correlated with the image lowers them first)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    band = scale * torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64) - 0.5 * scale * base
    band[1] *= 0.2  # a second, calmer image: per-image gains
    expected = brute_force_gains(base, band, slopes)
    got = natural_slope_gains(base, band, slopes, floors=())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    assert bool((got[0] < 1).any())  # the cases exercise the cap, not only gains of 1


@pytest.mark.parametrize("bad", [(-1.0, 1.0), (float("nan"),), (0.0, 1.0), ("x",)])
def test_bad_slopes_are_refused(bad):
    with pytest.raises(TransportInputError, match=r"^natural_slopes "):
        pd_blend(photo(0), photo(1), 1.0, reconstructed=photo(0), natural_slopes=bad, natural_floors=None)


def test_a_zero_slope_is_refused_in_its_own_words():
    with pytest.raises(TransportInputError) as err:
        pd_blend(photo(0), photo(1), 1.0, reconstructed=photo(0), natural_slopes=(0.0, 1.0), natural_floors=None)
    assert str(err.value) == "natural_slopes must be positive, got [0.0, 1.0]; give None to turn the cap off."


def _energies(bands):
    return [x.double().pow(2).mean(dim=(1, 2, 3)) for x in bands]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(16, 48), channels=st.sampled_from([1, 3]), seed=st.integers(0, 10_000),
       scale=st.floats(0.0, 5.0), slopes=st.lists(st.floats(0.3, 4.0), min_size=1, max_size=3))
def test_capped_output_keeps_the_slope_and_gains_stay_in_range(size, channels, seed, scale, slopes):
    """Any base and band: gains in [0, 1]; each capped level within max(slope × the restored image's level above,
    its own)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(2, channels, size, size, generator=g, dtype=torch.float64)
    band = scale * torch.randn(2, channels, size, size, generator=g, dtype=torch.float64)
    gains = natural_slope_gains(base, band, slopes, floors=())
    assert gains.shape == (2, len(slopes)) and bool(((gains >= 0) & (gains <= 1)).all())
    levels = len(slopes)
    rb, hb = laplacian_pyramid_bchw(base, levels + 1), laplacian_pyramid_bchw(band, levels + 1)
    out = [r + (gains[:, k, None, None, None] * h if k < levels else h) for k, (r, h) in enumerate(zip(rb, hb))]
    e_out, e_base = _energies(out), _energies(rb)
    for k in range(levels):
        limit = torch.maximum(slopes[k] * e_base[k + 1], e_base[k])
        assert bool((e_out[k] <= limit * (1 + 1e-9) + 1e-15).all())
    # the bands rebuild the band exactly: with every gain 1 the cap is a no-op
    torch.testing.assert_close(collapse(hb), band)


def test_a_band_that_first_lowers_the_energy_is_still_capped_at_full_strength():
    """E(g) = 4g² − 2g + 1 under a cap of 2: the largest fitting gain is (2 + √20)/8 ≈ 0.809, not 1 (E(1) = 3)."""
    from deepot_core.blend import _largest_gain

    t = torch.tensor
    g = _largest_gain(t([4.0, 4.0, 0.0], dtype=torch.float64), t([-1.0, -1.0, 0.0], dtype=torch.float64),
                      t([1.0, 1.0, 1.0], dtype=torch.float64), t([2.0, 3.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(g, t([(2 + 20 ** 0.5) / 8, 1.0, 1.0], dtype=torch.float64))
    # a band that raises the energy: E(g) = g² + 2g + 1 over a cap of 2 gives √2 − 1 (E(−1) = 0 would fit)
    one = t([1.0], dtype=torch.float64)
    torch.testing.assert_close(_largest_gain(one, one, one, 2 * one), t([2 ** 0.5 - 1], dtype=torch.float64))

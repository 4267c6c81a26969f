"""Colour harmonisation: the natural set takes on the restored set's RGB mean and covariance."""
import pytest
import torch

from deepot_core import TransportInputError, colour_gap, harmonise_colours
from deepot_core.colour import colour_moments


def mid_range_images(b, seed, tint):
    """Images well inside 0..1, so the recolouring is not clipped and moments can match exactly."""
    g = torch.Generator().manual_seed(seed)
    base = 0.5 + 0.08 * torch.randn(b, 24, 24, 3, generator=g, dtype=torch.float64)
    mix = torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.6]], dtype=torch.float64)
    return (base @ mix.T / mix.sum(1) + torch.tensor(tint, dtype=torch.float64)).clamp(0, 1)


def test_harmonised_moments_match_restored():
    natural = mid_range_images(3, 0, [0.05, -0.05, 0.0])
    restored = mid_range_images(2, 1, [-0.05, 0.02, 0.08])
    out = harmonise_colours(natural, restored)
    assert out.shape == natural.shape and out.dtype == natural.dtype
    m_out, c_out = colour_moments(out)
    m_res, c_res = colour_moments(restored)
    torch.testing.assert_close(m_out, m_res, rtol=0, atol=1e-9)
    torch.testing.assert_close(c_out, c_res, rtol=1e-6, atol=1e-9)
    assert colour_gap(natural, restored) > 0.05
    assert colour_gap(out, restored) < 1e-6
    assert colour_gap(restored, restored) == pytest.approx(0.0, abs=1e-7)


def test_lists_and_degenerate_sets():
    restored = mid_range_images(1, 2, [0, 0, 0])
    grey = torch.full((1, 8, 8, 3), 0.3)
    out = harmonise_colours([grey, restored.float()], [restored])
    assert isinstance(out, list) and len(out) == 2
    assert all(torch.isfinite(o).all() and o.min() >= 0 and o.max() <= 1 for o in out)
    rgba = torch.cat([mid_range_images(1, 3, [0, 0, 0]).float(), torch.rand(1, 24, 24, 1)], dim=-1)
    out = harmonise_colours(rgba, restored)
    assert torch.equal(out[..., 3:], rgba[..., 3:])
    with pytest.raises(TransportInputError):
        harmonise_colours([], restored)
    with pytest.raises(TransportInputError, match="NaN"):
        colour_gap(torch.full((1, 4, 4, 3), float("nan")), restored)


def pooled_numpy(images):
    """Independent oracle: numpy's mean and unbiased covariance of every RGB pixel of every image."""
    import numpy as np

    pixels = np.concatenate([i[..., :3].reshape(-1, 3).double().numpy() for i in images])
    return torch.from_numpy(pixels.mean(0)), torch.from_numpy(np.atleast_2d(np.cov(pixels.T, ddof=1)))


def test_moments_pool_every_pixel_of_every_image():
    images = [mid_range_images(2, 4, [0.1, 0, 0]), mid_range_images(1, 5, [0, 0, 0.1])[:, :7, :5]]
    mean, cov = colour_moments(images)
    expected_mean, expected_cov = pooled_numpy(images)
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(cov, expected_cov, rtol=1e-10, atol=1e-14)
    single = [i.float() for i in images]  # float32 photos are accumulated in float64 all the same
    mean32, cov32 = colour_moments(single)
    expected_mean, expected_cov = pooled_numpy(single)
    torch.testing.assert_close(mean32, expected_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(cov32, expected_cov, rtol=1e-10, atol=1e-14)
    two = torch.tensor([[[[0.1, 0.2, 0.3], [0.5, 0.2, 0.1]]]])  # two pixels: n − 1 = 1
    torch.testing.assert_close(colour_moments(two)[1], pooled_numpy([two])[1], rtol=1e-6, atol=1e-9)


def test_harmonised_pixels_are_the_w2_colour_map_clipped():
    """Against SciPy's matrix square roots: t' = clip(μS + C(t − μT)), C = ΣT^-½ (ΣT^½ ΣS ΣT^½)^½ ΣT^-½."""
    import numpy as np
    from scipy.linalg import sqrtm

    natural = mid_range_images(2, 6, [0.0, 0.0, 0.0])
    restored = (mid_range_images(2, 7, [0.0, 0.0, 0.0]) - 0.5) * 3.0 + 0.5  # wider: the map overshoots 0..1
    mean_t, cov_t = (x.numpy() for x in pooled_numpy([natural]))
    mean_s, cov_s = (x.numpy() for x in pooled_numpy([restored.clamp(0, 1)]))
    root = np.real(sqrtm(cov_t))
    inverse_root = np.linalg.inv(root)
    c = inverse_root @ np.real(sqrtm(root @ cov_s @ root)) @ inverse_root
    expected = np.clip(mean_s + (natural.numpy() - mean_t) @ c.T, 0, 1)
    out = harmonise_colours(natural, restored.clamp(0, 1))
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # both clips are exercised
    torch.testing.assert_close(out, torch.from_numpy(expected), rtol=0, atol=1e-6)


def test_half_precision_photos_are_recoloured_in_float32_and_returned_as_half():
    natural, restored = mid_range_images(1, 8, [0.05, 0, 0]), mid_range_images(1, 9, [0, 0, 0.05])
    out = harmonise_colours(natural.half(), restored)
    assert out.dtype == torch.float16
    reference = harmonise_colours(natural.half().double(), restored)
    torch.testing.assert_close(out.double(), reference, rtol=0, atol=1e-3)  # half's own rounding only


def test_refusals_name_the_set_and_the_image():
    good, nan = mid_range_images(1, 10, [0, 0, 0]), torch.full((1, 4, 4, 3), float("nan"))
    with pytest.raises(TransportInputError, match=r"^natural\[1\] contains NaN"):
        harmonise_colours([good, nan], good)
    with pytest.raises(TransportInputError, match="^restored contains NaN"):
        harmonise_colours(good, nan)
    with pytest.raises(TransportInputError, match="^natural contains NaN"):
        colour_gap(nan, good)
    with pytest.raises(TransportInputError, match=r"^restored\[0\] contains NaN"):
        colour_gap(good, [nan])
    with pytest.raises(TransportInputError, match="^images contains NaN"):
        colour_moments(nan)
    for bad in ([], 42, "photo.png"):
        with pytest.raises(TransportInputError, match=r"^natural must be an IMAGE tensor \[B,H,W,C\] or a non-empty"):
            harmonise_colours(bad, good)

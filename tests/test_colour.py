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

"""The budgets of benchmarks/mmse_budget.py (issue 21): its whole-image cap is the library's own, and the W2
budget never lets more detail through than the literal one."""
import torch

from benchmarks import mmse_budget as M
from deepot_core.blend import _natural_slope_band
from deepot_core.constants import DEFAULT_NATURAL_SLOPES
from deepot_core.pyramid import laplacian_pyramid_bchw


def pair(seed, scale):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(2, 48, 48, 3, generator=g, dtype=torch.float64)
    return base, scale * torch.randn(2, 48, 48, 3, generator=g, dtype=torch.float64)


def test_the_whole_image_cap_is_the_librarys():
    for seed, scale in [(0, 0.05), (1, 0.5), (2, 2.0)]:
        base, band = pair(seed, scale)
        torch.testing.assert_close(M.budgeted_band(base, band, "cap"),
                                   _natural_slope_band(base, band, DEFAULT_NATURAL_SLOPES, ()))


def test_the_w2_budget_is_the_tighter_and_both_bind():
    base, band = pair(3, 1.0)
    energies = {}
    for form in ("w2", "literal"):
        out = M.budgeted_band(base, band, form).permute(0, 3, 1, 2)
        energies[form] = [float(x.pow(2).mean()) for x in laplacian_pyramid_bchw(out, 4)[:3]]
    raw = [float(x.pow(2).mean()) for x in laplacian_pyramid_bchw(band.permute(0, 3, 1, 2), 4)[:3]]
    assert all(w <= lit * (1 + 1e-9) for w, lit in zip(energies["w2"], energies["literal"]))
    assert all(lit < r for lit, r in zip(energies["literal"], raw))

"""The budgets of benchmarks/mmse_budget.py (issue 21): its whole-image cap is the library's own, and the W2
budget never lets more detail through than the literal one."""
import pytest
import torch
import torch.nn.functional as F

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


def test_the_oracle_holds_each_image_to_its_own_mmse_and_leaves_smaller_bands_alone():
    base, band = pair(4, 0.3)
    clean = base + torch.stack([0.1 * torch.randn(48, 48, 3, dtype=torch.float64),
                                1.0 * torch.randn(48, 48, 3, dtype=torch.float64)])
    out = M.within_mmse(base, band, clean)
    mmse = (clean - base).pow(2).mean(dim=(1, 2, 3))
    added = out.pow(2).mean(dim=(1, 2, 3))
    assert float(added[0]) == pytest.approx(float(mmse[0]), rel=1e-9)  # the band (0.3²) exceeded 0.1²: held to it
    torch.testing.assert_close(out[1], band[1])  # within its MMSE (1.0²): untouched
    assert set(M.VARIANTS) >= {"library cap and floor", "library's band within each image's MMSE (oracle)"}


def test_a_collection_is_listed_where_its_patch_fd_rises_from_075_to_1():
    g = torch.Generator().manual_seed(5)
    clean = [torch.rand(1, 32, 32, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    # the first collection's restored image is the clean one minus its detail: adding it back (perception 1)
    # is best; the second's band is twice what is missing, so perception 1 overshoots and 0.75 is nearer
    bases = [x * 0.6 + 0.2 for x in clean]
    bands = [(x - b) * (1.0 if k < 2 else 3.0) for k, (x, b) in enumerate(zip(clean, bases))]
    pairs = [(b, d) for b, d in zip(bases, bands)]
    assert M.patch_fd_rises(pairs, bands, clean, [2, 2], ["meets", "overshoots"]) == ["overshoots"]


def test_the_error_one_scale_down_is_the_restorers_error_on_its_own_degraded_input():
    def bicubic(images):  # a ×4 "restorer" that knows nothing: bicubic upsampling
        return [F.interpolate(x.permute(0, 3, 1, 2), scale_factor=4, mode="bicubic", align_corners=False)
                .permute(0, 2, 3, 1) for x in images]

    flat = torch.full((1, 30, 30, 3), 0.4)
    assert M.error_one_scale_down(bicubic, flat) == pytest.approx(0.0, abs=1e-10)  # cropped to 28², kept flat
    g = torch.Generator().manual_seed(6)
    smooth = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear",
                           align_corners=False).permute(0, 2, 3, 1)
    rough = torch.rand(1, 32, 32, 3, generator=g)
    assert 0 < M.error_one_scale_down(bicubic, smooth) < M.error_one_scale_down(bicubic, rough)


def test_sure_estimates_a_gaussian_denoisers_mse_without_the_clean_image():
    # a linear denoiser (shrink toward the mean): its MSE is known in closed form, and SURE must find it
    g = torch.Generator().manual_seed(7)
    clean = 0.5 + 0.1 * torch.randn(1, 64, 64, 3, generator=g, dtype=torch.float64)
    sigma = 0.2
    noisy = clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)

    def shrink(images):
        return [0.5 + 0.2 * (y - 0.5) for y in images]

    true = float((shrink([noisy])[0] - clean).pow(2).mean())
    assert M.sure_mse(shrink, noisy, sigma) == pytest.approx(true, rel=0.05)
    assert M.sure_mse(lambda images: list(images), noisy, sigma) == pytest.approx(sigma ** 2, rel=0.05)  # identity


def test_a_budget_holds_each_band_to_it():
    base, band = pair(8, 0.5)
    out = M.within_budget(band, torch.tensor([0.01, 10.0], dtype=torch.float64))
    assert float(out[0].pow(2).mean()) == pytest.approx(0.01, rel=1e-9)
    torch.testing.assert_close(out[1], band[1])


def test_an_estimate_that_is_never_positive_is_reported_as_such():
    images = [torch.full((1, 8, 8, 3), 0.5), torch.full((1, 8, 8, 3), 0.5)]
    clean = [x + 0.1 for x in images]
    row = M.estimate_row("SURE", [-1.0, 0.0], images, clean, ["a", "b"])
    assert row.split("|")[2].strip() == "–" and row.rstrip(" |").endswith("2")
    row = M.estimate_row("exact", [0.01, 0.02], images, clean, ["a", "b"])
    assert row.split("|")[2].strip() == "0.71" and "(b)" in row  # √(1 · 0.5): geometric mean of 1 and 0.5

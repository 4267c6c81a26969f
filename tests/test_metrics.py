"""Metrics: PSNR/SSIM, Laplacian pyramid, patch SWD, patch Fréchet distance, NIQE."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepot_core.tooling.metrics import (frechet_distance, imresize, laplacian_pyramid, niqe, patch_frechet_distance,
                                 psnr, sliced_wasserstein_patches, ssim)
from deepot_core.pyramid import pyr_up
from deepot_core.tooling.metrics.swd import wasserstein_1d_sorted

BASICSR_BABOON_NIQE = 5.7296   # BasicSR docstring: MATLAB R2021a and BasicSR on tests/data/baboon.png


def _textures(n=4, size=64, seed=0):
    """Sharp, natural-ish test images: smoothed noise plus fine noise, in 0..1."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size),
                           mode="bilinear", align_corners=False)
    fine = torch.rand(n, 3, size, size, generator=g)
    return (0.6 * coarse + 0.4 * fine).permute(0, 2, 3, 1)


def _blur(images, passes=2):
    x = images.permute(0, 3, 1, 2)
    for _ in range(passes):
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return x.permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------- PSNR / SSIM

def test_psnr_known_noise():
    g = torch.Generator().manual_seed(0)
    clean = torch.full((2, 128, 128, 3), 0.5)
    sigma = 0.05
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    values = psnr(noisy, clean)
    assert values.shape == (2,)
    assert torch.allclose(values, torch.tensor(10 * math.log10(1 / sigma ** 2)), atol=0.1)
    assert torch.isinf(psnr(clean, clean)).all()


def test_psnr_ssim_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 8, 8, 3), torch.rand(1, 8, 9, 3))
    with pytest.raises(TypeError):
        psnr(np.zeros((1, 8, 8, 3)), torch.rand(1, 8, 8, 3))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8, 3))
    with pytest.raises(ValueError, match="channels"):
        ssim(torch.rand(1, 16, 16, 3), torch.rand(1, 16, 16, 3), channels="lab")


def test_ssim_identity_constants_and_ordering():
    x = _textures(2, 48)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    # For flat images only the luminance term remains: (2ab + C1) / (a² + b² + C1).
    a, b, c1 = 0.3, 0.6, 0.01 ** 2
    flat = ssim(torch.full((1, 16, 16, 3), a), torch.full((1, 16, 16, 3), b))
    assert flat.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    g = torch.Generator().manual_seed(1)
    light = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    heavy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (ssim(x, light) > ssim(x, heavy)).all()
    assert (ssim(x, light, channels="y") <= 1).all()


# ----------------------------------------------------------------------------- pyramid

def test_laplacian_pyramid_shapes_and_reconstruction():
    x = _textures(2, 45)
    pyr = laplacian_pyramid(x, 3)
    assert [tuple(p.shape[1:3]) for p in pyr] == [(45, 45), (23, 23), (12, 12), (6, 6)]
    rec = pyr[-1].permute(0, 3, 1, 2).double()
    for band in reversed(pyr[:-1]):
        b = band.permute(0, 3, 1, 2).double()
        rec = b + pyr_up(rec, b.shape[-2:])
    torch.testing.assert_close(rec.permute(0, 2, 3, 1).float(), x, atol=1e-5, rtol=0)
    flat = laplacian_pyramid(torch.full((1, 32, 32, 3), 0.4), 2)
    assert flat[0].abs().max() < 1e-6 and torch.allclose(flat[-1], torch.tensor(0.4))
    with pytest.raises(ValueError, match="too small"):
        laplacian_pyramid(torch.rand(1, 8, 8, 3), 4)


# ----------------------------------------------------------------------------- SWD

def test_wasserstein_1d_unequal_sizes():
    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[0.0], [0.5], [1.0]])
    assert wasserstein_1d_sorted(a, b).item() == pytest.approx(1 / 6)
    assert wasserstein_1d_sorted(b, a).item() == pytest.approx(1 / 6)


@pytest.mark.parametrize("normalize", ["per_set", "joint"])
def test_swd_identity_symmetry_and_blur(normalize):
    """Per-set normalisation (ProGAN) hides lost energy, so blur shows mostly in the finest band."""
    sharp = _textures(4, 64, seed=0)
    same_dist = _textures(4, 64, seed=1)
    kw = dict(levels=3, n_patches_per_image=256, n_projections=128, seed=3, normalize=normalize)
    same = sliced_wasserstein_patches(sharp, sharp, **kw)
    assert same["total"] == 0 and same["lowpass"] == 0 and same["levels"] == [0, 0, 0]
    ref = sliced_wasserstein_patches(sharp, same_dist, **kw)
    blurred = sliced_wasserstein_patches(sharp, _blur(same_dist), **kw)
    swapped = sliced_wasserstein_patches(_blur(same_dist), sharp, **kw)
    assert len(blurred["levels"]) == 3
    assert blurred["levels"][0] > 1.5 * ref["levels"][0]        # the finest band loses most
    assert blurred["total"] > (2 if normalize == "joint" else 1.1) * ref["total"]
    assert swapped["total"] == pytest.approx(blurred["total"], rel=1e-9)
    assert swapped["lowpass"] == pytest.approx(blurred["lowpass"], rel=1e-9)


def test_swd_seed_lists_and_errors():
    a, b = _textures(2, 48, 0), _textures(3, 40, 1)
    kw = dict(levels=2, n_patches_per_image=32, n_projections=64)
    r1 = sliced_wasserstein_patches(a, b, seed=5, **kw)
    assert r1 == sliced_wasserstein_patches(a, b, seed=5, **kw)
    assert r1["total"] != sliced_wasserstein_patches(a, b, seed=6, **kw)["total"]
    mixed = sliced_wasserstein_patches([a[0], a[1, :40, :33]], b, **kw)   # different sizes, unequal counts
    assert math.isfinite(mixed["total"]) and mixed["total"] > 0
    with pytest.raises(ValueError, match="patch_size"):
        sliced_wasserstein_patches(a, b, levels=3, patch_size=7)        # 6x6 lowpass < 7x7 patch
    with pytest.raises(ValueError, match="normalize"):
        sliced_wasserstein_patches(a, b, normalize="global")


# ----------------------------------------------------------------------------- patch Fréchet distance

def test_frechet_distance_closed_form():
    mu_a, mu_b = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    ca, cb = torch.diag(torch.tensor([1.0, 4.0])).double(), torch.diag(torch.tensor([4.0, 1.0])).double()
    expected = 1.0 + (1 - 2) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu_a.double(), ca, mu_b.double(), cb) == pytest.approx(expected, rel=1e-9)


def test_patch_frechet_distance_behaviour():
    sharp, same_dist = _textures(3, 48, 0), _textures(3, 48, 1)
    assert patch_frechet_distance(sharp, sharp, patch_size=4) == pytest.approx(0, abs=1e-9)
    ref = patch_frechet_distance(sharp, same_dist, patch_size=4)
    blurred = patch_frechet_distance(sharp, _blur(same_dist), patch_size=4)
    assert blurred > 2 * ref
    assert patch_frechet_distance(_blur(same_dist), sharp, patch_size=4) == pytest.approx(blurred, rel=1e-6)
    capped = patch_frechet_distance(sharp, same_dist, patch_size=4, max_patches=300, seed=2)
    assert capped == patch_frechet_distance(sharp, same_dist, patch_size=4, max_patches=300, seed=2)
    with pytest.raises(ValueError, match="smaller than"):
        patch_frechet_distance(sharp, torch.rand(1, 3, 3, 3), patch_size=4)


# ----------------------------------------------------------------------------- NIQE

def test_imresize_matches_matlab_properties():
    const = torch.full((20, 24), 0.7, dtype=torch.float64)
    torch.testing.assert_close(imresize(const, 0.5), torch.full((10, 12), 0.7, dtype=torch.float64))
    ramp = torch.arange(1, 41, dtype=torch.float64).repeat(4, 1)       # f(i) = i, 1-based columns
    out = imresize(ramp, 0.5)
    j = torch.arange(1, 21, dtype=torch.float64)
    torch.testing.assert_close(out[0, 3:-3], (2 * j - 0.5)[3:-3])       # MATLAB maps j -> 2j - 0.5


def _load(shared_data, rel):
    from PIL import Image
    img = np.asarray(Image.open(shared_data / "images" / rel).convert("RGB"))
    return torch.from_numpy(img.copy()).float().div(255)[None]


def test_niqe_baboon_matches_basicsr(shared_data):
    params = shared_data / "metrics" / "niqe_pris_params.npz"
    value = niqe(_load(shared_data, "set14/baboon.png"), params)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(BASICSR_BABOON_NIQE, abs=0.01)


def test_niqe_blur_is_worse(shared_data):
    params = shared_data / "metrics" / "niqe_pris_params.npz"
    sharp = _load(shared_data, "kodak24/kodim23.png")[:, :288, :288]
    blurred = _blur(sharp, passes=4)
    values = niqe([sharp, blurred], params)
    assert values[1] > values[0] + 1.0


def test_niqe_errors(tmp_path, shared_data):
    params = shared_data / "metrics" / "niqe_pris_params.npz"
    with pytest.raises(ValueError, match="at least two 96"):
        niqe(torch.rand(1, 80, 200, 3), params)
    with pytest.raises(ValueError, match="at least two 96"):  # one block: no feature covariance
        niqe(torch.rand(1, 128, 128, 3), params)
    with pytest.raises(ValueError, match="not found"):
        niqe(torch.rand(1, 96, 96, 3), tmp_path / "none.npz")

"""Benchmark restorers (DnCNN, FFDNet, CARN-M): layouts, helpers, README PSNR checks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.restorers import (CARNM, DnCNN, FFDNet, denoise_dncnn, denoise_ffdnet, load_carn_m,
                                  load_dncnn, load_ffdnet, super_resolve_carn)

SIGMA = 25
NOISE_SEED = 0
TOL_DB = 0.3
CROP = 496


def _psnr(a, b):
    return 10 * torch.log10(1 / ((a - b) ** 2).mean()).item()


@pytest.fixture(scope="module")
def kodim23(shared_data):
    from PIL import Image
    img = np.asarray(Image.open(shared_data / "images" / "kodak24" / "kodim23.png").convert("RGB"))
    return torch.from_numpy(img.copy()).float().div(255)[None, :CROP, :CROP]


@pytest.fixture(scope="module")
def noisy(kodim23):
    """σ=25 Gaussian noise, not clipped (the README's denoised PSNRs use the unclipped input)."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    return kodim23 + torch.randn(kodim23.shape, generator=g) * SIGMA / 255


def test_noisy_psnr(kodim23, noisy):
    assert abs(_psnr(noisy.clamp(0, 1), kodim23) - 20.42) < 0.1   # README's 'before' value (clipped)


def test_dncnn_check(shared_data, kodim23, noisy):
    model = load_dncnn(shared_data / "restorers" / "dncnn_color_blind_kair" / "dncnn_color_blind.pth")
    out = denoise_dncnn(model, noisy)
    assert out.shape == kodim23.shape
    assert abs(_psnr(out, kodim23) - 34.25) < TOL_DB


def test_ffdnet_check(shared_data, kodim23, noisy):
    model = load_ffdnet(shared_data / "restorers" / "ffdnet_color_kair" / "ffdnet_color.pth")
    assert abs(_psnr(denoise_ffdnet(model, noisy, SIGMA), kodim23) - 34.52) < TOL_DB
    odd = denoise_ffdnet(model, noisy[:, :63, :45], SIGMA)          # odd sizes are padded and cropped back
    assert odd.shape == (1, 63, 45, 3)


@pytest.mark.parametrize("scale,bicubic_db,carn_db", [(2, 33.38, 37.03), (4, 27.98, 29.84)])
def test_carn_m_check(shared_data, kodim23, scale, bicubic_db, carn_db):
    model = load_carn_m(shared_data / "restorers" / "carn_m" / "carn_m.pth")
    hr = kodim23.permute(0, 3, 1, 2)
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    assert abs(_psnr(bicubic.permute(0, 2, 3, 1), kodim23) - bicubic_db) < TOL_DB
    sr = super_resolve_carn(model, lr.clamp(0, 1).permute(0, 2, 3, 1), scale)
    assert sr.shape == kodim23.shape
    assert abs(_psnr(sr, kodim23) - carn_db) < TOL_DB


def test_shapes_without_weights():
    x = torch.rand(2, 3, 16, 14)
    with torch.no_grad():
        assert DnCNN()(x).shape == x.shape
        assert FFDNet()(x, torch.tensor([0.1, 0.2])).shape == x.shape
        for s in (2, 3, 4):
            assert CARNM()(x, s).shape == (2, 3, 16 * s, 14 * s)


def test_helpers_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="scales"):
        super_resolve_carn(CARNM().eval(), torch.rand(1, 8, 8, 3), 5)
    with pytest.raises(ValueError, match="sigma255"):
        denoise_ffdnet(FFDNet().eval(), torch.rand(1, 8, 8, 3), -1)
    with pytest.raises(ValueError, match=r"\[B,H,W,3\]"):
        denoise_dncnn(DnCNN().eval(), torch.rand(1, 3, 8, 8))
    path = tmp_path / "dncnn.pth"
    torch.save(DnCNN().state_dict(), str(path))
    with pytest.raises(ValueError, match="FFDNet"):
        load_ffdnet(path)
    with pytest.raises(ValueError, match="not found"):
        load_carn_m(tmp_path / "missing.pth")

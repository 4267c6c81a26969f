"""TAESD-family autoencoders and the pixel space: layout, loading, interface, TAEF2 check."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from deepot_core.tooling.autoencoders import (PixelSpace, TAESDSpace, TinyAutoencoder, find_taesd_pair,
                                      list_taesd_pairs, load_taesd)

TAEF2_PSNR = 32.7          # README: 496x496 kodim23 round trip
TAEF2_TOL_DB = 0.3


def _save_pair(tmp_path, name, model, fmt):
    enc, dec = tmp_path / f"{name}_encoder.{fmt}", tmp_path / f"{name}_decoder.{fmt}"
    for path, sd in ((enc, model.encoder.state_dict()), (dec, model.decoder.state_dict())):
        sd = {k: v.detach().half().contiguous() for k, v in sd.items()}
        save_file(sd, str(path)) if fmt == "safetensors" else torch.save(sd, str(path))
    return enc, dec


@pytest.mark.parametrize("latent,fmt", [(4, "safetensors"), (16, "pth")])
def test_load_infers_latent_channels_and_formats(tmp_path, latent, fmt):
    torch.manual_seed(0)
    enc, dec = _save_pair(tmp_path, "tiny", TinyAutoencoder(latent), fmt)
    model = load_taesd(enc, dec)
    assert model.latent_channels == latent
    assert next(model.parameters()).dtype == torch.float32
    assert all(b.pool is None for b in model.encoder if hasattr(b, "pool"))


def test_gn_blocks_detected_from_keys(tmp_path):
    torch.manual_seed(0)
    src = TinyAutoencoder(32, encoder_gn_blocks=(11, 12, 13), decoder_gn_blocks=(3, 4, 5))
    enc, dec = _save_pair(tmp_path, "gn", src, "safetensors")
    model = load_taesd(enc, dec)
    assert [i for i, m in enumerate(model.encoder) if getattr(m, "pool", None) is not None] == [11, 12, 13]
    assert [i for i, m in enumerate(model.decoder) if getattr(m, "pool", None) is not None] == [3, 4, 5]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), src.encoder.half().float()(x), atol=1e-4, rtol=1e-4)


def test_space_shapes_crop_and_batching(tmp_path):
    torch.manual_seed(0)
    enc, dec = _save_pair(tmp_path, "tiny", TinyAutoencoder(4), "safetensors")
    space = TAESDSpace.from_files(enc, dec, batch_size=2)
    assert space.downscale == 8 and space.latent_channels == 4
    images = torch.rand(3, 37, 45, 3)
    z = space.encode(images)
    assert z.shape == (3, 4, 4, 5)                     # 37x45 centre-cropped to 32x40
    torch.testing.assert_close(z, space.encode(images[:, 2:34, 2:42]))  # the centre crop, as ComfyUI
    torch.testing.assert_close(z[1:2], TAESDSpace(space.model, batch_size=1).encode(images[1:2]))
    out = space.decode(z)
    assert out.shape == (3, 32, 40, 3) and out.min() >= 0 and out.max() <= 1
    assert not z.is_inference() and not out.is_inference()   # callers may edit them in place
    z -= z.mean()


def test_space_rejects_bad_input(tmp_path):
    enc, dec = _save_pair(tmp_path, "tiny", TinyAutoencoder(4), "safetensors")
    space = TAESDSpace.from_files(enc, dec)
    with pytest.raises(ValueError, match="alpha"):
        space.encode(torch.rand(1, 16, 16, 4))
    with pytest.raises(ValueError, match="at least 8"):
        space.encode(torch.rand(1, 7, 16, 3))
    with pytest.raises(TypeError):
        space.encode(np.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"\[B,4,h,w\]"):
        space.decode(torch.rand(1, 16, 2, 2))


def test_loader_errors(tmp_path):
    enc, dec = _save_pair(tmp_path, "a", TinyAutoencoder(4), "safetensors")
    enc16, dec16 = _save_pair(tmp_path, "b", TinyAutoencoder(16), "pth")
    with pytest.raises(ValueError, match="swap"):
        load_taesd(dec, enc)
    with pytest.raises(ValueError, match="same TAESD variant"):
        load_taesd(enc, dec16)
    with pytest.raises(ValueError, match="not found"):
        load_taesd(tmp_path / "missing_encoder.pth", dec)
    bad = tmp_path / "x_encoder.ckpt"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported"):
        load_taesd(bad, dec)
    broken = {k: v for k, v in TinyAutoencoder(4).encoder.state_dict().items() if not k.startswith("3.")}
    torch.save(broken, str(tmp_path / "c_encoder.pth"))
    with pytest.raises(ValueError, match="missing keys"):
        load_taesd(tmp_path / "c_encoder.pth", dec)


def test_find_pairs(tmp_path):
    _save_pair(tmp_path, "one", TinyAutoencoder(4), "safetensors")
    assert find_taesd_pair(tmp_path)[0].name == "one_encoder.safetensors"
    _save_pair(tmp_path, "two", TinyAutoencoder(4), "pth")
    _save_pair(tmp_path, "one", TinyAutoencoder(4), "pth")        # safetensors preferred
    assert sorted(list_taesd_pairs(tmp_path)) == ["one", "two"]
    assert find_taesd_pair(tmp_path, "one")[1].name == "one_decoder.safetensors"
    with pytest.raises(ValueError, match="several"):
        find_taesd_pair(tmp_path)
    with pytest.raises(ValueError, match="available"):
        find_taesd_pair(tmp_path, "three")
    with pytest.raises(ValueError, match="no <name>"):
        find_taesd_pair(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_pixel_space_round_trip():
    space = PixelSpace()
    assert space.latent_channels == 3 and space.downscale == 1
    images = torch.rand(2, 9, 11, 3)
    z = space.encode(images)
    assert z.shape == (2, 3, 9, 11)
    torch.testing.assert_close(space.decode(z), images)
    assert space.decode(z * 3 - 1).min() >= 0
    with pytest.raises(ValueError):
        PixelSpace(downscale=8)
    with pytest.raises(ValueError):
        space.decode(torch.rand(1, 4, 8, 8))


def test_taef2_kodim23_round_trip(shared_data):
    from PIL import Image
    space = TAESDSpace.from_folder(shared_data / "taesd", "taef2")
    assert space.latent_channels == 32
    img = np.asarray(Image.open(shared_data / "images" / "kodak24" / "kodim23.png").convert("RGB"))
    x = torch.from_numpy(img.copy()).float().div(255)[None, :496, :496]
    z = space.encode(x)
    assert z.shape == (1, 32, 62, 62)
    assert abs(z.mean().item() - (-0.06)) < 0.03
    assert abs(z.std().item() - 0.83) < 0.05
    y = space.decode(z)
    psnr = 10 * torch.log10(1 / ((y - x) ** 2).mean()).item()
    assert abs(psnr - TAEF2_PSNR) < TAEF2_TOL_DB, psnr

"""ComfyUI's latent spaces without ComfyUI: pixel_space is 2x − 1, TAESDs scaled and shifted, names as recorded.

Bit-for-bit equality with ComfyUI's own VAELoader is proven in
tests/test_comfyui_integration.py (needs COMFYUI_PATH); here the conventions are
checked against closed forms and the raw TAESD.
"""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from deepot_core import LatentTransport, PatchStatistics, TransportInputError
from deepot_core.tooling import comfy_spaces as C
from deepot_core.tooling import spaces as S
from deepot_core.tooling.autoencoders import PixelSpace, TAESDSpace
from deepot_core.tooling.cli.main import main
from deepot_core.tooling.imageio import load_image

#: ComfyUI's nodes.py (VAELoader.load_taesd), copied here as the oracle: (vae_scale, vae_shift).
COMFYUI_TAESD_TABLE = {"taesd": (0.18215, 0.0), "taesdxl": (0.13025, 0.0),
                       "taesd3": (1.5305, 0.0609), "taef1": (0.3611, 0.1159)}


@pytest.fixture
def no_comfyui(monkeypatch):
    for name in (C.COMFYUI_PATH_ENV, C.COMFYUI_BASE_ENV):
        monkeypatch.delenv(name, raising=False)


def test_pixel_space_is_two_x_minus_one():
    x = torch.rand(2, 5, 7, 3, generator=torch.Generator().manual_seed(0))
    space, name = S.resolve_space("comfy:pixel_space")
    assert name == "comfy:pixel_space" and space.downscale == 1 and space.latent_channels == 3
    z = space.encode(x)
    assert z.shape == (2, 3, 5, 7)
    assert torch.equal(z, x.permute(0, 3, 1, 2) * 2 - 1)
    assert float(z.min()) < -0.9 and float(z.max()) > 0.9  # [−1, 1], not [0, 1]
    torch.testing.assert_close(space.decode(z), x, rtol=0, atol=6e-8)
    assert torch.equal(space.decode(torch.full((1, 3, 2, 2), 3.0)), torch.ones(1, 2, 2, 3))  # clamped
    assert torch.equal(space.decode(torch.full((1, 3, 2, 2), -3.0)), torch.zeros(1, 2, 2, 3))


def test_scale_and_shift_table_is_comfyuis():
    assert C.COMFY_TAESD_SCALE_SHIFT == COMFYUI_TAESD_TABLE


@pytest.mark.parametrize("name", sorted(COMFYUI_TAESD_TABLE))
def test_comfy_taesd_is_the_raw_taesd_scaled_and_shifted(shared_data, name, no_comfyui):
    folder = shared_data / "vae_approx"
    comfy, recorded = S.resolve_space(str(folder), recorded=f"comfy:{name}")
    assert recorded == f"comfy:{name}" and isinstance(comfy, C.ComfyTAESDSpace)
    raw = TAESDSpace.from_folder(folder, name)
    scale, shift = COMFYUI_TAESD_TABLE[name]
    x = torch.rand(1, 32, 40, 3, generator=torch.Generator().manual_seed(1))
    z = comfy.encode(x)
    torch.testing.assert_close(z, raw.encode(x) / scale + shift, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(comfy.decode(z), raw.decode((z - shift) * scale), rtol=0, atol=1e-5)


def test_taesd_weights_are_picked_as_comfyuis_loader_picks_them(shared_data, tmp_path, no_comfyui):
    source = shared_data / "vae_approx"
    for part in ("encoder", "decoder"):  # ComfyUI takes the first listed name: .pth sorts before .safetensors
        os.symlink(source / f"taesd_{part}.safetensors", tmp_path / f"taesd_{part}.safetensors")
        os.symlink(source / f"taesdxl_{part}.safetensors", tmp_path / f"taesd_{part}.pth")
    assert C.comfy_weight_file(tmp_path, "taesd_encoder").name == "taesd_encoder.pth"
    (tmp_path / "taesd_encoder.bin").write_bytes(b"pickle")  # listed first by ComfyUI, but a pickle
    with pytest.raises(TransportInputError, match="taesd_encoder.bin: only .safetensors"):
        C.comfy_taesd_space("taesd", tmp_path)
    with pytest.raises(TransportInputError, match="no taef1_encoder.* in"):
        C.comfy_taesd_space("taef1", tmp_path)


def test_taesd_needs_a_folder_or_comfyui(no_comfyui, tmp_path, monkeypatch):
    with pytest.raises(TransportInputError, match="COMFYUI_PATH .* or pass --vae FOLDER holding taesd_encoder"):
        S.resolve_space("comfy:taesd")
    with pytest.raises(TransportInputError, match="COMFYUI_PATH"):
        S.resolve_space("comfy:sdxl/vae.safetensors")  # a full VAE needs ComfyUI itself
    with pytest.raises(TransportInputError, match="without one VAE Loader.*--vae comfy:NAME"):
        S.resolve_space("comfy:workflow")
    monkeypatch.setenv(C.COMFYUI_BASE_ENV, str(tmp_path))  # ComfyUI run with --base-directory
    with pytest.raises(TransportInputError, match=f"no taesd_encoder.* in {tmp_path / 'models' / 'vae_approx'}"):
        S.resolve_space("comfy:taesd")


def test_recorded_names_match_across_separators_and_subfolders():
    assert C.same_space("comfy:sdxl/x.safetensors", "comfy:sdxl\\x.safetensors")  # recorded on Windows
    assert not C.same_space("comfy:sdxl/x.safetensors", "comfy:x.safetensors")
    assert not C.same_space("comfy:sd15/x.safetensors", "comfy:sdxl/x.safetensors")
    assert C.same_space("comfy:workflow", "comfy:taesd")  # unknown VAE: any ComfyUI space, channels checked
    assert not C.same_space("comfy:workflow", "pixel")
    assert not C.same_space("comfy:pixel_space", "pixel")  # 2x − 1 is not x
    assert C.same_space("taesd:taef2", "taesd:taef2") and not C.same_space("taesd:taef2", "taesd:taesd")


def _photos(folder, count, seed, smooth):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        x = rng.random((24, 32, 3))
        if smooth:
            x = (x + np.roll(x, 1, 0) + np.roll(x, 1, 1) + np.roll(x, (1, 1), (0, 1))) / 4
        Image.fromarray((x * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    return [load_image(p) for p in sorted(folder.glob("*.png"))]


def test_cli_applies_a_pixel_space_transport_as_comfyui_made_it(tmp_path, no_comfyui):
    """A node-made pixel_space transport (latents 2x − 1) gives what the CLI's own pixel transport gives.

    The Gaussian W2 map commutes with the affine change of variables z = 2x − 1
    (both sets move together; the eps floor is relative), so T_comfy(2x − 1) =
    2·T_pixel(x) − 1 and the two decoded images agree. Running the comfy file in
    the 0..1 pixel space instead would not.
    """
    natural = _photos(tmp_path / "natural", 3, 0, smooth=False)
    restored = _photos(tmp_path / "restored", 3, 1, smooth=True)
    _photos(tmp_path / "in", 1, 2, smooth=True)

    def fit(space, name):
        source = PatchStatistics(3)
        target = PatchStatistics(3)
        for image in restored:
            source.update(space.encode(image))
        for image in natural:
            target.update(space.encode(image))
        path = tmp_path / f"{name.replace(':', '_')}.safetensors"
        LatentTransport(source, target, metadata={"space": name}).save(path)
        return path

    outputs = {}
    for space, name in ((C.ComfyPixelSpace(), "comfy:pixel_space"), (PixelSpace(), "pixel")):
        out = tmp_path / f"out_{name.replace(':', '_')}"
        assert main(["apply", "--transport", str(fit(space, name)), "--in", str(tmp_path / "in"),
                     "--out", str(out), "--perception", "1", "--detail-sigma", "0", "--no-natural-slope",
                     "--quiet"]) == 0  # white-noise "photos" break the natural slope: the cap would hide the map
        outputs[name] = load_image(out / "0.png")
    source = load_image(tmp_path / "in" / "0.png")
    assert (outputs["pixel"] - source).abs().max() > 10 / 255  # the transport does something
    torch.testing.assert_close(outputs["comfy:pixel_space"], outputs["pixel"], rtol=0, atol=1.01 / 255)
    wrong = LatentTransport.load(tmp_path / "comfy_pixel_space.safetensors")
    with pytest.raises(TransportInputError, match="fitted in the 'comfy:pixel_space' space"):
        S.check_space(wrong, PixelSpace(), "pixel")


def test_cli_finds_taesd_weights_in_a_folder_or_in_comfyuis_vae_approx(shared_data, tmp_path, no_comfyui,
                                                                      monkeypatch, capsys):
    """A comfy:taesd transport: --vae FOLDER, or $COMFYUI_PATH/models/vae_approx, give the same output."""
    space = C.comfy_taesd_space("taesd", shared_data / "vae_approx")
    natural = _photos(tmp_path / "natural", 2, 3, smooth=False)
    restored = _photos(tmp_path / "restored", 2, 4, smooth=True)
    _photos(tmp_path / "in", 1, 5, smooth=True)
    source, target = PatchStatistics(1), PatchStatistics(1)
    for image in restored:
        source.update(space.encode(image))
    for image in natural:
        target.update(space.encode(image))
    path = tmp_path / "t.safetensors"
    LatentTransport(source, target, metadata={"space": "comfy:taesd"}).save(path)
    apply = ["apply", "--transport", str(path), "--in", str(tmp_path / "in"), "--quiet"]
    assert main(apply + ["--out", str(tmp_path / "by_folder"), "--vae", str(shared_data / "vae_approx")]) == 0
    assert main(apply + ["--out", str(tmp_path / "nothing")]) == 2
    assert "COMFYUI_PATH" in capsys.readouterr().err
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    (comfyui / "models" / "vae_approx").symlink_to(shared_data / "vae_approx")
    monkeypatch.setenv(C.COMFYUI_PATH_ENV, str(comfyui))
    assert main(apply + ["--out", str(tmp_path / "by_comfyui")]) == 0
    assert torch.equal(load_image(tmp_path / "by_folder" / "0.png"), load_image(tmp_path / "by_comfyui" / "0.png"))
    assert main(apply + ["--out", str(tmp_path / "raw"), "--vae", str(shared_data / "taesd")]) == 2  # no taesd here
    assert "no taesd_encoder" in capsys.readouterr().err

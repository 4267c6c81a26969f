"""Image files as cameras write them: EXIF orientation, bit depth, Pillow's global guard left alone, atomic writes."""
import numpy as np
import pytest
import torch
from PIL import Image

from deepot_core.tooling import imageio
from deepot_core.tooling.imageio import ImageFileError, load_batch, load_image, save_image

#: EXIF Orientation tag, and how each value turns the stored pixels upright (numpy on [H, W, C]).
ORIENTATION = 0x0112
UPRIGHT = {
    1: lambda a: a,
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),  # "rotate 90° clockwise to display": a phone held upright
    8: lambda a: np.rot90(a, 1),
    2: lambda a: a[:, ::-1],
}


def stored(height=6, width=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_with_orientation(path, array, orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(array).save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(tmp_path, orientation):
    array = stored()
    path = tmp_path / "phone.png"
    save_with_orientation(path, array, orientation)
    expected = np.ascontiguousarray(UPRIGHT[orientation](array)).astype(np.float32) / 255
    assert torch.equal(load_image(path)[0], torch.from_numpy(expected))


def test_load_image_folder_batches_photos_upright(tmp_path):
    array = stored(height=8, width=16, seed=1)
    save_with_orientation(tmp_path / "a.png", array, 6)  # stored 16 wide, shown 8 wide and 16 high
    batch = load_batch([tmp_path / "a.png"], size=8)
    upright = torch.from_numpy(np.ascontiguousarray(np.rot90(array, -1)).astype(np.float32) / 255)[None]
    expected = imageio.fit_to_square(upright, 8)  # short side 8 already: the centre 8×8 of the upright photo
    assert torch.equal(batch.images, expected)


def test_sixteen_bit_images_are_scaled_by_bit_depth_not_content(tmp_path):
    for value in (1000, 40000):
        path = tmp_path / f"grey{value}.png"
        Image.fromarray(np.full((4, 5), value, dtype=np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I;16")
        loaded = load_image(path)
        assert loaded.shape == (1, 4, 5, 3)
        torch.testing.assert_close(loaded, torch.full((1, 4, 5, 3), value / 65535), rtol=0, atol=1e-7)
    gradient = tmp_path / "gradient.png"
    Image.fromarray(np.array([[0, 16384, 32768]], dtype=np.uint16)).save(gradient)
    torch.testing.assert_close(load_image(gradient)[0, 0, :, 0], torch.tensor([0, 16384, 32768]) / 65535.0)


def test_thirty_two_bit_integer_tiffs_are_scaled_by_their_bit_depth(tmp_path):
    path = tmp_path / "dark.tif"
    Image.fromarray(np.full((3, 3), 1 << 20, dtype=np.int32)).save(path)  # mode "I", signed 32-bit
    assert Image.open(path).mode == "I"
    torch.testing.assert_close(load_image(path), torch.full((1, 3, 3, 3), (1 << 20) / (2 ** 31 - 1)))


def test_pillows_global_guard_is_left_alone_and_big_photos_open_deliberately(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(stored(height=20, width=20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 pixels: over twice the guard, a bomb to Pillow
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    image = load_image(path)
    assert Image.MAX_IMAGE_PIXELS == 100  # still guarding every other node
    assert torch.equal(image[0], torch.from_numpy(stored(height=20, width=20).astype(np.float32) / 255))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 399)  # our own limit still holds
    with pytest.raises(ImageFileError, match="is 20×20 pixels, more than the 399"):
        load_image(path)


def test_loading_never_changes_pillows_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_345_678)  # whatever the host chose
    save_image(torch.rand(1, 4, 4, 3), tmp_path / "x.png")
    load_image(tmp_path / "x.png")
    load_batch([tmp_path / "x.png"], size=4)
    assert Image.MAX_IMAGE_PIXELS == 12_345_678


def test_load_image_folder_node_loads_photos_upright(tmp_path, monkeypatch):
    from node_harness import run_node

    photos = tmp_path / "input" / "phone"
    photos.mkdir(parents=True)
    array = stored(height=8, width=16, seed=2)
    save_with_orientation(photos / "p.png", array, 8)
    monkeypatch.setenv("DEEPOT_INPUT_DIR", str(tmp_path / "input"))
    images, _ = run_node("DeepOT_LoadImageFolder", folder="phone", size=64)
    upright = torch.from_numpy(np.ascontiguousarray(np.rot90(array, 1)).astype(np.float32) / 255)[None]
    assert torch.equal(images, imageio.fit_to_square(upright, 64))  # 8 wide, 16 high: the centre of the tall photo


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    first = torch.zeros(1, 4, 4, 3)
    save_image(first, path)
    before = path.read_bytes()

    def broken(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(ImageFileError, match="cannot write image .*out.png: OSError: disk full"):
        save_image(torch.ones(1, 4, 4, 3), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

"""Load Image Folder: a folder of mixed photos → one IMAGE batch, confined to the input directory."""
import importlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from node_harness import core, node_class, run_node

FOLDER = "DeepOT_LoadImageFolder"


def save(path, size, mode, seed):
    """A random image of ``size`` (w, h) and Pillow ``mode`` at ``path``; returns its pixel array."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(array[..., 0] if channels == 1 else array, mode).save(path)
    return array


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """An input directory (via DEEPOT_INPUT_DIR) holding 'photos' with mixed sizes and modes."""
    root = tmp_path / "input"
    photos = root / "photos"
    photos.mkdir(parents=True)
    specs = {"c.png": ((100, 80), "RGB"), "a.png": ((64, 128), "RGBA"), "b.png": ((90, 90), "L"),
             "d.png": ((200, 70), "LA")}
    for seed, (name, (size, mode)) in enumerate(sorted(specs.items())):
        save(photos / name, size, mode, seed)
    (photos / "notes.txt").write_text("not an image")
    monkeypatch.setenv("DEEPOT_INPUT_DIR", str(root))
    return root


def listed_files(listing):
    return [line.strip() for line in listing.splitlines() if line.startswith("  ")]


def test_folder_combo_lists_input_subfolders(inputs):
    (inputs / "more").mkdir()
    (inputs / ".hidden").mkdir()
    (inputs / "loose.png").write_bytes(b"")
    combo = node_class(FOLDER).INPUT_TYPES()["required"]["folder"][1]["options"]
    assert combo == ["more", "photos"]


def test_mixed_sizes_and_modes_batch_in_name_order(inputs):
    images, listing = run_node(FOLDER, folder="photos", size=64)
    assert images.shape == (4, 64, 64, 3) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0 and bool(torch.isfinite(images).all())
    assert listed_files(listing) == ["a.png", "b.png", "c.png", "d.png"]
    # grey expands to equal channels; b.png (90×90, L) is only resized, so it keeps its mean
    grey = images[1]
    assert torch.equal(grey[..., 0], grey[..., 1]) and torch.equal(grey[..., 1], grey[..., 2])
    original = np.asarray(Image.open(inputs / "photos" / "b.png"), dtype=np.float32) / 255.0
    assert abs(float(grey.mean()) - float(original.mean())) < 0.02
    # a.png (64×128, RGBA) needs no resize: its centre crop is exactly the middle 64 rows, alpha dropped
    rgba = np.asarray(Image.open(inputs / "photos" / "a.png"), dtype=np.float32) / 255.0
    torch.testing.assert_close(images[0], torch.from_numpy(rgba[32:96, :, :3]), atol=1e-6, rtol=0)


def test_max_images_takes_the_first_by_name(inputs):
    images, listing = run_node(FOLDER, folder="photos", size=64, max_images=2)
    assert images.shape[0] == 2 and listed_files(listing) == ["a.png", "b.png"]
    assert "2 more image file(s) not read" in listing
    full, _ = run_node(FOLDER, folder="photos", size=64)
    assert torch.equal(images, full[:2])


def test_recursive_adds_subfolders(inputs):
    (inputs / "photos" / "sub").mkdir()
    save(inputs / "photos" / "sub" / "e.png", (80, 80), "RGB", 9)
    flat, _ = run_node(FOLDER, folder="photos", size=64)
    deep, listing = run_node(FOLDER, folder="photos", size=64, recursive=True)
    assert flat.shape[0] == 4 and deep.shape[0] == 5 and "sub/e.png" in listed_files(listing)


def test_fingerprint_follows_the_folder_listing(inputs):
    cls = node_class(FOLDER)
    first = cls.fingerprint_inputs(folder="photos", size=64, max_images=12, recursive=False)
    assert cls.fingerprint_inputs(folder="photos", size=64, max_images=12, recursive=False) == first
    save(inputs / "photos" / "e.png", (70, 70), "RGB", 7)
    added = cls.fingerprint_inputs(folder="photos", size=64, max_images=12, recursive=False)
    assert added != first
    stat = (inputs / "photos" / "e.png").stat()
    os.utime(inputs / "photos" / "e.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cls.fingerprint_inputs(folder="photos", size=64, max_images=12, recursive=False) != added


def test_unreadable_files_are_skipped_and_named(inputs):
    (inputs / "photos" / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    images, listing = run_node(FOLDER, folder="photos", size=64)
    assert images.shape[0] == 4 and "a_broken.png" not in listed_files(listing)[:4]
    assert "skipped 1 unreadable file(s):" in listing and "a_broken.png: cannot read image" in listing
    # a skipped file does not count against max_images
    images, listing = run_node(FOLDER, folder="photos", size=64, max_images=3)
    assert images.shape[0] == 3 and listed_files(listing)[:3] == ["a.png", "b.png", "c.png"]
    assert "a_broken.png: " in listing


def test_no_readable_image_is_an_error(inputs):
    empty = inputs / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="^Load Image Folder: folder 'empty' .* holds no image files"):
        run_node(FOLDER, folder="empty")
    (empty / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(OSError, match="^Load Image Folder: none of the 1 image file.*bad.jpg"):
        run_node(FOLDER, folder="empty")


@pytest.mark.parametrize("name", ["..", "../input", "/etc", "photos/../..", "outside_link", "missing", "",
                                  "photos/a.png"])
def test_names_outside_or_not_folders_are_refused(inputs, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    save(outside / "secret.png", (64, 64), "RGB", 1)
    (inputs / "outside_link").symlink_to(outside, target_is_directory=True)
    message = node_class(FOLDER).validate_inputs(folder=name)
    assert isinstance(message, str) and message.startswith("Load Image Folder: ")
    with pytest.raises(OSError, match="^Load Image Folder: "):
        run_node(FOLDER, folder=name)
    assert node_class(FOLDER).validate_inputs(folder="photos") is True


def test_symlinked_file_leading_outside_is_not_read(inputs, tmp_path):
    secret = tmp_path / "secret.png"
    save(secret, (64, 64), "RGB", 3)
    (inputs / "photos" / "0_link.png").symlink_to(secret)
    images, listing = run_node(FOLDER, folder="photos", size=64)
    assert images.shape[0] == 4 and "0_link.png: " in listing and "outside" in listing


def test_without_comfyui_the_input_directory_defaults_to_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPOT_INPUT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    assert node_class(FOLDER).INPUT_TYPES()["required"]["folder"][1]["options"] == ["here"]


def test_core_fit_to_square_modes():
    imageio = importlib.import_module(core().__name__ + ".tooling.imageio")
    image = torch.rand(1, 40, 80, 3)
    crop = imageio.fit_to_square(image, 40, "crop")
    torch.testing.assert_close(crop, image[:, :, 20:60])
    assert imageio.fit_to_square(image, 32, "stretch").shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="mode must be one of crop, stretch"):
        imageio.fit_to_square(image, 32, "fill")

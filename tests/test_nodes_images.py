"""Harmonise Colours and Degrade Image nodes, and the degradations behind the latter."""
import pytest
import torch

from node_harness import core, run_node

HARMONISE, DEGRADE = "DeepOT_HarmoniseColours", "DeepOT_DegradeImage"


def photo(seed, batch=2, size=32, channels=3):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, channels, size // 8, size // 8, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * torch.rand(batch, channels, size, size, generator=g)).permute(0, 2, 3, 1)


def degrade(**kwargs):
    return core().tooling.degrade.degrade_images(**kwargs)


def test_harmonise_moves_the_palette_and_reports_the_gap():
    natural = photo(0) * torch.tensor([1.0, 0.6, 0.3])  # warm photos
    restored = photo(1)
    snapshot = natural.clone()
    out, report = run_node(HARMONISE, natural=natural, restored=restored)
    assert out.shape == natural.shape and torch.equal(natural, snapshot)
    before, after = (float(v) for v in report.split(":")[-1].split("→"))
    assert after < 0.3 * before
    with pytest.raises(ValueError, match="^Harmonise Colours: natural .*NaN"):
        run_node(HARMONISE, natural=torch.full((1, 8, 8, 3), float("nan")), restored=restored)


def test_degrade_defaults_change_nothing_and_return_a_new_tensor():
    images = photo(2)
    (out,) = run_node(DEGRADE, images=images)
    assert out is not images and torch.equal(out, images)


def pil_resize(images, size, resample):
    """Independent of torch: Pillow's resize of each float channel ("F" images), clipped to 0..1."""
    import numpy as np
    from PIL import Image

    out = [[np.asarray(Image.fromarray(image[..., c].numpy(), mode="F").resize(size[::-1], resample))
            for c in range(image.shape[-1])] for image in images]
    return torch.from_numpy(np.stack([np.stack(channels, -1) for channels in out])).clamp(0, 1)


def reference_resize(filter, images, size):
    """What each filter means, computed without torch's interpolate: Pillow's antialiased filters, block means,
    and the nearest pixel centre (source index ⌊(i + ½)·k⌋ down, i // k up)."""
    from PIL import Image

    h, w = images.shape[1:3]
    if filter in ("bicubic", "bilinear"):
        return pil_resize(images, size, Image.BICUBIC if filter == "bicubic" else Image.BILINEAR)
    if size[0] < h:
        k = h // size[0]
        if filter == "area":
            return images.reshape(images.shape[0], size[0], k, size[1], k, -1).mean(dim=(2, 4))
        return images[:, k // 2::k, k // 2::k]
    k = size[0] // h
    return images.repeat_interleave(k, 1).repeat_interleave(k, 2)  # area and nearest up: pixel replication


@pytest.mark.parametrize("filter", ["bicubic", "bilinear", "area", "nearest"])
def test_degrade_downscales_and_upscales_back(filter):
    images = photo(3)
    (small,) = run_node(DEGRADE, images=images, scale=4, filter=filter)
    assert small.shape == (2, 8, 8, 3)
    torch.testing.assert_close(small, reference_resize(filter, images, (8, 8)), rtol=0, atol=1e-6)
    (back,) = run_node(DEGRADE, images=images, scale=4, filter=filter, upscale_back=True)
    assert back.shape == images.shape
    torch.testing.assert_close(back, reference_resize(filter, small, (32, 32)), rtol=0, atol=1e-6)


def test_degrade_noise_is_seeded_per_image_and_batch_independent():
    images = photo(4, batch=3)
    a = degrade(images=images, noise_sigma=25.0, seed=7)
    b = degrade(images=images, noise_sigma=25.0, seed=7)
    c = degrade(images=images, noise_sigma=25.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = a - images
    assert not torch.allclose(noise[0], noise[1])  # each image its own noise
    assert torch.equal(degrade(images=images[:1], noise_sigma=25.0, seed=7), a[:1])
    assert 20 / 255 < float(noise.std()) < 27 / 255  # σ = 25 on the 0..255 scale (clipped a little)


def test_degrade_jpeg_and_blur_lose_detail():
    images = photo(5)
    high_pass = lambda x: (x[:, 1:] - x[:, :-1]).abs().mean()
    jpeg = degrade(images=images, jpeg_quality=10)
    blur = degrade(images=images, blur_sigma=2.0)
    assert jpeg.shape == images.shape and high_pass(jpeg) < high_pass(images)
    assert high_pass(blur) < 0.6 * high_pass(images)
    assert torch.equal(degrade(images=images, jpeg_quality=100), images)


def test_degrade_keeps_alpha_and_grey():
    rgba = torch.cat([photo(6), torch.ones(2, 32, 32, 1)], dim=-1)
    out = degrade(images=rgba, scale=2, noise_sigma=10.0, jpeg_quality=50)
    assert out.shape == (2, 16, 16, 4) and torch.allclose(out[..., 3], torch.ones(2, 16, 16))
    grey = photo(7, channels=1)
    assert degrade(images=grey, jpeg_quality=50, noise_sigma=5.0).shape == grey.shape


@pytest.mark.parametrize("kwargs, pattern", [
    ({"filter": "lanczos"}, "filter must be one of"),
    ({"scale": 0}, "scale must be in"),
    ({"noise_sigma": -1.0}, "noise_sigma must be in"),
    ({"jpeg_quality": 101}, "jpeg_quality must be in"),
])
def test_degrade_bad_settings_are_clear_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=f"^Degrade Image: {pattern}"):
        degrade_node_unchecked(**kwargs)


def degrade_node_unchecked(**kwargs):
    """Call the node body directly: ComfyUI would refuse out-of-range widgets before it runs."""
    from node_harness import node_class, widget_defaults
    cls = node_class(DEGRADE)
    call = {**widget_defaults(cls), "images": photo(8), **kwargs}
    return cls.execute(**call)


UNDO = "DeepOT_UndoNoiseClipping"


def test_undo_noise_clipping_inverts_the_mean_of_degrade_images_noise():
    """Degrade Image's clipped noise, averaged over many seeds (what an ideal unclipped-noise denoiser returns), is
    brought back to the clean photo by Undo Noise Clipping; σ = 0 passes the images through."""
    images = photo(9, batch=1, size=16)
    mean = torch.stack([run_node(DEGRADE, images=images, noise_sigma=50.0, seed=s)[0] for s in range(1500)]).mean(0)
    (undone,) = run_node(UNDO, images=mean, noise_sigma=50.0)
    assert undone.shape == images.shape
    assert float((undone - images).abs().mean()) < 0.5 * float((mean - images).abs().mean())
    assert float((undone - images).abs().mean()) < 0.01
    (same,) = run_node(UNDO, images=images, noise_sigma=0.0)
    assert same is not images and torch.equal(same, images)


def test_undo_noise_clipping_names_itself_in_errors():
    with pytest.raises(ValueError, match="^Undo Noise Clipping: images contains NaN"):
        run_node(UNDO, images=torch.full((1, 8, 8, 3), float("nan")), noise_sigma=25.0)

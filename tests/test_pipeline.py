"""The shared end-to-end recipe: spaces, padding, fit metadata, blends, tasks, restorers, metrics."""
import pytest
import torch

from deepot_core.tooling import pipeline as P
from deepot_core.tooling import experiments as E
from deepot_core.tooling import spaces as S
from deepot_core.tooling.autoencoders import PixelSpace
from deepot_core.errors import TransportInputError
from deepot_core.tooling.restorers import bicubic_upscale, wiener_denoise


def _smooth(seed, h=48, w=56):
    """A smooth random colour image (low-pass noise), like a photo's large structures."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def _textured(seed, h=48, w=56):
    g = torch.Generator().manual_seed(seed + 99)
    return (_smooth(seed, h, w) + 0.15 * torch.randn(1, h, w, 3, generator=g)).clamp(0, 1)


class PoolSpace:
    """A toy /4 autoencoder (average pool / nearest upsample) to exercise padding and cropping."""
    downscale = 4
    latent_channels = 3

    def encode(self, images):
        assert images.shape[1] % 4 == 0 and images.shape[2] % 4 == 0
        return torch.nn.functional.avg_pool2d(images.permute(0, 3, 1, 2), 4)

    def decode(self, latents):
        up = torch.nn.functional.interpolate(latents, scale_factor=4, mode="nearest")
        return up.clamp(0, 1).permute(0, 2, 3, 1)


def test_resolve_space_pixel_and_bad_specs(tmp_path):
    space, name = S.resolve_space(None)
    assert isinstance(space, PixelSpace) and name == S.PIXEL_SPACE
    with pytest.raises(TransportInputError, match="no such folder"):
        S.resolve_space(str(tmp_path / "missing"))
    with pytest.raises(TransportInputError, match="_encoder"):
        S.resolve_space(str(tmp_path))  # a folder without weights
    with pytest.raises(TransportInputError, match="COMFYUI_PATH"):
        import os
        old = os.environ.pop("COMFYUI_PATH", None)
        try:
            S.resolve_space("comfy:ae.safetensors")
        finally:
            if old is not None:
                os.environ["COMFYUI_PATH"] = old


def test_resolve_taesd_space_is_named(shared_data):
    space, name = S.resolve_space(str(shared_data / "taesd"))
    assert name == "taesd:taef2" and space.latent_channels == 32
    _, by_file = S.resolve_space(str(shared_data / "taesd" / "taef2_encoder.pth"))
    assert by_file == name


def test_transport_image_keeps_size_with_padding():
    space = PoolSpace()
    natural, restored = [_textured(i, 44, 50) for i in range(3)], [_smooth(i, 44, 50) for i in range(3)]
    transport = P.fit_transport(space, natural, restored, patch_size=1, space_name="pool")
    moved, recon = P.transport_image(space, transport, restored[0])
    assert moved.shape == recon.shape == restored[0].shape
    out = P.blend(restored[0], moved, recon, 0.0, P.full_recipe(paired=True))
    assert torch.equal(out, restored[0])  # residual decode: perception 0 is the restored image exactly


def test_fit_records_space_and_recipe():
    natural, restored = [_textured(i) for i in range(3)], [_smooth(i) for i in range(3)]
    t = P.fit_transport(PixelSpace(), natural, restored, harmonise=True)
    assert t.metadata["space"] == "pixel" and t.metadata["harmonised"] is True
    assert t.metadata["natural_images"] == 3 and t.metadata["colour_gap"] > 0
    zero = P.fit_transport(PixelSpace(), natural, zero_shot=True)
    assert zero.zero_shot
    with pytest.raises(TransportInputError, match="restored"):
        P.fit_transport(PixelSpace(), natural, None)
    with pytest.raises(TransportInputError, match="colour reference"):
        P.fit_transport(PixelSpace(), natural, None, zero_shot=True, harmonise=True)
    with pytest.raises(TransportInputError, match="natural"):
        P.fit_transport(PixelSpace(), [], restored)


def test_check_space_refuses_mismatch():
    natural, restored = [_textured(i) for i in range(2)], [_smooth(i) for i in range(2)]
    t = P.fit_transport(PixelSpace(), natural, restored)
    S.check_space(t, PixelSpace(), "pixel")
    with pytest.raises(TransportInputError, match="'pixel' space"):
        S.check_space(t, PixelSpace(), "taesd:taef2")


def test_calibration_transport_restores_texture_in_pixel_space():
    """Fit on pairs, apply to held-apart images: the patch statistics move toward the clean ones."""
    clean = [_textured(i) for i in range(6)]
    restored = [wiener_denoise(c + 0.1 * torch.randn_like(c), 25.5) for c in clean]
    t = P.fit_transport(PixelSpace(), clean[:4], restored[:4])
    out = P.sweep(PixelSpace(), t, restored[4:], perceptions=(0.0, 1.0), recipe=P.PAPER_RECIPE)
    assert torch.equal(out[0.0][0], restored[4])
    std = lambda images: torch.cat(images).std()  # noqa: E731
    assert abs(std(out[1.0]) - std(clean[4:])) < abs(std(restored[4:]) - std(clean[4:]))


def test_paper_and_full_recipes_differ_only_with_a_lossy_decode():
    restored = _smooth(1)
    moved = (restored + 0.2).clamp(0, 1)
    recon = (restored * 0.9).clamp(0, 1)
    plain = P.blend(restored, moved, recon, 1.0, P.PAPER_RECIPE)
    assert torch.allclose(plain, moved)
    full = P.blend(restored, moved, recon, 1.0, P.full_recipe(paired=True, detail_sigma=0.0, natural_slopes=None))
    assert torch.allclose(full, (restored + moved - recon).clamp(0, 1), atol=1e-6)


def test_degrade_tasks():
    images = [_smooth(0, 32, 40)]
    lr = E.degrade(images, "sr4")
    assert lr[0].shape == (1, 8, 10, 3)
    noisy_a, noisy_b = E.degrade(images, "denoise50", seed=3), E.degrade(images, "denoise50", seed=3)
    assert torch.equal(noisy_a[0], noisy_b[0]) and not torch.equal(noisy_a[0], images[0])
    with pytest.raises(TransportInputError, match="multiples of 4"):
        E.degrade([_smooth(0, 30, 40)], "sr4")
    with pytest.raises(TransportInputError, match="unknown task"):
        E.degrade(images, "deblur")


def test_restorers_reduce_error():
    clean = _smooth(2, 64, 64)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 50 / 255
    mse = lambda a: float(((a - clean) ** 2).mean())  # noqa: E731
    assert mse(wiener_denoise(noisy, 50)) < 0.25 * mse(noisy)
    assert torch.equal(wiener_denoise(clean, 0), clean)
    up = bicubic_upscale(E.degrade([clean], "sr4")[0], 4)
    assert up.shape == clean.shape and mse(up) < 0.01
    with pytest.raises(ValueError):
        wiener_denoise(noisy, -1)
    with pytest.raises(ValueError):
        bicubic_upscale(clean[..., :2], 4)


def test_evaluate_orders_closer_sets():
    clean = [_textured(i, 64, 64) for i in range(2)]
    near = [(c + 0.02 * torch.randn_like(c)).clamp(0, 1) for c in clean]
    far = [E.restore_classical([c], "denoise50")[0] * 0.5 for c in clean]
    a, b = E.evaluate(near, clean), E.evaluate(far, clean)
    assert a["psnr"] > b["psnr"] and a["ssim"] > b["ssim"]
    assert a["swd_joint"] < b["swd_joint"] and a["patch_fd"] < b["patch_fd"]
    assert len(a["swd_levels"]) >= 1 and "niqe" not in a
    assert "ssim" not in E.evaluate(near, clean, with_ssim=False)
    with pytest.raises(TransportInputError):
        E.evaluate(near[:1], clean)

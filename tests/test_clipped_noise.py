"""Undo Noise Clipping: g(x) = E[clip(x + n)] is the clipped pixel's mean, its inverse is exact on 0..1, and on a
real denoiser's output it brings back the contrast that clipped noise took (it is closer to the clean photo)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepot_core.errors import TransportInputError
from deepot_core.tooling import experiments as E
from deepot_core.tooling.clipped_noise import clipped_noise_mean, undo_noise_clipping
from deepot_core.tooling.metrics import psnr

SIGMA50 = 50 / 255


def test_mean_of_clipped_noise_matches_monte_carlo():
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    n = torch.randn(400_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA50
    empirical = (x + n).clamp(0, 1).mean(0)
    assert torch.allclose(clipped_noise_mean(x, SIGMA50), empirical, atol=1.5e-3)
    assert float(clipped_noise_mean(x, SIGMA50)[0]) == pytest.approx(0.0782, abs=2e-4)  # shadows lifted
    assert torch.allclose(clipped_noise_mean(x, SIGMA50) + clipped_noise_mean(1 - x, SIGMA50),
                          torch.ones_like(x), atol=1e-12)  # symmetric about ½


@settings(max_examples=40, deadline=None)
@given(sigma=st.floats(0.25, 255), size=st.integers(1, 24), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_undo_inverts_the_clipped_mean_for_every_sigma(sigma, size, seed, dtype):
    x = torch.rand(2, size, size + 1, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[0, 0, 0] = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)  # the ends of the range too
    y = clipped_noise_mean(x, sigma / 255).to(dtype)
    out = undo_noise_clipping(y, sigma)
    assert out.dtype == dtype and out.shape == x.shape
    assert float((out.double() - x).abs().max()) < (1e-12 if dtype == torch.float64 else 2e-6)


def test_outside_the_reachable_range_maps_to_the_ends_and_sigma_zero_is_a_copy():
    y = torch.tensor([-0.2, 0.0, 0.05, 0.95, 1.0, 1.3]).reshape(1, 1, 2, 3)
    out = undo_noise_clipping(y, 50).flatten().tolist()
    assert out[:3] == [0.0, 0.0, 0.0] and out[3:] == [1.0, 1.0, 1.0]  # 0.05 < g(0) = 0.078, 0.95 > g(1)
    image = torch.rand(1, 4, 4, 3)
    same = undo_noise_clipping(image, 0)
    assert torch.equal(same, image) and same.data_ptr() != image.data_ptr()


def test_monotone_and_keeps_alpha_and_grey():
    ramp = torch.linspace(0.1, 0.9, 64).reshape(1, 1, 64, 1)
    out = undo_noise_clipping(ramp, 25)
    assert out.shape == ramp.shape and bool((out.diff(dim=2) > 0).all())
    assert float(out[0, 0, 0, 0]) < 0.1 < 0.9 < float(out[0, 0, -1, 0])  # contrast stretched, not compressed
    rgba = torch.rand(2, 5, 6, 4)
    out = undo_noise_clipping(rgba, 50)
    assert torch.equal(out[..., 3], rgba[..., 3]) and torch.equal(out[..., :3], undo_noise_clipping(rgba[..., :3], 50))


@pytest.mark.parametrize("images, sigma, words", [
    (torch.full((1, 4, 4, 3), float("nan")), 50, "NaN"),
    (torch.rand(4, 4), 50, "IMAGE"),
    (torch.rand(1, 4, 4, 3), -1, "noise_sigma"),
    (torch.rand(1, 4, 4, 3), 300, "noise_sigma"),
    (torch.rand(1, 4, 4, 3), float("nan"), "finite"),
])
def test_bad_input_is_refused_by_name(images, sigma, words):
    with pytest.raises(TransportInputError, match=words):
        undo_noise_clipping(images, sigma)


def test_a_real_denoiser_on_clipped_noise_gets_closer_to_the_clean_photos(shared_data):
    """KAIR's DnCNN was trained on unclipped noise; on the benchmark's clipped σ = 50 noise, undoing the clip's bias
    raises PSNR and restores the coarse contrast (measured +1.2 dB on 12 CBSD68 crops)."""
    from benchmarks.restorers import denoise_dncnn, load_dncnn
    from deepot_core.tooling.imageio import list_images, load_image
    model = load_dncnn(shared_data / "restorers" / "dncnn_color_blind_kair" / "dncnn_color_blind.pth")
    clean = [E.centre_crop_square(load_image(p), 96) for p in list_images(shared_data / "images" / "cbsd68")[:3]]
    with torch.inference_mode():
        restored = [denoise_dncnn(model, n).clamp(0, 1) for n in E.degrade(clean, "denoise50", seed=3)]
    undone = [undo_noise_clipping(r, 50) for r in restored]
    before = torch.cat([psnr(r, c) for r, c in zip(restored, clean)]).mean()
    after = torch.cat([psnr(u, c) for u, c in zip(undone, clean)]).mean()
    assert float(after) > float(before) + 0.5
    spread = lambda xs: float(torch.stack([x.std() for x in xs]).mean())  # noqa: E731
    assert spread(restored) < spread(undone) <= 1.05 * spread(clean)


def test_the_benchmarks_denoiser_undoes_the_clipping_bias_unless_told_to_keep_it(shared_data):
    """pd_curve's FFDNet output is ``undo_noise_clipping`` of FFDNet as is; ``undo_clipping=False`` is FFDNet as is."""
    from benchmarks.pd_curve import Restorer, load_set
    clean = load_set(shared_data / "images" / "cbsd68", 0, 1, 64)
    noisy = E.degrade(clean, "denoise50", seed=5)
    with torch.inference_mode():
        undone, kept = Restorer("denoise50", shared_data)(noisy)[0], \
            Restorer("denoise50", shared_data, undo_clipping=False)(noisy)[0]
    assert torch.equal(undone, undo_noise_clipping(kept.clamp(0, 1), E.TASK_NOISE_SIGMA))
    assert not torch.equal(undone, kept.clamp(0, 1))

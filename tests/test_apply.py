"""Applying the map: the fused fold is exact, p=1 is per-pixel, strength, masks, video, dtypes, zero-shot."""
import pytest
import torch

from deepot_core import LatentTransport, PatchStatistics, TransportInputError
from deepot_core.patch_apply import apply_patch_map, apply_unfold_reference

from test_statistics import latents


def random_map(c, p, seed):
    g = torch.Generator().manual_seed(seed)
    d = c * p * p
    m = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return m + torch.eye(d, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("p", [1, 3, 5, 7, 9])
def test_fused_equals_unfold_reference(p):
    r = p // 2
    shapes = {(1, 1), (2, 3), (4 * r, 4 * r + 1), (4 * r + 1, 4 * r + 1), (4 * r + 2, 7), (5, 4 * r + 3), (17, 23)}
    for k, (h, w) in enumerate(sorted(shapes)):
        h, w = max(h, 1), max(w, 1)
        x = torch.randn(2, 2, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        matrix, bias = random_map(2, p, seed=p * 100 + k)
        got = apply_patch_map(x, matrix, bias, p)
        assert got.shape == x.shape
        torch.testing.assert_close(got, apply_unfold_reference(x, matrix, bias, p), rtol=1e-10, atol=1e-10)


def test_p1_is_per_pixel_map():
    x = latents(b=2, c=4, seed=1).double()
    tr = LatentTransport.fit(x, latents(b=2, c=4, seed=2).double() * 2, patch_size=1)
    a, b = tr.map.matrix, tr.map.bias
    expected = torch.einsum("ij,njhw->nihw", a, x) + b[:, None, None]
    torch.testing.assert_close(tr.apply(x), expected, rtol=1e-12, atol=1e-12)


def fitted(c=3, p=3, seed=0):
    src = latents(b=2, c=c, seed=seed)
    return LatentTransport.fit(src, latents(b=2, c=c, seed=seed + 1) * 1.5 + 0.3, patch_size=p), src


def test_strength_is_geodesic():
    tr, x = fitted()
    x = x.double()
    full = tr.apply(x)
    torch.testing.assert_close(tr.apply(x, strength=0.0), x, rtol=0, atol=1e-12)
    for t in (-1.0, 0.3, 2.0):
        torch.testing.assert_close(tr.apply(x, strength=t), x + t * (full - x), rtol=1e-10, atol=1e-10)
    for bad in (float("nan"), 2.5, "1", None):
        with pytest.raises(TransportInputError, match="strength"):
            tr.apply(x, strength=bad)


def test_mask_limits_change():
    tr, x = fitted()
    x = x.double()
    mask = torch.zeros(2, 11, 13, dtype=torch.float64)
    mask[:, 4:, 6:] = 1.0
    mask[1, 0, 0] = 0.25
    out, full = tr.apply(x, mask=mask), tr.apply(x)
    torch.testing.assert_close(out, x + mask[:, None] * (full - x), rtol=0, atol=1e-12)
    assert torch.equal(out[:, :, :4, :6][:, :, 1:], x[:, :, :4, :6][:, :, 1:])
    image_mask = mask.repeat_interleave(8, 1).repeat_interleave(8, 2)
    torch.testing.assert_close(tr.apply(x, mask=image_mask), out, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.apply(x, mask=mask[:1]), x + mask[:1, None] * (full - x), rtol=0, atol=1e-12)


def test_video_equals_frames():
    tr, _ = fitted()
    video = latents(b=6, c=3, seed=9).reshape(2, 3, 3, 11, 13).permute(0, 2, 1, 3, 4).double()
    frames = video.permute(0, 2, 1, 3, 4).reshape(6, 3, 11, 13)
    out = tr.apply(video)
    assert out.shape == video.shape
    torch.testing.assert_close(out.permute(0, 2, 1, 3, 4).reshape(6, 3, 11, 13), tr.apply(frames))
    # zero-shot: the source statistics pool all frames of one video (not each frame, not the whole batch)
    zs = LatentTransport.fit(None, tr.target)
    out = zs.apply(video)
    for i in range(2):
        clip = frames[3 * i:3 * (i + 1)]
        own = LatentTransport(PatchStatistics(3).update(clip), tr.target)  # fitted on this video's frames
        torch.testing.assert_close(out[i].permute(1, 0, 2, 3), own.apply(clip), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_round_trip(dtype):
    tr, x = fitted(c=4)
    z = x.to(dtype)
    out = tr.apply(z)
    assert out.dtype == dtype and out.shape == z.shape and out.device == z.device
    reference = tr.apply(z.double())
    tol = {torch.float16: 1e-2, torch.bfloat16: 6e-2, torch.float32: 1e-4, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(out.double(), reference, rtol=tol, atol=tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_round_trip_cuda():
    tr, x = fitted(c=4)
    out = tr.apply(x.cuda())
    assert out.is_cuda and out.dtype == x.dtype
    torch.testing.assert_close(out.cpu(), tr.apply(x), rtol=1e-4, atol=1e-4)


def test_zero_shot_is_per_image():
    target = PatchStatistics(3).update(latents(b=3, c=3, seed=20) * 2)
    zs = LatentTransport.fit(None, target)
    a, b = latents(b=1, c=3, seed=21), latents(b=1, c=3, seed=22) * 3
    both = zs.apply(torch.cat([a, b]))
    torch.testing.assert_close(both, torch.cat([zs.apply(a), zs.apply(b)]))
    fitted_a = LatentTransport.fit(PatchStatistics(3).update(a), target)
    torch.testing.assert_close(both[:1], fitted_a.apply(a), rtol=1e-5, atol=1e-5)
    assert "zero-shot" in zs.report()


def test_latent_smaller_than_patch_applies():
    tr, _ = fitted(c=2, p=5)
    tiny = torch.randn(1, 2, 2, 3, dtype=torch.float64)
    m, b = tr.map.matrix, tr.map.bias
    torch.testing.assert_close(tr.apply(tiny), apply_unfold_reference(tiny, m, b, 5), rtol=1e-10, atol=1e-10)


def test_wrong_inputs_refused():
    tr, x = fitted()
    with pytest.raises(TransportInputError, match="3-channel"):
        tr.apply(torch.zeros(1, 4, 8, 8))
    with pytest.raises(TransportInputError, match="NaN"):
        tr.apply(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TransportInputError, match="dimensions"):
        tr.apply(torch.zeros(3, 8, 8))
    with pytest.raises(TransportInputError, match="empty"):
        tr.apply(torch.zeros(0, 3, 8, 8))
    with pytest.raises(TransportInputError, match="floating"):
        tr.apply(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(TransportInputError, match="mask"):
        tr.apply(x, mask=torch.ones(2, 2, 3, 11, 13))


def block_means(mask, k, top, left, h, w):
    """Independent of the code: the mean of each latent pixel's k×k block, loop by loop."""
    out = torch.empty(mask.shape[0], h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            block = mask[:, top + k * i:top + k * (i + 1), left + k * j:left + k * (j + 1)]
            out[:, i, j] = block.double().mean(dim=(1, 2))
    return out


@pytest.mark.parametrize("k, extra", [(8, (0, 0)), (8, (5, 3)), (16, (15, 1)), (1, (0, 0))])
def test_image_resolution_mask_lands_on_its_latent_pixels(k, extra):
    """A mask drawn on the image (VAE downscale k, plus the rows VAE Encode crops off) weights the right pixels."""
    tr, x = fitted()
    x = x.double()
    h, w = x.shape[-2:]
    mh, mw = k * h + extra[0], k * w + extra[1]
    mask = torch.rand(2, mh, mw, generator=torch.Generator().manual_seed(k + extra[0]), dtype=torch.float64)
    weights = block_means(mask, k, extra[0] // 2, extra[1] // 2, h, w)  # VAE Encode keeps the centre
    full = tr.apply(x)
    # masks are weights in float32: 1e-7 relative rounding
    torch.testing.assert_close(tr.apply(x, mask=mask), x + weights[:, None] * (full - x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 64), (4, 6), (11 * 8, 13 * 8 - 9), (11 * 8 + 8, 13 * 8 + 8), (11, 12)])
def test_mask_of_wrong_size_or_aspect_is_refused_naming_both(shape):
    tr, x = fitted()  # 11×13 latents
    with pytest.raises(TransportInputError, match=rf"mask is {shape[0]}×{shape[1]} but the latent is 11×13"):
        tr.apply(x, mask=torch.ones(1, *shape))
    with pytest.raises(TransportInputError, match=rf"mask is {shape[0]}×{shape[1]} but the latent is 11×13"):
        PatchStatistics(3).update(x, mask=torch.ones(1, *shape))

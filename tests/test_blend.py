"""pd_blend / pd_sweep: endpoints, linearity, clipping, crops, residual decode and the detail band."""
import pytest
import torch

from deepot_core import TransportInputError, pd_blend, pd_sweep


def image(b=2, h=16, w=20, c=3, seed=0):
    return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(seed))


def test_endpoints_and_linearity():
    r, t = image(seed=1), image(seed=2)
    assert torch.equal(pd_blend(r, t, 0.0), r)
    torch.testing.assert_close(pd_blend(r, t, 1.0), t)
    torch.testing.assert_close(pd_blend(r, t, 0.25), 0.75 * r + 0.25 * t)
    extrapolated = pd_blend(r, t, 2.0)
    torch.testing.assert_close(extrapolated, (2 * t - r).clamp(0, 1))
    assert extrapolated.min() >= 0 and extrapolated.max() <= 1
    torch.testing.assert_close(pd_blend(r, t, -1.0), (2 * r - t).clamp(0, 1))


@pytest.mark.parametrize("bad", [float("nan"), 2.01, -1.5, "0.5"])
def test_bad_perception_refused(bad):
    with pytest.raises(TransportInputError, match="perception"):
        pd_blend(image(), image(), bad)


def test_size_mismatch_centre_crops_and_batch_broadcasts():
    r, t = image(b=2, h=17, w=21, seed=3), image(b=1, h=16, w=16, seed=4)
    out = pd_blend(r, t, 0.5)
    assert out.shape == (2, 16, 16, 3)
    torch.testing.assert_close(out, 0.5 * r[:, :16, 2:18] + 0.5 * t)
    with pytest.raises(TransportInputError, match="batch"):
        pd_blend(image(b=2), image(b=3), 0.5)


def test_alpha_kept_and_grey_accepted():
    r = image(c=4, seed=5)
    out = pd_blend(r, image(c=1, seed=6), 1.0)
    assert out.shape[-1] == 4 and torch.equal(out[..., 3:], r[..., 3:])


def test_residual_decode_and_detail_band():
    r, t, rec = image(seed=7), image(seed=8), image(seed=9)
    assert torch.equal(pd_blend(r, t, 0.0, reconstructed=rec), r)
    torch.testing.assert_close(pd_blend(r, t, 1.0, reconstructed=rec, detail_sigma=0.0, natural_slopes=None),
                               (r + t - rec).clamp(0, 1))
    # a purely low-frequency (constant) change is removed by the detail band: colours stay the restored ones
    r = 0.2 + 0.6 * image(seed=10)
    shifted = (rec + 0.1).clamp(0, 1)
    flat = rec.clone().fill_(0.5)
    out = pd_blend(r, flat + 0.1, 1.0, reconstructed=flat, detail_sigma=2.0, natural_slopes=None)
    torch.testing.assert_close(out, r, rtol=0, atol=1e-5)
    out_nb = pd_blend(r, flat + 0.1, 1.0, reconstructed=flat, detail_sigma=0.0, natural_slopes=None)
    torch.testing.assert_close(out_nb, (r + 0.1).clamp(0, 1))
    assert shifted.shape == r.shape
    # the band itself, against SciPy's Gaussian (mirror borders = torch's "reflect", 3σ radius)
    from scipy.ndimage import gaussian_filter

    r, t, rec = 0.2 + 0.6 * image(seed=11), image(seed=12), image(seed=13)
    delta = (t - rec).double().numpy()
    band = delta - gaussian_filter(delta, sigma=(0, 2.0, 2.0, 0), mode="mirror", truncate=3.0)
    expected = (r.double() + 0.7 * torch.from_numpy(band)).clamp(0, 1).float()
    out = pd_blend(r, t, 0.7, reconstructed=rec, detail_sigma=2.0, natural_slopes=None)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert float((out - r).abs().mean()) > 0.05  # the band adds detail, not nothing


def test_sweep_is_perception_major():
    r, t = image(b=2, seed=11), image(b=2, seed=12)
    order = [1.0, 0.0, 0.5, 0.0, -0.5]  # the order given, repeats kept: never sorted or deduplicated
    out = pd_sweep(r, t, order)
    assert out.shape == (2 * len(order), 16, 20, 3)
    for k, p in enumerate(order):
        torch.testing.assert_close(out[2 * k:2 * k + 2], ((1 - p) * r + p * t).clamp(0, 1))
    with pytest.raises(TransportInputError):
        pd_sweep(r, t, [])


def test_a_residual_sweep_equals_each_blend_and_refuses_a_bad_value():
    """The band is made once per sweep (blurred, capped); every perception still gets exactly pd_blend's image."""
    r, t, rec = 0.2 + 0.6 * image(b=2, h=32, w=40, seed=14), image(b=2, h=32, w=40, seed=15), image(b=2, h=32, w=40,
                                                                                                  seed=16)
    rgba = torch.cat([r, torch.rand(2, 32, 40, 1, generator=torch.Generator().manual_seed(17))], dim=-1)
    order = [1.0, 0.25, 2.0, -1.0]
    out = pd_sweep(rgba, t, order, reconstructed=rec)
    for k, p in enumerate(order):
        assert torch.equal(out[2 * k:2 * k + 2], pd_blend(rgba, t, p, reconstructed=rec))
    with pytest.raises(TransportInputError) as caught:
        pd_sweep(r, t, [0.5, 3.0], reconstructed=rec)
    assert str(caught.value) == "perception must be in -1.0..2.0, got 3.0."


def test_bad_images_refused():
    with pytest.raises(TransportInputError, match="NaN"):
        pd_blend(image().fill_(float("nan")), image(), 0.5)
    with pytest.raises(TransportInputError, match="IMAGE"):
        pd_blend(torch.rand(2, 3, 8, 8, 2), image(), 0.5)
    with pytest.raises(TransportInputError, match="float"):
        pd_blend((image() * 255).to(torch.uint8), image(), 0.5)


def test_result_dtype_follows_the_restored_image():
    """Half inputs compute (and return) in float32; float64 restored images keep float64."""
    r, t = image(seed=14), image(seed=15)
    assert pd_blend(r.half(), t.half(), 0.5).dtype == torch.float32
    out = pd_blend(r.double(), t, 0.3)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, 0.7 * r.double() + 0.3 * t.double(), rtol=0, atol=1e-7)


def test_narrow_detail_band_and_sweep_with_reconstruction():
    from scipy.ndimage import gaussian_filter

    r, t, rec = 0.2 + 0.6 * image(seed=16), image(seed=17), image(seed=18)
    delta = (t - rec).double().numpy()
    band = delta - gaussian_filter(delta, sigma=(0, 0.5, 0.5, 0), mode="mirror", truncate=3.0)
    expected = (r.double() + torch.from_numpy(band)).clamp(0, 1).float()
    torch.testing.assert_close(pd_blend(r, t, 1.0, reconstructed=rec, detail_sigma=0.5, natural_slopes=None), expected,
                               rtol=0, atol=1e-5)  # σ below one pixel is a band too
    sweep = pd_sweep(r, t, [1.0, 0.25], reconstructed=rec, detail_sigma=0.5, natural_slopes=None)
    torch.testing.assert_close(sweep[:2], expected)
    torch.testing.assert_close(sweep[2:], pd_blend(r, t, 0.25, reconstructed=rec, detail_sigma=0.5, natural_slopes=None))
    capped = pd_sweep(r, t, [1.0, 0.25], reconstructed=rec, detail_sigma=0.5)  # the cap travels with the sweep
    torch.testing.assert_close(capped[2:], pd_blend(r, t, 0.25, reconstructed=rec, detail_sigma=0.5))


def test_refusals_name_the_input():
    good, nan = image(), image().fill_(float("nan"))
    for kwargs, name in (({"restored": nan, "transported": good}, "restored"),
                         ({"restored": good, "transported": nan}, "transported"),
                         ({"restored": good, "transported": good, "reconstructed": nan}, "reconstructed")):
        with pytest.raises(TransportInputError, match=f"^{name} contains NaN or Inf"):
            pd_blend(perception=0.5, **kwargs)
    with pytest.raises(TransportInputError, match="^perception must be in -1.0..2.0, got 3.0"):
        pd_blend(good, good, 3.0)
    with pytest.raises(TransportInputError, match="^detail_sigma must be in 0.0..64.0, got 65.0"):
        pd_blend(good, good, 0.5, reconstructed=good, detail_sigma=65.0)
    with pytest.raises(TransportInputError, match=r"^batch sizes differ \(restored 2, transported 3\)"):
        pd_blend(image(b=2), image(b=3), 0.5)
    with pytest.raises(TransportInputError, match=r"\(restored 2, transported 2, reconstructed 3\)"):
        pd_blend(image(b=2), image(b=2), 0.5, reconstructed=image(b=3))
    with pytest.raises(TransportInputError, match="^give at least one perception value"):
        pd_sweep(good, good, [])

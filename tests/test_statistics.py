"""PatchStatistics: exact against an unfold oracle, streaming, merging, video, masks, NaN skipping."""
import pytest
import torch
import torch.nn.functional as F

from deepot_core import PatchStatistics, TransportInputError


def latents(b=2, c=3, h=11, w=13, seed=0, dtype=torch.float32):
    """Spatially correlated random latents (a random blur of noise), so patch covariances are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h + 2, w + 2, generator=g, dtype=torch.float64)
    k = torch.rand(c, 1, 3, 3, generator=g, dtype=torch.float64)
    return (F.conv2d(x, k, groups=c) + torch.arange(c, dtype=torch.float64)[:, None, None]).to(dtype)


def oracle(x, p, centre_weights=None):
    """Weighted mean and unbiased covariance of every interior patch, straight from F.unfold in float64."""
    cols = F.unfold(x.double(), p).permute(1, 0, 2).reshape(x.shape[1] * p * p, -1)
    wt = torch.ones(cols.shape[1], dtype=torch.float64) if centre_weights is None else centre_weights.double()
    n = wt.sum()
    mean = cols @ wt / n
    xc = cols - mean[:, None]
    return n, mean, (xc * wt) @ xc.T / (n - 1)


@pytest.mark.parametrize("p", [1, 3, 5])
def test_matches_unfold_oracle(p):
    x = latents()
    s = PatchStatistics(p).update(x)
    n, mean, cov = oracle(x, p)
    assert s.count == n and s.dim == 3 * p * p and s.channels == 3
    torch.testing.assert_close(s.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.covariance, cov, rtol=1e-10, atol=1e-12)


def test_streaming_equals_one_batch_and_strips(monkeypatch):
    x = latents(b=5, seed=1)
    whole = PatchStatistics(3).update(x)
    parts = PatchStatistics(3)
    for chunk in x.split(2):
        parts.update(chunk)
    import deepot_core.statistics as stats_mod
    monkeypatch.setattr(stats_mod, "STATS_STRIP_ELEMENTS", 27 * 11 * 2)  # two rows per strip
    strips = PatchStatistics(3).update(x)
    for other in (parts, strips):
        assert other.count == whole.count
        torch.testing.assert_close(other.mean, whole.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(other.covariance, whole.covariance, rtol=1e-10, atol=1e-12)


def test_merge_equals_pooled_and_leaves_inputs():
    x, y = latents(b=2, seed=2), latents(b=3, h=9, w=17, seed=3) * 2 + 1
    a, b = PatchStatistics(3).update(x), PatchStatistics(3).update(y)
    a_mean = a.mean
    pooled = PatchStatistics(3).update(x).update(y)
    for merged in (a.merge(b), a + b):
        assert merged.count == pooled.count
        torch.testing.assert_close(merged.mean, pooled.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(merged.covariance, pooled.covariance, rtol=1e-10, atol=1e-12)
    assert a.count == 2 * 9 * 11 and torch.equal(a.mean, a_mean)
    with pytest.raises(TransportInputError, match="patch_size"):
        a.merge(PatchStatistics(5))
    with pytest.raises(TransportInputError, match="channels"):
        a.merge(PatchStatistics(3).update(latents(c=4)))
    with pytest.raises(TypeError):
        a.merge(x)


def test_video_frames_count_as_samples():
    video = latents(b=2 * 3, seed=4).reshape(2, 3, 3, 11, 13).permute(0, 2, 1, 3, 4)  # [B,C,T,H,W]
    frames = video.permute(0, 2, 1, 3, 4).reshape(6, 3, 11, 13)
    a, b = PatchStatistics(3).update(video), PatchStatistics(3).update(frames)
    assert a.count == b.count == 6 * 9 * 11
    torch.testing.assert_close(a.covariance, b.covariance, rtol=1e-12, atol=1e-14)


def test_mask_restricts_patches_latent_and_image_resolution():
    x = latents(b=2, seed=5)
    mask = torch.zeros(2, 11, 13)
    mask[0, 2:8, 3:10] = 1.0
    mask[1, 5:, :6] = 1.0
    mask[1, 0, 0] = 0.5  # a border pixel: not a patch centre at p=3, must not count
    s = PatchStatistics(3).update(x, mask=mask)
    centres = mask[:, 1:-1, 1:-1].reshape(2, -1)
    n, mean, cov = oracle_weighted(x, 3, centres)
    assert s.count == pytest.approx(float(n))
    torch.testing.assert_close(s.covariance, cov, rtol=1e-10, atol=1e-12)
    image_mask = mask.repeat_interleave(8, 1).repeat_interleave(8, 2)  # image resolution, area-resized back
    s8 = PatchStatistics(3).update(x, mask=image_mask)
    torch.testing.assert_close(s8.covariance, s.covariance, rtol=1e-10, atol=1e-12)
    one = PatchStatistics(3).update(x, mask=mask[:1])  # batch-1 mask applies to every image
    both = PatchStatistics(3).update(x, mask=mask[:1].expand(2, -1, -1))
    torch.testing.assert_close(one.covariance, both.covariance)
    with pytest.raises(TransportInputError, match="batch"):
        PatchStatistics(3).update(x, mask=torch.ones(3, 11, 13))
    with pytest.raises(TransportInputError, match="mask is 5×5 but the latent is 11×13"):
        PatchStatistics(3).update(x, mask=torch.ones(2, 5, 5))


def oracle_weighted(x, p, centre_weights):
    cols = [F.unfold(x[i:i + 1].double(), p)[0] for i in range(x.shape[0])]
    cols = torch.cat(cols, dim=1)
    return oracle_cols(cols, centre_weights.reshape(-1))


def oracle_cols(cols, wt):
    wt = wt.double()
    n = wt.sum()
    mean = cols @ wt / n
    xc = cols - mean[:, None]
    return n, mean, (xc * wt) @ xc.T / (n - 1)


def test_all_zero_mask_counts_nothing():
    s = PatchStatistics(3).update(latents(), mask=torch.zeros(11, 13))
    assert s.count == 0
    with pytest.raises(TransportInputError, match="mask"):
        s.covariance


def test_nan_patches_skipped_and_counted():
    x = latents(b=1, seed=6)
    x[0, 1, 5, 6] = float("nan")
    x[0, 2, 0, 0] = float("inf")
    s = PatchStatistics(3).update(x)
    cols = F.unfold(torch.nan_to_num(x.double(), 0.0, 0.0, 0.0), 3)[0]
    good = torch.isfinite(F.unfold(x.double(), 3)[0]).all(0)
    assert s.skipped == int((~good).sum()) == 9 + 1
    n, mean, cov = oracle_cols(cols[:, good], torch.ones(int(good.sum())))
    assert s.count == n
    torch.testing.assert_close(s.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.covariance, cov, rtol=1e-10, atol=1e-12)


def test_large_offset_keeps_precision():
    """Covariance is shift-invariant; a 1e6 offset must not destroy it by cancellation."""
    x = latents(b=2, seed=7, dtype=torch.float64)
    a, b = PatchStatistics(3).update(x), PatchStatistics(3).update(x + 1e6)
    torch.testing.assert_close(b.covariance, a.covariance, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(b.mean - 1e6, a.mean, rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    x = latents(seed=8).to(dtype)
    a, b = PatchStatistics(3).update(x), PatchStatistics(3).update(x.double())
    torch.testing.assert_close(a.covariance, b.covariance, rtol=0, atol=0)


def test_channel_mismatch_and_small_latents_refused():
    s = PatchStatistics(3).update(latents(c=4))
    with pytest.raises(TransportInputError, match="4-channel"):
        s.update(latents(c=16))
    with pytest.raises(TransportInputError, match="smaller than patch_size"):
        PatchStatistics(5).update(torch.zeros(1, 4, 3, 8))
    for bad in (2, 0, 11, 3.5, "3", True):
        with pytest.raises(TransportInputError):
            PatchStatistics(bad)

"""LatentTransport's contract in detail: construction, diagnostics and report, progress, the float64 fallback.

Each assertion here was missing until mutation testing (benchmarks/mutation.py)
showed a deliberate bug passing every other test.
"""
import math

import numpy as np
import pytest
import torch

from deepot_core import LatentTransport, PatchStatistics, TransportInputError, gaussian_map
from deepot_core.constants import SAMPLES_PER_DIM_WARNING
from deepot_core.transport import fit_warnings

from test_statistics import latents


def stats(c=2, p=3, seed=0, b=2, h=9, w=10, scale=1.0):
    return PatchStatistics(p).update(latents(b=b, c=c, h=h, w=w, seed=seed) * scale)


def test_construction_refuses_mismatches_with_exact_messages():
    s2, t2, t3 = stats(c=2), stats(c=2, seed=1), stats(c=3, seed=2)
    with pytest.raises(TypeError, match=r"^target must be PatchStatistics \(or None for zero-shot\), got dict\.$"):
        LatentTransport(s2, {})
    with pytest.raises(TypeError, match=r"^source must be PatchStatistics \(or None for zero-shot\), got str\.$"):
        LatentTransport("s", t2)
    with pytest.raises(TransportInputError, match=r"^source latents have 2 channels but target latents 3; encode "
                                                  r"the restored and the natural images with the same VAE\.$"):
        LatentTransport(s2, t3)
    with pytest.raises(TransportInputError, match=r"^source statistics use patch_size 3 but target 1; "
                                                  r"compute both with the same patch_size\.$"):
        LatentTransport(s2, stats(c=2, p=1))
    with pytest.raises(TransportInputError, match=r"^eps must be in 0\.0\.\.1\.0, got 1\.5\.$"):
        LatentTransport(s2, t2, eps=1.5)
    with pytest.raises(TransportInputError, match=r"^target \(natural-image\) statistics are required; "
                                                  r"only source may be None\.$"):
        LatentTransport.fit(s2, None)
    with pytest.raises(TransportInputError, match=r"^pass patch_size when source is a latent tensor\.$"):
        LatentTransport.fit(latents(c=2), t2)
    with pytest.raises(TransportInputError, match=r"^pass patch_size when target is a latent tensor\.$"):
        LatentTransport.fit(s2, latents(c=2))
    with pytest.raises(TypeError, match=r"^source must be PatchStatistics, a latent tensor or None, got list\.$"):
        LatentTransport.fit([1], t2)
    with pytest.raises(TypeError, match=r"^target must be PatchStatistics, a latent tensor or None, got int\.$"):
        LatentTransport.fit(s2, 3)


def test_two_samples_are_enough_and_one_is_not():
    two = PatchStatistics(1).update(torch.tensor([[[[0.0, 1.0]], [[1.0, 3.0]]]]))
    assert two.count == 2
    LatentTransport(two, stats(c=2, p=1))  # accepted
    one = PatchStatistics(1).update(torch.tensor([[[[0.0]], [[1.0]]]]))
    with pytest.raises(TransportInputError, match="hold 1 samples"):
        LatentTransport(one, stats(c=2, p=1))


def test_eps_reaches_the_map_in_fit_and_zero_shot():
    s, t = stats(seed=3), stats(seed=4, scale=2.0)
    for eps in (0.0, 0.3):
        tr = LatentTransport.fit(s, t, eps=eps)
        assert tr.eps == eps
        expected = gaussian_map(s.mean, s.covariance, t.mean, t.covariance, eps)
        torch.testing.assert_close(tr.map.matrix, expected.matrix)
    x = latents(b=1, c=2, h=9, w=10, seed=5).double()
    zs = LatentTransport.fit(None, t, eps=0.3)
    own = LatentTransport(PatchStatistics(3).update(x), t, eps=0.3)
    torch.testing.assert_close(zs.apply(x), own.apply(x), rtol=1e-10, atol=1e-10)


def test_a_stored_map_is_used_as_given_and_zero_shot_has_none():
    s, t = stats(seed=6), stats(seed=7)
    other = gaussian_map(s.mean, s.covariance, t.mean, t.covariance, 0.5)  # not what eps 1e-4 would give
    assert LatentTransport(s, t, fitted_map=other).map is other
    assert LatentTransport(None, t).map is None and LatentTransport(None, t, fitted_map=other).map is None


def test_diagnostics_values_and_report_lines():
    s, t = stats(seed=8), stats(seed=9, scale=1.7)
    tr = LatentTransport(s, t)
    d = tr.diagnostics
    a = tr.map.matrix.numpy()
    assert d["zero_shot"] is False and d["eps"] == tr.eps and d["dim"] == 18
    assert d["target_skipped"] == 0 and d["source_skipped"] == 0
    assert d["map_max_gain"] == pytest.approx(float(np.linalg.eigvalsh(0.5 * (a + a.T)).max()), rel=1e-9)
    assert d["target_condition"] == pytest.approx(float(np.linalg.cond(t.covariance.numpy())), rel=1e-6)
    assert d["source_condition"] == pytest.approx(float(np.linalg.cond(s.covariance.numpy())), rel=1e-6)
    lines = tr.report().split("\n")
    assert len(lines) == 4 + len(d["warnings"])
    assert lines[-1].startswith("PD Blend keeps the added detail within the natural slope") and "1.5/1/0.9×" in lines[-1]
    before, after = d["w2_before"] / math.sqrt(18), d["w2_after"] / math.sqrt(18)
    assert lines[2] == f"W2 (per dim) before → after: {before:.4g} → {after:.2g}"
    zs = LatentTransport(None, t).diagnostics
    assert zs["zero_shot"] is True and "source_count" not in zs


def test_warnings_name_the_set_and_the_threshold():
    t = stats(c=2, p=1, b=1, h=3, w=3)  # 9 samples for D = 2: under 10 per dimension
    assert fit_warnings(t, "natural") == ["only 9 natural samples for D = 2: results will be noisy — "
                                          "add images or lower patch_size"]
    exact = PatchStatistics(1).update(torch.randn(1, 2, 4, 5))  # 20 samples = 10 · D: enough
    assert exact.count == SAMPLES_PER_DIM_WARNING * exact.dim and fit_warnings(exact, "natural") == []
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 2, 2] = float("nan")
    skipping = PatchStatistics(1).update(x)
    assert fit_warnings(skipping, "restored") == ["1 restored patches held NaN/Inf and were skipped"]
    tr = LatentTransport(skipping, t)
    assert tr.diagnostics["warnings"] == fit_warnings(skipping, "restored") + fit_warnings(t, "natural")


def test_apply_reports_progress_fitted_and_zero_shot():
    tr = LatentTransport(stats(seed=10), stats(seed=11))
    x = latents(b=2, c=2, h=9, w=10, seed=12)
    calls = []
    tr.apply(x, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 2)]  # one chunk of two frames
    calls.clear()
    LatentTransport(None, tr.target).apply(x, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]  # one per image


def test_compute_dtype_policy():
    tr = LatentTransport(stats(seed=13), stats(seed=14))
    assert tr._compute_dtype(torch.zeros(1, dtype=torch.float64)) == torch.float64
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert tr._compute_dtype(torch.zeros(1, dtype=dtype)) == torch.float32


def test_prepared_maps_are_cached_and_the_cache_stays_bounded():
    tr = LatentTransport(stats(seed=15), stats(seed=16))
    x = latents(b=1, c=2, h=9, w=10, seed=17)
    sizes = []
    for k in range(18):
        tr.apply(x, strength=k / 10)
        sizes.append(len(tr._device_cache))
    assert sizes == list(range(1, 18)) + [1]  # at most 17 kept, then cleared
    tr.apply(x, strength=0.0)
    assert len(tr._device_cache) == 2


def test_a_single_element_latent_with_nan_or_inf_is_refused():
    tr = LatentTransport(stats(c=1, p=1), stats(c=1, p=1, seed=18))
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(TransportInputError, match="^latents contain NaN or Inf"):
            tr.apply(torch.full((1, 1, 1, 1), value))


def test_one_positive_inf_among_finite_values_is_refused():
    tr = LatentTransport(stats(), stats(seed=19))
    for value in (float("inf"), -float("inf")):
        x = latents(b=1, c=2, h=9, w=10, seed=20)
        x[0, 1, 4, 4] = value
        with pytest.raises(TransportInputError, match="^latents contain NaN or Inf"):
            tr.apply(x)


def test_channel_message_counts_the_channels():
    tr = LatentTransport(stats(), stats(seed=21))
    with pytest.raises(TransportInputError, match=r"^this transport was fitted on 2-channel latents but got 5 "
                                                  r"channels; use the VAE"):
        tr.apply(torch.zeros(1, 5, 3, 7))
    with pytest.raises(TransportInputError, match=r"^latents is empty \(shape \(1, 2, 0, 4\)\)"):
        tr.apply(torch.zeros(1, 2, 0, 4))


def test_float32_overflow_falls_back_to_float64_with_mask_and_zero_shot_video():
    """Natural statistics beyond float32's range: a float32 apply overflows and is redone in float64."""
    huge = PatchStatistics(3).update(latents(b=2, c=2, h=9, w=10, seed=24).double() * 1e40)
    fitted, zero_shot = LatentTransport(stats(seed=23), huge), LatentTransport(None, huge)
    x = latents(b=1, c=2, h=9, w=10, seed=25)
    mask = torch.zeros(1, 9, 10)
    mask[:, :4] = 1.0
    f32 = torch.finfo(torch.float32)
    video = latents(b=3, c=2, h=9, w=10, seed=26).permute(1, 0, 2, 3)[None]  # [1, C, T=3, H, W]
    for tr, z, m in ((fitted, x, mask), (zero_shot, x, mask), (zero_shot, video, None)):
        assert not bool(torch.isfinite(tr.apply(z.double(), mask=m).float()).all())  # float32 cannot hold it
        out = tr.apply(z, mask=m)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
        reference = tr.apply(z.double(), mask=m).clamp(f32.min, f32.max).float()
        torch.testing.assert_close(out, reference, rtol=1e-6, atol=0)
        if m is not None:
            assert torch.equal(out[:, :, 4:], z[:, :, 4:])  # the mask holds in the fallback too


def per_channel_transport(source_std, target_std, source_mean=0.0, target_mean=0.0, seed=40, target_cov=None):
    """p = 1 transport between Gaussian channels with exactly these statistics (eps 0): independent channels give
    A = diag(target_std / source_std); ``target_cov`` replaces diag(target_std²)."""
    g = torch.Generator().manual_seed(seed)
    c = len(source_std)
    src = torch.randn(4, c, 16, 16, generator=g, dtype=torch.float64)
    tgt = torch.randn(4, c, 16, 16, generator=g, dtype=torch.float64)

    def shaped(x, root, mean):  # exactly zero-mean, white channels, then coloured by ``root``
        x = x - x.mean(dim=(0, 2, 3), keepdim=True)
        flat = x.permute(1, 0, 2, 3).reshape(c, -1)
        white = torch.linalg.cholesky(flat @ flat.T / (flat.shape[1] - 1))
        flat = root @ torch.linalg.solve_triangular(white, flat, upper=False)
        return (flat + mean).reshape(c, 4, 16, 16).permute(1, 0, 2, 3)

    target_root = (torch.diag(torch.tensor(target_std, dtype=torch.float64)) if target_cov is None
                   else torch.linalg.cholesky(torch.tensor(target_cov, dtype=torch.float64)))
    return LatentTransport(
        PatchStatistics(1).update(shaped(src, torch.diag(torch.tensor(source_std, dtype=torch.float64)), source_mean)),
        PatchStatistics(1).update(shaped(tgt, target_root, target_mean)), eps=0.0)


def test_float32_apply_keeps_precision_with_a_large_mean_and_a_flat_source():
    """Gain 1000 on latents whose mean is 1000: the shift the kernel subtracts is the one the bias assumes."""
    tr = per_channel_transport([1e-3, 1e-3], [1.0, 1.0], source_mean=1000.0 + 1 / 3, target_mean=0.0)
    torch.testing.assert_close(tr.map.matrix, 1000.0 * torch.eye(2, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    z = (1000.0 + 1 / 3 + 1e-3 * latents(b=1, c=2, h=6, w=7, seed=41).double()).float()
    reference = tr.apply(z.double())  # the same values in float64 on the CPU: exact
    torch.testing.assert_close(tr.apply(z).double(), reference, rtol=0, atol=2e-3)
    zero_shot = LatentTransport(None, tr.target, eps=0.0)
    torch.testing.assert_close(zero_shot.apply(z).double(), zero_shot.apply(z.double()), rtol=0, atol=2e-3)


def test_a_finite_float32_apply_runs_the_map_once(monkeypatch):
    import deepot_core.transport as transport_module
    calls = []
    real = transport_module.apply_patch_map
    monkeypatch.setattr(transport_module, "apply_patch_map",
                        lambda z, *a, **k: calls.append(z.dtype) or real(z, *a, **k))
    tr = LatentTransport(stats(seed=42), stats(seed=43, scale=2.0))
    tr.apply(latents(b=2, c=2, h=9, w=10, seed=44))
    assert calls == [torch.float32]  # no float64 redo when nothing overflowed


def test_the_float64_redo_blends_a_soft_mask_like_the_fast_path():
    """One pixel overflows float32 (gain 1.4e6 on 1e34), so all is redone in float64; a 0.5 mask still means
    z + 0.5·(T(z) − z) everywhere, and the overflowed value saturates at float32's largest."""
    tr = per_channel_transport([1.0, 1.0], [1e10, 1e-6])
    z = torch.full((1, 2, 4, 5), 100.0)
    z[0, 0, 2, 3] = 1e34
    out = tr.apply(z, mask=torch.full((1, 4, 5), 0.5))
    expected = z.double() + 0.5 * (tr.apply(z.double()) - z.double())
    assert out[0, 0, 2, 3] == torch.finfo(torch.float32).max
    torch.testing.assert_close(out[0, 1].double(), expected[0, 1], rtol=1e-6, atol=0)  # ≈ 50, not 150
    assert abs(float(out[0, 1, 0, 0]) - 50.0) < 1e-3


def test_float64_overflow_saturates_with_the_right_sign():
    tr = per_channel_transport([1.0], [1e10])
    z = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    z[0, 0, 0, 0], z[0, 0, 2, 2] = 1e305, -1e305  # gain 1e6 (the map caps it) overflows float64
    out = tr.apply(z)
    f64 = torch.finfo(torch.float64)
    assert out[0, 0, 0, 0] == f64.max and out[0, 0, 2, 2] == f64.min and bool(torch.isfinite(out).all())


def test_the_report_says_what_pd_blend_does_and_why():
    line = LatentTransport(stats(seed=45), stats(seed=46)).report().split("\n")[-1]
    assert line == ("PD Blend keeps the added detail within the natural slope of photos (each of the finest pyramid "
                    "levels ≤ 1.5/1/0.9× the next coarser, the finest ≥ 1.2×, with at most 2× the decoded detail), "
                    "measured on each image: decoders that over- or under-render transported latents neither "
                    "overshoot nor stop short, so perception 1 is the most natural point")


def test_infinity_minus_infinity_in_the_float64_redo_becomes_zero():
    """Correlated channels mix +1e305 and −1e305: both products overflow, their sum is ∞ − ∞ = NaN, and a
    transport never hands back a NaN: those values become 0 (finite in, finite out)."""
    tr = per_channel_transport([1.0, 1.0], [1e6, 1e6], target_cov=[[1e12, 0.9e12], [0.9e12, 1e12]])
    z = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    z[0, 0, 0, 0], z[0, 1, 0, 0] = 1e305, -1e305
    out = tr.apply(z)
    assert bool(torch.isfinite(out).all())
    assert out[0, 0, 0, 0] == 0.0 and out[0, 1, 0, 0] == 0.0


def test_the_fused_kernel_is_built_once_per_strength_and_handed_to_the_convolution(monkeypatch):
    import deepot_core.patch_apply as patch_apply
    import deepot_core.transport as transport_module

    built = []
    real = patch_apply.fused_kernel

    def counting(*args):
        built.append(args[2:])
        return real(*args)
    monkeypatch.setattr(transport_module, "fused_kernel", counting)
    monkeypatch.setattr(patch_apply, "fused_kernel", counting)
    tr = LatentTransport(stats(seed=47), stats(seed=48, scale=2.0))
    z = latents(b=1, c=2, h=9, w=10, seed=49)
    first = tr.apply(z, strength=0.5)
    assert torch.equal(tr.apply(z, strength=0.5), first) and built == [(2, 3)]  # cached: not rebuilt
    tr.apply(z, strength=1.0)
    assert built == [(2, 3), (2, 3)]  # a new strength: built once more, never inside apply_patch_map


def test_an_eigenvalue_at_the_floor_is_not_counted_as_floored():
    """eps = 1 puts the floor at the mean eigenvalue: one channel's only eigenvalue sits on it, unchanged."""
    tr = LatentTransport(PatchStatistics(1).update(latents(b=1, c=1, h=6, w=6, seed=64)),
                         PatchStatistics(1).update(latents(b=1, c=1, h=6, w=6, seed=65)), eps=1.0)
    assert tr.diagnostics["source_eigenvalues_floored"] == 0
    two = LatentTransport(PatchStatistics(1).update(latents(b=1, c=2, h=6, w=6, seed=66)),
                          PatchStatistics(1).update(latents(b=1, c=2, h=6, w=6, seed=67)), eps=1.0)
    assert two.diagnostics["source_eigenvalues_floored"] == 1  # the smaller of two unequal ones is below the mean


def test_repr_names_the_kind_the_counts_and_eps():
    s, t = stats(seed=71), stats(seed=72)
    assert repr(LatentTransport(s, t, eps=0.001)) == (
        f"LatentTransport(channels=2, patch_size=3, source n={s.count:.0f}, target n={t.count:.0f}, eps=0.001)")
    assert repr(LatentTransport(None, t)) == (
        f"LatentTransport(channels=2, patch_size=3, zero-shot, target n={t.count:.0f}, eps=0.0001)")

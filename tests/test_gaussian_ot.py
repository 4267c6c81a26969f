"""The Gaussian W2 map: closed-form properties, checked on matrices and on real unfolded patches."""
import math

import pytest
import torch
import torch.nn.functional as F

from deepot_core import LatentTransport, PatchStatistics, gaussian_w2, transport_matrix
from deepot_core.gaussian_ot import gaussian_map

from test_statistics import latents


def random_spd(d, seed, cond=50.0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    values = torch.logspace(0, math.log10(cond), d, dtype=torch.float64)
    return (q * values) @ q.T


def test_map_pushes_covariance_exactly():
    s, t = random_spd(12, 0), random_spd(12, 1, cond=300)
    a = transport_matrix(s, t, eps=0.0)
    torch.testing.assert_close(a @ s @ a, t, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(a, a.T, rtol=0, atol=0)
    assert float(torch.linalg.eigvalsh(a)[0]) > 0


@pytest.mark.parametrize("p", [1, 3])
def test_map_on_unfolded_patches_reproduces_target(p):
    """A applied to the source's own patches gives exactly the target's empirical mean and covariance."""
    src, tgt = latents(b=3, c=2, h=14, w=15, seed=1), latents(b=3, c=2, h=12, w=16, seed=2) * 1.7 - 0.4
    s, t = PatchStatistics(p).update(src), PatchStatistics(p).update(tgt)
    tr = LatentTransport.fit(s, t, eps=0.0)
    cols = torch.cat([F.unfold(src[i:i + 1].double(), p)[0] for i in range(3)], dim=1)
    mapped = tr.map.matrix @ (cols - tr.map.mean_source[:, None]) + tr.map.mean_target[:, None]
    torch.testing.assert_close(mapped.mean(1), t.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cov(mapped), t.covariance, rtol=1e-8, atol=1e-10)
    assert tr.diagnostics["w2_after"] < 1e-6 * tr.diagnostics["w2_before"]


def test_p1_applied_output_pixels_have_target_statistics():
    src, tgt = latents(b=2, c=4, seed=3).double(), (latents(b=2, c=4, seed=4) * 0.6 + 2).double()
    tr = LatentTransport.fit(src, tgt, patch_size=1, eps=0.0)
    out = tr.apply(src)
    pixels = out.permute(1, 0, 2, 3).reshape(4, -1)
    target_pixels = tgt.permute(1, 0, 2, 3).reshape(4, -1)
    torch.testing.assert_close(pixels.mean(1), target_pixels.mean(1), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cov(pixels), torch.cov(target_pixels), rtol=1e-9, atol=1e-10)


def test_identity_when_source_equals_target():
    x = latents(b=2, c=3, seed=5).double()
    s = PatchStatistics(3).update(x)
    tr = LatentTransport.fit(s, s.copy())
    torch.testing.assert_close(tr.map.matrix, torch.eye(27, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(tr.apply(x), x, rtol=0, atol=1e-9)
    assert tr.diagnostics["w2_before"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("p", [3, 5])
def test_pure_mean_shift_moves_every_pixel(p):
    x = latents(b=2, c=3, h=12, w=9, seed=6).double()
    shift = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)[:, None, None]
    tr = LatentTransport.fit(x, x + shift, patch_size=p)
    torch.testing.assert_close(tr.apply(x), x + shift, rtol=0, atol=1e-8)  # borders and corners included


def test_a_symmetric_psd_even_for_singular_source():
    x = latents(b=1, c=3, seed=7).double()
    x[:, 1] = 0.25  # a channel that never varies
    s = PatchStatistics(3).update(x)
    t = PatchStatistics(3).update(latents(b=1, c=3, seed=8).double())
    tr = LatentTransport.fit(s, t)
    a = tr.map.matrix
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, a.T, rtol=0, atol=0)
    assert float(torch.linalg.eigvalsh(a)[0]) > -1e-9
    assert tr.diagnostics["source_eigenvalues_floored"] >= 9
    assert torch.isfinite(tr.apply(x)).all()


def test_w2_against_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    s, t = random_spd(10, 9), random_spd(10, 10, cond=1e3)
    ms, mt = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    root_s = scipy_linalg.sqrtm(s.numpy()).real
    cross = scipy_linalg.sqrtm(root_s @ t.numpy() @ root_s).real
    expected = math.sqrt(float(((ms - mt) ** 2).sum()) + float(s.trace() + t.trace()) - 2 * float(cross.trace()))
    assert gaussian_w2(ms, s, mt, t) == pytest.approx(expected, rel=1e-9)
    inv_root = torch.linalg.inv(torch.from_numpy(root_s))
    a_oracle = inv_root @ torch.from_numpy(cross) @ inv_root
    torch.testing.assert_close(transport_matrix(s, t, eps=0.0), a_oracle, rtol=1e-7, atol=1e-9)


def test_w2_and_map_against_pot():
    ot_gaussian = pytest.importorskip("ot.gaussian")
    import numpy as np

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 1.0
    xt = rng.normal(size=(5000, 6)) @ rng.normal(size=(6, 6)) - 2.0
    ms, mt = xs.mean(0), xt.mean(0)
    cs, ct = np.cov(xs.T), np.cov(xt.T)
    expected = float(ot_gaussian.bures_wasserstein_distance(ms, mt, cs, ct))
    got = gaussian_w2(torch.from_numpy(ms), torch.from_numpy(cs), torch.from_numpy(mt), torch.from_numpy(ct))
    assert got == pytest.approx(expected, rel=1e-7)
    a_pot, b_pot = ot_gaussian.bures_wasserstein_mapping(ms, mt, cs, ct)
    gm = gaussian_map(torch.from_numpy(ms), torch.from_numpy(cs), torch.from_numpy(mt), torch.from_numpy(ct), eps=0)
    np.testing.assert_allclose(gm.matrix.numpy(), a_pot, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gm.bias.numpy(), np.ravel(b_pot), rtol=1e-6, atol=1e-8)


def test_scale_invariance_and_no_overflow():
    """A does not change when both covariances scale; W2 scales by the root — even at 1e250."""
    s, t = random_spd(8, 11), random_spd(8, 12)
    a = transport_matrix(s, t)
    for k in (1e-200, 1e250):
        torch.testing.assert_close(transport_matrix(s * k, t * k), a, rtol=1e-9, atol=1e-12)
    m = torch.zeros(8, dtype=torch.float64)
    assert gaussian_w2(m, s * 1e250, m, t * 1e250) == pytest.approx(gaussian_w2(m, s, m, t) * 1e125, rel=1e-9)


def test_few_samples_give_finite_map_and_warning():
    s = PatchStatistics(5).update(latents(b=1, c=4, h=6, w=6, seed=13))  # 4 samples for D = 100
    t = PatchStatistics(5).update(latents(b=4, c=4, h=20, w=20, seed=14))
    tr = LatentTransport.fit(s, t)
    assert torch.isfinite(tr.map.matrix).all()
    assert any("noisy" in w for w in tr.diagnostics["warnings"])
    assert "warning" in tr.report()

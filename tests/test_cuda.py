"""The same guarantees on a GPU: statistics reduced on the device, apply in float32 there, dtypes kept.

Skipped without CUDA (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
"""
import pytest
import torch

from deepot_core import LatentTransport, PatchStatistics
from deepot_core.patch_apply import apply_unfold_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")


def _pair(channels=16, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(3, channels, size, size + 3, generator=g) * 0.7 + 0.2
    tgt = torch.randn(3, channels, size, size + 3, generator=g) * 1.3 - 0.4
    return src, tgt


def test_statistics_on_gpu_equal_cpu():
    src, _ = _pair()
    cpu = PatchStatistics(3).update(src.double())
    gpu = PatchStatistics(3).update(src.to(CUDA))
    assert gpu.count == cpu.count
    torch.testing.assert_close(gpu.mean, cpu.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(gpu.covariance, cpu.covariance, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("patch_size", [1, 3, 5])
def test_apply_on_gpu_matches_float64_reference(dtype, patch_size):
    src, tgt = _pair()
    transport = LatentTransport.fit(src, tgt, patch_size=patch_size)
    x = src[:2].to(CUDA, dtype)
    out = transport.apply(x)
    assert out.device.type == "cuda" and out.dtype == dtype and out.shape == x.shape
    ref = apply_unfold_reference(x.double().cpu(), transport.map.matrix, transport.map.bias, patch_size)
    # cuDNN convolutions use TF32 (10-bit mantissa) unless the user turned it off: ~1e-3 relative.
    fp32_tol = 3e-3 if torch.backends.cudnn.allow_tf32 else 1e-4
    tol = {torch.float32: fp32_tol, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    assert (out.double().cpu() - ref).abs().max().item() < tol * max(1.0, ref.abs().max().item())


def test_zero_shot_and_video_on_gpu():
    src, tgt = _pair(channels=4)
    transport = LatentTransport.fit(None, tgt, patch_size=3)
    video = src[:2, :, None].expand(-1, -1, 3, -1, -1).contiguous().to(CUDA)
    out = transport.apply(video)
    assert out.shape == video.shape and torch.isfinite(out).all()
    # frames of a video share one source estimate, the same as the frame alone here (identical frames)
    torch.testing.assert_close(out[:, :, 0], transport.apply(video[:, :, 0].contiguous()), rtol=3e-3, atol=3e-3)


def test_fp16_near_limit_stays_finite_on_gpu():
    src, tgt = _pair(channels=4)
    transport = LatentTransport.fit(src, tgt * 50, patch_size=3)
    x = (src[:1] * 3000).clamp(-60000, 60000).to(CUDA, torch.float16)
    out = transport.apply(x)
    assert torch.isfinite(out).all()


def test_apply_node_computes_on_gpu_and_returns_on_intermediate_device(monkeypatch):
    from node_harness import load_pack, node_class

    bridge = load_pack().nodes.comfy_bridge
    monkeypatch.setattr(bridge, "torch_device", lambda: CUDA)
    src, tgt = _pair(channels=4)
    fit = node_class("DeepOT_FitLatentTransport")
    transport, _ = fit.execute({"samples": tgt}, 3, 1e-4, restored={"samples": src}).args
    seen = {}
    original = type(transport).apply

    def spy(self, latents, *args, **kwargs):
        seen["device"] = latents.device.type
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(type(transport), "apply", spy)
    (out,) = node_class("DeepOT_ApplyLatentTransport").execute({"samples": src[:1]}, transport, 1.0).args
    assert seen["device"] == "cuda" and out["samples"].device.type == "cpu"


@pytest.mark.parametrize("zoom", [1.0, 1.02])
def test_video_mode_blend_on_gpu_matches_cpu(zoom):
    """Video mode's motion, exact shifts and 2x-upsampled warps run on the frames' device, as on the CPU."""
    from test_video import scene, window
    from deepot_core.blend import pd_sweep

    photo = torch.nn.functional.avg_pool2d(scene(2, 256).permute(0, 3, 1, 2), 5, 1, 2).permute(0, 2, 3, 1)
    restored = torch.cat([window(photo, 1.5 * t, 0.5 * t, zoom=zoom ** t) for t in range(4)])
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(restored.shape, generator=g)
    transported = (restored + 0.05 * noise).clamp(0, 1)
    cpu = pd_sweep(restored, transported, [1.0], reconstructed=restored, video=True)
    gpu = pd_sweep(restored.to(CUDA), transported.to(CUDA), [1.0], reconstructed=restored.to(CUDA), video=True)
    assert gpu.device.type == "cuda" and torch.isfinite(gpu).all()
    assert float((gpu.cpu() - cpu).abs().mean()) < 1e-3

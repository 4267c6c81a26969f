"""Long-session behaviour: flat memory over many calls, chunked big batches, cancel leaves nothing half-done."""
import gc

import pytest
import torch

import deepot_core.patch_apply as patch_apply
from deepot_core import LatentTransport, PatchStatistics
from deepot_core.patch_apply import apply_patch_map

from test_statistics import latents

PAGE = 4096


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_many_fits_and_applies_do_not_grow_memory():
    x = latents(b=2, c=4, h=16, w=16, seed=0)
    target = PatchStatistics(3).update(latents(b=2, c=4, h=16, w=16, seed=1) * 2)

    def cycle(i):
        tr = LatentTransport.fit(PatchStatistics(3).update(x + 0.001 * i), target)
        tr.apply(x, strength=0.5 + (i % 7) * 0.1)
        LatentTransport.fit(None, target).apply(x)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a busy CI box
    try:
        for i in range(20):  # warm up allocator and caches
            cycle(i)
        gc.collect()
        before = rss_bytes()
        for i in range(200):
            cycle(i)
        gc.collect()
        grown = rss_bytes() - before
    finally:
        torch.set_num_threads(threads)
    assert grown < 32 * 2 ** 20, f"RSS grew by {grown / 2 ** 20:.1f} MiB over 200 fit+apply cycles"


def test_batch_larger_than_chunk_is_chunked(monkeypatch):
    x = torch.randn(7, 3, 13, 11, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    matrix = torch.eye(27, dtype=torch.float64) + 0.05 * torch.randn(27, 27, generator=g, dtype=torch.float64)
    bias = torch.randn(27, generator=g, dtype=torch.float64)
    whole = apply_patch_map(x, matrix, bias, 3)
    calls = []
    monkeypatch.setattr(patch_apply, "APPLY_CHUNK_ELEMENTS", 2 * 3 * 13 * 11)  # two frames per chunk
    chunked = apply_patch_map(x, matrix, bias, 3, progress=lambda done, total: calls.append(done))
    assert calls == [2, 4, 6, 7]
    # Same arithmetic per frame; BLAS may block a batch of 2 differently from one of 7 (seen on AMD EPYC: 4e-16).
    torch.testing.assert_close(chunked, whole, rtol=1e-13, atol=1e-13)


def test_out_of_memory_retries_smaller(monkeypatch):
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    matrix, bias = torch.eye(18, dtype=torch.float64), torch.zeros(18, dtype=torch.float64)
    real = patch_apply._apply_chunk
    sizes = []

    def picky(z, *args):
        sizes.append(z.shape[0])
        if z.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(z, *args)

    monkeypatch.setattr(patch_apply, "_apply_chunk", picky)
    out = apply_patch_map(x, matrix, bias, 3)
    torch.testing.assert_close(out, x)
    assert sizes[0] == 4 and sizes[-4:] == [1, 1, 1, 1]


class Cancelled(Exception):
    pass


def test_cancel_mid_update_leaves_statistics_unchanged():
    stats = PatchStatistics(3).update(latents(b=2, c=4, seed=2))
    before = (stats.count, stats.mean, stats.covariance, stats.skipped, stats.channels)
    bad = latents(b=4, c=4, seed=3)
    bad[1, 0, 3, 3] = float("nan")

    def cancel_at_three(done, total):
        if done == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        stats.update(bad, progress=cancel_at_three)
    assert stats.count == before[0] and stats.skipped == before[3] and stats.channels == before[4]
    assert torch.equal(stats.mean, before[1]) and torch.equal(stats.covariance, before[2])
    fresh = PatchStatistics(3)
    with pytest.raises(Cancelled):
        fresh.update(bad, progress=cancel_at_three)
    assert fresh.channels is None and fresh.count == 0 and fresh.skipped == 0
    fresh.update(latents(b=1, c=16, seed=4))  # a cancelled pass must not pin the channel count
    assert fresh.channels == 16


def test_out_of_memory_type_resolves_on_torch_before_2_5():
    """torch < 2.5 has only torch.cuda.OutOfMemoryError (since 1.13); the package admits torch ≥ 2.1."""
    from types import SimpleNamespace

    class CudaOOM(RuntimeError):
        pass

    old_torch = SimpleNamespace(cuda=SimpleNamespace(OutOfMemoryError=CudaOOM))
    assert patch_apply.out_of_memory_error(old_torch) is CudaOOM
    assert patch_apply.out_of_memory_error(torch) is torch.OutOfMemoryError  # this torch: the unified one


def test_other_errors_in_a_chunk_pass_through_unchanged_without_torch_out_of_memory_error(monkeypatch):
    """On old torch, ``except torch.OutOfMemoryError`` made every error inside a chunk an AttributeError."""
    class CudaOOM(RuntimeError):
        pass

    monkeypatch.delattr(torch, "OutOfMemoryError")  # as on torch 2.1–2.4
    monkeypatch.setattr(patch_apply, "OUT_OF_MEMORY", CudaOOM, raising=False)
    monkeypatch.setattr(patch_apply, "APPLY_CHUNK_ELEMENTS", 4 * 2 * 9 * 9)  # four frames per chunk
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    matrix, bias = torch.eye(18, dtype=torch.float64), torch.zeros(18, dtype=torch.float64)
    real = patch_apply._apply_chunk
    sizes = []

    def fails(z, *args):
        sizes.append(z.shape[0])
        if z.shape[0] > 2:
            raise CudaOOM("simulated")  # the old torch's out-of-memory error: retried smaller
        if sizes.count(2) > 1:
            raise ValueError("a bug, not memory")
        return real(z, *args)

    monkeypatch.setattr(patch_apply, "_apply_chunk", fails)
    with pytest.raises(ValueError, match="a bug, not memory"):
        apply_patch_map(x, matrix, bias, 3)
    assert sizes == [4, 2, 2]

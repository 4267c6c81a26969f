"""PatchStatistics in detail: masks with NaNs and video, strips, tiny weights, merging, state tensors, all_reduce.

Each assertion here was missing until mutation testing (benchmarks/mutation.py)
showed a deliberate bug passing every other test. ``all_reduce`` is exercised
in-process with two simulated ranks (threads sharing a fake process group), so
that it runs where the mutation tool can see it; tests/test_distributed.py runs
it over real gloo processes.
"""
import threading

import pytest
import torch

import deepot_core.statistics as statistics
from deepot_core import PatchStatistics, TransportInputError

from test_statistics import latents, oracle_weighted


def interior(mask, p):
    r = p // 2
    return mask[:, r:mask.shape[1] - r, r:mask.shape[2] - r].reshape(mask.shape[0], -1)


@pytest.mark.parametrize("p", [5, 7])
def test_large_patches_against_the_oracle(p):
    x = latents(b=2, c=2, h=13, w=11, seed=p)
    s = PatchStatistics(p).update(x)
    n, mean, cov = oracle_weighted(x, p, torch.ones(2, (13 - p + 1) * (11 - p + 1)))
    assert s.count == pytest.approx(float(n))
    torch.testing.assert_close(s.mean, mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.covariance, cov, rtol=1e-10, atol=1e-12)


def test_many_small_strips_merge_exactly(monkeypatch):
    x = latents(b=2, c=3, h=17, w=9, seed=1)
    whole = PatchStatistics(3).update(x)
    monkeypatch.setattr(statistics, "STATS_STRIP_ELEMENTS", 27 * 7 * 2)  # two rows of centres per strip
    mask = torch.ones(2, 17, 9)
    mask[:, :6] = 0.0  # the first strips of every frame weigh nothing; later ones must still count
    strips = PatchStatistics(3).update(x, mask=mask)
    n, mean, cov = oracle_weighted(x, 3, interior(mask, 3))
    assert strips.count == pytest.approx(float(n))
    torch.testing.assert_close(strips.covariance, cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(PatchStatistics(3).update(x).covariance, whole.covariance)


def test_nan_patches_are_skipped_per_frame_and_masks_still_weigh(monkeypatch):
    x = latents(b=2, c=2, h=10, w=9, seed=2)
    x[1, 0, 5, 4] = float("nan")  # touches the 9 interior patches around it, in frame 1 only
    x[0, 1, 1, 1] = float("inf")  # near the corner of frame 0: the 4 interior patches centred at (1..2, 1..2)
    mask = torch.rand(2, 10, 9, generator=torch.Generator().manual_seed(3))
    s = PatchStatistics(3).update(x, mask=mask)
    assert s.skipped == 9 + 4
    keep = torch.ones(2, 8, 7)  # interior centres (y − 1, x − 1)
    keep[1, 3:6, 2:5] = 0.0
    keep[0, 0:2, 0:2] = 0.0
    clean = torch.where(torch.isfinite(x), x, torch.zeros(()))
    n, mean, cov = oracle_weighted(clean, 3, interior(mask, 3) * keep.reshape(2, -1))
    assert s.count == pytest.approx(float(n))
    torch.testing.assert_close(s.covariance, cov, rtol=1e-9, atol=1e-12)
    s.update(x)  # a second pass skips the same patches again: skipped accumulates
    assert s.skipped == 26
    monkeypatch.setattr(statistics, "STATS_STRIP_ELEMENTS", 18 * 7)  # one row per strip: counted across strips
    assert PatchStatistics(3).update(x).skipped == 13


def test_video_masks_apply_per_video():
    video = latents(b=6, c=2, h=8, w=9, seed=4).reshape(2, 3, 2, 8, 9).permute(0, 2, 1, 3, 4)  # [B=2,C,T=3,H,W]
    frames = video.permute(0, 2, 1, 3, 4).reshape(6, 2, 8, 9)
    mask = torch.rand(2, 8, 9, generator=torch.Generator().manual_seed(5))  # one per video
    s = PatchStatistics(3).update(video, mask=mask)
    expected = PatchStatistics(3).update(frames, mask=mask.repeat_interleave(3, dim=0))
    assert s.count == pytest.approx(expected.count)
    torch.testing.assert_close(s.covariance, expected.covariance, rtol=1e-12, atol=1e-14)


def test_small_total_weights_count():
    x = latents(b=1, c=2, h=3, w=3, seed=6)  # one interior patch at p = 3
    assert PatchStatistics(3).update(x).count == 1.0
    mask = torch.zeros(1, 3, 3)
    mask[0, 1, 1] = 0.5
    half = PatchStatistics(3).update(x, mask=mask)
    assert half.count == 0.5  # kept, although under one sample
    one = PatchStatistics(3).update(latents(b=1, c=2, h=3, w=3, seed=7))
    merged = PatchStatistics(3).update(latents(b=2, c=2, seed=8)).merge(one)
    assert merged.count == PatchStatistics(3).update(latents(b=2, c=2, seed=8)).count + 1


def test_an_all_zero_mask_changes_nothing():
    x = latents(b=2, c=2, seed=9)
    s = PatchStatistics(3).update(x)
    before = (s.count, s.mean, s.covariance)
    s.update(latents(b=1, c=2, seed=10), mask=torch.zeros(1, 11, 13))
    assert s.count == before[0] and torch.equal(s.mean, before[1]) and torch.equal(s.covariance, before[2])
    mixed = PatchStatistics(3).update(torch.cat([latents(b=1, c=2, seed=11), x[:1]]),
                                      mask=torch.cat([torch.zeros(1, 11, 13), torch.ones(1, 11, 13)]))
    torch.testing.assert_close(mixed.covariance, PatchStatistics(3).update(x[:1]).covariance)


def test_progress_counts_frames():
    calls = []
    PatchStatistics(3).update(latents(b=3, c=2, seed=12), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_merging_copies_and_accumulates():
    empty = PatchStatistics(3)
    x = latents(b=1, c=2, seed=13)
    x[0, 0, 4, 4] = float("nan")
    a = PatchStatistics(3).update(x)
    b = PatchStatistics(3).update(x)
    assert empty.copy().channels is None and empty.merge(a).count == a.count
    assert a.merge(b).skipped == a.skipped + b.skipped == 18
    with pytest.raises(TypeError, match=r"^can only merge PatchStatistics, got dict\.$"):
        a.merge({})
    with pytest.raises(TransportInputError, match=r"^cannot merge statistics of patch_size 3 and 5; "
                                                  r"fit both with the same patch_size\.$"):
        a.merge(PatchStatistics(5))


def test_state_tensors_of_one_sample_and_float32_state():
    one = PatchStatistics(3).update(latents(b=1, c=2, h=3, w=3, seed=14))
    state = one.state_tensors("t")
    assert state["t.count"].item() == 1.0 and state["t.skipped"].dtype == torch.int64
    as_float32 = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    back = PatchStatistics.from_state_tensors(as_float32, "t", 3, 2)
    assert back._mean.dtype == torch.float64 and back._m2.dtype == torch.float64


def test_refusals_are_exact():
    with pytest.raises(TransportInputError, match=r"^latents is empty \(shape \(0, 2, 5, 5\)\)"):
        PatchStatistics(3).update(torch.zeros(0, 2, 5, 5))
    with pytest.raises(TransportInputError, match=r"^latents of 4×6 are smaller than patch_size 5; use a smaller "
                                                  r"patch_size or larger images \(at least 40×40 pixels for an /8 "
                                                  r"VAE\)\.$"):
        PatchStatistics(5).update(torch.zeros(1, 2, 4, 6))
    with pytest.raises(TransportInputError, match=r"^these latents are too large to square in float64 \(\|values\| "
                                                  r"beyond about 1e150\); they are not VAE latents — check the node "
                                                  r"that produced them\.$"):
        PatchStatistics(1).update(latents(b=1, c=2, seed=15).double() * 1e200)


# ------------------------------------------------------------------ all_reduce, two simulated ranks
class FakeGroup:
    """A process group of ``world`` threads: all_gather hands every rank every rank's tensor."""

    def __init__(self, world=2, backend="gloo"):
        self.world, self.backend = world, backend
        self.barrier = threading.Barrier(world)
        self.slots = [None] * world
        self.ranks = {}

    def all_gather(self, out, tensor, group=None):
        assert group is self, "all_gather must be given the caller's group"
        rank = self.ranks[threading.get_ident()]
        self.slots[rank] = tensor.clone()
        self.barrier.wait()
        for i, t in enumerate(self.slots):
            out[i].copy_(t)
        self.barrier.wait()


@pytest.fixture
def fake_dist(monkeypatch):
    import torch.distributed as dist

    group = FakeGroup()

    def need(g):
        assert g is group, "the caller's group must be passed on"
        return g

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda g=None: need(g).backend)
    monkeypatch.setattr(dist, "get_world_size", lambda g=None: need(g).world)
    monkeypatch.setattr(dist, "all_gather", group.all_gather)
    return group


def run_ranks(group, per_rank):
    """Call ``per_rank[i]()`` on rank i, all at once; results (or exceptions) in rank order."""
    results = [None] * len(per_rank)

    def worker(i):
        group.ranks[threading.get_ident()] = i
        try:
            results[i] = per_rank[i]()
        except TransportInputError as exc:  # every rank refuses together: the others are not stuck
            results[i] = exc
        except BaseException as exc:  # noqa: BLE001 — handed back to the test; free the other ranks
            results[i] = exc
            group.barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(per_rank))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_all_reduce_pools_every_rank(fake_dist):
    x0, x1 = latents(b=1, c=3, h=10, w=9, seed=16), latents(b=2, c=3, h=11, w=9, seed=17) * 2
    x1[1, 2, 5, 5] = float("nan")
    ranks = [PatchStatistics(3).update(x0), PatchStatistics(3).update(x1)]
    results = run_ranks(fake_dist, [lambda: ranks[0].all_reduce(fake_dist), lambda: ranks[1].all_reduce(fake_dist)])
    pooled = PatchStatistics(3).update(x0).update(x1)
    for rank, result in zip(ranks, results):
        assert result is rank  # in place
        assert rank.count == pooled.count and rank.skipped == pooled.skipped == 9 and rank.channels == 3
        torch.testing.assert_close(rank.mean, pooled.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(rank.covariance, pooled.covariance, rtol=1e-10, atol=1e-12)


def test_all_reduce_gives_an_empty_rank_the_pool_and_keeps_all_empty_ranks_empty(fake_dist):
    x = latents(b=2, c=2, seed=18)
    ranks = [PatchStatistics(3), PatchStatistics(3).update(x)]
    run_ranks(fake_dist, [lambda: ranks[0].all_reduce(fake_dist), lambda: ranks[1].all_reduce(fake_dist)])
    assert ranks[0].channels == 2 and ranks[0].count == ranks[1].count == PatchStatistics(3).update(x).count
    torch.testing.assert_close(ranks[0].covariance, PatchStatistics(3).update(x).covariance)
    fake_dist.barrier.reset()
    empty = [PatchStatistics(3), PatchStatistics(3)]
    results = run_ranks(fake_dist, [lambda: empty[0].all_reduce(fake_dist), lambda: empty[1].all_reduce(fake_dist)])
    assert results == empty and all(e.channels is None and e.count == 0 for e in empty)


def test_all_reduce_refuses_ranks_that_disagree(fake_dist):
    ranks = [PatchStatistics(3).update(latents(b=1, c=2, seed=19)), PatchStatistics(3).update(latents(b=1, c=4))]
    results = run_ranks(fake_dist, [lambda: ranks[0].all_reduce(fake_dist), lambda: ranks[1].all_reduce(fake_dist)])
    for result in results:
        assert isinstance(result, TransportInputError)
        assert str(result) == ("ranks disagree on patch_size [3] or channels [2, 4]; "
                               "use the same VAE and patch_size on every rank.")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CUDA path is taken where there is no CUDA")
def test_all_reduce_on_nccl_gathers_on_the_gpu(fake_dist):
    fake_dist.backend = "nccl"
    stats = PatchStatistics(3).update(latents(b=1, c=2, seed=20))
    with pytest.raises((RuntimeError, AssertionError), match="(?i)cuda|nvidia"):
        stats.all_reduce(fake_dist)  # NCCL only moves CUDA tensors: the CPU-only torch cannot make one


def test_all_reduce_refuses_ranks_with_different_patch_sizes(fake_dist):
    x = latents(b=1, c=2, seed=21)
    ranks = [PatchStatistics(3).update(x), PatchStatistics(1).update(x)]
    results = run_ranks(fake_dist, [lambda: ranks[0].all_reduce(fake_dist), lambda: ranks[1].all_reduce(fake_dist)])
    for result in results:
        assert isinstance(result, TransportInputError)
        assert str(result).startswith("ranks disagree on patch_size [1, 3] or channels [2];")


def test_all_reduce_keeps_a_rank_that_holds_one_patch_or_less_than_one_unit_of_weight(fake_dist):
    x0, single = latents(b=1, c=2, seed=22), latents(b=1, c=2, h=3, w=3, seed=23)  # 3×3 latent: one patch
    half = torch.zeros(11, 13)
    half[4, 6] = 0.5  # one patch centre, weight 0.5
    for other, mask in ((single, None), (x0 * 3, half)):
        fake_dist.barrier.reset()
        ranks = [PatchStatistics(3).update(x0), PatchStatistics(3).update(other, mask=mask)]
        assert ranks[1].count in (1.0, 0.5)
        pooled = ranks[0].merge(ranks[1])
        run_ranks(fake_dist, [lambda: ranks[0].all_reduce(fake_dist), lambda: ranks[1].all_reduce(fake_dist)])
        for rank in ranks:
            assert rank.count == pooled.count
            torch.testing.assert_close(rank.mean, pooled.mean, rtol=0, atol=1e-12)
            torch.testing.assert_close(rank.scatter, pooled.scatter, rtol=1e-12, atol=1e-12)


def test_an_image_batch_needs_one_mask_or_one_per_image():
    x = latents(b=4, c=2, seed=24)  # 4 images, not a video: a batch of 2 masks matches nothing
    with pytest.raises(TransportInputError) as caught:
        PatchStatistics(3).update(x, mask=torch.ones(2, 11, 13))
    assert str(caught.value) == "mask has batch 2 but the latents have 4 image(s); pass one mask, or one per image."


def test_feature_dimension_limit_is_exact_and_named():
    assert PatchStatistics(3).update(torch.zeros(1, 455, 3, 3)).dim == 4095  # 455·3² = 4095 ≤ 4096: accepted
    assert PatchStatistics(1).update(torch.zeros(1, 4096, 1, 1)).dim == 4096  # exactly the limit: accepted
    for channels, p, dim in ((456, 3, 4104), (4097, 1, 4097)):
        with pytest.raises(TransportInputError) as caught:
            PatchStatistics(p).update(torch.zeros(1, channels, p, p))
        assert str(caught.value) == (f"{channels} channels × patch_size {p}² gives D = {dim} features, more than "
                                     "4096; use a smaller patch_size.")


def test_a_second_update_with_other_channels_is_refused_and_changes_nothing():
    s = PatchStatistics(3).update(latents(b=1, c=3, seed=25))
    before = s.scatter
    with pytest.raises(TransportInputError) as caught:
        s.update(latents(b=1, c=4, seed=26))
    assert str(caught.value) == ("these statistics were built from 3-channel latents but got 4 channels; "
                                 "use latents from the same VAE for every update.")
    assert s.channels == 3 and torch.equal(s.scatter, before)


def test_an_all_zero_mask_commits_the_channels_but_no_samples():
    s = PatchStatistics(3).update(latents(b=1, c=2, seed=27), mask=torch.zeros(11, 13))
    assert s.channels == 2 and s.count == 0 and s.dim == 18
    x = latents(b=1, c=2, seed=28)
    s.update(x)
    reference = PatchStatistics(3).update(x)
    assert s.count == reference.count
    torch.testing.assert_close(s.covariance, reference.covariance, rtol=0, atol=0)


def test_too_few_samples_says_how_many_and_why():
    clean = PatchStatistics(3).update(latents(b=1, c=2, h=3, w=3, seed=29))  # one patch: a mean, no covariance
    with pytest.raises(TransportInputError) as caught:
        clean.covariance
    assert str(caught.value) == ("these patch statistics hold 1 samples, need at least 2; feed more (or larger) "
                                 "images, or check that the mask is not all zero.")
    x = latents(b=1, c=2, h=3, w=4, seed=30)
    x[0, 0, 1, 1] = float("nan")  # touches both patches
    poisoned = PatchStatistics(3).update(x)
    with pytest.raises(TransportInputError) as caught:
        poisoned.mean
    assert str(caught.value) == ("these patch statistics hold 0 samples (2 patches were skipped for NaN/Inf), need at "
                                 "least 1; feed more (or larger) images, or check that the mask is not all zero.")


def test_from_latents_is_one_update():
    x, mask = latents(b=2, c=2, seed=31), torch.rand(2, 11, 13, generator=torch.Generator().manual_seed(32))
    made = PatchStatistics.from_latents(x, patch_size=5, mask=mask)
    reference = PatchStatistics(5).update(x, mask=mask)
    assert made.patch_size == 5 and made.count == reference.count
    torch.testing.assert_close(made.scatter, reference.scatter, rtol=0, atol=0)
    assert PatchStatistics.from_latents(x).patch_size == 3

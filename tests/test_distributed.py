"""all_reduce over two CPU processes on gloo equals the statistics of everything in one process."""
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_statistics import latents  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_latents(rank):
    return latents(b=1 + rank, c=3, h=10 + rank, w=9, seed=rank) * (1 + rank)


def worker(rank, world, port, out_dir):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from deepot_core import PatchStatistics

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        stats = PatchStatistics(3).update(rank_latents(rank))
        stats.all_reduce()
        torch.save({"count": stats.count, "mean": stats.mean, "cov": stats.covariance},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_equals_pooled(tmp_path):
    from deepot_core import PatchStatistics

    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    pooled = PatchStatistics(3).update(rank_latents(0)).update(rank_latents(1))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["count"] == pooled.count
        torch.testing.assert_close(got["mean"], pooled.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(got["cov"], pooled.covariance, rtol=1e-10, atol=1e-12)


def test_all_reduce_without_group_is_a_no_op():
    from deepot_core import PatchStatistics

    stats = PatchStatistics(3).update(rank_latents(0))
    before = stats.covariance
    assert stats.all_reduce() is stats
    assert torch.equal(stats.covariance, before)

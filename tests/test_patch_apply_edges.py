"""patch_apply's less travelled paths: CPU row strips, chunks and progress, the geodesic blend, OOM types, dtypes.

Each was found by mutation testing (benchmarks/mutation.py): a deliberate bug
there passed every other test.
"""
from types import SimpleNamespace

import pytest
import torch

import deepot_core.patch_apply as pa
from deepot_core.patch_apply import apply_explicit, apply_patch_map, apply_unfold_reference, blend_identity

from test_apply import random_map


@pytest.mark.parametrize("p", [3, 5])
@pytest.mark.parametrize("rows_per_strip", [1, 2, 7])
def test_row_strips_equal_the_reference(monkeypatch, p, rows_per_strip):
    """On the CPU a large latent is convolved in strips of rows; small strips must give the same result."""
    x = torch.randn(2, 2, 23, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(p))
    matrix, bias = random_map(2, p, seed=p)
    monkeypatch.setattr(pa, "STRIP_ELEMENTS_CPU", rows_per_strip * 2 * 2 * 17)  # N·C·W elements per row
    assert pa._strip_rows(x) == rows_per_strip
    torch.testing.assert_close(apply_patch_map(x, matrix, bias, p), apply_unfold_reference(x, matrix, bias, p),
                               rtol=1e-10, atol=1e-10)


def test_strip_height_is_the_budget_over_one_row():
    """Rows per strip = budget // (N·C·W), at least 1; the CPU budget on the CPU."""
    z = torch.zeros(3, 4, 5, 7)
    assert pa._strip_rows(z) == pa.STRIP_ELEMENTS_CPU // (3 * 4 * 7)
    assert isinstance(pa._strip_rows(z), int)
    assert pa._strip_rows(torch.zeros(1, 1, 2, pa.STRIP_ELEMENTS_CPU * 2)) == 1
    assert pa._strip_rows(torch.zeros(1, 1, 3, pa.STRIP_ELEMENTS_CPU // 2)) == 2


def test_chunks_report_progress_frame_by_frame(monkeypatch):
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    matrix, bias = random_map(2, 3, seed=4)
    calls = []
    monkeypatch.setattr(pa, "APPLY_CHUNK_ELEMENTS", 2 * 6 * 6 - 1)  # less than one frame: one frame per chunk
    out = apply_patch_map(x, matrix, bias, 3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    torch.testing.assert_close(out, apply_unfold_reference(x, matrix, bias, 3), rtol=1e-10, atol=1e-10)


def test_out_of_memory_at_two_frames_retries_one_by_one(monkeypatch):
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    matrix, bias = random_map(2, 3, seed=5)
    real, sizes = pa._apply_chunk, []

    def two_is_too_many(z, *args):
        sizes.append(z.shape[0])
        if z.shape[0] > 1:
            raise pa.OUT_OF_MEMORY("simulated")
        return real(z, *args)

    monkeypatch.setattr(pa, "_apply_chunk", two_is_too_many)
    out = apply_patch_map(x, matrix, bias, 3)
    assert sizes[-3:] == [2, 1, 1]
    torch.testing.assert_close(out, apply_unfold_reference(x, matrix, bias, 3), rtol=1e-10, atol=1e-10)


def test_out_of_memory_type_prefers_the_top_level_name():
    class Unified(RuntimeError):
        pass

    class Cuda(RuntimeError):
        pass

    both = SimpleNamespace(OutOfMemoryError=Unified, cuda=SimpleNamespace(OutOfMemoryError=Cuda))
    assert pa.out_of_memory_error(both) is Unified
    not_a_class = SimpleNamespace(OutOfMemoryError="shadowed", cuda=SimpleNamespace(OutOfMemoryError=Cuda))
    assert pa.out_of_memory_error(not_a_class) is Cuda


def test_geodesic_blend_is_affine_in_strength():
    matrix, bias = random_map(2, 1, seed=6)
    for t in (-1.0, 0.0, 0.3, 2.0):
        m, b = blend_identity(matrix, bias, t)
        torch.testing.assert_close(m, t * matrix + (1 - t) * torch.eye(2, dtype=torch.float64))
        torch.testing.assert_close(b, t * bias)


def test_explicit_form_keeps_the_dtype():
    x = torch.randn(1, 2, 4, 5)
    matrix, bias = (t.float() for t in random_map(2, 3, seed=7))
    out = apply_explicit(x, matrix, bias, 3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), apply_unfold_reference(x.double(), matrix.double(), bias.double(), 3),
                               rtol=1e-5, atol=1e-5)

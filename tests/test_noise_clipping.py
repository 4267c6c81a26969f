"""benchmarks/noise_clipping.py compares like with like: the same noise as the benchmark's denoising task, with and
without its clip, and level energies that add up to the image's own."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.noise_clipping import LEVELS, level_energies, noisy
from deepot_core.tooling import experiments as E


@settings(max_examples=15, deadline=None)
@given(size=st.integers(8, 40), count=st.integers(1, 3), seed=st.integers(0, 1000), batch=st.integers(1, 2))
def test_clipped_noise_is_the_benchmarks_own_and_unclipped_differs_only_by_the_clip(size, count, seed, batch):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(batch, size, size, 3, generator=g) for _ in range(count)]
    clipped, unclipped = noisy(images, seed, clip=True), noisy(images, seed, clip=False)
    for c, u, d in zip(clipped, unclipped, E.degrade(images, "denoise50", seed=seed)):
        assert torch.equal(c, d)
        assert torch.equal(u.clamp(0, 1), c)
    assert any(float(u.min()) < 0 or float(u.max()) > 1 for u in unclipped)  # σ = 50 leaves 0..1


def test_level_energies_split_a_single_octave_where_it_lives():
    """A pure checkerboard (the finest octave) puts its energy in level 0; a constant image has none."""
    board = ((torch.arange(128)[:, None] + torch.arange(128)[None, :]) % 2).float()
    checker = (0.5 + 0.25 * (2 * board - 1))[None, :, :, None].expand(1, 128, 128, 3).contiguous()
    e = level_energies([checker])
    assert e.shape == (LEVELS,) and int(e.argmax()) == 0 and float(e[1:].sum()) < 0.05 * float(e[0])
    assert float(level_energies([torch.full((1, 128, 128, 3), 0.5)]).abs().max()) == 0.0

"""The latent-capacity ceiling (benchmarks/latent_ceiling.py): it stands the clean photo's own latent in for the
transport, so in the pixel space (encode = decode = identity) its raw blend is the clean photo itself, and on real
data it is closer to the clean photos than any fitted transport."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import latent_ceiling as C
from deepot_core.tooling.autoencoders import PixelSpace


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 2), height=st.integers(1, 24), width=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_in_the_pixel_space_the_raw_ceiling_is_the_clean_photo(batch, height, width, seed):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, height, width, 3, generator=g)
    restored = torch.rand(batch, height, width, 3, generator=g)
    (own,) = C.own_latent_decodes(PixelSpace(), [clean], [restored])
    assert torch.equal(own, clean)
    # the pixel space's reconstruction D(E(r)) is r itself
    top = C.P.blend(restored, own, restored, 1.0, C.RAW_RECIPE)
    torch.testing.assert_close(top, clean, atol=1e-6, rtol=0)
    torch.testing.assert_close(C.P.blend(restored, own, restored, 0.0, C.RAW_RECIPE), restored, atol=1e-6, rtol=0)


def test_an_alpha_channel_is_dropped_and_sizes_must_match():
    clean, restored = torch.rand(1, 8, 8, 4), torch.rand(1, 8, 8, 3)
    (own,) = C.own_latent_decodes(PixelSpace(), [clean], [restored])
    assert torch.equal(own, clean[..., :3])
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 3\).*differ in size"):
        C.own_latent_decodes(PixelSpace(), [torch.rand(1, 8, 9, 3)], [restored])


def test_on_real_data_the_ceiling_is_nearer_the_clean_photos_than_the_transport(shared_data):
    results = C.run(shared_data, ["taesd"], tasks=("sr4",), n_fit=2, n_test=2, crop=64, log=lambda *_: None)
    variants = results["tasks"]["sr4"]["taesd"]
    assert list(variants) == list(C.VARIANTS)
    for variant in variants.values():
        assert sorted(variant) == sorted(C.PERCEPTIONS) and len(variant[1.0]["halves"]) == 2
    transport, ceiling = variants["transport"][1.0], variants["ceiling"][1.0]
    assert ceiling["psnr_loss"] < transport["psnr_loss"], (ceiling, transport)
    assert ceiling["swd_ratio"] < 1.0 and transport["swd_ratio"] < 1.0
    table = C.markdown(results)
    for variant in C.VARIANTS:
        assert f"| taesd (SD1.5, 4 ch) | {variant} |" in table
    assert "| space | variant | @0.5 | @1 | @1 A | @1 B |" in table


def test_a_bad_space_is_named_before_any_restorer_runs(shared_data, capsys):
    code = C.main(["--data", str(shared_data), "--vae", "no_such_space", "--out", "/nonexistent/never-written"])
    assert code == 2
    assert "--vae no_such_space: no such folder or file" in capsys.readouterr().err

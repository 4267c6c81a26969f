"""Golden files: transport files of every format version ever written keep loading and applying the same.

``tests/golden/`` holds, per format version, files made by that version's writer
(``tests/golden/write_golden.py``) with the latents they were fitted on, probe latents and
what ``apply`` returned on them when they were written. Every pair found is checked, so a
new version adds its files and none is ever dropped: a user's saved transport is never stranded.
"""
import json
import re
from pathlib import Path

import pytest
import torch

from deepot_core import LatentTransport, PatchStatistics, read_metadata
from deepot_core.constants import FILE_FORMAT_VERSION

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name[: -len(".transport.safetensors")] for p in GOLDEN.glob("*.transport.safetensors"))


def expected_of(case):
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = GOLDEN / f"{case}.expected.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["expected"])
    return load_file(str(path)), meta


def test_every_format_version_has_golden_files():
    versions = {int(re.match(r"v(\d+)_", case).group(1)) for case in CASES}
    assert versions == set(range(1, FILE_FORMAT_VERSION + 1)), (
        "write this version's golden files: python tests/golden/write_golden.py")
    assert {"v1_paired", "v1_zero_shot", "v1_header_0x80"} <= set(CASES)


def test_the_0x80_golden_file_starts_like_a_pickle():
    assert (GOLDEN / "v1_header_0x80.transport.safetensors").read_bytes()[:2] == b"\x80\x06"


@pytest.mark.parametrize("case", CASES)
def test_golden_file_loads_with_its_fields(case):
    transport = LatentTransport.load(GOLDEN / f"{case}.transport.safetensors")
    _, meta = expected_of(case)
    assert (transport.channels, transport.patch_size, transport.zero_shot) == (
        meta["channels"], meta["patch_size"], meta["zero_shot"])
    assert (transport.eps, transport.created, transport.metadata) == (meta["eps"], meta["created"], meta["user"])
    assert transport.target.count == meta["target_count"]
    if not transport.zero_shot:
        assert transport.source.skipped == meta["source_skipped"]
    document = read_metadata(GOLDEN / f"{case}.transport.safetensors")
    assert document["user"] == meta["user"] and document["patch_size"] == meta["patch_size"]


@pytest.mark.parametrize("case", CASES)
def test_golden_statistics_and_map_are_those_of_its_latents(case):
    """Recomputed from the latents the file was fitted on (not read back from the file itself)."""
    transport = LatentTransport.load(GOLDEN / f"{case}.transport.safetensors")
    tensors, meta = expected_of(case)
    p = transport.patch_size
    target = PatchStatistics(p).update(tensors["fit.target"], mask=tensors.get("fit.target_mask"))
    pairs = [(transport.target, target)]
    if not transport.zero_shot:
        source = PatchStatistics(p).update(tensors["fit.source"])
        pairs.append((transport.source, source))
        refit = LatentTransport.fit(source, target, eps=meta["eps"])
        torch.testing.assert_close(transport.map.matrix, refit.map.matrix, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(transport.map.bias, refit.map.bias, rtol=1e-8, atol=1e-10)
    for stored, recomputed in pairs:
        assert (stored.count, stored.skipped) == (recomputed.count, recomputed.skipped)
        torch.testing.assert_close(stored.mean, recomputed.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stored.scatter, recomputed.scatter, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_golden_file_applies_as_when_it_was_written(case):
    transport = LatentTransport.load(GOLDEN / f"{case}.transport.safetensors")
    tensors, meta = expected_of(case)
    probe = tensors["probe"]
    for strength in meta["strengths"]:
        torch.testing.assert_close(transport.apply(probe, strength=strength), tensors[f"apply.{strength:g}"],
                                   rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(transport.apply(tensors["probe_float32"]), tensors["apply_float32.1"],
                               rtol=1e-5, atol=1e-5)
    if "mask" in tensors:
        torch.testing.assert_close(transport.apply(probe, mask=tensors["mask"]), tensors["apply_masked.1"],
                                   rtol=1e-10, atol=1e-12)
    assert not torch.equal(tensors["apply.1"], probe)  # the expected outputs are transports, not the input


@pytest.mark.parametrize("case", CASES)
def test_the_format_documents_example_reads_the_golden_files(case):
    """docs/transport_format.md's plain safetensors + json example: its checksums and its map are right."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "transport_format.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    path = GOLDEN / f"{case}.transport.safetensors"
    namespace = {}
    exec(code.replace('"my_transport.safetensors"', repr(str(path))), namespace)  # its asserts check the sums
    transport = LatentTransport.load(path)
    torch.testing.assert_close(torch.from_numpy(namespace["target_cov"]), transport.target.covariance)
    if not transport.zero_shot:
        latent = torch.from_numpy(namespace["latent"])[None]
        torch.testing.assert_close(torch.from_numpy(namespace["transported"])[None], transport.apply(latent),
                                   rtol=1e-9, atol=1e-11)

"""Every transport the pack can fit saves and loads back bit-identical, whatever its size, metadata or path.

The header length's low byte is the first byte of the file, and the old loader took 0x80
(a pickle's first byte) and "PK" (a zip's) for foreign files. safetensors pads headers to
8 bytes, so our writer makes the 32 multiples of 8 as low bytes: the first test saves all
of them, and the pickle- and zip-like lengths; other writers need not pad, so the second
re-pads one valid file to all 256 low bytes (safetensors' own parser accepting each). The
hypothesis property then varies everything else: channels 1–128, patch sizes 1–9, zero-shot
or paired, masks, NaN patches, eps, any JSON metadata (unicode, quotes, 30 000 characters,
empty) and directory and file names with spaces, brackets and non-ASCII characters.

``DEEPOT_ROUNDTRIP_EXAMPLES`` and ``DEEPOT_ROUNDTRIP_MAX_DIM`` make the property run longer
and reach D = C·p² up to 4096 (CI: 120 examples, D ≤ 512, so each stays fast).
"""
import json
import os
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deepot_core import LatentTransport, PatchStatistics, TransportInputError, read_metadata
from deepot_core.constants import MAX_FEATURE_DIM
from file_mutations import same_transport, split

from test_statistics import latents

EXAMPLES = int(os.environ.get("DEEPOT_ROUNDTRIP_EXAMPLES", "120"))
MAX_DIM = min(int(os.environ.get("DEEPOT_ROUNDTRIP_MAX_DIM", "512")), MAX_FEATURE_DIM)
#: Low bytes of the header lengths the property saved (printed with -s).
LOW_BYTES = Counter()
DIMS = []


def header_length(path) -> int:
    with open(path, "rb") as handle:
        return int.from_bytes(handle.read(8), "little")


def assert_round_trip(transport, path, metadata=None):
    """Save, load, and check tensors, fields, metadata, report and outputs are the same."""
    transport.save(path, metadata=metadata, overwrite=True)
    loaded = LatentTransport.load(path)
    user = {**transport.metadata, **(metadata or {})}
    assert same_transport(loaded, transport, metadata=False)
    assert (loaded.eps, loaded.created) == (transport.eps, transport.created)
    assert loaded.metadata == user and read_metadata(path)["user"] == user
    assert loaded.report() == transport.report()
    z = latents(b=1, c=transport.channels, h=transport.patch_size + 2, w=transport.patch_size + 1, seed=7)
    assert torch.equal(loaded.apply(z, strength=0.75), transport.apply(z, strength=0.75))
    return loaded


def tiny(zero_shot=True):
    target = PatchStatistics(1).update(latents(b=1, c=1, h=3, w=3, seed=0))
    source = None if zero_shot else PatchStatistics(1).update(latents(b=1, c=1, h=3, w=3, seed=1))
    return LatentTransport.fit(source, target)


def test_every_header_length_the_writer_makes_loads(tmp_path):
    transport, path = tiny(), tmp_path / "t.safetensors"
    lows, firsts = set(), set()
    for pad in range(256):  # 256 consecutive lengths: every residue the 8-byte padding leaves
        assert_round_trip(transport, path, {"note": "x" * pad})
        lows.add(header_length(path) & 0xFF)
    assert lows == set(range(0, 256, 8)) and 0x80 in lows
    base = header_length(path) - 255 - 8
    # the first bytes of a pickle (0x80, protocol 4 or 5) and of a zip ("PK", "PK\x03")
    for target in (0x0480, 0x0580, 0x4B50, 0x034B50):
        pad = target - base
        for _ in range(4):
            transport.save(path, metadata={"note": "x" * pad}, overwrite=True)
            pad += target - header_length(path)
        assert header_length(path) == target
        assert_round_trip(transport, path, {"note": "x" * (pad)})
        firsts.add(path.read_bytes()[:3])
    assert {b"\x80\x04\x00", b"\x80\x05\x00", b"PK\x00", b"PK\x03"} == firsts


def test_every_header_length_low_byte_loads(tmp_path):
    """Writers that do not pad: one valid file re-padded to 256 consecutive header lengths (and to "PK")."""
    from safetensors.torch import load as reference_load

    transport = tiny(zero_shot=False)
    data = transport.save(tmp_path / "t.safetensors").read_bytes()
    _, text, body = split(data)
    text = text.rstrip(b" ")
    path = tmp_path / "repadded.safetensors"
    lows = set()
    for length in list(range(len(text), len(text) + 256)) + [0x4B50]:
        padded = text + b" " * (length - len(text))
        variant = length.to_bytes(8, "little") + padded + body
        reference = reference_load(variant)  # a valid safetensors file, by safetensors' own reader
        path.write_bytes(variant)
        loaded = LatentTransport.load(path)
        assert same_transport(loaded, transport)
        assert all(torch.equal(reference[k], t) for k, t in loaded.target.state_tensors("target").items())
        lows.add(variant[0])
    assert lows == set(range(256))


json_leaf = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text()
             | st.text(st.characters(exclude_categories=())))  # lone surrogates too
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
long_text = st.builds(lambda char, n: char * n, st.characters(), st.integers(0, 30_000))
metadata = st.dictionaries(st.text(max_size=12), json_value | long_text, max_size=4)
path_part = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\0"), min_size=1,
                    max_size=12).filter(lambda s: s not in (".", "..") and len(s.encode()) < 100)
path_name = st.one_of(path_part,
                      st.sampled_from(["my transport", "[v1] (final)", "ünïcødé 変換", " lead", "a'b\"c"]))


@st.composite
def fittable(draw):
    """A transport LatentTransport.fit accepts, with the latents and masks that made it."""
    p = draw(st.sampled_from([1, 3, 5, 7, 9]))
    c = draw(st.integers(1, max(1, min(128, MAX_DIM // p ** 2))))
    b, h, w = draw(st.integers(1, 2)), draw(st.integers(p, p + 3)), draw(st.integers(p, p + 3))
    seed = draw(st.integers(0, 10 ** 6))

    def stats(offset, masked):
        x = latents(b=b, c=c, h=h, w=w, seed=seed + offset) * (1 + offset)
        if draw(st.booleans()):
            x[0, 0, 0, 0] = float("nan")  # some patches skipped
        mask = None
        if masked:
            mask = torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed))
            mask[mask < draw(st.floats(0, 0.5))] = 0
        return PatchStatistics(p).update(x, mask=mask)

    eps = draw(st.sampled_from([0.0, 1e-4, 1.0]) | st.floats(0, 1))
    zero_shot = draw(st.booleans())
    try:
        target = stats(1, draw(st.booleans()))
        source = None if zero_shot else stats(0, draw(st.booleans()))
        return LatentTransport.fit(source, target, eps=eps, metadata=draw(metadata))
    except TransportInputError:  # too few samples under that mask: not a transport the pack can fit
        assume(False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
@given(transport=fittable(), extra=metadata, folder=path_name, name=path_name)
def test_any_fitted_transport_round_trips(tmp_path, transport, extra, folder, name):
    path = tmp_path / folder / f"{name}.safetensors"
    assert_round_trip(transport, path, extra)
    LOW_BYTES[header_length(path) & 0xFF] += 1
    DIMS.append(transport.dim)
    assert json.loads(split(path.read_bytes())[1])["__metadata__"]["format"] == "deepot.latent_transport"


def teardown_module(module):
    if LOW_BYTES:
        print(f"\nround-trip property: {sum(LOW_BYTES.values())} saves, {len(LOW_BYTES)} distinct header-length "
              f"low bytes (0x80: {LOW_BYTES[0x80]}), D from {min(DIMS)} to {max(DIMS)}, "
              f"{sum(d > 256 for d in DIMS)} with D > 256")


@pytest.mark.parametrize("size", [10 ** 6, 2 * 10 ** 6])
def test_metadata_too_large_for_the_reader_is_refused_at_save(tmp_path, size):
    transport, path = tiny(), tmp_path / "t.safetensors"
    path.write_bytes(b"the old file")
    if size == 10 ** 6:
        assert_round_trip(transport, path, {"note": "é" * size})  # ~7 MB escaped: still within the reader's limit
    else:
        with pytest.raises(TransportInputError, match="metadata"):
            transport.save(path, metadata={"note": "é" * size}, overwrite=True)
        assert path.read_bytes() == b"the old file"
        assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_metadata_that_is_not_json_is_refused_at_save(tmp_path):
    transport = tiny()
    for bad in ({"x": object()}, {1: "a", "b": 2}):  # the second cannot be written with sorted keys
        with pytest.raises(TransportInputError, match="JSON"):
            transport.save(tmp_path / "t.safetensors", metadata=bad)
    assert not list(tmp_path.iterdir())


def test_a_transport_the_reader_would_refuse_is_not_saved(tmp_path):
    for created in (float("nan"), float("inf"), 1e20):
        transport = LatentTransport(None, tiny().target, created=created)
        with pytest.raises(TransportInputError, match="time stamp"):
            transport.save(tmp_path / "t.safetensors")
    assert not list(tmp_path.iterdir())


def test_saved_files_are_readable_by_others(tmp_path):
    path = tiny().save(tmp_path / "t.safetensors")
    assert path.stat().st_mode & 0o044 == 0o044  # a transport is meant to be shared

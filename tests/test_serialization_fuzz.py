"""Damaged transport files: every mutation is refused with a reason, or the file loads unchanged.

A bounded mutation run (hypothesis) over three valid files: bits flipped, bytes cut, inserted
or zeroed anywhere and inside the header JSON, forged header lengths, tensor entries and
metadata. Then every truncation point of one file, and named forgeries aimed at each check
of the container (offsets out of range, overlaps, sizes that lie, hostile JSON). The long
run with tallies is ``benchmarks/fuzz_transport_loader.py``.
"""
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepot_core import LatentTransport, PatchStatistics, TransportFileError
from file_mutations import HARMLESS, KINDS, assemble, load_outcome, mutate, split

from test_statistics import latents

GOLDEN = Path(__file__).resolve().parent / "golden"
#: Outcomes of the hypothesis run, by mutation kind (printed with -s; the long run reports them).
TALLY = Counter()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """name → (bytes, the transport they hold): a signed paired file, a signed zero-shot one, an unsigned v1 one."""
    folder = tmp_path_factory.mktemp("fuzz_bases")
    paired = LatentTransport.fit(latents(b=2, c=2, h=8, w=8, seed=1), latents(b=2, c=2, h=8, w=8, seed=2) * 2,
                                 patch_size=3, metadata={"note": "ünï \"q\" [x]"})
    zero_shot = LatentTransport.fit(None, PatchStatistics(1).update(latents(b=1, c=3, h=6, w=6, seed=3)))
    out = {}
    for name, transport in (("paired", paired), ("zero_shot", zero_shot)):
        path = transport.save(folder / f"{name}.safetensors")
        out[name] = (path.read_bytes(), transport)
    legacy = GOLDEN / "v1_paired.transport.safetensors"  # written before the document had a checksum
    out["legacy"] = (legacy.read_bytes(), LatentTransport.load(legacy))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "mutant.safetensors"


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(["paired", "zero_shot", "legacy"]), kind=st.sampled_from(KINDS),
       seed=st.integers(0, 2 ** 32 - 1))
def test_mutated_files_are_refused_or_load_unchanged(bases, scratch, base, kind, seed):
    data, reference = bases[base]
    mutated = mutate(data, kind, random.Random(seed))
    if mutated == data:
        TALLY[kind, "unchanged"] += 1
        return
    scratch.write_bytes(mutated)
    outcome = load_outcome(scratch, reference, data)
    TALLY[kind, outcome] += 1
    if kind in HARMLESS:
        assert outcome == "loaded-identical", outcome


def test_every_truncation_is_refused(bases, scratch):
    data, reference = bases["zero_shot"]
    reasons = Counter()
    for cut in range(len(data)):
        scratch.write_bytes(data[:cut])
        outcome = load_outcome(scratch, reference, data)
        assert outcome.startswith("refused:"), (cut, outcome)
        reasons[outcome] += 1
    assert set(reasons) <= {"refused:truncated", "refused:layout", "refused:header", "refused:not_safetensors"}


def test_every_bit_of_the_header_length_and_the_document_checksum(bases, scratch):
    data, reference = bases["paired"]
    _, text, _ = split(data)
    start = 8 + text.index(b"deepot_sha256") + len(b'deepot_sha256":"')
    positions = list(range(8)) + list(range(start, start + 64))
    for i in positions:
        for bit in range(8):
            mutated = bytearray(data)
            mutated[i] ^= 1 << bit
            scratch.write_bytes(bytes(mutated))
            assert load_outcome(scratch, reference, data).startswith("refused:"), (i, bit)


def forged(data: bytes, edit) -> bytes:
    """The file with its header JSON edited by ``edit(header)`` and re-assembled consistently."""
    _, text, body = split(data)
    header = json.loads(text)
    body = edit(header) or body
    return assemble(header, body)


def _first(header):
    return next(k for k in sorted(header) if k != "__metadata__")


def _entry_set(key, value):
    """Set ``key`` of the first tensor's entry."""
    return lambda data: forged(data, lambda header: header[_first(header)].__setitem__(key, value))


def _offsets(change):
    """Replace the first tensor's data offsets [begin, end] by ``change(begin, end)``."""
    def edit(header):
        entry = header[_first(header)]
        entry["data_offsets"] = change(*entry["data_offsets"])
    return lambda data: forged(data, edit)


def _overlap(data):
    return forged(data, lambda header: header.update({"overlap": dict(header[_first(header)])}))


def _gap(data):
    def edit(header):
        for key, entry in header.items():
            if key != "__metadata__":
                entry["data_offsets"] = [offset + 8 for offset in entry["data_offsets"]]
        return bytes(8) + split(data)[2]
    return forged(data, edit)


def _header_length(value):
    return lambda data: (value(data) % (1 << 64)).to_bytes(8, "little") + data[8:]


def _raw(text: bytes):
    """A file whose header is exactly ``text``, followed by 8 data bytes."""
    return lambda data: len(text).to_bytes(8, "little") + text + bytes(8)


U8 = b'{"dtype":"U8","shape":[8],"data_offsets":[0,8]}'
#: name → (how to make the file from a valid one, the reason it must be refused for)
FORGERIES = {
    "offset past the end": (_offsets(lambda b, e: [b, e + 8]), "layout"),
    "offset before the start": (_offsets(lambda b, e: [-8, e]), "layout"),
    "offsets reversed": (_offsets(lambda b, e: [e, b]), "layout"),
    "huge offset": (_offsets(lambda b, e: [b, 1 << 62]), "layout"),
    "shape larger than its bytes": (_entry_set("shape", [1 << 62]), "layout"),
    "shape with a zero dimension": (_entry_set("shape", [0, 1 << 62]), "layout"),
    "dtype of another size": (_entry_set("dtype", "F32"), "layout"),
    "overlapping tensors": (_overlap, "layout"),
    "gap between tensors": (_gap, "layout"),
    "bytes appended": (lambda data: data + bytes(8), "layout"),
    "no tensors, no metadata": (_raw(b"{}"), "layout"),
    "negative dimension": (_entry_set("shape", [-1]), "header"),
    "boolean dimension": (_entry_set("shape", [True]), "header"),
    "unknown dtype": (_entry_set("dtype", "F128"), "header"),
    "dtype not a string": (_entry_set("dtype", ["F64"]), "header"),
    "shape not a list": (_entry_set("shape", {"0": 1}), "header"),
    "offsets not a list": (_entry_set("data_offsets", "0,8"), "layout"),
    "extra entry key": (_entry_set("extra", 1), "header"),
    "header length 2**63": (_header_length(lambda data: 1 << 63), "header"),
    "header length 1": (_header_length(lambda data: 1), "header"),
    "header length 8 short": (_header_length(lambda data: split(data)[0] - 8), "header"),
    "header length beyond the file": (_header_length(len), "truncated"),
    "duplicate keys": (_raw(b'{"a":' + U8 + b',"a":' + U8 + b"}"), "header"),
    "deeply nested": (_raw(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "header"),
    "NaN in the header": (_raw(b'{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,NaN]}}'), "header"),
    "not UTF-8": (_raw(b'{"\xff":' + U8 + b"}"), "header"),
    "trailing garbage": (_raw(b'{"a":' + U8 + b"}x"), "header"),
    "metadata not strings": (_raw(b'{"__metadata__":{"format":1},"a":' + U8 + b"}"), "header"),
    "a JSON list": (lambda data: (2).to_bytes(8, "little") + b"[]", "not_safetensors"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_containers_are_refused_for_their_reason(bases, scratch, name):
    make, reason = FORGERIES[name]
    data, reference = bases["paired"]
    scratch.write_bytes(make(data))
    assert load_outcome(scratch, reference, data) == f"refused:{reason}"


def test_pickles_and_zips_are_named(tmp_path, bases):
    import pickle

    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.safetensors"
        path.write_bytes(pickle.dumps({"weight": list(range(100))}, protocol=protocol))
        assert load_outcome(path, None, b"") == "refused:pickle"
    torch.save({"weight": torch.zeros(3)}, tmp_path / "ckpt.safetensors")
    assert load_outcome(tmp_path / "ckpt.safetensors", None, b"") == "refused:zip"
    data, _ = bases["paired"]  # a damaged length that starts like a pickle: still a (damaged) safetensors file
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04" + data[2:])
    assert load_outcome(tmp_path / "x.safetensors", None, data) == "refused:header"


def test_loading_never_hands_the_file_to_another_parser(bases, scratch, monkeypatch):
    import safetensors
    import safetensors.torch

    def refuse(*args, **kwargs):
        raise AssertionError("safetensors' parser was called")

    for module, attr in ((safetensors, "safe_open"), (safetensors.torch, "load_file"), (safetensors.torch, "load"),
                         (torch, "load")):
        monkeypatch.setattr(module, attr, refuse)
    data, reference = bases["paired"]
    scratch.write_bytes(data)
    assert load_outcome(scratch, reference, data) == "loaded-identical"


def test_a_file_swapped_in_while_loading_is_still_checked(bases, scratch, monkeypatch):
    """The header and the data come from one open file: a write between our checks cannot pass unchecked."""
    from deepot_core import safetensors_reader

    data, reference = bases["paired"]
    scratch.write_bytes(data)
    real = safetensors_reader.read_bytes

    def cut_then_read(handle, entry, name):
        scratch.write_bytes(data[:entry.begin + 1])  # the file shrinks under us
        return real(handle, entry, name)

    monkeypatch.setattr("deepot_core.serialization.read_bytes", cut_then_read)
    with pytest.raises(TransportFileError, match="changed or was cut") as info:
        LatentTransport.load(scratch)
    assert info.value.reason == "truncated"


def teardown_module(module):
    if TALLY:
        kinds = sorted({k for k, _ in TALLY})
        print("\nmutation outcomes (hypothesis run):")
        for kind in kinds:
            print(f"  {kind:14s} " + ", ".join(f"{o} {n}" for (k, o), n in sorted(TALLY.items()) if k == kind))

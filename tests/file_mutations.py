"""Mutations of valid transport files, and the contract every mutated file must meet when loaded.

Shared by ``tests/test_serialization_fuzz.py`` (a bounded hypothesis run in CI) and
``benchmarks/fuzz_transport_loader.py`` (a long run that tallies outcomes by kind).

Contract: ``LatentTransport.load`` either returns a transport equal to the one saved (every
tensor bit for bit, and every field; a file without a document checksum, as written before
issue 9, may come back with other metadata but never other tensors) or raises
``TransportFileError`` with a message and a ``reason``; never another exception, and never
an allocation beyond a small multiple of the file's size.
"""
import json
import random
import tracemalloc
from pathlib import Path

import torch

from deepot_core import LatentTransport, TransportFileError, read_metadata
from deepot_core.serialization import transport_tensors
from deepot_core.transport_document import DOCUMENT_SHA_KEY

#: Byte-level mutations anywhere in the file, the same restricted to the header JSON, and header forgeries
#: that keep the container consistent (valid JSON, the right header length) except for the forged part.
KINDS = ("flip", "flip_header", "truncate", "insert", "insert_header", "zero", "zero_header", "length",
         "entry", "swap_offsets", "metadata", "repad")
#: Kinds after which the file is still valid and must load identically.
HARMLESS = ("repad",)
#: Allowed extra Python-heap memory while loading: this many times the file's size, plus a constant.
MEMORY_FACTOR, MEMORY_SLACK = 8, 2 << 20
SAFETENSORS_DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U64", "F8_E4M3", "X")


def split(data: bytes):
    """(header length N, header JSON text with its padding, data bytes) of a valid file."""
    n = int.from_bytes(data[:8], "little")
    return n, data[8:8 + n], data[8 + n:]


def assemble(header: dict, body: bytes, pad: int = 0) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8 + pad)
    return len(text).to_bytes(8, "little") + text + body


def _header_range(data: bytes, rng: random.Random):
    n = int.from_bytes(data[:8], "little")
    return 8 + rng.randrange(max(n, 1))


def _forge_entry(header: dict, rng: random.Random) -> None:
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    action = rng.choice(["begin", "end", "shape", "dtype", "drop_key", "add_key", "remove", "duplicate", "type"])
    delta = rng.choice([-8, -1, 1, 8, 1 << 40, -(1 << 40)])
    if action in ("begin", "end"):
        entry["data_offsets"][0 if action == "begin" else 1] += delta
    elif action == "shape":
        if entry["shape"] and rng.random() < 0.7:
            i = rng.randrange(len(entry["shape"]))
            entry["shape"][i] = rng.choice([0, entry["shape"][i] + 1, entry["shape"][i] * 2, 1 << 62, -1])
        else:
            entry["shape"] = entry["shape"] + [rng.choice([1, 2, 0, 1 << 62])]
    elif action == "dtype":
        entry["dtype"] = rng.choice([d for d in SAFETENSORS_DTYPES if d != entry["dtype"]])
    elif action == "drop_key":
        del entry[rng.choice(sorted(entry))]
    elif action == "add_key":
        entry["extra"] = 1
    elif action == "remove":
        del header[name]
    elif action == "duplicate":
        header[name + ".copy"] = json.loads(json.dumps(entry))
    else:
        key = rng.choice(sorted(entry))
        entry[key] = rng.choice([None, "1", 1.5, True, [], {}, [1, 2, 3]])


def _forge_metadata(header: dict, rng: random.Random) -> None:
    meta = header.setdefault("__metadata__", {})
    action = rng.choice(["version", "format", "document", "drop_document", "drop_sha", "not_string"])
    if action == "version":
        meta["format_version"] = rng.choice(["0", "2", "01", " 1", "1.0", "", "99999999999", "١"])
    elif action == "format":
        meta["format"] = rng.choice(["", "deepot", "deepot.latent_transport ", "lora"])
    elif action == "document":  # an edited document that keeps (or never had) its checksum
        document = json.loads(meta["deepot"])
        key = rng.choice(sorted(document))
        document[key] = rng.choice([None, 0, -1, 3, 2.5, "x", [], {}, True, 1e300, document.get(key)])
        if rng.random() < 0.3:
            del document[key]
        meta["deepot"] = json.dumps(document, sort_keys=True)
    elif action == "drop_document":
        del meta["deepot"]
    elif action == "drop_sha":  # removing the document checksum alone: the file still loads identically
        meta.pop(DOCUMENT_SHA_KEY, None)
    else:
        meta[rng.choice(sorted(meta))] = rng.choice([1, None, ["1"]])


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One mutation of ``kind`` of the valid file ``data``, its parameters drawn from ``rng``."""
    out = bytearray(data)
    if kind in ("flip", "flip_header"):
        i = rng.randrange(len(out)) if kind == "flip" else _header_range(data, rng)
        out[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        cut = rng.randrange(len(out)) if rng.random() < 0.5 else _header_range(data, rng)
        del out[cut:]
    elif kind in ("insert", "insert_header"):
        i = rng.randrange(len(out) + 1) if kind == "insert" else _header_range(data, rng)
        out[i:i] = bytes(rng.choice([0x20, 0x00, 0x7B, 0x22, rng.randrange(256)]) for _ in range(rng.randint(1, 16)))
    elif kind in ("zero", "zero_header"):
        i = rng.randrange(len(out)) if kind == "zero" else _header_range(data, rng)
        k = rng.randint(1, 64)
        out[i:i + k] = bytes(len(out[i:i + k]))
    elif kind == "length":
        n = int.from_bytes(data[:8], "little")
        forged = rng.choice([n ^ (1 << rng.randrange(64)), n + rng.choice([-8, -1, 1, 8]), rng.getrandbits(64),
                             len(data), len(data) - 8, 0, 1, 2])
        out[:8] = (forged % (1 << 64)).to_bytes(8, "little")
    elif kind in ("entry", "swap_offsets", "metadata", "repad"):
        _, text, body = split(data)
        header = json.loads(text)
        if kind == "entry":
            _forge_entry(header, rng)
        elif kind == "metadata":
            _forge_metadata(header, rng)
        elif kind == "swap_offsets":
            names = [k for k in header if k != "__metadata__"]
            size = lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0]  # noqa: E731
            pairs = [(a, b) for a in names for b in names if a < b and size(a) == size(b)]
            if not pairs:
                return data
            a, b = rng.choice(pairs)
            header[a]["data_offsets"], header[b]["data_offsets"] = header[b]["data_offsets"], header[a]["data_offsets"]
        return assemble(header, body, pad=rng.randint(1, 300) if kind == "repad" else 0)
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")
    return bytes(out)


def same_transport(a, b, metadata: bool = True) -> bool:
    """Every tensor bit for bit (dtype too) and, with ``metadata``, every field and the user metadata."""
    ta, tb = transport_tensors(a), transport_tensors(b)
    tensors = ta.keys() == tb.keys() and all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)
    fields = (a.patch_size, a.channels, a.zero_shot) == (b.patch_size, b.channels, b.zero_shot)
    if metadata:
        fields = fields and (a.eps, a.created) == (b.eps, b.created) and (
            json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True))
    return tensors and fields


def signed(data: bytes) -> bool:
    """Whether the file's metadata document carries its own checksum (files written since issue 9)."""
    return DOCUMENT_SHA_KEY.encode() in split(data)[1]


def load_outcome(path: Path, reference, original: bytes) -> str:
    """Load ``path`` under the contract; return "loaded-identical", "loaded-other-metadata" or "refused:<reason>".

    Raises AssertionError (or lets the unexpected exception through) when the contract is broken.
    """
    size = path.stat().st_size
    tracemalloc.start()
    try:
        loaded = LatentTransport.load(path)
    except TransportFileError as exc:
        reason = getattr(exc, "reason", None)
        assert reason and len(str(exc)) > 25, f"refusal without a reason or message: {exc!r}"
        outcome = f"refused:{reason}"
    else:
        outcome = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= MEMORY_FACTOR * size + MEMORY_SLACK, f"loading a {size}-byte file allocated {peak} bytes"
    try:  # the listing path must honour the same contract
        read_metadata(path)
    except TransportFileError as exc:
        assert getattr(exc, "reason", None) and len(str(exc)) > 25, repr(exc)
    if outcome is not None:
        return outcome
    if same_transport(loaded, reference):
        return "loaded-identical"
    assert not signed(original), "a file with a document checksum loaded with other contents"
    assert same_transport(loaded, reference, metadata=False), "a damaged file loaded with other tensors"
    return "loaded-other-metadata"

"""A strict reader of the safetensors container: every byte of the layout is checked before data is read.

Layout (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`` (padded
with spaces), then the data buffer; offsets count from the buffer's start. A file *is* safetensors
when N is plausible and its JSON starts with ``{`` — only a file that is not one may be called a
pickle or a zip, whatever its first byte (N ends in byte 0x80, a pickle's first, for one in 32 of the
8-aligned header lengths safetensors writes).

We do not hand files to safetensors' own parser: it raises assorted exception types and sizes
reads from header-declared offsets. Here the header must describe the file exactly (offsets in
range, sizes equal to dtype × shape, tensors contiguous and covering the buffer, no duplicate
keys), so no read or allocation is ever larger than the file; every refusal is a
``TransportFileError`` whose ``reason`` names the class of problem.
"""
import json
import os
from dataclasses import dataclass
from typing import BinaryIO, Dict

import numpy as np
import torch

from .errors import TransportFileError

#: Largest header we read; a transport's is a few KiB (up to ~1 MiB with an embedded ComfyUI prompt).
MAX_HEADER_BYTES = 8 << 20
#: Largest file we open (D ≤ 4096 → about 400 MiB of float64 matrices).
MAX_FILE_BYTES = 1 << 30
#: Bytes per element of every whole-byte safetensors dtype.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: The dtypes we decode, as little-endian numpy types (the file's byte order on every platform).
DECODABLE = {"F64": "<f8", "I64": "<i8", "F32": "<f4", "I32": "<i4", "F16": "<f2", "I16": "<i2",
             "U8": "u1", "I8": "i1", "BOOL": "?"}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def file_error(reason: str, message: str) -> TransportFileError:
    """A ``TransportFileError`` tagged with a short reason class (``exc.reason``) for tools and tallies.

    Reasons: missing, not_a_file, unreadable, too_large, truncated, pickle, zip, not_safetensors,
    header (the JSON), layout (offsets and sizes), foreign, version, metadata, checksum, tensors, statistics.
    """
    exc = TransportFileError(message)
    exc.reason = reason
    return exc


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the file: safetensors dtype name, shape, and absolute byte range [begin, end)."""
    name: str
    dtype: str
    shape: tuple
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    metadata: Dict[str, str]
    tensors: Dict[str, TensorEntry]
    file_size: int


def no_duplicate_keys(pairs):
    """object_pairs_hook for json.loads: a repeated key is an error, not "the last one wins"."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str):
    """json.loads without duplicate keys or NaN/Infinity; every failure is a ValueError."""
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _identify(head: bytes, size: int, name: str) -> None:
    """Refuse a file that is not safetensors, naming what it is when it can be told (pickle, zip).

    A ``{`` after the 8 length bytes makes a file safetensors-shaped; a pickle or a zip has a
    length-independent signature there (a frame length, a zip version field), never that.
    """
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{":
        if 2 <= header_len <= min(MAX_HEADER_BYTES, size - 8):
            return
        if 2 <= header_len <= MAX_HEADER_BYTES:
            raise file_error("truncated", f"{name} is truncated: its header alone should be {header_len} bytes "
                                          f"but the file has {size}; save the transport again.")
        raise file_error("header", f"{name} has a header length of {header_len} bytes for a {size}-byte file "
                                   f"(at most {MAX_HEADER_BYTES} allowed): damaged or not a safetensors file.")
    if size < 10:
        raise file_error("truncated", f"{name} is empty or truncated ({size} bytes); save the transport again.")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise file_error("pickle", f"{name} is a pickle (a .pt/.ckpt/.bin checkpoint?) renamed .safetensors, not "
                                   "a transport file; DeepOT never unpickles files. Fit and save a transport with "
                                   "this pack.")
    if head[:4] == b"PK\x03\x04":
        raise file_error("zip", f"{name} is a zip archive (a PyTorch checkpoint?) renamed .safetensors, not a "
                                "transport file; DeepOT never unpickles files. Fit and save a transport with this "
                                "pack.")
    raise file_error("not_safetensors", f"{name} is not a safetensors file (its header is not JSON); load a file "
                                        "written by Save Latent Transport.")


def _entry(key: str, value, data_len: int, name: str) -> TensorEntry:
    def bad(what):
        return file_error("header", f"{name}: tensor {key!r} {what}; the file is damaged.")

    if not isinstance(value, dict) or set(value) != _ENTRY_KEYS:
        raise bad("is not described by exactly dtype, shape and data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise bad(f"has the unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise bad(f"has the invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(n) is int for n in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len):
        raise file_error("layout", f"{name}: tensor {key!r} has data offsets {offsets!r} outside the "
                                   f"{data_len}-byte data region; the file is damaged or truncated.")
    length = offsets[1] - offsets[0]
    numel = 0 if 0 in shape else 1
    for n in shape if numel else ():  # stop as soon as it exceeds what the bytes can hold: no huge products
        numel *= n
        if numel * DTYPE_SIZES[dtype] > length:
            break
    if numel * DTYPE_SIZES[dtype] != length:
        raise file_error("layout", f"{name}: tensor {key!r} ({dtype} {shape}) should take "
                                   f"{DTYPE_SIZES[dtype]} × its elements bytes but has {length}; the file is damaged.")
    return TensorEntry(key, dtype, tuple(shape), offsets[0], offsets[1])


def read_header(handle: BinaryIO, name: str) -> Header:
    """Parse and check the header of an open file; the tensors' bytes are not read."""
    size = os.fstat(handle.fileno()).st_size
    if size > MAX_FILE_BYTES:
        raise file_error("too_large", f"{name} is {size} bytes, too large to be a transport file.")
    handle.seek(0)
    head = handle.read(9)
    _identify(head, size, name)
    header_len = int.from_bytes(head[:8], "little")
    raw = head[8:] + handle.read(header_len - 1)
    if len(raw) != header_len:
        raise file_error("truncated", f"{name} changed or was cut while being read; try again.")
    try:
        document = strict_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise file_error("header", f"{name} has a damaged header ({exc}); save the transport again.") from None
    if not isinstance(document, dict):
        raise file_error("header", f"{name} has a damaged header (not a JSON object); save the transport again.")
    metadata = document.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise file_error("header", f"{name} has damaged metadata (not a map of strings); save the transport again.")
    data_start = 8 + header_len
    entries = [_entry(k, v, size - data_start, name) for k, v in document.items()]
    position = 0
    for entry in sorted(entries, key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise file_error("layout", f"{name}: tensor {entry.name!r} starts at byte {entry.begin} of the data, "
                                       f"expected {position} (tensors overlap or leave a gap); the file is damaged.")
        position = entry.end
    if position != size - data_start:
        raise file_error("layout", f"{name}: its tensors take {position} bytes but the data region has "
                                   f"{size - data_start}; the file is damaged, truncated or has bytes appended.")
    tensors = {e.name: TensorEntry(e.name, e.dtype, e.shape, e.begin + data_start, e.end + data_start)
               for e in entries}
    return Header(metadata, tensors, size)


def read_bytes(handle: BinaryIO, entry: TensorEntry, name: str) -> bytearray:
    """The raw (little-endian) bytes of one tensor; their length was checked against the file by read_header."""
    buffer = bytearray(entry.end - entry.begin)
    handle.seek(entry.begin)
    if handle.readinto(buffer) != len(buffer):
        raise file_error("truncated", f"{name} changed or was cut while being read; try again.")
    return buffer


def decode(entry: TensorEntry, buffer: bytearray) -> torch.Tensor:
    """A CPU tensor over ``buffer`` (no copy on little-endian machines)."""
    array = np.frombuffer(buffer, dtype=np.dtype(DECODABLE[entry.dtype])).reshape(entry.shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))

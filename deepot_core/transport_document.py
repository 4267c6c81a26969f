"""The JSON document of a transport file and its two checksums: what each field must be, and its default.

``DOCUMENT_FIELDS`` is the schema the loader reads through. Versioning rule
(docs/transport_format.md): a new format version may only *add* fields, each with a default
meaning "what older files did", so every older file keeps loading; a field is never removed
or given a new meaning. Adding one is a line here (its check and its default) and passing it
on where ``serialization._build`` makes the transport.
"""
import hashlib
import json
import re
from typing import Dict, Iterable, Tuple

import torch

from .constants import FILE_FORMAT_NAME, FILE_FORMAT_VERSION, MAX_FEATURE_DIM
from .safetensors_reader import Header, file_error, no_duplicate_keys
from .validation import check_patch_size

#: safetensors metadata keys: the JSON document, and its SHA-256 (absent in files written before issue 9).
DOCUMENT_KEY, DOCUMENT_SHA_KEY = "deepot", "deepot_sha256"
#: The torch dtype names the tensor checksum hashes, per safetensors dtype of a transport's tensors.
CHECKSUM_DTYPE_NAMES = {"F64": "torch.float64", "I64": "torch.int64"}


def tensor_digest(parts: Iterable[Tuple[str, str, bytes]]) -> str:
    """SHA-256 over (name UTF-8, dtype name, little-endian bytes) of every tensor, in name order."""
    digest = hashlib.sha256()
    for name, dtype_name, data in sorted(parts, key=lambda part: part[0]):
        digest.update(name.encode())
        digest.update(dtype_name.encode())
        digest.update(data)
    return digest.hexdigest()


def tensor_checksum(tensors: Dict[str, torch.Tensor]) -> str:
    """The tensor checksum of in-memory tensors (any dtype, even bf16: their raw bytes)."""
    return tensor_digest((name, str(t.dtype), t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
                         for name, t in tensors.items())


def document_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _integer(value):
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value


def _channels(value):
    if not 0 < _integer(value) <= MAX_FEATURE_DIM:
        raise ValueError(f"{value} channels is out of range")
    return value


def _eps(value):
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"eps {value!r} is not a number in 0..1")
    return float(value)


def _boolean(value):
    if type(value) is not bool:
        raise ValueError(f"{value!r} is not true or false")
    return value


def _timestamp(value):
    if type(value) not in (int, float) or not abs(value) < 1e11:  # also refuses NaN; 1e11 s ≈ year 5000
        raise ValueError(f"{value!r} is not a time stamp")
    return float(value)


def _hex_digest(value):
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value!r} is not a SHA-256")
    return value


def _json_object(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"user metadata is a {type(value).__name__}, not a JSON object")
    return value


_REQUIRED = object()
#: What the loader takes from the document: field → (check, default); ``_REQUIRED`` fields must be present.
#: A new field: its check and a default meaning "what older files did" (see the module docstring).
DOCUMENT_FIELDS = {
    "patch_size": (check_patch_size, _REQUIRED),
    "channels": (_channels, _REQUIRED),
    "eps": (_eps, _REQUIRED),
    "zero_shot": (_boolean, _REQUIRED),
    "created": (_timestamp, _REQUIRED),
    "sha256": (_hex_digest, _REQUIRED),
    "user": (_json_object, {}),
}


def parse_document(header: Header, name: str) -> Dict:
    """The JSON document of a file whose header passed ``read_header``: our format, a version we read, intact."""
    meta = header.metadata
    if meta.get("format") != FILE_FORMAT_NAME:
        raise file_error("foreign", f"{name} is a safetensors file but not a DeepOT latent transport (a model or "
                                    "LoRA?); load a file written by Save Latent Transport.")
    version = meta.get("format_version", "")
    if not re.fullmatch(r"[1-9][0-9]{0,8}", version):
        raise file_error("version", f"{name} has an unreadable format version {version[:20]!r}; the file is damaged.")
    if int(version) > FILE_FORMAT_VERSION:
        raise file_error("version", f"{name} was written by a newer DeepOT (format {version}, this one reads "
                                    f"{FILE_FORMAT_VERSION}); update the pack.")
    text = meta.get(DOCUMENT_KEY)
    if not isinstance(text, str):
        raise file_error("metadata", f"{name} lacks its metadata document; the file is damaged.")
    if DOCUMENT_SHA_KEY in meta and meta[DOCUMENT_SHA_KEY] != document_sha(text):
        raise file_error("checksum", f"{name} is damaged: its metadata does not match its checksum.")
    try:
        document = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except (ValueError, RecursionError):
        raise file_error("metadata", f"{name} has damaged metadata (not JSON).") from None
    if not isinstance(document, dict):
        raise file_error("metadata", f"{name} has damaged metadata (not a JSON object).")
    return document


def document_fields(document: Dict, name: str) -> Dict:
    """Every field of ``DOCUMENT_FIELDS``, checked, with defaults for the optional ones an older file lacks."""
    out = {}
    for key, (check, default) in DOCUMENT_FIELDS.items():
        if key not in document:
            if default is _REQUIRED:
                raise file_error("metadata", f"{name} has incomplete metadata (no {key!r}); the file is damaged.")
            out[key] = default
            continue
        try:
            out[key] = check(document[key])
        except (ValueError, TypeError) as exc:
            why = str(exc).rstrip(".")
            raise file_error("metadata", f"{name} has invalid metadata {key!r} ({why}); the file is damaged.") from None
    if out["channels"] * out["patch_size"] ** 2 > MAX_FEATURE_DIM:
        raise file_error("metadata", f"{name} claims D = {out['channels']}·{out['patch_size']}² features, more than "
                                     f"{MAX_FEATURE_DIM}; the file is damaged.")
    return out

"""Transport files: safetensors only (never pickle), checked completely on load, written atomically.

Tensors ``target.{count,mean,scatter,skipped}``, the same for ``source`` (absent for
zero-shot) and ``map.{matrix,mean_source,mean_target}``, float64 except the int64
``skipped``; safetensors metadata ``format``, ``format_version``, ``deepot`` (one JSON
document: patch size, channels, eps, creation time, diagnostics, user metadata and
the SHA-256 of the tensors) and ``deepot_sha256`` (the SHA-256 of that document), so
a damaged or edited file is refused. docs/transport_format.md is the full specification.
"""
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .constants import FILE_FORMAT_NAME, FILE_FORMAT_VERSION
from .errors import TransportFileError, TransportInputError
from .gaussian_ot import GaussianMap
from .safetensors_reader import MAX_FILE_BYTES, MAX_HEADER_BYTES, Header, decode, file_error, read_bytes, read_header
from .statistics import PatchStatistics
from .transport_document import (CHECKSUM_DTYPE_NAMES, DOCUMENT_FIELDS, DOCUMENT_KEY, DOCUMENT_SHA_KEY, document_fields,
                                 document_sha, parse_document, tensor_checksum, tensor_digest)

__all__ = ["save_transport", "load_transport", "read_metadata", "MAX_FILE_BYTES", "MAX_HEADER_BYTES"]

STAT_KEYS = ("count", "mean", "scatter", "skipped")
MAP_KEYS = ("matrix", "mean_source", "mean_target")


# ---------------------------------------------------------------------------- tensors
def _layout(fields: Dict) -> Dict[str, Tuple[str, tuple]]:
    """name → (safetensors dtype, shape) of exactly the tensors a transport with these fields holds."""
    dim = fields["channels"] * fields["patch_size"] ** 2
    shapes = {"count": (1,), "mean": (dim,), "scatter": (dim, dim), "skipped": (1,)}
    out = {}
    for prefix in ["target"] + ([] if fields["zero_shot"] else ["source"]):
        out.update({f"{prefix}.{k}": ("I64" if k == "skipped" else "F64", shapes[k]) for k in STAT_KEYS})
    if not fields["zero_shot"]:
        out.update({"map.matrix": ("F64", (dim, dim)), "map.mean_source": ("F64", (dim,)),
                    "map.mean_target": ("F64", (dim,))})
    return out


def _check_layout(header: Header, fields: Dict, name: str) -> None:
    expected = _layout(fields)
    for key in sorted(set(header.tensors) - set(expected)):
        raise file_error("tensors", f"{name} holds tensor {key!r}, which this transport should not have; the file "
                                    "was edited or is not a transport file.")
    for key, (dtype, shape) in expected.items():
        entry = header.tensors.get(key)
        if entry is None:
            raise file_error("tensors", f"{name} lacks tensor {key!r}: damaged or not a transport file.")
        if entry.dtype != dtype:
            wanted = "float64" if dtype == "F64" else "int64"
            raise file_error("tensors", f"{name}: tensor {key!r} is {entry.dtype}, expected {dtype} ({wanted}); "
                                        "not a file written by this pack.")
        if entry.shape != shape:
            raise file_error("tensors", f"{name}: tensor {key!r} has shape {entry.shape}, expected {shape}; the "
                                        "file is damaged.")


def _build(path: Path, fields: Dict, tensors: Dict[str, torch.Tensor]):
    from .transport import LatentTransport

    p, c = fields["patch_size"], fields["channels"]
    stats = {prefix: PatchStatistics.from_state_tensors(tensors, prefix, p, c)
             for prefix in ("target", "source") if f"{prefix}.count" in tensors}
    fitted = None
    if not fields["zero_shot"]:
        fitted = GaussianMap(matrix=tensors["map.matrix"], mean_source=tensors["map.mean_source"],
                             mean_target=tensors["map.mean_target"])
    try:
        return LatentTransport(stats.get("source"), stats["target"], eps=fields["eps"], metadata=fields["user"],
                               created=fields["created"], fitted_map=fitted)
    except TransportInputError as exc:
        raise file_error("statistics", f"{path.name} holds statistics that cannot be used: {exc}") from None


# ------------------------------------------------------------------------------ reading
def _open(path: Path):
    if not path.exists():
        raise file_error("missing", f"no transport file at {path}.")
    if path.is_dir():
        raise file_error("not_a_file", f"{path} is a directory, not a transport file.")
    if not path.is_file():
        raise file_error("not_a_file", f"{path} is not a regular file.")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise file_error("unreadable", f"{path} cannot be read ({exc.strerror}); check its permissions.") from None


def load_transport(path):
    """Read, validate and rebuild a transport; any problem is a ``TransportFileError`` that says which.

    Order: the container (``read_header``), our format and version, the document and its checksum,
    the exact tensor layout — all before one tensor byte is read — then the tensor checksum.
    """
    path = Path(path)
    with _open(path) as handle:
        header = read_header(handle, path.name)
        fields = document_fields(parse_document(header, path.name), path.name)
        _check_layout(header, fields, path.name)
        raw = {key: read_bytes(handle, entry, path.name) for key, entry in header.tensors.items()}
    parts = ((key, CHECKSUM_DTYPE_NAMES[header.tensors[key].dtype], data) for key, data in raw.items())
    if tensor_digest(parts) != fields["sha256"]:
        raise file_error("checksum", f"{path.name} is damaged: its tensors do not match their checksum.")
    tensors = {key: decode(header.tensors[key], data) for key, data in raw.items()}
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise file_error("tensors", f"{path.name}: tensor {key!r} holds NaN/Inf; the file is damaged.")
    return _build(path, fields, tensors)


def read_metadata(path) -> Dict:
    """The JSON document of a transport file, checked but without reading tensors (for listings and ``info``)."""
    path = Path(path)
    with _open(path) as handle:
        header = read_header(handle, path.name)
    document = parse_document(header, path.name)
    document_fields(document, path.name)
    return document


# ------------------------------------------------------------------------------ writing
def transport_tensors(transport) -> Dict[str, torch.Tensor]:
    tensors = transport.target.state_tensors("target")
    if transport.source is not None:
        tensors.update(transport.source.state_tensors("source"))
        tensors["map.matrix"] = transport.map.matrix.contiguous()
        tensors["map.mean_source"] = transport.map.mean_source.contiguous()
        tensors["map.mean_target"] = transport.map.mean_target.contiguous()
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _json_safe(value):
    """Diagnostics hold floats that may be inf; JSON has no inf, so store those as strings."""
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _iso_time(created: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(created, _dt.timezone.utc).isoformat()
    except (OverflowError, ValueError, OSError):
        return ""


def _package_version() -> str:
    from . import __version__
    return __version__


def _header(transport, tensors: Dict[str, torch.Tensor], user: Dict) -> Dict[str, str]:
    document = {
        "patch_size": transport.patch_size, "channels": transport.channels, "eps": transport.eps,
        "zero_shot": transport.zero_shot, "created": transport.created, "created_iso": _iso_time(transport.created),
        "package_version": _package_version(), "diagnostics": _json_safe(transport.diagnostics),
        "user": user, "sha256": tensor_checksum(tensors),
    }
    text = json.dumps(document, sort_keys=True)
    return {"format": FILE_FORMAT_NAME, "format_version": str(FILE_FORMAT_VERSION), DOCUMENT_KEY: text,
            DOCUMENT_SHA_KEY: document_sha(text)}


def _verify_written(tmp: str, name: str) -> None:
    """The file just written must pass the reader's header checks, so a save never makes a file load refuses."""
    with open(tmp, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > MAX_HEADER_BYTES:
            raise TransportInputError(
                f"the metadata makes the file header {header_len} bytes, more than the {MAX_HEADER_BYTES} a transport "
                "file may have; store less metadata (e.g. long texts in a file of their own).")
        document_fields(parse_document(read_header(handle, name), name), name)


def save_transport(transport, path, metadata: Optional[Dict] = None, overwrite: bool = False) -> Path:
    """Write ``transport`` to ``path`` through a temporary file and an atomic rename.

    An existing file is never replaced unless ``overwrite`` is true; a crash
    mid-write leaves any old file intact (only the temporary file is lost).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise TransportInputError(f"transport files end in .safetensors; got {path.name!r}.")
    if path.is_dir():
        raise TransportFileError(f"{path} is a directory; give a file name ending in .safetensors.")
    if path.exists() and not overwrite:
        raise TransportFileError(f"{path} already exists; choose another name or allow overwriting.")
    user = dict(transport.metadata)
    user.update(metadata or {})
    try:
        json.dumps(user, sort_keys=True)  # exactly as the document is written
    except (TypeError, ValueError, RecursionError) as exc:
        raise TransportInputError(f"metadata must be JSON-serialisable: {exc}") from None
    for key, value in (("created", transport.created), ("eps", transport.eps)):
        try:
            DOCUMENT_FIELDS[key][0](value)  # what the reader will accept
        except ValueError as exc:
            raise TransportInputError(f"cannot save this transport: {exc}.") from None
    tensors = transport_tensors(transport)
    header = _header(transport, tensors, user)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        _verify_written(tmp, path.name)
        os.chmod(tmp, 0o644)  # mkstemp makes files only their owner can read; a transport is meant to be shared
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails if a file appeared meanwhile
            except FileExistsError:
                raise TransportFileError(f"{path} already exists; choose another name or allow overwriting.") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise TransportFileError(f"{path} already exists; choose another name.") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

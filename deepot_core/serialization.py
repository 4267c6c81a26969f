"""Transport files: safetensors only (never pickle), validated on load, written atomically.

Layout: float64 tensors ``target.{count,mean,scatter,skipped}``, the same for
``source`` (absent for zero-shot), and ``map.{matrix,mean_source,mean_target}``;
metadata ``format``/``format_version`` plus one JSON document with patch size,
channels, eps, counts, W2 diagnostics, creation time, package version, user
metadata and a SHA-256 of every tensor, so a damaged or edited file is refused.
"""
import datetime as _dt
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Dict, Optional

import torch

from .constants import FILE_FORMAT_NAME, FILE_FORMAT_VERSION
from .errors import TransportFileError, TransportInputError
from .gaussian_ot import GaussianMap
from .statistics import PatchStatistics
from .validation import check_patch_size

#: Largest safetensors header we read; ours are a few KiB. Guards against absurd header lengths.
MAX_HEADER_BYTES = 1 << 20
#: Largest transport file we open (D ≤ 4096 → about 400 MiB of float64 matrices).
MAX_FILE_BYTES = 1 << 30
STAT_KEYS = ("count", "mean", "scatter", "skipped")
MAP_KEYS = ("matrix", "mean_source", "mean_target")


def _checksum(tensors: Dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: any dtype, even bf16
    return digest.hexdigest()


def _package_version() -> str:
    from . import __version__
    return __version__


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
        json.dumps(user)
    except (TypeError, ValueError) as exc:
        raise TransportInputError(f"metadata must be JSON-serialisable: {exc}") from None
    tensors = transport_tensors(transport)
    document = {
        "patch_size": transport.patch_size, "channels": transport.channels, "eps": transport.eps,
        "zero_shot": transport.zero_shot, "created": transport.created,
        "created_iso": _dt.datetime.fromtimestamp(transport.created, _dt.timezone.utc).isoformat(),
        "package_version": _package_version(), "diagnostics": _json_safe(transport.diagnostics),
        "user": user, "sha256": _checksum(tensors),
    }
    header = {"format": FILE_FORMAT_NAME, "format_version": str(FILE_FORMAT_VERSION),
              "deepot": json.dumps(document, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
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


def _sniff(path: Path) -> None:
    """Refuse what is not a plausible safetensors file before any parser sees it."""
    if not path.exists():
        raise TransportFileError(f"no transport file at {path}.")
    if path.is_dir():
        raise TransportFileError(f"{path} is a directory, not a transport file.")
    if not path.is_file():
        raise TransportFileError(f"{path} is not a regular file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TransportFileError(f"{path.name} is {size} bytes, too large to be a transport file.")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if size < 10:
        raise TransportFileError(f"{path.name} is empty or truncated ({size} bytes); save the transport again.")
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise TransportFileError(
            f"{path.name} is a pickle/PyTorch checkpoint renamed .safetensors, not a transport file; "
            "DeepOT never unpickles files. Fit and save a transport with this pack.")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > MAX_HEADER_BYTES or header_len > size - 8:
        raise TransportFileError(
            f"{path.name} has a header length of {header_len} bytes for a {size}-byte file: damaged or not "
            "a safetensors file.")
    if head[8:9] != b"{":
        raise TransportFileError(f"{path.name} is not a safetensors file (its header is not JSON).")


def _read(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:  # the parser's own errors name byte offsets, not fixes
        raise TransportFileError(f"{path.name} is damaged or truncated ({exc}); save the transport again.") from None
    return header, tensors


def _document(path: Path, header: Dict) -> Dict:
    if header.get("format") != FILE_FORMAT_NAME:
        raise TransportFileError(
            f"{path.name} is a safetensors file but not a DeepOT latent transport (a model or LoRA?); "
            "load a file written by Save Latent Transport.")
    try:
        version = int(header.get("format_version", ""))
    except ValueError:
        raise TransportFileError(f"{path.name} has an unreadable format version.") from None
    if version > FILE_FORMAT_VERSION:
        raise TransportFileError(
            f"{path.name} was written by a newer DeepOT (format {version}, this one reads {FILE_FORMAT_VERSION}); "
            "update the pack.")
    try:
        document = json.loads(header.get("deepot", ""))
    except ValueError:
        raise TransportFileError(f"{path.name} has damaged metadata (not JSON).") from None
    if not isinstance(document, dict):
        raise TransportFileError(f"{path.name} has damaged metadata.")
    return document


def _expect(tensors, name, shape, path):
    if name not in tensors:
        raise TransportFileError(f"{path.name} lacks tensor {name!r}: damaged or not a transport file.")
    t = tensors[name]
    if tuple(t.shape) != tuple(shape):
        raise TransportFileError(
            f"{path.name}: tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}; damaged file.")
    expected = torch.int64 if name.endswith(".skipped") else torch.float64
    if t.dtype != expected:
        raise TransportFileError(f"{path.name}: tensor {name!r} is {t.dtype}, expected {expected}; not our file.")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise TransportFileError(f"{path.name}: tensor {name!r} holds NaN/Inf; damaged file.")
    return t


def load_transport(path):
    """Read, validate and rebuild a transport; any problem is a ``TransportFileError`` that says which."""
    from .transport import LatentTransport

    path = Path(path)
    _sniff(path)
    header, tensors = _read(path)
    doc = _document(path, header)
    try:
        patch_size = check_patch_size(doc["patch_size"])
        channels = int(doc["channels"])
        eps = float(doc["eps"])
        zero_shot = bool(doc["zero_shot"])
        created = float(doc["created"])
        expected_sum = str(doc["sha256"])
        user = doc.get("user") or {}
        if not isinstance(user, dict):
            raise TypeError(f"user metadata is a {type(user).__name__}, not a JSON object")
    except (KeyError, TypeError, ValueError, TransportInputError) as exc:
        raise TransportFileError(f"{path.name} has incomplete or invalid metadata ({exc}).") from None
    if not 0 < channels <= 4096:
        raise TransportFileError(f"{path.name} claims {channels} channels; damaged metadata.")
    if _checksum(tensors) != expected_sum:
        raise TransportFileError(f"{path.name} is damaged: its tensors do not match their checksum.")
    dim = channels * patch_size ** 2
    prefixes = ["target"] + ([] if zero_shot else ["source"])
    stats = {}
    for prefix in prefixes:
        _expect(tensors, f"{prefix}.count", (1,), path)
        _expect(tensors, f"{prefix}.mean", (dim,), path)
        _expect(tensors, f"{prefix}.scatter", (dim, dim), path)
        _expect(tensors, f"{prefix}.skipped", (1,), path)
        stats[prefix] = PatchStatistics.from_state_tensors(tensors, prefix, patch_size, channels)
    fitted = None
    if not zero_shot:
        fitted = GaussianMap(
            matrix=_expect(tensors, "map.matrix", (dim, dim), path).to(torch.float64),
            mean_source=_expect(tensors, "map.mean_source", (dim,), path).to(torch.float64),
            mean_target=_expect(tensors, "map.mean_target", (dim,), path).to(torch.float64),
        )
    try:
        return LatentTransport(stats.get("source"), stats["target"], eps=eps, metadata=user,
                               created=created, fitted_map=fitted)
    except TransportInputError as exc:
        raise TransportFileError(f"{path.name} holds statistics that cannot be used: {exc}") from None


def read_metadata(path) -> Dict:
    """The JSON document of a transport file, without rebuilding it (for listings and ``info``)."""
    path = Path(path)
    _sniff(path)
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
    except Exception as exc:
        raise TransportFileError(f"{path.name} is damaged ({exc}).") from None
    return _document(path, header)

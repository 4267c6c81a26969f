"""Transport files in detail: what is stored, where the temporary file goes, every refusal's exact reason.

Each assertion here was missing until mutation testing (benchmarks/mutation.py)
showed a deliberate bug passing every other test.
"""
import datetime
import json
import os
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import deepot_core.serialization as ser
from deepot_core import LatentTransport, PatchStatistics, TransportFileError, read_metadata
from deepot_core.serialization import _checksum

from test_statistics import latents


def make(c=2, p=3, seed=0, created=1_700_000_000.0, **metadata):
    src, tgt = latents(b=2, c=c, h=9, w=10, seed=seed), latents(b=2, c=c, h=9, w=10, seed=seed + 1) * 1.5
    return LatentTransport(PatchStatistics(p).update(src), PatchStatistics(p).update(tgt), metadata=metadata,
                           created=created)


def parts(path):
    with safe_open(str(path), "pt") as f:
        header = dict(f.metadata())
    return header, load_file(str(path)), json.loads(header["deepot"])


def rewrite(path, out, tensors=None, change=None, header_change=None, keep_checksum=False):
    """``path``'s file with edited tensors / document / header, its checksum updated unless ``keep_checksum``."""
    header, old, doc = parts(path)
    tensors = old if tensors is None else tensors
    doc = {**doc, **(change or {})}
    if not keep_checksum:
        doc["sha256"] = _checksum(tensors)
    save_file(tensors, str(out), metadata={**header, "deepot": json.dumps(doc), **(header_change or {})})
    return out


def refused(path, message):
    with pytest.raises(TransportFileError) as info:
        LatentTransport.load(path)
    assert str(info.value) == message
    return info


def test_document_stores_creation_time_and_non_finite_diagnostics_as_text(tmp_path):
    flat = PatchStatistics(3).update(torch.zeros(1, 2, 6, 6))  # singular target: condition number inf
    tr = LatentTransport(PatchStatistics(3).update(latents(b=1, c=2, h=6, w=6)), flat, created=1_700_000_000.0)
    doc = read_metadata(tr.save(tmp_path / "t.safetensors"))
    assert doc["created_iso"] == "2023-11-14T22:13:20+00:00"
    assert datetime.datetime.fromisoformat(doc["created_iso"]).timestamp() == tr.created
    assert doc["diagnostics"]["target_condition"] == "inf"  # JSON has no inf
    assert ser._json_safe(float("nan")) == "nan" and ser._json_safe([1.5, float("-inf")]) == [1.5, "-inf"]
    assert ser._json_safe({"a": (float("inf"), "x")}) == {"a": ["inf", "x"]}


def test_the_stored_document_does_not_depend_on_key_order(tmp_path):
    """Our JSON document is written with sorted keys (safetensors itself orders its header freely)."""
    a = make(vae="sd15", note="x").save(tmp_path / "a.safetensors")
    b = make(note="x", vae="sd15").save(tmp_path / "b.safetensors")
    document = parts(a)[0]["deepot"]
    assert document == parts(b)[0]["deepot"]
    assert document == json.dumps(json.loads(document), sort_keys=True)


def test_saving_makes_missing_folders(tmp_path):
    path = make().save(tmp_path / "new" / "nested" / "t.safetensors")
    assert LatentTransport.load(path).channels == 2


def test_temporary_file_is_hidden_beside_the_target(tmp_path, monkeypatch):
    import safetensors.torch as st

    seen = []
    real = st.save_file
    monkeypatch.setattr(st, "save_file", lambda tensors, name, metadata=None: (seen.append(name),
                                                                                 real(tensors, name, metadata))[1])
    make().save(tmp_path / "t.safetensors")
    (written,) = seen
    assert os.path.dirname(written) == str(tmp_path)
    name = os.path.basename(written)
    assert name.startswith(".t.safetensors.") and name.endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]


def test_without_hard_links_saving_still_refuses_to_replace(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = make().save(tmp_path / "t.safetensors")  # falls back to a rename
    assert LatentTransport.load(path).channels == 2
    target, checks, real_exists = tmp_path / "u.safetensors", [], ser.Path.exists

    def appears_meanwhile(self):  # absent at the first check, present by the time of the rename
        if self == target:
            checks.append(1)
            return len(checks) > 1
        return real_exists(self)

    monkeypatch.setattr(ser.Path, "exists", appears_meanwhile)
    with pytest.raises(TransportFileError) as info:
        make().save(tmp_path / "u.safetensors")
    assert str(info.value) == f"{tmp_path / 'u.safetensors'} already exists; choose another name."


def test_a_file_appearing_during_the_save_is_not_replaced(tmp_path, monkeypatch):
    def raced(source, target):
        raise FileExistsError(target)

    monkeypatch.setattr(os, "link", raced)
    with pytest.raises(TransportFileError) as info:
        make().save(tmp_path / "t.safetensors")
    assert str(info.value) == (f"{tmp_path / 't.safetensors'} already exists; choose another name or allow "
                               "overwriting.")
    assert list(tmp_path.iterdir()) == []


def test_save_refusals_say_exactly_why(tmp_path):
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(TransportFileError) as info:
        make().save(tmp_path / "d.safetensors")
    assert str(info.value) == f"{tmp_path / 'd.safetensors'} is a directory; give a file name ending in .safetensors."


def test_size_limits_are_inclusive(tmp_path, monkeypatch):
    path = make().save(tmp_path / "t.safetensors")
    size = path.stat().st_size
    monkeypatch.setattr(ser, "MAX_FILE_BYTES", size)
    assert LatentTransport.load(path).channels == 2  # exactly the limit: read
    monkeypatch.setattr(ser, "MAX_FILE_BYTES", size - 1)
    refused(path, f"t.safetensors is {size} bytes, too large to be a transport file.")
    monkeypatch.setattr(ser, "MAX_FILE_BYTES", 1 << 30)
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    monkeypatch.setattr(ser, "MAX_HEADER_BYTES", header_length)
    assert LatentTransport.load(path).channels == 2


def test_tiny_files_and_header_lengths_at_the_boundaries(tmp_path):
    for size in (9, 10):
        (tmp_path / "s.safetensors").write_bytes(b"\x01" + b"\0" * (size - 1))
        if size < 10:
            refused(tmp_path / "s.safetensors", f"s.safetensors is empty or truncated ({size} bytes); "
                                                "save the transport again.")
        else:
            refused(tmp_path / "s.safetensors", "s.safetensors is not a safetensors file (its header is not JSON).")
    header = json.dumps({"__metadata__": {"format": "other"}}).encode()
    exact = struct.pack("<Q", len(header)) + header  # a header that fills the file: no tensor bytes
    (tmp_path / "h.safetensors").write_bytes(exact)
    refused(tmp_path / "h.safetensors", "h.safetensors is a safetensors file but not a DeepOT latent transport "
                                        "(a model or LoRA?); load a file written by Save Latent Transport.")
    for extra in (1, 4):
        (tmp_path / "c.safetensors").write_bytes(struct.pack("<Q", len(header) + extra) + header)
        refused(tmp_path / "c.safetensors", f"c.safetensors has a header length of {len(header) + extra} bytes "
                                            f"for a {len(exact)}-byte file: damaged or not a safetensors file.")


def test_pickles_are_named_as_pickles(tmp_path):
    import pickle

    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.safetensors"
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=protocol))
        refused(path, f"p{protocol}.safetensors is a pickle/PyTorch checkpoint renamed .safetensors, not a "
                      "transport file; DeepOT never unpickles files. Fit and save a transport with this pack.")


def test_special_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    refused(fifo, f"{fifo} is not a regular file.")


def test_format_and_document_refusals_are_exact(tmp_path):
    good = make().save(tmp_path / "t.safetensors")
    header, tensors, _ = parts(good)
    without_version = {k: v for k, v in header.items() if k != "format_version"}
    save_file(tensors, str(tmp_path / "v.safetensors"), metadata=without_version)
    refused(tmp_path / "v.safetensors", "v.safetensors has an unreadable format version.")
    without_document = {k: v for k, v in header.items() if k != "deepot"}
    save_file(tensors, str(tmp_path / "n.safetensors"), metadata=without_document)
    refused(tmp_path / "n.safetensors", "n.safetensors has damaged metadata (not JSON).")
    save_file(tensors, str(tmp_path / "f.safetensors"), metadata={**header, "format_version": "7"})
    refused(tmp_path / "f.safetensors", "f.safetensors was written by a newer DeepOT (format 7, this one reads 1); "
                                        "update the pack.")
    rewrite(good, tmp_path / "u.safetensors", change={"user": [1]})
    refused(tmp_path / "u.safetensors", "u.safetensors has incomplete or invalid metadata "
                                        "(user metadata is a list, not a JSON object).")
    with pytest.raises(TransportFileError) as info:
        read_metadata(tmp_path / "v.safetensors")
    assert str(info.value) == "v.safetensors has an unreadable format version."
    (tmp_path / "x.safetensors").write_bytes(good.read_bytes()[:200] + b"\0" * 20000)
    with pytest.raises(TransportFileError, match=r"^x\.safetensors is damaged \("):
        read_metadata(tmp_path / "x.safetensors")


@pytest.mark.parametrize("channels, ok", [(0, False), (1, True), (4096, None), (4097, False)])
def test_channel_count_bounds(tmp_path, channels, ok):
    if ok:  # a real one-channel transport loads
        path = make(c=1).save(tmp_path / "t.safetensors")
        assert LatentTransport.load(path).channels == 1
        return
    path = rewrite(make().save(tmp_path / "t.safetensors"), tmp_path / "c.safetensors", change={"channels": channels})
    if ok is None:  # inside the bounds: refused later, for the tensors' shapes
        refused(path, f"c.safetensors: tensor 'target.mean' has shape (18,), expected ({channels * 9},); "
                      "damaged file.")
    else:
        refused(path, f"c.safetensors claims {channels} channels; damaged metadata.")


@pytest.mark.parametrize("name, shape", [("target.scatter", (18, 17)), ("target.skipped", (2,)),
                                         ("source.scatter", (17, 18)), ("map.matrix", (18, 1)),
                                         ("map.mean_source", (3,)), ("map.mean_target", (19,))])
def test_every_tensor_shape_is_checked_by_name(tmp_path, name, shape):
    good = make().save(tmp_path / "t.safetensors")
    _, tensors, _ = parts(good)
    bad = dict(tensors)
    bad[name] = torch.zeros(shape, dtype=tensors[name].dtype)
    refused(rewrite(good, tmp_path / "b.safetensors", tensors=bad),
            f"b.safetensors: tensor {name!r} has shape {tuple(shape)}, expected {tuple(tensors[name].shape)}; "
            "damaged file.")


def test_missing_and_non_finite_tensors_are_named(tmp_path):
    good = make().save(tmp_path / "t.safetensors")
    _, tensors, _ = parts(good)
    refused(rewrite(good, tmp_path / "m.safetensors", tensors={k: v for k, v in tensors.items() if k != "map.matrix"}),
            "m.safetensors lacks tensor 'map.matrix': damaged or not a transport file.")
    nan = dict(tensors)
    nan["source.mean"] = tensors["source.mean"].clone()
    nan["source.mean"][3] = float("nan")
    refused(rewrite(good, tmp_path / "n.safetensors", tensors=nan),
            "n.safetensors: tensor 'source.mean' holds NaN/Inf; damaged file.")


def test_the_stored_map_is_used_not_recomputed(tmp_path):
    good = make().save(tmp_path / "t.safetensors")
    _, tensors, _ = parts(good)
    edited = dict(tensors)
    edited["map.matrix"] = tensors["map.matrix"] * 1.5  # what a different LAPACK might have given, exaggerated
    loaded = LatentTransport.load(rewrite(good, tmp_path / "e.safetensors", tensors=edited))
    assert torch.equal(loaded.map.matrix, edited["map.matrix"])

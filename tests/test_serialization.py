"""Transport files: bit-identical round trip, metadata, further accumulation, atomic, no overwrite."""
import json
from pathlib import Path

import pytest
import torch

from deepot_core import (LatentTransport, PatchStatistics, TransportFileError, TransportInputError, load_transport,
                         read_metadata)
from deepot_core.constants import FILE_FORMAT_VERSION

from test_statistics import latents


def make_transport(seed=0, c=4, p=3):
    src, tgt = latents(b=2, c=c, seed=seed), latents(b=2, c=c, seed=seed + 1) * 1.3 + 0.2
    return LatentTransport.fit(src, tgt, patch_size=p, metadata={"vae": "sd15"}), src


def test_save_load_apply_bit_identical(tmp_path):
    tr, x = make_transport()
    path = tr.save(tmp_path / "t.safetensors")
    loaded = LatentTransport.load(path)
    for z in (x, x.half(), x.double()):
        assert torch.equal(loaded.apply(z, strength=0.7), tr.apply(z, strength=0.7))
    assert torch.equal(loaded.map.matrix, tr.map.matrix)
    assert loaded.diagnostics["w2_before"] == tr.diagnostics["w2_before"]
    assert loaded.report() == tr.report()


def test_metadata_round_trip(tmp_path):
    tr, _ = make_transport()
    path = tr.save(tmp_path / "t.safetensors", metadata={"note": "ünïcode", "n": [1, 2]})
    doc = read_metadata(path)
    assert doc["patch_size"] == 3 and doc["channels"] == 4 and doc["eps"] == tr.eps
    assert doc["user"] == {"vae": "sd15", "note": "ünïcode", "n": [1, 2]}
    assert doc["created"] == tr.created and doc["package_version"]
    assert doc["diagnostics"]["source_count"] == tr.source.count
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format_version"] == str(FILE_FORMAT_VERSION)
    loaded = LatentTransport.load(path)
    assert loaded.metadata == doc["user"] and loaded.created == tr.created
    with pytest.raises(TransportInputError, match="JSON"):
        tr.save(tmp_path / "u.safetensors", metadata={"x": object()})
    with pytest.raises(TransportInputError, match=".safetensors"):
        tr.save(tmp_path / "u.pt")


def test_loaded_transport_keeps_accumulating(tmp_path):
    tr, x = make_transport()
    loaded = LatentTransport.load(tr.save(tmp_path / "t.safetensors"))
    more_src, more_tgt = latents(b=2, c=4, seed=10), latents(b=1, c=4, seed=11) * 1.3
    src = loaded.source.update(more_src)
    tgt = loaded.target.merge(PatchStatistics(3).update(more_tgt))
    refit = LatentTransport.fit(src, tgt)
    pooled = LatentTransport.fit(
        PatchStatistics(3).update(x).update(more_src),
        PatchStatistics(3).update(latents(b=2, c=4, seed=1) * 1.3 + 0.2).update(more_tgt))
    torch.testing.assert_close(refit.map.matrix, pooled.map.matrix, rtol=1e-9, atol=1e-10)
    assert refit.source.count == pooled.source.count


def test_zero_shot_round_trip(tmp_path):
    target = PatchStatistics(3).update(latents(b=2, c=4, seed=3))
    zs = LatentTransport.fit(None, target)
    loaded = LatentTransport.load(zs.save(tmp_path / "z.safetensors"))
    assert loaded.zero_shot
    x = latents(b=1, c=4, seed=4)
    assert torch.equal(loaded.apply(x), zs.apply(x))


def test_never_overwrites_unless_asked(tmp_path):
    a, _ = make_transport(seed=0)
    b, _ = make_transport(seed=5)
    path = a.save(tmp_path / "t.safetensors")
    before = path.read_bytes()
    with pytest.raises(TransportFileError, match="already exists"):
        b.save(path)
    assert path.read_bytes() == before
    b.save(path, overwrite=True)
    assert torch.equal(LatentTransport.load(path).map.matrix, b.map.matrix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]  # no temporary left behind


def test_crash_mid_save_leaves_old_file(tmp_path, monkeypatch):
    import safetensors.torch as st

    a, _ = make_transport(seed=0)
    path = a.save(tmp_path / "t.safetensors")
    before = path.read_bytes()
    real_save = st.save_file

    def crashing_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # half-written file, then the process "dies"
            f.truncate(100)
        raise KeyboardInterrupt("simulated crash mid-save")

    monkeypatch.setattr(st, "save_file", crashing_save)
    b, _ = make_transport(seed=5)
    for overwrite in (True, False):
        target = path if overwrite else tmp_path / "new.safetensors"
        with pytest.raises(KeyboardInterrupt):
            b.save(target, overwrite=overwrite)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]
    assert torch.equal(LatentTransport.load(path).map.matrix, a.map.matrix)


def test_checksum_covers_every_tensor(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    tr, _ = make_transport()
    path = tr.save(tmp_path / "t.safetensors")
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    tensors = load_file(str(path))
    tensors["map.matrix"][0, 0] += 1e-9  # a quietly edited map
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=header)
    with pytest.raises(TransportFileError, match="checksum"):
        LatentTransport.load(tmp_path / "edited.safetensors")
    doc = json.loads(header["deepot"])
    assert len(doc["sha256"]) == 64


@pytest.mark.parametrize("low_bytes", [b"\x80", b"PK"])
def test_header_length_that_looks_like_a_pickle_still_loads(tmp_path, low_bytes):
    """A header of 0x…80 (or 0x…4b50) bytes starts the file like a pickle (or a zip): it is still ours.

    Seen in ComfyUI: one in 256 files Save Latent Transport wrote was refused as a pickle.
    """
    import struct

    tr, _ = make_transport()

    def header_length(pad):
        path = tr.save(tmp_path / "t.safetensors", metadata={"pad": "x" * pad}, overwrite=True)
        return path, struct.unpack("<Q", path.read_bytes()[:8])[0]

    wanted = int.from_bytes(low_bytes, "little")
    modulus = 1 << (8 * len(low_bytes))
    _, length = header_length(0)
    guess = (wanted - length) % modulus  # each padding character adds one header byte (before 8-byte alignment)
    for pad in range(max(guess - 16, 0), guess + 16):
        path, length = header_length(pad)
        if length % modulus == wanted:
            break
    else:
        pytest.fail(f"no padding gave a header length starting with {low_bytes!r}")
    assert path.read_bytes()[:len(low_bytes)] == low_bytes
    assert torch.equal(LatentTransport.load(path).map.matrix, tr.map.matrix)


def resealed(path, edit):
    """The transport file at ``path`` with its tensors edited by ``edit(tensors)`` and both checksums redone:
    a well-formed file whose content is what ``edit`` made it."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from deepot_core.transport_document import DOCUMENT_KEY, DOCUMENT_SHA_KEY, document_sha, tensor_checksum

    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(path))
    edit(tensors)
    document = json.loads(metadata[DOCUMENT_KEY])
    document["sha256"] = tensor_checksum(tensors)
    metadata[DOCUMENT_KEY] = json.dumps(document)
    metadata[DOCUMENT_SHA_KEY] = document_sha(metadata[DOCUMENT_KEY])
    save_file(tensors, str(path), metadata=metadata)


def test_a_sealed_file_with_unusable_statistics_is_refused_as_such(tmp_path):
    path = tmp_path / "one_sample.safetensors"
    LatentTransport.fit(latents(seed=50), latents(seed=51), patch_size=3).save(path)
    load_transport(path)  # intact: loads
    resealed(path, lambda tensors: tensors["source.count"].fill_(1.0))
    with pytest.raises(TransportFileError) as caught:
        load_transport(path)
    assert caught.value.reason == "statistics"
    assert str(caught.value) == ("one_sample.safetensors holds statistics that cannot be used: these patch "
                                 "statistics hold 1 samples, need at least 2; feed more (or larger) images, or check "
                                 "that the mask is not all zero.")


def test_the_stored_map_is_used_as_stored_not_refitted(tmp_path):
    """A loaded transport applies the map in the file bit for bit, even where a refit would differ."""
    fitted = LatentTransport.fit(latents(seed=52), latents(seed=53), patch_size=3)
    other = LatentTransport.fit(latents(seed=52), latents(seed=53), patch_size=3, eps=0.5).map  # a different map
    path = tmp_path / "stored.safetensors"
    LatentTransport(fitted.source, fitted.target, eps=fitted.eps, fitted_map=other).save(path)
    loaded = load_transport(path)
    assert torch.equal(loaded.map.matrix, other.matrix) and not torch.equal(loaded.map.matrix, fitted.map.matrix)
    assert torch.equal(loaded.map.mean_source, other.mean_source)
    assert torch.equal(loaded.map.mean_target, other.mean_target)


# ------------------------------------------------------------------ the writer in detail (mutation-tested)
def strict_document(path):
    """The file's JSON document, parsed as strict JSON (NaN/Infinity are not JSON), and its raw text."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        text = handle.metadata()["deepot"]

    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse), text


def test_the_document_is_strict_sorted_json_with_an_iso_time(tmp_path):
    from deepot_core.serialization import save_transport

    flat_target = PatchStatistics(1).update(torch.zeros(1, 2, 4, 4))  # condition number ∞
    transport = LatentTransport(PatchStatistics(1).update(latents(b=1, c=2, h=4, w=4)), flat_target, created=0.0)
    assert transport.diagnostics["target_condition"] == float("inf")
    path = save_transport(transport, tmp_path / "flat.safetensors")
    document, text = strict_document(path)
    assert document["diagnostics"]["target_condition"] == "inf"
    assert text == json.dumps(document, sort_keys=True)  # docs/transport_format.md: sort_keys=True writes it
    assert document["created_iso"] == "1970-01-01T00:00:00+00:00"


def test_json_safe_and_iso_time():
    from deepot_core.serialization import _iso_time, _json_safe

    value = {"a": [float("inf"), float("nan"), 1.5, (float("-inf"), 2)], "b": {"c": float("nan")}, "d": "x"}
    assert _json_safe(value) == {"a": ["inf", "nan", 1.5, ["-inf", 2]], "b": {"c": "nan"}, "d": "x"}
    assert _iso_time(86400.5) == "1970-01-02T00:00:00.500000+00:00"
    assert _iso_time(1e20) == ""  # beyond datetime's range: no time for people, the number stays


def test_save_transport_never_overwrites_by_default_and_names_a_directory(tmp_path):
    from deepot_core.serialization import save_transport

    transport = LatentTransport.fit(None, latents(seed=54), patch_size=3)
    path = save_transport(transport, tmp_path / "a" / "b" / "c.safetensors")  # missing folders are made
    before = path.read_bytes()
    with pytest.raises(TransportFileError) as caught:
        save_transport(LatentTransport.fit(None, latents(seed=55), patch_size=3), path)
    assert str(caught.value) == f"{path} already exists; choose another name or allow overwriting."
    assert path.read_bytes() == before
    folder = tmp_path / "x.safetensors"
    folder.mkdir()
    with pytest.raises(TransportFileError) as caught:
        save_transport(transport, folder)
    assert str(caught.value) == f"{folder} is a directory; give a file name ending in .safetensors."


def test_the_file_is_written_beside_its_destination_under_a_hidden_temporary_name(tmp_path, monkeypatch):
    """Same folder: the final rename is atomic (one file system); hidden and .tmp: no file list picks it up."""
    import safetensors.torch

    from deepot_core.serialization import save_transport

    written, real = [], safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", lambda t, f, metadata=None: written.append(f) or real(
        t, f, metadata=metadata))
    path = save_transport(LatentTransport.fit(None, latents(seed=56), patch_size=3), tmp_path / "t.safetensors")
    (tmp,) = [Path(f) for f in written]
    assert tmp.parent == tmp_path and tmp.name.startswith(".t.safetensors.") and tmp.name.endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"] and path.is_file()


@pytest.mark.parametrize("fault", ["foreign", "incomplete", "garbage"])
def test_a_writer_fault_is_caught_before_the_file_appears(tmp_path, monkeypatch, fault):
    """If the writer ever made a file the reader refuses, save says so, naming the file, and leaves nothing."""
    import safetensors.torch

    import deepot_core.serialization as serialization

    real_header, real_save = serialization._header, safetensors.torch.save_file

    def header(*args):
        out = real_header(*args)
        if fault == "foreign":
            out["format"] = "something.else"
        elif fault == "incomplete":
            document = json.loads(out["deepot"])
            del document["eps"]
            out["deepot"] = json.dumps(document, sort_keys=True)
            out.pop("deepot_sha256")
        return out

    def save_file(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        if fault == "garbage":
            with open(filename, "r+b") as handle:
                handle.seek(8)
                handle.write(b"[")  # a header that does not open a JSON object: not a safetensors file
    monkeypatch.setattr(serialization, "_header", header)
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(TransportFileError) as caught:
        serialization.save_transport(LatentTransport.fit(None, latents(seed=57), patch_size=3),
                                     tmp_path / "w.safetensors")
    assert str(caught.value).startswith("w.safetensors ")
    assert {"foreign": "foreign", "incomplete": "metadata", "garbage": "not_safetensors"}[fault] == caught.value.reason
    assert list(tmp_path.iterdir()) == []


def test_the_header_limit_is_exact_at_save_and_load(tmp_path):
    """A header of exactly MAX_HEADER_BYTES is written and read; 8 bytes more is refused before any file appears."""
    from deepot_core.serialization import MAX_HEADER_BYTES

    transport, path = LatentTransport.fit(None, latents(seed=58), patch_size=1), tmp_path / "big.safetensors"

    def header_length(note):
        transport.save(path, metadata={"note": note}, overwrite=True)
        return int.from_bytes(path.read_bytes()[:8], "little")

    note = "a" * 1000
    note += "a" * (MAX_HEADER_BYTES - header_length(note))  # safetensors pads the header to 8 bytes
    assert header_length(note) == MAX_HEADER_BYTES
    assert load_transport(path).metadata["note"] == note
    path.unlink()
    with pytest.raises(TransportInputError) as caught:
        transport.save(path, metadata={"note": note + "a" * 8})
    assert str(caught.value) == (f"the metadata makes the file header {MAX_HEADER_BYTES + 8} bytes, more than the "
                                 f"{MAX_HEADER_BYTES} a transport file may have; store less metadata (e.g. long texts "
                                 "in a file of their own).")
    assert list(tmp_path.iterdir()) == []


def test_a_saved_file_is_readable_by_everyone_and_writable_by_its_owner(tmp_path):
    import stat

    path = LatentTransport.fit(None, latents(seed=59), patch_size=3).save(tmp_path / "shared.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_file_that_appears_while_saving_is_kept(tmp_path, monkeypatch):
    """The last step links the finished file into place, which fails if another save got there first."""
    import os

    from deepot_core.serialization import save_transport

    transport, path = LatentTransport.fit(None, latents(seed=60), patch_size=3), tmp_path / "race.safetensors"
    real_link = os.link

    def link_after_another(src, dst):
        Path(dst).write_bytes(b"the other save")
        return real_link(src, dst)
    monkeypatch.setattr(os, "link", link_after_another)
    with pytest.raises(TransportFileError) as caught:
        save_transport(transport, path)
    assert str(caught.value) == f"{path} already exists; choose another name or allow overwriting."
    assert path.read_bytes() == b"the other save" and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("appears", [False, True])
def test_without_hard_links_the_file_is_renamed_into_place(tmp_path, monkeypatch, appears):
    import os

    from deepot_core.serialization import save_transport

    transport, path = LatentTransport.fit(None, latents(seed=61), patch_size=3), tmp_path / "nolink.safetensors"

    def no_links(src, dst):
        if appears:
            Path(dst).write_bytes(b"the other save")
        raise PermissionError(1, "Operation not permitted")  # e.g. FAT, some network shares
    monkeypatch.setattr(os, "link", no_links)
    if appears:
        with pytest.raises(TransportFileError) as caught:
            save_transport(transport, path)
        assert str(caught.value) == f"{path} already exists; choose another name."
        assert path.read_bytes() == b"the other save"
    else:
        save_transport(transport, path)
        assert torch.equal(load_transport(path).target.scatter, transport.target.scatter)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def _with_tensors(path, edit):
    """Rewrite the file at ``path`` with its tensors edited by ``edit`` and its metadata as it was."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"extra": torch.zeros(1)}),
     "holds tensor 'extra', which this transport should not have; the file was edited or is not a transport file."),
    (lambda t: t.pop("map.matrix"), "lacks tensor 'map.matrix': damaged or not a transport file."),
    (lambda t: t.update({"target.mean": t["target.mean"].float()}),
     "tensor 'target.mean' is F32, expected F64 (float64); not a file written by this pack."),
    (lambda t: t.update({"source.skipped": t["source.skipped"].double()}),
     "tensor 'source.skipped' is F64, expected I64 (int64); not a file written by this pack."),
    (lambda t: t.update({"map.mean_target": t["map.mean_target"][:-1].clone()}),
     "tensor 'map.mean_target' has shape (17,), expected (18,); the file is damaged."),
], ids=["extra", "missing", "float32", "float_count", "shape"])
def test_the_tensor_layout_is_exact_and_each_fault_named(tmp_path, edit, message):
    transport = LatentTransport.fit(latents(c=2, seed=62), latents(c=2, seed=63), patch_size=3)
    path = transport.save(tmp_path / "l.safetensors")
    _with_tensors(path, edit)
    with pytest.raises(TransportFileError) as caught:
        load_transport(path)
    assert caught.value.reason == "tensors"
    separator = ": " if message.startswith("tensor ") else " "
    assert str(caught.value) == f"l.safetensors{separator}{message}"


# ------------------------------------------------------------------ the reader's refusals, each by its reason
def refused(path):
    with pytest.raises(TransportFileError) as caught:
        load_transport(path)
    return caught.value.reason, str(caught.value)


def test_missing_directory_and_special_files_are_refused_by_name(tmp_path):
    import os

    missing = tmp_path / "none.safetensors"
    assert refused(missing) == ("missing", f"no transport file at {missing}.")
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    assert refused(folder) == ("not_a_file", f"{folder} is a directory, not a transport file.")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.safetensors"
        os.mkfifo(fifo)
        assert refused(fifo) == ("not_a_file", f"{fifo} is not a regular file.")


def test_an_unreadable_file_says_to_check_its_permissions(tmp_path, monkeypatch):
    import deepot_core.serialization as serialization

    path = LatentTransport.fit(None, latents(seed=68), patch_size=3).save(tmp_path / "locked.safetensors")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(serialization, "open", denied, raising=False)  # as root, chmod 000 would not stop a read
    assert refused(path) == ("unreadable", f"{path} cannot be read (Permission denied); check its permissions.")


def test_a_file_cut_between_its_header_and_its_tensors_is_refused_by_name(tmp_path, monkeypatch):
    import deepot_core.serialization as serialization

    path = LatentTransport.fit(None, latents(seed=69), patch_size=3).save(tmp_path / "cut.safetensors")
    real = serialization.read_header

    def header_then_cut(handle, name):
        header = real(handle, name)
        with open(path, "r+b") as other:
            other.truncate(path.stat().st_size // 2)  # another process overwrites the file meanwhile
        return header
    monkeypatch.setattr(serialization, "read_header", header_then_cut)
    assert refused(path) == ("truncated", "cut.safetensors changed or was cut while being read; try again.")


def test_a_changed_tensor_byte_is_a_checksum_refusal(tmp_path):
    path = LatentTransport.fit(None, latents(seed=70), patch_size=3).save(tmp_path / "flip.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: a finite float64 still, so only the checksum can tell
    path.write_bytes(bytes(data))
    assert refused(path) == ("checksum", "flip.safetensors is damaged: its tensors do not match their checksum.")


def test_a_sealed_tensor_holding_nan_is_refused_as_such(tmp_path):
    path = LatentTransport.fit(latents(seed=73), latents(seed=74), patch_size=3).save(tmp_path / "nan.safetensors")
    resealed(path, lambda tensors: tensors["target.mean"].__setitem__(0, float("nan")))
    assert refused(path) == ("tensors", "nan.safetensors: tensor 'target.mean' holds NaN/Inf; the file is damaged.")


def test_read_metadata_names_the_file_in_each_refusal(tmp_path):
    """Not safetensors (the header check), foreign (the format check), a document without 'eps' (the fields)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10" + bytes(15))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, str(foreign), metadata={"format": "pt"})
    incomplete = LatentTransport.fit(None, latents(seed=75), patch_size=3).save(tmp_path / "incomplete.safetensors")
    with safe_open(str(incomplete), "pt") as handle:
        metadata = dict(handle.metadata())
    document = json.loads(metadata["deepot"])
    del document["eps"]
    metadata["deepot"] = json.dumps(document, sort_keys=True)
    del metadata["deepot_sha256"]  # an unsigned document, as files before issue 9 were
    save_file(load_file(str(incomplete)), str(incomplete), metadata=metadata)
    for path, reason in ((garbage, "not_safetensors"), (foreign, "foreign"), (incomplete, "metadata")):
        with pytest.raises(TransportFileError) as caught:
            read_metadata(path)
        assert caught.value.reason == reason and str(caught.value).startswith(path.name + " "), str(caught.value)

"""Hostile input at the core: every case answers correctly or refuses with an actionable message.

Contract: finite input gives finite output of the input's shape and dtype, or a
ValueError/TypeError/OSError whose message says what to do; never an IndexError,
KeyError, AttributeError or a raw torch RuntimeError. Transport files are
untrusted: damaged, foreign, pickled or escaping files are refused, never executed.
"""
import math
import os
import pickle
import re
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepot_core import LatentTransport, PatchStatistics, TransportFileError
from deepot_core.tooling.paths import resolve_in_folder

from test_statistics import latents

ALLOWED = (ValueError, TypeError, OSError)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


#: What a refusal must say, per reason (each a regex over the message).
SAYS = {
    "strength": r"strength must be (a finite number|in -1\.0\.\.2\.0)",
    "dimensions": r"must have 4 dimensions \[B,C,H,W\] \(images\) or 5",
    "empty": r"is empty \(shape",
    "channels": r"(fitted on 2-channel latents but got 3 channels|latents have \d channels but target latents \d"
                r"|source latents have \d channels)",
    "nan": r"NaN",
    "mask shape": r"mask is \d+×\d+ but the latent is \d+×\d+",
    "mask layout": r"mask must be \[H,W\], \[B,H,W\] or \[B,1,H,W\]",
    "mask batch": r"mask has batch \d+ but the latents have",
    "smaller than patch": r"latents of \d+×\d+ are smaller than patch_size \d",
    "samples": r"hold [\d.e+-]+ samples.*need at least 2",
    "too large": r"too large to square in float64",
}


def refusal_matches(exc: BaseException, reasons) -> bool:
    """An allowed exception type whose message says one of the ``reasons`` the input actually has."""
    return isinstance(exc, ALLOWED) and any(re.search(SAYS[r], str(exc)) for r in reasons)


_FITTED = {}


def fitted(c, p):
    if (c, p) not in _FITTED:
        src, tgt = latents(b=2, c=c, h=12, w=12, seed=c + p), latents(b=2, c=c, h=12, w=12, seed=9) * 2 + 1
        _FITTED[c, p] = LatentTransport.fit(src, tgt, patch_size=p)
    return _FITTED[c, p]


@st.composite
def hostile_latents(draw):
    """(latents, kind): odd shapes and dtypes, NaN/Inf, values at the dtype's limits, flat channels."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([4, 4, 4, 5, 3]))
    shape = [draw(st.integers(0 if ndim == 4 and draw(st.booleans()) else 1, 3)),
             draw(st.sampled_from([2, 2, 2, 3]))]
    shape += [draw(st.integers(1, 3)) for _ in range(ndim - 4)]
    shape += [draw(st.integers(1, 12)), draw(st.integers(1, 12))][: max(ndim - 2, 0)]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))), dtype=torch.float64)
    kind = draw(st.sampled_from(["normal", "constant", "flat-channel", "nan", "inf", "huge", "tiny", "zero"]))
    info = torch.finfo(dtype)
    if kind == "constant":
        x = torch.full_like(x, draw(st.floats(-100, 100)))
    elif kind == "flat-channel" and x.ndim >= 2 and x.numel():
        x[:, 0] = 0.5
    elif kind in ("nan", "inf") and x.numel():
        flat = x.view(-1)
        flat[draw(st.integers(0, flat.numel() - 1))] = float("nan") if kind == "nan" else -float("inf")
    elif kind == "huge":
        x = x.clamp(-1, 1) * info.max * draw(st.sampled_from([0.5, 0.99, 1.0]))
    elif kind == "tiny":
        x = x * info.tiny
    elif kind == "zero":
        x = torch.zeros_like(x)
    return x.to(dtype), kind


@st.composite
def hostile_mask(draw, shape):
    """(mask, kind) for latents of ``shape``: valid ones at latent or image resolution, and wrong ones."""
    kind = draw(st.sampled_from([None, "zeros", "random", "image", "nan", "wrong size", "wrong layout"]))
    hw = shape[-2:] if len(shape) >= 2 else (1, 1)
    if kind is None:
        return None, kind
    if kind == "zeros":
        return torch.zeros(1, *hw), kind
    if kind == "random":
        return torch.rand(1, *hw), kind
    if kind == "image":
        return torch.rand(1, hw[0] * 8, hw[1] * 8), kind
    if kind == "nan":
        return torch.full((1, *hw), float("nan")), kind
    if kind == "wrong size":  # one row too many: neither latent nor image resolution
        return torch.rand(1, hw[0] + 1, hw[1]), kind
    return torch.rand(2, 2, 3, *hw), kind


def latent_reasons(x, kind, name="latents"):
    """Reasons these latents must be refused by any entry point (before masks or maps are looked at)."""
    if x.ndim not in (4, 5):
        return {"dimensions"}
    if x.shape[0] == 0:
        return {"empty"}
    return set()


def mask_reasons(mask_kind, x):
    """Reasons the mask must be refused (given latents that passed ``latent_reasons``)."""
    if mask_kind == "wrong layout":
        return {"mask layout"}
    if mask_kind == "nan":
        return {"nan"}
    if mask_kind == "wrong size":
        return {"mask shape"}
    return set()


def interior_samples(x, p):
    """Patch centres PatchStatistics counts per item (interior pixels), before masks and NaN skipping."""
    h, w = x.shape[-2:]
    frames = x.shape[2] if x.ndim == 5 else 1
    return frames * max(h - 2 * (p // 2), 0) * max(w - 2 * (p // 2), 0)


def statistics_reasons(x, kind, mask_kind, p):
    """(must, may): reasons PatchStatistics(p).update must refuse these latents (and mask), and may."""
    must = latent_reasons(x, kind) or mask_reasons(mask_kind, x)
    if must:
        return must, set()
    if x.shape[-2] < p or x.shape[-1] < p:
        return {"smaller than patch"}, set()
    return set(), ({"too large"} if kind == "huge" and x.dtype == torch.float64 else set())  # squares past float64


def zero_shot_reasons(x, kind, p):
    """(must, may) for a zero-shot apply: each item's own statistics need 2 finite interior patches."""
    must, may = statistics_reasons(x, kind, None, p)
    if must:
        return must, may
    if interior_samples(x, p) < 2:
        return {"samples"}, may
    return set(), may


def check_output(out, x):
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert bool(torch.isfinite(out).all()), "finite input gave non-finite output"


def expect(call, must, may):
    """Run ``call``: refused with a message naming a reason it has when ``must`` holds any; else it may refuse
    only for a reason in ``may``; with neither it must succeed. Returns the result or None."""
    try:
        out = call()
    except Exception as exc:  # noqa: BLE001 — the point is to classify it
        reasons = must or may
        assert reasons, f"refused valid input: {type(exc).__name__}: {exc}"
        assert refusal_matches(exc, reasons), f"message does not say {sorted(reasons)}: {type(exc).__name__}: {exc}"
        return None
    assert not must, f"accepted input that must be refused for {sorted(must)}"
    return out


@SETTINGS
@given(data=st.data(), p=st.sampled_from([1, 3, 5]),
       strength=st.one_of(st.floats(-1, 2), st.sampled_from([float("nan"), float("inf"), 5.0, -3.0])))
def test_apply_refuses_exactly_what_is_wrong_and_says_why(data, p, strength):
    x, kind = data.draw(hostile_latents())
    mask, mask_kind = data.draw(hostile_mask(tuple(x.shape)))
    finite = kind not in ("nan", "inf") or x.numel() == 0
    for transport in (fitted(2, p), LatentTransport.fit(None, fitted(2, p).target)):
        if not (math.isfinite(strength) and -1.0 <= strength <= 2.0):
            must, may = {"strength"}, set()
        elif latent_reasons(x, kind):
            must, may = latent_reasons(x, kind), set()
        elif x.shape[-1] == 0 or x.shape[-2] == 0:
            must, may = {"empty"}, set()
        elif x.shape[1] != transport.channels:
            must, may = {"channels"}, set()
        elif mask_reasons(mask_kind, x):
            must, may = mask_reasons(mask_kind, x), set()
        elif not finite:  # zero-shot may also find too small a latent, or run out of finite patches first
            must = {"nan"} | (zero_shot_reasons(x, kind, p)[0] if transport.zero_shot else set())
            may = {"samples"}
        elif transport.zero_shot:
            must, may = zero_shot_reasons(x, kind, p)
        else:
            must, may = set(), set()
        out = expect(lambda: transport.apply(x, strength=strength, mask=mask), must, may)
        if out is not None:
            check_output(out, x)


@SETTINGS
@given(data=st.data(), p=st.sampled_from([1, 3, 5, 7]))
def test_statistics_and_fit_refuse_exactly_what_is_wrong_and_say_why(data, p):
    (x, kind), (y, y_kind) = data.draw(hostile_latents()), data.draw(hostile_latents())
    mask, mask_kind = data.draw(hostile_mask(tuple(x.shape)))
    s = expect(lambda: PatchStatistics(p).update(x, mask=mask), *statistics_reasons(x, kind, mask_kind, p))
    t = expect(lambda: PatchStatistics(p).update(y), *statistics_reasons(y, y_kind, None, p))
    if s is None or t is None:
        return
    must = ({"channels"} if s.channels != t.channels else set()) | ({"samples"} if min(s.count, t.count) < 2 else set())
    tr = expect(lambda: LatentTransport.fit(s, t), must, set())
    if tr is None:
        return
    assert torch.isfinite(tr.map.matrix).all() and torch.isfinite(tr.map.bias).all()
    assert tr.report()
    z = latents(b=1, c=tr.channels, h=6, w=7, seed=1)
    check_output(tr.apply(z), z)


def test_degenerate_sources_answer_sensibly():
    target = PatchStatistics(3).update(latents(b=2, c=3, seed=4))
    const = torch.full((1, 3, 9, 9), 0.7)
    tr = LatentTransport.fit(PatchStatistics(3).update(const), target)
    out = tr.apply(const)
    per_offset = target.mean.reshape(3, 9).float()
    expected = per_offset.mean(1).reshape(1, 3, 1, 1).expand(1, 3, 5, 5)
    # a flat image goes to the natural mean: averaged over all patch offsets inside, over some at the border
    torch.testing.assert_close(out[:, :, 2:-2, 2:-2], expected, rtol=1e-5, atol=1e-5)
    low, high = per_offset.min(1).values.reshape(1, 3, 1, 1), per_offset.max(1).values.reshape(1, 3, 1, 1)
    assert bool(((out >= low - 1e-5) & (out <= high + 1e-5)).all())
    zs = LatentTransport.fit(None, target).apply(const)
    assert torch.isfinite(zs).all()


def test_near_limit_values_stay_finite():
    tr = fitted(2, 3)
    for dtype in DTYPES:
        x = torch.randn(1, 2, 8, 8).clamp(-1, 1).to(torch.float64) * torch.finfo(dtype).max
        out = tr.apply(x.to(dtype))
        check_output(out, x.to(dtype))


# ------------------------------------------------------------------ untrusted files
@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "t.safetensors"
    fitted(2, 3).save(path)
    return path


#: Words a refused file's message uses for what is wrong with it (it also names the file).
FILE_REASONS = (r"damaged|truncated|empty|header length|not a safetensors|not a DeepOT|pickle|newer DeepOT"
                r"|format version|metadata|checksum|cannot be used|expected|no transport file|is a directory"
                r"|was edited")


def says_what_is_wrong_with(message: str, path) -> bool:
    return Path(path).name in message and re.search(FILE_REASONS, message) is not None


def assert_refused(path, match):
    with pytest.raises(TransportFileError, match=match) as info:
        LatentTransport.load(path)
    assert says_what_is_wrong_with(str(info.value), path), str(info.value)
    return str(info.value)


def test_empty_truncated_absurd_header(tmp_path, good_file):
    data = good_file.read_bytes()
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert_refused(tmp_path / "empty.safetensors", "empty")
    for cut in (5, 8, 40, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        assert_refused(tmp_path / "cut.safetensors", "truncated|header length of .* for a .*-byte file")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 2 ** 63) + b"{}" + b"\0" * 64)
    assert_refused(tmp_path / "huge.safetensors", "header length")
    (tmp_path / "notjson.safetensors").write_bytes(struct.pack("<Q", 4) + b"abcd")
    assert_refused(tmp_path / "notjson.safetensors", "not a safetensors file|not JSON")


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, 10 ** 6), bit=st.integers(0, 7))
def test_bit_flips_refused_or_harmless(good_file, position, bit):
    data = bytearray(good_file.read_bytes())
    position %= len(data)
    data[position] ^= 1 << bit
    path = good_file.parent / "flipped.safetensors"
    path.write_bytes(bytes(data))
    try:
        loaded = LatentTransport.load(path)
    except TransportFileError as exc:
        assert says_what_is_wrong_with(str(exc), path), str(exc)
        return
    z = latents(b=1, c=2, h=6, w=6, seed=2)  # a flip in free-text metadata may load: the map must be intact
    assert torch.equal(loaded.apply(z), fitted(2, 3).apply(z))


def test_foreign_safetensors_and_bad_metadata(tmp_path, good_file):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    save_file({"weight": torch.zeros(3, 3)}, str(tmp_path / "lora.safetensors"), metadata={"ss_network": "x"})
    assert_refused(tmp_path / "lora.safetensors", "not a DeepOT")
    with safe_open(str(good_file), "pt") as f:
        signed = dict(f.metadata())
    # an edited document keeping its SHA-256 is refused for that alone; without one (files written before
    # the document had a checksum) each field's own check must refuse it
    from deepot_core.transport_document import DOCUMENT_SHA_KEY
    header = {k: v for k, v in signed.items() if k != DOCUMENT_SHA_KEY}
    tensors = load_file(str(good_file))
    save_file(tensors, str(tmp_path / "signed.safetensors"),
              metadata={**signed, "deepot": signed["deepot"].replace('"eps": ', '"eps": 1')})
    assert_refused(tmp_path / "signed.safetensors", "metadata does not match its checksum")
    for key, value, says in [("deepot", "{not json", "damaged metadata"), ("deepot", "[1, 2]", "damaged metadata"),
                             ("format_version", "x", "unreadable format version"),
                             ("format_version", "999", "newer DeepOT .*update the pack"),
                             ("deepot", '{"patch_size": 3}', "incomplete metadata .no .channels")]:
        save_file(tensors, str(tmp_path / "meta.safetensors"), metadata={**header, key: value})
        assert_refused(tmp_path / "meta.safetensors", says)
    import json
    doc = json.loads(header["deepot"])
    for change, says in [({"user": [1, 2]}, "user metadata"), ({"patch_size": 4}, "patch_size must be odd"),
                         ({"channels": -1}, "-1 channels"), ({"eps": "nan"}, "eps .nan. is not a number"),
                         ({"channels": 3}, "has shape .*expected")]:
        save_file(tensors, str(tmp_path / "doc.safetensors"),
                  metadata={**header, "deepot": json.dumps({**doc, **change})})
        assert_refused(tmp_path / "doc.safetensors", says)
    # our own format marker, but tensors of another dtype (and a matching checksum): still refused
    from deepot_core.transport_document import tensor_checksum
    half = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in tensors.items()}
    save_file(half, str(tmp_path / "bf16.safetensors"),
              metadata={**header, "deepot": json.dumps({**doc, "sha256": tensor_checksum(half)})})
    assert_refused(tmp_path / "bf16.safetensors", "float64")


class _Exploit:
    marker = None

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_renamed_never_executes(tmp_path):
    marker = tmp_path / "PWNED"
    _Exploit.marker = str(marker)
    for protocol in (0, 2, 5):
        path = tmp_path / f"model{protocol}.safetensors"
        path.write_bytes(pickle.dumps(_Exploit(), protocol=protocol))
        assert_refused(path, "pickle|header length|not a safetensors file")  # protocol 0 is text, not a header
    torch.save({"x": _Exploit()}, tmp_path / "ckpt.safetensors")
    assert_refused(tmp_path / "ckpt.safetensors", "pickle")
    assert not marker.exists()
    pickle.loads((tmp_path / "model2.safetensors").read_bytes())  # the payload is real: it does fire
    assert marker.exists()


def test_directory_missing_and_escaping_names(tmp_path, good_file):
    (tmp_path / "models").mkdir()
    models = tmp_path / "models"
    (models / "dir.safetensors").mkdir()
    assert_refused(models / "dir.safetensors", "directory")
    assert_refused(models / "missing.safetensors", "no transport")
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(good_file.read_bytes())
    (models / "link.safetensors").symlink_to(outside)
    (models / "sub").mkdir()
    (models / "sub" / "ok.safetensors").write_bytes(good_file.read_bytes())
    assert resolve_in_folder(models, "sub/ok.safetensors") == (models / "sub" / "ok.safetensors").resolve()
    assert resolve_in_folder(models, "new.safetensors").parent == models.resolve()
    for name, says in [("../outside.safetensors", "leaves or re-enters"), (str(outside), "absolute path"),
                       ("link.safetensors", "points outside the models folder"),
                       ("sub/../../outside.safetensors", "leaves or re-enters"),
                       ("sub\\..\\..\\x.safetensors", "leaves or re-enters"), ("", "name is empty"),
                       ("a\0b.safetensors", "not a usable file name"), ("dir.safetensors", "is a directory"),
                       ("C:\\x.safetensors", "not a usable file name|absolute path"),
                       ("//server/share/x.safetensors", "absolute path"), (42, "must be text")]:
        with pytest.raises(TransportFileError, match=says):
            resolve_in_folder(models, name)
    with pytest.raises(TransportFileError, match="separator"):
        resolve_in_folder(models, "sub/ok.safetensors", allow_subfolders=False)
    with pytest.raises(TransportFileError, match="no transport"):
        resolve_in_folder(models, "nope.safetensors", must_exist=True)
    (models / "inner.safetensors").symlink_to(models / "sub" / "ok.safetensors")  # a link that stays inside
    assert LatentTransport.load(resolve_in_folder(models, "inner.safetensors")).channels == 2
    assert os.path.exists(outside)

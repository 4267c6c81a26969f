"""The command line end to end on tiny images (pixel space): fit → info → apply, resuming, clean errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deepot_core import LatentTransport, PatchStatistics
from deepot_core.tooling.cli.main import main
from deepot_core.tooling.imageio import load_image

SIZE = (40, 48)  # H, W: not multiples of 8, so padding and cropping are exercised


def _photo(path, seed, blur=False):
    rng = np.random.default_rng(seed)
    # about scale-invariant, like a photo: equal noise energy in each octave (white noise is all fine detail)
    x = sum(np.kron(rng.random((SIZE[0] // 2 ** k + 1, SIZE[1] // 2 ** k + 1, 3)), np.ones((2 ** k, 2 ** k, 1)))
            [:SIZE[0], :SIZE[1]] for k in range(4)) / 4
    if blur:  # a stand-in "restored" image: smoother than the natural one
        x = (x + np.roll(x, 1, 0) + np.roll(x, 1, 1) + np.roll(x, (1, 1), (0, 1))) / 4
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((x * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def folders(tmp_path):
    for i in range(3):
        _photo(tmp_path / "natural" / f"n{i}.png", i)
        _photo(tmp_path / "restored" / f"r{i}.png", 10 + i, blur=True)
    _photo(tmp_path / "inputs" / "a.png", 20, blur=True)
    _photo(tmp_path / "inputs" / "sub" / "b.jpg", 21, blur=True)
    return tmp_path


def _fit(folders, *extra):
    out = folders / "t.safetensors"
    code = main(["fit", "--restored", str(folders / "restored"), "--natural", str(folders / "natural"),
                 "--out", str(out), "--quiet", *extra])
    return code, out


def test_fit_info_apply_roundtrip(folders, capsys):
    code, transport = _fit(folders)
    assert code == 0 and transport.is_file()
    assert main(["info", str(transport)]) == 0
    info = capsys.readouterr().out
    assert "space: pixel" in info and "3 channels" in info and "clipping bias" not in info
    out = folders / "out"
    assert main(["apply", "--transport", str(transport), "--in", str(folders / "inputs"), "--out", str(out),
                 "--perception", "1", "--recursive", "--quiet"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png"]
    result, source = load_image(out / "a.png"), load_image(folders / "inputs" / "a.png")
    assert result.shape == source.shape
    assert (result - source).abs().max() > 2 / 255  # the transport changed the image


def test_apply_skips_done_files_and_perception_zero_is_identity(folders, capsys):
    _, transport = _fit(folders)
    out = folders / "out"
    args = ["apply", "--transport", str(transport), "--in", str(folders / "inputs"), "--out", str(out),
            "--perception", "0", "--quiet"]
    assert main(args) == 0
    assert "1 written, 0 already done" in capsys.readouterr().out
    assert torch.allclose(load_image(out / "a.png"), load_image(folders / "inputs" / "a.png"), atol=0.6 / 255)
    assert main(args) == 0
    assert "0 written, 1 already done" in capsys.readouterr().out
    assert main(args + ["--overwrite"]) == 0
    assert "1 written" in capsys.readouterr().out


def test_zero_shot_and_harmonise_record_metadata(folders, capsys):
    code, transport = _fit(folders, "--zero-shot", "--harmonise")
    assert code == 0
    assert main(["info", str(transport), "--json"]) == 0
    text = capsys.readouterr().out
    assert '"zero_shot": true' in text and '"harmonised": true' in text


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unreadable_image_is_a_clean_error(folders, capsys):
    (folders / "natural" / "broken.png").write_bytes(b"not an image at all")
    err = _error(capsys, ["fit", "--restored", str(folders / "restored"), "--natural", str(folders / "natural"),
                          "--out", str(folders / "t.safetensors"), "--quiet"])
    assert "broken.png" in err and "cannot read image" in err


def test_missing_folder_and_existing_output_are_clean_errors(folders, capsys):
    err = _error(capsys, ["fit", "--restored", str(folders / "nope"), "--natural", str(folders / "natural"),
                          "--out", str(folders / "t.safetensors"), "--quiet"])
    assert "not found" in err
    _fit(folders)
    err = _error(capsys, ["fit", "--restored", str(folders / "restored"), "--natural", str(folders / "natural"),
                          "--out", str(folders / "t.safetensors"), "--quiet"])
    assert "already exists" in err
    assert "no transport file" in _error(capsys, ["info", str(folders / "missing.safetensors")])


def test_transport_of_another_space_is_refused(folders, capsys):
    stats = PatchStatistics(3).update(torch.randn(2, 4, 12, 12))
    four = LatentTransport(PatchStatistics(3).update(torch.randn(2, 4, 12, 12)), stats)
    path = folders / "four.safetensors"
    four.save(path)  # no space recorded, 4 channels: the pixel space makes 3
    apply = ["apply", "--transport", str(path), "--in", str(folders / "inputs"), "--out", str(folders / "o")]
    assert "4-channel" in _error(capsys, apply)
    tagged = LatentTransport(four.source, four.target, metadata={"space": "taesd:taef2"})
    tagged_path = folders / "tagged.safetensors"
    tagged.save(tagged_path)
    apply[2] = str(tagged_path)
    assert "--vae" in _error(capsys, apply)
    assert "taesd:taef2" in _error(capsys, apply + ["--vae", "pixel"])


def test_damaged_transport_file_is_refused(folders, capsys):
    path = folders / "bad.safetensors"
    path.write_bytes(b"\x00" * 64)
    _error(capsys, ["apply", "--transport", str(path), "--in", str(folders / "inputs"), "--out", str(folders / "o")])


def test_demo_runs_small_and_writes_everything(tmp_path):
    pytest.importorskip("skimage")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "64", "--quiet"]) == 0
    for name in ("contact_sheet.png", "metrics.json", "transport.safetensors"):
        assert (out / name).is_file(), name
    assert len(list((out / "sweep" / "full").glob("*.png"))) == 10


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "deepot_core", "--help"], capture_output=True, text=True,
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert result.returncode == 0
    for command in ("demo", "fit", "apply", "info"):
        assert command in result.stdout


def _apply(folders, out, *extra):
    _, transport = _fit(folders) if not (folders / "t.safetensors").exists() else (0, folders / "t.safetensors")
    return ["apply", "--transport", str(transport), "--in", str(folders / "inputs"), "--out", str(out),
            "--perception", "1", "--quiet", *extra]


@pytest.mark.parametrize("clash", ["a.jpg", "A.webp"])
def test_inputs_sharing_an_output_name_are_refused_before_any_work(folders, capsys, clash):
    _photo(folders / "inputs" / clash, 30)
    out = folders / "out"
    err = _error(capsys, _apply(folders, out))
    assert "a.png" in err and clash in err and "rename one" in err
    assert not out.exists()  # refused before anything was written


def test_an_interrupted_write_leaves_nothing_that_counts_as_done(folders, capsys, monkeypatch):
    out = folders / "out"
    real_save = Image.Image.save

    def dies_half_way(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        with open(fp, "r+b") as f:  # half the file reached the disk, then the process was stopped
            f.truncate(f.seek(0, 2) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", dies_half_way)
    assert main(_apply(folders, out)) == 130
    monkeypatch.undo()
    assert list(out.iterdir()) == []  # neither a.png nor its temporary file
    assert main(_apply(folders, out)) == 0
    assert "1 written, 0 already done" in capsys.readouterr().out
    assert load_image(out / "a.png").shape == load_image(folders / "inputs" / "a.png").shape


def test_damaged_or_stale_outputs_are_redone(folders, capsys):
    import os

    out = folders / "out"
    assert main(_apply(folders, out)) == 0
    good = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(good[: len(good) // 2])  # truncated by an older version, or a full disk
    capsys.readouterr()
    assert main(_apply(folders, out)) == 0
    assert "1 written" in capsys.readouterr().out and (out / "a.png").read_bytes() == good
    assert main(_apply(folders, out)) == 0
    assert "0 written, 1 already done" in capsys.readouterr().out
    source = folders / "inputs" / "a.png"
    later = (out / "a.png").stat().st_mtime_ns + 10 ** 9
    os.utime(source, ns=(later, later))  # the input changed after its output was written
    assert main(_apply(folders, out)) == 0
    assert "1 written" in capsys.readouterr().out


def test_outputs_inside_the_input_tree_are_never_read_back(folders, capsys):
    out = folders / "inputs" / "realistic"
    args = _apply(folders, out, "--recursive")
    assert main(args) == 0
    assert "2 written, 0 already done" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 written, 2 already done" in capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png"]  # no realistic/realistic/...


def test_undo_noise_clipping_is_recorded_at_fit_and_repeated_at_apply(folders, capsys):
    """fit --undo-noise-clipping σ undoes the bias in the restored images and records σ; apply then does the same
    to each input by default (perception 0 = the undone input), and an explicit 0 turns it off."""
    from deepot_core.tooling.clipped_noise import UNDO_CLIPPING_KEY, undo_noise_clipping
    code, transport = _fit(folders, "--undo-noise-clipping", "50")
    assert code == 0 and "clipping bias of noise σ = 50 was undone" in capsys.readouterr().out
    assert main(["info", str(transport), "--json"]) == 0
    assert f'"{UNDO_CLIPPING_KEY}": 50.0' in capsys.readouterr().out
    source = load_image(folders / "inputs" / "a.png")
    for extra, expected in (([], undo_noise_clipping(source, 50)), (["--undo-noise-clipping", "0"], source)):
        out = folders / f"out{len(extra)}"
        assert main(["apply", "--transport", str(transport), "--in", str(folders / "inputs"), "--out", str(out),
                     "--perception", "0", "--quiet", *extra]) == 0
        assert ("σ = 50 undone" in capsys.readouterr().out) == (not extra)
        assert torch.allclose(load_image(out / "a.png"), expected, atol=0.6 / 255)
    assert not torch.allclose(undo_noise_clipping(source, 50), source, atol=2 / 255)


@pytest.mark.parametrize("value", ["loud", -5.0, 1e9, float("nan")])
def test_a_bad_recorded_noise_sigma_is_a_clean_error_naming_the_fix(folders, capsys, value):
    from deepot_core.tooling.clipped_noise import UNDO_CLIPPING_KEY
    _, good = _fit(folders)
    bad = folders / "bad.safetensors"
    transport = LatentTransport.load(good)
    transport.metadata[UNDO_CLIPPING_KEY] = value
    transport.save(bad)
    err = _error(capsys, ["apply", "--transport", str(bad), "--in", str(folders / "inputs"),
                          "--out", str(folders / "out"), "--quiet"])
    assert UNDO_CLIPPING_KEY in err and "--undo-noise-clipping" in err
    assert not (folders / "out").exists() or not any((folders / "out").iterdir())


def test_fit_refuses_a_bad_noise_sigma_before_any_work(folders, capsys):
    err = _error(capsys, ["fit", "--restored", str(folders / "restored"), "--natural", str(folders / "natural"),
                          "--out", str(folders / "t.safetensors"), "--undo-noise-clipping", "300", "--quiet"])
    assert "--undo-noise-clipping must be in 0.0..255.0" in err and not (folders / "t.safetensors").exists()


def test_apply_gives_the_detail_the_natural_marginal_when_asked(folders, capsys):
    outputs = {}
    for extra in ((), ("--natural-marginal",)):
        out = folders / f"out{len(extra)}"
        assert main(_apply(folders, out, *extra)) == 0
        outputs[extra] = load_image(out / "a.png")
    assert (outputs[()] - outputs[("--natural-marginal",)]).abs().max() > 1 / 255

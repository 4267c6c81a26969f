"""The multi-collection benchmark (issue 21): each limit fails where it applies (per collection, pooled, TAEF2's
cbsd68 check), the report lists every cell, the collections stay apart from the fit and natural sets, and the
unclipped denoising task's noise is not clipped."""
import json

import pytest
import torch

from benchmarks import pd_curve as B
from deepot_core.tooling import experiments as E

SETS = ("cbsd68", "set14", "kodak13-24", "sun_hays", B.POOLED)


def ratios(loss, swd, fd, low=1.0):
    return {"psnr_loss": loss, "swd_ratio": swd, "patch_fd_ratio": fd, "lowpass_ratio": low}


#: A curve inside every limit, the TAEF2 cbsd68 ×4 SR ones included.
GOOD = {0.5: ratios(1.0, 0.5, 0.3), 0.75: ratios(2.0, 0.3, 0.15), 1.0: ratios(2.9, 0.2, 0.08, 1.2)}


def fake_results(space="taef1", task="sr4", curves=None):
    """One space and task; ``curves`` maps a set name → perception → ratios (default: ``GOOD`` everywhere)."""
    curves = curves or {}
    sets = {}
    for name in SETS:
        curve = curves.get(name, GOOD)
        sets[name] = [{"recipe": "full", "perception": 0.0, **ratios(0.0, 1.0, 1.0)}] + [
            {"recipe": "full", "perception": p, **r} for p, r in curve.items()]
    return {"config": {"collections": {n: {"folder": n, "half_size": False} for n in SETS[:-1]}},
            "spaces": {space: {"config": {"latent_channels": 16}, "tasks": {task: sets}}}}


def with_change(set_name, perception, key, value):
    curve = {p: dict(r) for p, r in GOOD.items()}
    curve[perception][key] = value
    return {set_name: curve}


def failures(checks):
    return {c["set"]: [k for k, ok in c["checks"].items() if not ok] for c in checks if not c["met"]}


@pytest.mark.parametrize("task", B.TASKS)
def test_a_curve_inside_every_limit_meets_every_target_on_every_set(task):
    checks = B.check_collection_targets(fake_results("taef2", task))
    assert [c["set"] for c in checks] == list(SETS)
    assert all(c["met"] and all(c["checks"].values()) for c in checks)


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("perception,key,value,failed", [
    (1.0, "psnr_loss", 3.01, "psnr_loss"),
    (0.75, "swd_ratio", 0.19, "monotone"),        # 1 above 0.75
    (0.5, "patch_fd_ratio", 0.14, "monotone"),    # 0.75 above 0.5
])
def test_psnr_and_the_monotone_fall_fail_on_each_collection_and_pooled(set_name, perception, key, value, failed):
    checks = B.check_collection_targets(fake_results(curves=with_change(set_name, perception, key, value)))
    assert failures(checks) == {set_name: [failed]}


@pytest.mark.parametrize("task,key,value,failed", [
    ("sr4", "swd_ratio", 0.46, "swd"),
    ("sr4", "patch_fd_ratio", 0.36, "patch_fd"),
    ("sr4", "lowpass_ratio", 1.51, "swd_lowpass"),
    ("denoise50", "swd_ratio", 0.61, "swd"),
    ("denoise50", "patch_fd_ratio", 0.51, "patch_fd"),
    ("denoise50_unclipped", "swd_ratio", 0.61, "swd"),
    ("denoise50_unclipped", "patch_fd_ratio", 0.51, "patch_fd"),
])
def test_the_distance_limits_apply_to_the_pooled_set_only(task, key, value, failed):
    # the same value throughout the curve keeps it monotone
    curve = {p: {**r, key: value} for p, r in GOOD.items()}
    checks = B.check_collection_targets(fake_results("taef1", task, {s: curve for s in SETS}))
    assert failures(checks) == {B.POOLED: [failed]}


def test_denoising_limits_are_the_denoising_ones():
    """0.55× SWD and 0.45× patch-FD: inside the denoising limits (0.6, 0.5), outside ×4 SR's (0.45, 0.35)."""
    curve = {p: {**r, "swd_ratio": 0.55, "patch_fd_ratio": 0.45} for p, r in GOOD.items()}
    for task in B.DENOISE_TASKS:
        assert all(c["met"] for c in B.check_collection_targets(fake_results("taef1", task, {B.POOLED: curve})))
    assert failures(B.check_collection_targets(fake_results("taef1", "sr4", {B.POOLED: curve}))) == {
        B.POOLED: ["swd", "patch_fd"]}


@pytest.mark.parametrize("key,value,failed", [("swd_ratio", 0.26, "swd"), ("patch_fd_ratio", 0.11, "patch_fd")])
def test_taef2s_no_worse_than_today_check_applies_to_taef2_sr4_cbsd68_only(key, value, failed):
    curve = {p: {**r, key: value} for p, r in GOOD.items()}
    everywhere = {s: curve for s in SETS}
    assert failures(B.check_collection_targets(fake_results("taef2", "sr4", everywhere))) == {"cbsd68": [failed]}
    assert failures(B.check_collection_targets(fake_results("taef1", "sr4", everywhere))) == {}
    assert failures(B.check_collection_targets(fake_results("taef2", "denoise50", everywhere))) == {}
    limits = {s: B.collection_limits("taef2", "sr4", s) for s in SETS}
    assert limits["cbsd68"] == {"psnr_loss": 3.0, "monotone": None, "swd": 0.25, "patch_fd": 0.10}
    assert "swd" not in limits["set14"] and "patch_fd" not in limits["sun_hays"]
    assert limits[B.POOLED]["swd"] == 0.45


def test_the_report_lists_every_cell_met_or_not_and_counts_them():
    results = fake_results("taef2", "sr4", with_change("set14", 1.0, "psnr_loss", 3.5))
    results["targets"] = B.check_collection_targets(results)
    table = B.markdown_collections(results)
    for name in SETS:
        assert f"| taef2 | sr4 | {name} | " in table
    assert "| taef2 | sr4 | set14 | -3.50 ✗ (≥ -3.0) | 0.20 | 0.08 | 1.20 | ✓ | no |" in table
    assert "| taef2 | sr4 | cbsd68 | -2.90 ✓ (≥ -3.0) | 0.20 ✓ (≤ 0.25) | 0.08 ✓ (≤ 0.1) | 1.20 | ✓ | yes |" in table
    assert ("| taef2 | sr4 | pooled | -2.90 ✓ (≥ -3.0) | 0.20 ✓ (≤ 0.45) | 0.08 ✓ (≤ 0.35) | 1.20 ✓ (≤ 1.5) "
            "| ✓ | yes |") in table
    assert "4 of 5 cells meet every target" in table
    # the per-space table: one column per collection and pooled, one row per task and perception
    assert "| task | perception | cbsd68 | set14 | kodak13-24 | sun_hays | pooled |" in table
    assert sum(line.startswith("| sr4 | ") for line in table.splitlines()) == 3


def test_collections_mode_is_the_default_with_several_spaces():
    assert B.collections_mode(None, 5, halves=False) == list(B.COLLECTIONS)
    assert B.collections_mode(None, 5, halves=True) is None
    assert B.collections_mode(None, 1, halves=False) is None
    assert B.collections_mode([], 1, halves=False) == list(B.COLLECTIONS)
    assert B.collections_mode(["sun_hays", "cbsd68"], 1, halves=False) == ["cbsd68", "sun_hays"]


def test_unclipped_noise_leaves_0_to_1_and_is_deterministic():
    clean = [torch.linspace(0, 1, 32 * 32 * 3).reshape(1, 32, 32, 3), torch.full((1, 16, 24, 3), 0.9)]
    noisy = B.degrade(clean, "denoise50_unclipped", seed=3)
    again = B.degrade(clean, "denoise50_unclipped", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(noisy, again))
    assert float(noisy[0].min()) < 0.0 and float(noisy[0].max()) > 1.0 and float(noisy[1].max()) > 1.0
    # the same noise as the clipped task, only not clipped; another seed gives other noise
    clipped = E.degrade(clean, "denoise50", seed=3)
    assert all(torch.equal(x.clamp(0, 1), c) for x, c in zip(noisy, clipped))
    assert not torch.equal(B.degrade(clean, "denoise50_unclipped", seed=4)[0], noisy[0])
    std = float(torch.cat([(x - c).flatten() for x, c in zip(noisy, clean)]).std())
    assert std == pytest.approx(50 / 255, rel=0.05)


def test_unclipped_denoising_restores_with_ffdnet_as_is(shared_data):
    clean = B.load_set(shared_data / "images" / "cbsd68", 0, 1, 64)
    noisy = B.degrade(clean, "denoise50_unclipped", seed=1)
    unclipped = B.Restorer("denoise50_unclipped", shared_data)
    assert not unclipped.undo_clipping
    with torch.inference_mode():
        assert torch.equal(unclipped(noisy)[0], B.Restorer("denoise50", shared_data, undo_clipping=False)(noisy)[0])


def test_collections_are_apart_from_the_fit_and_natural_sets(shared_data):
    from deepot_core.tooling.imageio import list_images

    n_fit = 12
    paths = B.collection_paths(shared_data, n_fit, 12, list(B.COLLECTIONS))
    assert list(paths) == ["cbsd68", "set14", "kodak13-24", "sun_hays"]
    assert all(len(set(ps)) == 12 for ps in paths.values())
    fit = set(list_images(shared_data / "images" / "cbsd68")[:n_fit])
    natural = set(list_images(shared_data / "images" / "kodak24")[:n_fit])
    chosen = [p for ps in paths.values() for p in ps]
    assert len(set(chosen)) == len(chosen) and not set(chosen) & (fit | natural)
    assert [p.stem for p in paths["kodak13-24"]] == [f"kodim{i:02d}" for i in range(13, 25)]
    assert {"bridge", "ppt3"}.isdisjoint(p.stem for p in paths["set14"])
    sun = list_images(shared_data / "images" / "sun_hays80")
    assert paths["sun_hays"] == [sun[i] for i in (0, 7, 13, 20, 27, 33, 40, 47, 53, 60, 67, 73)]
    # a larger fit set would reach into kodim13..24: refused rather than overlapping
    with pytest.raises(SystemExit, match="kodak24"):
        B.collection_paths(shared_data, 13, 12, ["kodak13-24"])


def test_sun_hays_crops_are_256_after_halving(shared_data):
    (crops,) = B.test_collections(shared_data, 12, 12, 256, ["sun_hays"]).values()
    assert len(crops) == 12 and all(c.shape == (1, 256, 256, 3) for c in crops)
    assert all(0.0 <= float(c.min()) and float(c.max()) <= 1.0 for c in crops)
    # halved first: the crop is the centre of the half-size photo, not of the full-size one
    path = B.collection_paths(shared_data, 12, 12, ["sun_hays"])["sun_hays"][0]
    full = B.load_image(path)
    assert torch.equal(crops[0], E.centre_crop_square(B.half_size(full), 256))
    assert not torch.equal(crops[0], E.centre_crop_square(full, 256))


def test_the_command_writes_the_report_every_cell_in_it(shared_data, tmp_path):
    """End to end at toy size: the command line's collections run writes its table, figures and plot, and the
    table holds a target row for every collection and the pooled set."""
    rc = B.main(["--data", str(shared_data), "--vae", "taef2", "--collections", "--tasks", "sr4", "--n-fit", "2",
                 "--per-collection", "2", "--crop", "64", "--out", str(tmp_path)])
    assert rc == 0
    table = (tmp_path / "pd_collections.md").read_text()
    for name in SETS:
        assert f"| taef2 | sr4 | {name} |" in table
    results = json.loads((tmp_path / "pd_collections.json").read_text())
    assert len(results["targets"]) == len(SETS) and results["runtime_s"] > 0


def test_per_image_names_the_photo_whose_overshoot_breaks_the_curve():
    """Six smooth photos; at perception 1 one of them gets strong noise (an overshoot), the rest fall gently toward
    their clean versions. The set's patch-FD rises from 0.75 to 1, and only leaving that photo out stops it."""
    g = torch.Generator().manual_seed(0)
    clean = [torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=g), 5, 1, 2).permute(0, 2, 3, 1)
             for _ in range(6)]
    restored = [torch.nn.functional.avg_pool2d(c.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1) for c in clean]
    outputs = {p: [r + p * (c - r) for r, c in zip(restored, clean)] for p in (0.75, 1.0)}
    outputs[1.0][4] = outputs[1.0][4] + 0.3 * torch.randn(1, 48, 48, 3, generator=g)
    names = [f"p{k}.png" for k in range(6)]
    info = B.per_image(outputs, restored, clean, names)
    assert info["patch_fd_rise_without"] == ["p4.png"]
    worst = max(range(6), key=lambda i: info["psnr_loss_at_1"][i])
    assert worst == 4 and info["psnr_loss_at_1"][0] < 0  # the others are closer to clean than the restored image
    steady = B.per_image({0.75: outputs[0.75], 1.0: [r + (c - r) for r, c in zip(restored, clean)]}, restored, clean,
                         names)
    assert steady["patch_fd_rise_without"] == []
    results = {"spaces": {"taesd": {"per_image": {"sr4": {"set14": info}}}}}
    table = "\n".join(B.per_image_markdown(results))
    assert "| taesd | sr4 | set14 | p4.png" in table and "| p4.png |" in table

"""The multi-space benchmark (issue 10): every TAESD-family space resolves, halves are disjoint,
and the target table says met only where every limit and the monotone fall hold."""
import pytest

from benchmarks import pd_curve as B


def ratios(loss, swd, fd, low=1.0):
    return {"psnr_loss": loss, "swd_ratio": swd, "patch_fd_ratio": fd, "lowpass_ratio": low}


def fake_spaces(curve, halves=None):
    """One space, ×4 SR unpaired, full recipe; ``curve`` maps perception → ratios (all crops)."""
    rows = []
    for p, r in curve.items():
        row = {"recipe": "full", "perception": p, **r}
        if halves is not None:
            row["halves"] = halves[p]
        rows.append(row)
    results = {"config": {"latent_channels": 16, "n_test": 12}, "tasks": {"sr4": {"unpaired": rows}}}
    return {"spaces": {"taef1": results}}


GOOD = {0.5: ratios(1.0, 0.7, 0.5), 0.75: ratios(2.0, 0.5, 0.4), 1.0: ratios(2.9, 0.4, 0.3, 1.2)}


def test_a_curve_inside_every_limit_is_met():
    (check,) = B.check_space_targets(fake_spaces(GOOD))
    assert (check["space"], check["task"], check["set"]) == ("taef1", "sr4", "all")
    assert check["met"] and all(check["checks"].values())


@pytest.mark.parametrize("perception,key,value,failed", [
    (1.0, "psnr_loss", 3.01, "psnr_loss"),
    (1.0, "swd_ratio", 0.46, "swd"),
    (1.0, "patch_fd_ratio", 0.36, "patch_fd"),
    (1.0, "lowpass_ratio", 1.51, "swd_lowpass"),
    (0.75, "swd_ratio", 0.39, "monotone"),       # 1 above 0.75: the slider's top overshoots
    (0.5, "patch_fd_ratio", 0.29, "monotone"),   # 0.75 above 0.5
])
def test_each_limit_and_the_monotone_fall_can_fail(perception, key, value, failed):
    curve = {p: dict(r) for p, r in GOOD.items()}
    curve[perception][key] = value
    (check,) = B.check_space_targets(fake_spaces(curve))
    assert not check["met"]
    assert [k for k, ok in check["checks"].items() if not ok] == [failed]


def test_halves_are_checked_on_their_own():
    bad_half = {0.5: ratios(1.0, 0.7, 0.5), 0.75: ratios(2.0, 0.7, 0.4), 1.0: ratios(2.9, 0.6, 0.3)}
    checks = B.check_space_targets(fake_spaces(GOOD, {p: [GOOD[p], bad_half[p]] for p in GOOD}))
    assert [(c["set"], c["met"]) for c in checks] == [("all", True), ("A", True), ("B", False)]
    table = B.markdown_spaces(fake_spaces(GOOD, {p: [GOOD[p], bad_half[p]] for p in GOOD}))
    assert "| taef1 | sr4 | B | 2.90 ✓ | 0.60 ✗ |" in table
    assert "2 of 3 (space, task, set) cells meet every target." in table


def test_halves_are_disjoint_and_cover_the_set():
    for n in (2, 7, 12):
        a, b = B.halves_of(list(range(n)))
        assert not set(a) & set(b) and sorted(a + b) == list(range(n)) and abs(len(a) - len(b)) <= 1


def test_every_taesd_family_space_resolves(shared_data):
    """``--vae`` names: four tiny autoencoders in vae_approx and TAEF2, with their channel counts."""
    from deepot_core.tooling import spaces as S

    channels = {}
    for name in B.SPACES:
        space, _ = S.resolve_space(B.space_spec(name, shared_data))
        channels[name] = space.latent_channels
    assert channels == {"taesd": 4, "taesdxl": 4, "taesd3": 16, "taef1": 16, "taef2": 32}

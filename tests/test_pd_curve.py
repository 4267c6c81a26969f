"""Deep OT on real images (issue 4): with calibration pairs the transport moves toward the clean images.

A small subset of benchmarks/pd_curve.py: ×4 SR by CARN-M, TAEF2 latents, p = 3, full
recipe for calibration pairs (residual decode + detail band), held-apart test crops.
Theory: the ideal transport at most doubles the MSE (−3 dB); we allow about 3.5 dB.
"""
import pytest

from benchmarks import pd_curve as B

MAX_PSNR_LOSS_DB = 3.5
PERCEPTIONS = (0.0, 0.5, 1.0)
DISTANCES = ("swd_joint", "patch_fd")


@pytest.fixture(scope="module")
def rows(shared_data):
    results = B.run_benchmark(shared_data, tasks=("sr4",), protocols=("calibration",), n_fit=12, n_test=3,
                              crop=192, perceptions=PERCEPTIONS, recipes=[B.P.FULL_RECIPE], niqe=False,
                              ssim=False, sigma_probe=(), log=lambda *_: None)
    out = {row["perception"]: row for row in results["tasks"]["sr4"]["calibration"]}
    assert sorted(out) == list(PERCEPTIONS)
    return out


def test_full_transport_is_closer_to_clean_images(rows):
    mmse, full = rows[0.0], rows[1.0]
    for key in DISTANCES:
        assert full[key] < mmse[key], f"{key}: perception 1 {full[key]:.4g} not below MMSE {mmse[key]:.4g}"
    assert mmse["psnr"] - full["psnr"] <= MAX_PSNR_LOSS_DB


def test_intermediate_perception_falls_in_between(rows):
    low, mid, high = rows[0.0], rows[0.5], rows[1.0]
    assert high["psnr"] < mid["psnr"] < low["psnr"]
    for key in DISTANCES:
        assert high[key] < mid[key] < low[key], f"{key}: {low[key]:.4g}, {mid[key]:.4g}, {high[key]:.4g}"


def test_low_frequencies_stay_the_restored_images(rows):
    """The detail band leaves the low-pass band alone: its distance barely moves."""
    assert rows[1.0]["swd_joint_lowpass"] <= 1.5 * rows[0.0]["swd_joint_lowpass"]

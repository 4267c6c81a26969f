"""Make Realistic through ComfyUI's own full-size VAE classes (SD1.5/SDXL 4 channels, SD3/FLUX.1 16 channels).

Runs ``benchmarks/full_vae.py`` with ComfyUI's interpreter when ``COMFYUI_PATH`` is set (``COMFYUI_PYTHON``
picks it, default this one): each VAE is built by ComfyUI from a randomly initialised state dict of the real
shapes, so this checks plumbing (encode, fit, apply, both decodes, tiled and untiled, whole-size output), not
quality.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="set COMFYUI_PATH to run")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "full_vae.py"


def test_full_size_vaes_run_make_realistic_tiled_and_untiled(tmp_path):
    rows_file = tmp_path / "rows.json"
    done = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), str(SCRIPT), "--size", "72",
                           "--tiles", "0", "64", "--json", str(rows_file)], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(rows_file.read_text())
    assert {(r["space"], r["channels"], r["tile"]) for r in rows} == {
        ("sd15_sdxl", 4, 0), ("sd15_sdxl", 4, 64), ("sd3_flux1", 16, 0), ("sd3_flux1", 16, 64)}
    for row in rows:
        assert row["finite"] and row["shape"] == [1, 72, 72, 3]  # 72 is off the /8 grid: padded, not cropped

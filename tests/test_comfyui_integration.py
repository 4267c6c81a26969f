"""The pack inside a real ComfyUI: loaded by its custom-node loader, run by its executor over HTTP.

Runs only when ``COMFYUI_PATH`` points at a ComfyUI checkout (``COMFYUI_PYTHON``
picks its interpreter, default this one). ComfyUI starts headless on the CPU
with ``--base-directory`` set to a temporary folder, so the user's checkout is
not touched: the folder gets ``custom_nodes/ComfyUI-DeepOT`` (a link to this
pack), ``models/vae_approx`` (a link to the checkout's TAESD weights) and two
input photos. Needs ``taesd_encoder.*`` and ``taesd_decoder.*`` in
``$COMFYUI_PATH/models/vae_approx`` (stand-in weights are fine).
"""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from test_nodes import NODE_IDS  # the one table of released node ids and display names

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="set COMFYUI_PATH to a ComfyUI checkout to run")

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "ComfyUI-DeepOT"
#: Seconds to wait for ComfyUI to start, and for one prompt to finish.
START_TIMEOUT, PROMPT_TIMEOUT = 240, 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_photos(folder: Path) -> None:
    """Two textured 128×128 PNGs (different palettes) as the calibration photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128] / 128.0
    for name, tint in (("natural.png", (1.0, 0.8, 0.6)), ("other.png", (0.6, 0.9, 1.0))):
        base = 0.5 + 0.25 * np.sin(12 * x + 5 * y)[..., None] * np.array(tint)
        image = np.clip(base + 0.15 * rng.standard_normal((128, 128, 3)), 0, 1)
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)


class Comfy:
    """A running ComfyUI: HTTP helpers and its log."""

    def __init__(self, url: str, log: Path, base: Path):
        self.url, self.log, self.base = url, log, base

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as response:
            return json.loads(response.read())

    def queue(self, prompt: dict) -> dict:
        """Post an API-format prompt and wait for its /history entry."""
        body = json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode()
        request = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                prompt_id = json.loads(response.read())["prompt_id"]
        except urllib.error.HTTPError as exc:
            pytest.fail(f"/prompt refused the workflow: {exc.read().decode()[:2000]}")
        deadline = time.time() + PROMPT_TIMEOUT
        while time.time() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["completed"] or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(0.3)
        pytest.fail(f"prompt {prompt_id} did not finish in {PROMPT_TIMEOUT} s; see {self.log}")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    checkout = Path(COMFYUI_PATH).resolve()
    taesd = sorted((checkout / "models" / "vae_approx").glob("taesd_*coder.*"))
    if len(taesd) < 2:
        pytest.skip(f"no taesd_encoder/taesd_decoder weights in {checkout / 'models' / 'vae_approx'}")
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    (base / "models").mkdir()
    (base / "models" / "vae_approx").symlink_to(checkout / "models" / "vae_approx", target_is_directory=True)
    (base / "input").mkdir()
    write_photos(base / "input")
    with running_comfyui(checkout, base) as server:
        yield server


@contextlib.contextmanager
def running_comfyui(checkout: Path, base: Path):
    """ComfyUI headless on CPU on a free loopback port, its base directory ``base``; stopped on exit."""
    port = free_port()
    log = base / "comfyui.log"
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=checkout, stdout=out, stderr=subprocess.STDOUT)
    server = Comfy(f"http://127.0.0.1:{port}", log, base)
    try:
        deadline = time.time() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                server.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline:
                    pytest.fail(f"ComfyUI did not answer in {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def error_message(entry: dict) -> str:
    assert entry["status"]["status_str"] == "error", entry["status"]
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return data["exception_message"]
    pytest.fail(f"no execution_error in {entry['status']}")


def calibration_prompt(save_name: str) -> dict:
    """Degrade → harmonise → encode → fit → apply → decode both → PD Blend (3 values) → preview, save."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "natural.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "other.png"}},
        "3": {"class_type": "DeepOT_DegradeImage", "inputs": {
            "images": ["1", 0], "scale": 2, "filter": "bicubic", "antialias": True, "upscale_back": True,
            "noise_sigma": 5.0, "jpeg_quality": 0, "blur_sigma": 1.0, "seed": 0}},
        "4": {"class_type": "DeepOT_HarmoniseColours", "inputs": {"natural": ["2", 0], "restored": ["3", 0]}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["5", 0]}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["5", 0]}},
        "8": {"class_type": "DeepOT_FitLatentTransport", "inputs": {
            "natural": ["6", 0], "restored": ["7", 0], "patch_size": 3, "eps": 0.0001}},
        "9": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["7", 0], "transport": ["8", 0], "strength": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["5", 0]}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["5", 0]}},
        "12": {"class_type": "DeepOT_PDBlend", "inputs": {
            "restored": ["3", 0], "transported": ["10", 0], "reconstructed": ["11", 0], "perception": 1.0,
            "detail_sigma": 2.0, "perceptions": "0, 0.5, 1"}},
        "13": {"class_type": "PreviewImage", "inputs": {"images": ["12", 0]}},
        "14": {"class_type": "DeepOT_SaveLatentTransport", "inputs": {
            "transport": ["8", 0], "filename": save_name, "overwrite": False}},
    }


def test_pack_loads_without_import_errors(comfy):
    log = comfy.log.read_text()
    assert "IMPORT FAILED" not in log or PACK_DIR_NAME not in log.split("IMPORT FAILED", 1)[1].splitlines()[0], log
    assert PACK_DIR_NAME in log  # listed among the loaded custom nodes


def test_every_node_is_in_object_info(comfy):
    info = comfy.get("/object_info")
    for node_id, display in NODE_IDS.items():
        node = info[node_id]
        assert node["display_name"] == display
        assert node["category"].startswith("latent/transport")
        assert node["description"]
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert info["DeepOT_FitLatentTransport"]["output"] == ["LATENT_TRANSPORT", "STRING"]
    assert info["DeepOT_SaveLatentTransport"]["output_node"] is True


def test_fit_apply_decode_blend_save_runs_in_the_executor(comfy):
    entry = comfy.queue(calibration_prompt("integration"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(entry["outputs"]["13"]["images"]) == 3  # one image per perception
    saved = comfy.base / "models" / "latent_transport" / "integration.safetensors"
    assert entry["outputs"]["14"]["text"] == [str(saved)] and saved.is_file()
    # the new file shows up in Load's list, loads, and is applied again
    names = comfy.get("/object_info/DeepOT_LoadLatentTransport")["DeepOT_LoadLatentTransport"]["input"]
    assert "integration.safetensors" in names["required"]["transport_name"][0]
    reuse = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "natural.png"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "DeepOT_LoadLatentTransport", "inputs": {"transport_name": "integration.safetensors"}},
        "5": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["3", 0], "transport": ["4", 0], "strength": 0.5}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["2", 0]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    entry = comfy.queue(reuse)
    assert entry["status"]["status_str"] == "success", entry["status"]


def test_saving_over_an_existing_file_is_refused(comfy):
    comfy.queue(calibration_prompt("twice"))
    prompt = calibration_prompt("twice")
    prompt["8"]["inputs"]["eps"] = 0.001  # a different fit, so nothing comes from the cache
    message = error_message(comfy.queue(prompt))
    assert message.startswith("Save Latent Transport: ") and "already exists" in message


def test_user_mistakes_show_a_message_and_the_server_keeps_running(comfy):
    comfy.queue(calibration_prompt("mistakes"))
    # a 4-channel transport applied to a 16-channel (SD3/Flux-style) latent
    mismatch = {
        "1": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "DeepOT_LoadLatentTransport", "inputs": {"transport_name": "mistakes.safetensors"}},
        "3": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["1", 0], "transport": ["2", 0], "strength": 1.0}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "latents/x"}},
    }
    message = error_message(comfy.queue(mismatch))
    assert message.startswith("Apply Latent Transport: this transport was fitted on 4-channel latents but got 16")
    # an all-zero mask on the natural photos
    zero_mask = calibration_prompt("never")
    zero_mask["15"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 128, "height": 128}}
    zero_mask["8"]["inputs"]["natural_mask"] = ["15", 0]
    message = error_message(comfy.queue(zero_mask))
    assert message.startswith("Fit Latent Transport: 'natural_mask' is all zero")
    # the server still answers and still runs prompts
    assert comfy.get("/system_stats")["system"]
    assert comfy.queue(calibration_prompt("after_errors"))["status"]["status_str"] == "success"

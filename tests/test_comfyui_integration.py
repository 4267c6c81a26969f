"""The pack inside a real ComfyUI: loaded by its custom-node loader, run by its executor over HTTP.

Runs only when ``COMFYUI_PATH`` points at a ComfyUI checkout (``COMFYUI_PYTHON``
picks its interpreter, default this one). ComfyUI starts headless on the CPU
with ``--base-directory`` set to a temporary folder, so the user's checkout is
not touched: the folder gets ``custom_nodes/ComfyUI-DeepOT`` (a link to this
pack), ``models/vae_approx`` and ``models/upscale_models`` (links to the
checkout's model folders, where it has them) and two input photos. Needs
``taesd_encoder.*`` and ``taesd_decoder.*`` in ``$COMFYUI_PATH/models/vae_approx``
(stand-in weights are fine).
"""
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

import node_harness
from test_nodes import NODE_IDS  # the one table of released node ids and display names

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="set COMFYUI_PATH to a ComfyUI checkout to run")

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR_NAME = "ComfyUI-DeepOT"
#: Seconds to wait for ComfyUI to start, and for one prompt to finish (a real-model example takes minutes on a
#: busy 2-core CPU).
START_TIMEOUT, PROMPT_TIMEOUT = 240, 900
#: Model folders of the checkout the temporary base directory links to (when the checkout has them).
MODEL_FOLDERS = ("vae_approx", "upscale_models")


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
        return json.loads(self.get_bytes(route))

    def get_bytes(self, route: str) -> bytes:
        with urllib.request.urlopen(self.url + route, timeout=30) as response:
            return response.read()

    def queue(self, prompt: dict) -> dict:
        """Post an API-format prompt and wait for its /history entry."""
        return self.wait(self.submit(prompt))

    def post(self, route: str, data: dict) -> bytes:
        request = urllib.request.Request(self.url + route, data=json.dumps(data).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def submit(self, prompt: dict) -> str:
        """Post an API-format prompt; its id."""
        try:
            return json.loads(self.post("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())}))["prompt_id"]
        except urllib.error.HTTPError as exc:
            pytest.fail(f"/prompt refused the workflow: {exc.read().decode()[:2000]}")

    def wait(self, prompt_id: str) -> dict:
        """The /history entry of a prompt, once it has finished."""
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
    base = make_base(tmp_path_factory.mktemp("comfy_base"), checkout)
    (base / "input").mkdir()
    write_photos(base / "input")
    with running_comfyui(checkout, base) as server:
        yield server


def make_base(base: Path, checkout: Path) -> Path:
    """A base directory holding this pack and links to the checkout's model folders."""
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    (base / "models").mkdir()
    for folder in MODEL_FOLDERS:
        if (checkout / "models" / folder).is_dir():
            (base / "models" / folder).symlink_to(checkout / "models" / folder, target_is_directory=True)
    return base


#: Runs ComfyUI's main.py so that custom nodes cannot import some modules ComfyUI itself has (``python -c``
#: this, then the comma-separated names, then main.py's arguments): an older ComfyUI, as a pack sees it.
HIDE_FROM_CUSTOM_NODES = """
import builtins, runpy, sys
hidden = set(sys.argv[1].split(","))
real_import = builtins.__import__
def pack_import(name, globals=None, locals=None, fromlist=(), level=0):
    caller = (globals or {}).get("__file__") or ""
    if level == 0 and name in hidden and "/custom_nodes/" in caller.replace("\\\\", "/"):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = pack_import
sys.argv = ["main.py"] + sys.argv[2:]
runpy.run_path("main.py", run_name="__main__")
"""


@contextlib.contextmanager
def running_comfyui(checkout: Path, base: Path, hide_modules=()):
    """ComfyUI headless on CPU on a free loopback port, its base directory ``base``; stopped on exit.

    ``hide_modules``: module names custom nodes cannot import there (to play an older ComfyUI).
    """
    port = free_port()
    log = base / "comfyui.log"
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    arguments = ["--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
                 "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
    command = ([python, "-c", HIDE_FROM_CUSTOM_NODES, ",".join(hide_modules)] if hide_modules
               else [python, "main.py"])
    command += arguments
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


def view_image(comfy: Comfy, image: dict):
    """An image a node listed in its UI output, fetched through ComfyUI's /view."""
    from PIL import Image

    query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    with Image.open(io.BytesIO(comfy.get_bytes(f"/view?{query}"))) as opened:
        return opened.convert("RGB")


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
    # what the nodes show on the canvas is in the prompt's /history UI outputs
    (report,) = entry["outputs"]["8"]["text"]
    assert report.startswith("Latent transport: 4 channels, patch 3×3") and "colour gap" in report
    (sheet,) = entry["outputs"]["12"]["images"]  # PD Blend's labelled sweep: 1 image row × 3 perceptions
    assert sheet["type"] == "temp"
    image = view_image(comfy, sheet)
    sweep = node_harness.load_pack().nodes.sweep_preview
    width, height, _ = sweep.layout(3, 1, 128, 128)
    assert image.size == (width, height) and image.mode == "RGB"
    saved = comfy.base / "models" / "latent_transport" / "integration.safetensors"
    assert entry["outputs"]["14"]["text"] == [str(saved)] and saved.is_file()
    # the new file shows up in Load's list, loads, and is applied again
    names = comfy.get("/object_info/DeepOT_LoadLatentTransport")["DeepOT_LoadLatentTransport"]["input"]
    assert "integration.safetensors" in names["required"]["transport_name"][1]["options"]
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
    (shown,) = entry["outputs"]["4"]["text"]  # Load shows the file's facts on the node
    assert shown.splitlines()[:4] == ["integration.safetensors", "space: comfy:taesd", "channels: 4",
                                      "patch: 3×3 (D = 36)"]
    assert shown.splitlines()[4].startswith("samples: restored ")


@pytest.mark.parametrize("vae_name", ["pixel_space", "taesd"])
def test_make_realistic_is_the_modular_chain_in_the_executor(comfy, vae_name):
    """The same inputs through Make Realistic and through the chain of core and pack nodes give the same images."""
    chain = calibration_prompt("unused")
    del chain["14"]
    chain["5"]["inputs"]["vae_name"] = vae_name
    chain["12"]["inputs"]["perceptions"] = "0, 1"
    chain["20"] = {"class_type": "DeepOT_MakeRealistic", "inputs": {
        "restored": ["3", 0], "vae": ["5", 0], "natural": ["2", 0], "perception": 1.0, "perceptions": "0, 1"}}
    chain["21"] = {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}}
    entry = comfy.queue(chain)
    assert entry["status"]["status_str"] == "success", entry["status"]
    import numpy as np

    by_chain = [np.asarray(view_image(comfy, i), dtype=np.int16) for i in entry["outputs"]["13"]["images"]]
    by_node = [np.asarray(view_image(comfy, i), dtype=np.int16) for i in entry["outputs"]["21"]["images"]]
    assert len(by_node) == len(by_chain) == 2
    for a, b in zip(by_chain, by_node):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1  # the same, to the 8-bit preview's rounding
    (report,) = entry["outputs"]["20"]["text"]
    assert report.startswith("fitted on 1 natural photo(s) (colours harmonised")


@pytest.mark.parametrize("photo", ["scene.png", "natural.png"])
def test_make_realistic_video_frames_keeps_a_pans_detail_on_the_picture_in_the_executor(comfy, photo):
    """Three frames of a 2 px pan (ImageCrop + ImageBatch, as a user cuts a clip): with video_frames the detail of
    frame t+1, moved back by the pan, is that of frame t; without, it re-forms in every frame. natural.png's coarse
    structure is one broad stripe pattern (the motion estimate's blur has to be reduced to see the pan)."""
    import numpy as np

    from PIL import Image

    rng = np.random.default_rng(3)  # a scene with structure in every direction, as photos have
    coarse = Image.fromarray((rng.random((12, 14, 3)) * 255).astype(np.uint8)).resize((140, 120), Image.BICUBIC)
    Image.fromarray(np.asarray(coarse)).save(comfy.base / "input" / "scene.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "other.png"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "4": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 4, "sigma": 2.0}},
    }
    for k, x in enumerate((0, 2, 4)):  # a blurred photo, so the transport adds detail well above 8-bit rounding
        prompt[f"1{k}"] = {"class_type": "ImageCrop", "inputs": {"image": ["4", 0], "width": 96, "height": 96,
                                                                  "x": x, "y": 8}}
    prompt["20"] = {"class_type": "ImageBatch", "inputs": {"image1": ["10", 0], "image2": ["11", 0]}}
    prompt["21"] = {"class_type": "ImageBatch", "inputs": {"image1": ["20", 0], "image2": ["12", 0]}}
    prompt["22"] = {"class_type": "PreviewImage", "inputs": {"images": ["21", 0]}}
    for node, video in (("30", False), ("31", True)):
        prompt[node] = {"class_type": "DeepOT_MakeRealistic", "inputs": {
            "restored": ["21", 0], "vae": ["3", 0], "natural": ["2", 0], "perception": 1.0, "video_frames": video}}
        prompt[node + "p"] = {"class_type": "PreviewImage", "inputs": {"images": [node, 0]}}
    entry = comfy.queue(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]

    def frames(node):
        return [np.asarray(view_image(comfy, i), dtype=np.float64) for i in entry["outputs"][node]["images"]]

    restored = frames("22")
    shimmer = {}
    for node in ("30p", "31p"):
        bands = [out - r for out, r in zip(frames(node), restored)]
        assert len(bands) == 3
        inner = (slice(12, -12), slice(12, -14))
        change = [np.abs(bands[t + 1][:, :-2] - bands[t][:, 2:])[inner].mean() for t in range(2)]
        shimmer[node] = float(np.mean(change) / np.abs(bands[0][inner]).mean())
    assert shimmer["31p"] < 0.15 and shimmer["30p"] > 0.8, shimmer


def test_make_realistic_without_photos_or_transport_says_what_to_connect(comfy):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "natural.png"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "3": {"class_type": "DeepOT_MakeRealistic", "inputs": {"restored": ["1", 0], "vae": ["2", 0],
                                                               "perception": 1.0}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    entry = comfy.queue(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "Make Realistic (Deep OT): connect 'natural'" in error_message(entry)


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


#: Combos listing files or folders of the machine: the server's lists differ from the plain tests' ones.
LOCAL_COMBOS = {("DeepOT_LoadLatentTransport", "transport_name"), ("DeepOT_LoadImageFolder", "folder")}


def test_object_info_is_what_the_schemas_give_without_comfyui(comfy):
    """ComfyUI's V3 API turns the schemas into the same /object_info as the pack's stand-in in the plain tests."""
    info = comfy.get("/object_info")
    for node_id, ours in node_harness.object_info().items():
        ours, real = json.loads(json.dumps(ours)), dict(info[node_id])  # tuples → lists, as over HTTP
        assert real.pop("python_module") == f"custom_nodes.{PACK_DIR_NAME}"  # loaded from the pack's folder
        ours.pop("python_module")
        for node, name in LOCAL_COMBOS:
            if node == node_id:
                for spec in (ours, real):
                    spec["input"]["required"][name][1].pop("options")
        assert real == ours, node_id


def test_the_node_library_gets_the_help_pages_and_the_canvas_script(comfy):
    """The frontend asks /extensions/<pack folder>/docs/<node id>.md (nodeHelpService) and loads /extensions."""
    for node_id in NODE_IDS:
        served = comfy.get_bytes(f"/extensions/{PACK_DIR_NAME}/docs/{node_id}.md")
        assert served == (PACK_ROOT / "web" / "docs" / f"{node_id}.md").read_bytes()
    assert f"/extensions/{PACK_DIR_NAME}/js/deepot_text_on_node.js" in comfy.get("/extensions")


def test_a_comfyui_without_the_pinned_api_gets_one_log_line_and_keeps_running(tmp_path_factory):
    checkout = Path(COMFYUI_PATH).resolve()
    base = make_base(tmp_path_factory.mktemp("comfy_old_api"), checkout)
    with running_comfyui(checkout, base, hide_modules=["comfy_api.v0_0_2"]) as server:
        info = server.get("/object_info")
        prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                               "color": 0}},
                  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        assert server.queue(prompt)["status"]["status_str"] == "success"
    log = server.log.read_text()
    assert not set(NODE_IDS) & set(info) and "VAELoader" in info
    ours = [line for line in log.splitlines() if PACK_DIR_NAME in line]
    message = [line for line in ours if "needs ComfyUI" in line]
    assert len(message) == 1, log
    assert "ComfyUI-DeepOT needs ComfyUI 0.3.64 or newer" in message[0] and "comfy_api.v0_0_2" in message[0]
    others = [line for line in ours if line not in message]
    assert all("seconds:" in line and "IMPORT FAILED" not in line for line in others), others  # the timing table
    assert f"custom_nodes/{PACK_DIR_NAME}/" not in log  # no traceback through the pack's files


def test_cancel_stops_a_fit_and_the_server_keeps_running(comfy):
    """Cancel (``/interrupt``) during a long fit: the fit stops at its next image, ComfyUI stays up."""
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 4096}},
        "2": {"class_type": "DeepOT_FitLatentTransport", "inputs": {"natural": ["1", 0], "patch_size": 9,
                                                                    "eps": 0.0001}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1], "preview": ""}},
    }
    prompt_id = comfy.submit(prompt)
    deadline = time.time() + 120
    while not comfy.get("/queue")["queue_running"] and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # inside the fit by now (the empty latents take well under a second)
    started = time.time()
    comfy.post("/interrupt", {})
    entry = comfy.wait(prompt_id)
    assert time.time() - started < 60  # the whole fit would take minutes
    kinds = {kind: data for kind, data in entry["status"]["messages"]}
    assert "execution_interrupted" in kinds and kinds["execution_interrupted"]["node_type"] == \
        "DeepOT_FitLatentTransport", entry["status"]
    assert comfy.queue(calibration_prompt("after_cancel"))["status"]["status_str"] == "success"


# ------------------------------------------------------- transport files through the real server (issue 9)
def write_latent(path: Path, samples) -> None:
    """A ``.latent`` file as ComfyUI's SaveLatent writes it (the version key means: no 0.18215 rescaling)."""
    import torch
    from safetensors.torch import save_file

    save_file({"latent_tensor": samples.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path))


def read_saved_latent(comfy: Comfy, entry: dict, node: str):
    from safetensors.torch import load_file

    saved = entry["outputs"][node]["latents"][0]
    return load_file(str(comfy.base / "output" / saved["subfolder"] / saved["filename"]))["latent_tensor"]


@pytest.mark.parametrize("channels,zero_shot", [(4, False), (16, False), (32, False), (16, True)])
def test_saved_transport_loads_and_applies_identically_in_the_server(comfy, channels, zero_shot):
    """Fit → Save Latent Transport → Load Latent Transport → Apply gives what the fitted transport gave."""
    import torch

    from deepot_core import LatentTransport

    g = torch.Generator().manual_seed(channels)
    name = f"roundtrip_{channels}{'_zs' if zero_shot else ''}"
    latents = {"natural": torch.randn(2, channels, 24, 24, generator=g) * 1.3 + 0.2,
               "restored": torch.randn(2, channels, 24, 24, generator=g) * 0.8,
               "probe": torch.randn(1, channels, 16, 20, generator=g)}
    for kind, samples in latents.items():
        write_latent(comfy.base / "input" / f"{name}_{kind}.latent", samples)
    fit_inputs = {"natural": ["1", 0], "patch_size": 3, "eps": 0.0001}
    if not zero_shot:
        fit_inputs["restored"] = ["2", 0]
    fit = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": f"{name}_natural.latent"}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": f"{name}_restored.latent"}},
        "3": {"class_type": "LoadLatent", "inputs": {"latent": f"{name}_probe.latent"}},
        "4": {"class_type": "DeepOT_FitLatentTransport", "inputs": fit_inputs},
        "5": {"class_type": "DeepOT_SaveLatentTransport", "inputs": {
            "transport": ["4", 0], "filename": name, "overwrite": False}},
        "6": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["3", 0], "transport": ["4", 0], "strength": 0.8}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"issue9/{name}_fitted"}},
    }
    entry = comfy.queue(fit)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = comfy.base / "models" / "latent_transport" / f"{name}.safetensors"
    assert entry["outputs"]["5"]["text"] == [str(saved)]
    fitted_out = read_saved_latent(comfy, entry, "7")

    load = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": f"{name}_probe.latent"}},
        "2": {"class_type": "DeepOT_LoadLatentTransport", "inputs": {"transport_name": f"{name}.safetensors"}},
        "3": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["1", 0], "transport": ["2", 0], "strength": 0.8}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": f"issue9/{name}_loaded"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
    }
    entry = comfy.queue(load)
    assert entry["status"]["status_str"] == "success", entry["status"]
    loaded_out = read_saved_latent(comfy, entry, "4")
    assert loaded_out.shape == (1, channels, 16, 20)
    assert torch.equal(loaded_out, fitted_out)  # same server, same map bits: the same output
    assert not torch.equal(loaded_out, latents["probe"])

    info = entry["outputs"]["5"]["text"][0]
    assert f"file: {saved}" in info and f"{channels} channels, patch 3×3, D = {channels * 9}" in info
    assert ("zero-shot" in info) == zero_shot and ("samples: restored 968, natural 968" in info) != zero_shot
    # the file is an ordinary transport for the library too (another torch: allow rounding)
    transport = LatentTransport.load(saved)
    assert (transport.channels, transport.patch_size, transport.zero_shot) == (channels, 3, zero_shot)
    assert transport.metadata["space"] == "comfy:workflow"
    torch.testing.assert_close(transport.apply(latents["probe"], strength=0.8), loaded_out, rtol=1e-4, atol=1e-4)


def test_node_saved_transport_whose_header_starts_like_a_pickle_loads_in_the_server(comfy):
    """The file name is in the embedded prompt, so padding it steers the header length to end in 0x80."""
    import torch

    g = torch.Generator().manual_seed(99)
    for kind in ("natural", "restored"):
        write_latent(comfy.base / "input" / f"pickle_like_{kind}.latent", torch.randn(2, 16, 12, 12, generator=g))

    def save_as(filename: str) -> Path:
        prompt = {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": "pickle_like_natural.latent"}},
            "2": {"class_type": "LoadLatent", "inputs": {"latent": "pickle_like_restored.latent"}},
            "3": {"class_type": "DeepOT_FitLatentTransport", "inputs": {
                "natural": ["1", 0], "restored": ["2", 0], "patch_size": 3, "eps": 0.0001}},
            "4": {"class_type": "DeepOT_SaveLatentTransport", "inputs": {
                "transport": ["3", 0], "filename": filename, "overwrite": False}},
        }
        entry = comfy.queue(prompt)
        assert entry["status"]["status_str"] == "success", entry["status"]
        return Path(entry["outputs"]["4"]["text"][0])

    extra, saved = 0, save_as("pickle_like")
    for attempt in range(4):  # header lengths are multiples of 8, so one step normally lands
        if saved.read_bytes()[0] == 0x80:
            break
        extra += (0x80 - saved.read_bytes()[0]) % 256
        pad = "".join("/" if i % 100 == 99 else "abcd"[attempt] for i in range(extra))  # in subfolders: short names
        saved = save_as(pad + "pickle_like")
    assert saved.read_bytes()[0] == 0x80, "could not steer the header length; the test needs a new padding"
    load = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": "pickle_like_natural.latent"}},
        "2": {"class_type": "DeepOT_LoadLatentTransport", "inputs": {
            "transport_name": str(saved.relative_to(comfy.base / "models" / "latent_transport"))}},
        "3": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["1", 0], "transport": ["2", 0], "strength": 1.0}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "issue9/pickle_like"}},
    }
    entry = comfy.queue(load)
    assert entry["status"]["status_str"] == "success", entry["status"]


# ------------------------------------------------- the command line runs what the nodes saved (issue 12)
#: ComfyUI's VAELoader and our own ComfyUI-convention spaces, on the same pixels, in ComfyUI's Python.
EQUALITY_PROBE = """
import json, os, sys
from pathlib import Path
import torch
from deepot_core.tooling import comfy_spaces as C
C.import_comfy(Path(os.environ["COMFYUI_PATH"]))  # on the CPU: this machine has no GPU driver
import nodes
import comfy.model_management as mm
image = torch.rand(2, 64, 72, 3, generator=torch.Generator().manual_seed(0))
result = {"device": str(mm.get_torch_device())}
for name in sys.argv[1:]:
    vae = nodes.VAELoader().load_vae(name)[0]
    ours = C.comfy_space(name)
    with torch.no_grad():
        z = vae.encode(image)
        result[name] = {"encode": torch.equal(z, ours.encode(image)),
                        "decode": torch.equal(vae.decode(z), ours.decode(z)),
                        "latent_std": float(z.std()), "channels": int(z.shape[1])}
print(json.dumps(result))
"""


def comfy_python() -> str:
    return os.environ.get("COMFYUI_PYTHON", sys.executable)


def test_comfy_spaces_equal_comfyuis_vae_loader_bit_for_bit():
    """pixel_space and the four TAESDs, encoded and decoded by ComfyUI and by deepot_core: identical tensors."""
    checkout = Path(COMFYUI_PATH).resolve()
    approx = checkout / "models" / "vae_approx"
    names = ["pixel_space"] + [n for n in ("taesd", "taesdxl", "taesd3", "taef1")
                               if list(approx.glob(f"{n}_encoder.*")) and list(approx.glob(f"{n}_decoder.*"))]
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT), "COMFYUI_PATH": str(checkout)}
    env.pop("COMFYUI_BASE_DIRECTORY", None)
    done = subprocess.run([comfy_python(), "-c", EQUALITY_PROBE, *names], capture_output=True, text=True,
                          env=env, cwd=str(PACK_ROOT), timeout=START_TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name in names:
        assert result[name]["encode"] and result[name]["decode"], (name, result[name])
    assert result["pixel_space"]["channels"] == 3
    if "taesd3" in result:
        assert result["taesd3"]["channels"] == 16


def reference_prompt(vae_name: str, save_name: str, prefix: str, perception: float) -> dict:
    """calibration_prompt with ``vae_name``, plus other.png transported, decoded both ways, blended and saved."""
    prompt = calibration_prompt(save_name)
    prompt["5"]["inputs"]["vae_name"] = vae_name
    prompt.update({
        "20": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["5", 0]}},
        "21": {"class_type": "DeepOT_ApplyLatentTransport", "inputs": {
            "latent": ["20", 0], "transport": ["8", 0], "strength": 1.0}},
        "22": {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["5", 0]}},
        "23": {"class_type": "VAEDecode", "inputs": {"samples": ["20", 0], "vae": ["5", 0]}},
        "24": {"class_type": "DeepOT_PDBlend", "inputs": {
            "restored": ["2", 0], "transported": ["22", 0], "reconstructed": ["23", 0], "perception": perception,
            "detail_sigma": 2.0, "perceptions": ""}},
        "25": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": prefix}},
    })
    return prompt


def server_made(comfy, vae_name: str, name: str, perception: float):
    """Run reference_prompt; return the saved transport file and the server's own blended image (uint8)."""
    import numpy as np
    from PIL import Image

    entry = comfy.queue(reference_prompt(vae_name, name, f"ref_{name}", perception))
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = comfy.base / "models" / "latent_transport" / f"{name}.safetensors"
    (image,) = entry["outputs"]["25"]["images"]
    reference = comfy.base / "output" / image["subfolder"] / image["filename"]
    return saved, np.asarray(Image.open(reference).convert("RGB"), dtype=np.int16)


def cli_apply(comfy, tmp_path, transport: Path, perception: float, python: str, extra_env=None):
    """``python -m deepot_core apply`` on input/other.png; the output as uint8 and the process result."""
    import shutil

    import numpy as np
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(comfy.base / "input" / "other.png", folder / "other.png")
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT), "COMFYUI_PATH": str(Path(COMFYUI_PATH).resolve()),
           **(extra_env or {})}
    done = subprocess.run([python, "-m", "deepot_core", "apply", "--transport", str(transport), "--in", str(folder),
                           "--out", str(tmp_path / "out"), "--perception", str(perception), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=START_TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    out = np.asarray(Image.open(tmp_path / "out" / "other.png").convert("RGB"), dtype=np.int16)
    source = np.asarray(Image.open(folder / "other.png").convert("RGB"), dtype=np.int16)
    return out, source, done


def assert_same_image(cli, server, source):
    """ComfyUI's SaveImage truncates to uint8 where we round: equal floats differ by at most one level."""
    import numpy as np

    difference = cli - server
    assert difference.min() >= 0 and difference.max() <= 1, (difference.min(), difference.max())
    assert np.abs(cli - source).max() > 5  # and the transport did change the photo


def test_command_line_applies_a_taesd_transport_saved_by_the_server(comfy, tmp_path):
    """Fit + Save Latent Transport in ComfyUI (taesd) → `deepot apply` without ComfyUI → the server's own image."""
    saved, server = server_made(comfy, "taesd", "cli_taesd", 2.0)  # extrapolated: the natural-slope cap keeps
    # the change small on these white-noise "photos", and the check below needs it visible
    from deepot_core.serialization import load_transport
    assert load_transport(saved).metadata["space"] == "comfy:taesd"
    cli, source, done = cli_apply(comfy, tmp_path, saved, 2.0, sys.executable)
    assert_same_image(cli, server, source)
    assert "1 written" in done.stdout


def test_command_line_loads_a_subfolder_vae_through_comfyui_on_the_cpu(comfy, tmp_path):
    """A VAE file in models/vae/sdxl/ (recorded comfy:sdxl/…): ComfyUI loads it for the CLI, CPU only, same image.

    The file is ComfyUI's TAESDXL packed as one VAE state dict (taesd_encoder.*,
    taesd_decoder.*, vae_scale, vae_shift), which ComfyUI's VAE class loads like any
    full VAE file — so the CLI's full-VAE path runs ComfyUI itself, cheaply.
    """
    import torch
    from safetensors.torch import load_file, save_file

    approx = Path(COMFYUI_PATH).resolve() / "models" / "vae_approx"
    if not (approx / "taesdxl_encoder.safetensors").is_file():
        pytest.skip("needs taesdxl_encoder/decoder.safetensors in models/vae_approx")
    packed = {f"taesd_{part}.{k}": v for part in ("encoder", "decoder")
              for k, v in load_file(str(approx / f"taesdxl_{part}.safetensors")).items()}
    packed.update({"vae_scale": torch.tensor(0.13025), "vae_shift": torch.tensor(0.0)})
    folder = comfy.base / "models" / "vae" / "sdxl"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(folder / "tiny_vae.safetensors"))
    saved, server = server_made(comfy, "sdxl/tiny_vae.safetensors", "cli_subfolder", 1.5)
    from deepot_core.serialization import load_transport
    assert load_transport(saved).metadata["space"] == "comfy:sdxl/tiny_vae.safetensors"
    cli, source, done = cli_apply(comfy, tmp_path, saved, 1.5, comfy_python(),
                                  extra_env={"COMFYUI_BASE_DIRECTORY": str(comfy.base)})
    assert_same_image(cli, server, source)
    assert "NVIDIA" not in done.stderr

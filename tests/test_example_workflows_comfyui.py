"""The example workflows, and the workflows saved before the V3 nodes, executed by a real ComfyUI.

Integration; needs ``COMFYUI_PATH`` (``COMFYUI_PYTHON`` picks ComfyUI's
interpreter, default this one). ComfyUI starts headless on the CPU with
``--base-directory`` set to a temporary folder, so the checkout is not touched:
``custom_nodes/ComfyUI-DeepOT`` links to this pack, ``models/vae_approx`` and
``models/upscale_models`` to the checkout's, and ``input/`` holds
``example.png`` and ``deepot_photos/``, the photo folder the examples fit on:
copies of twelve Kodak photos from ``../shared/data`` (never committed), or
crops of ``example.png`` without it. Every workflow is converted to an API
prompt with the server's own ``/object_info``. The stock examples need no
weights; the real-model ones need ``dncnn_color_blind.pth`` in
``models/upscale_models`` and the taesd / taef1 pairs in ``models/vae_approx``,
and skip without them. Helpers come from ``test_comfyui_integration.py``.
"""
import json
import os
import shutil
from pathlib import Path

import pytest

import node_harness
import test_comfyui_integration as integration
import workflow_tools as wt
from conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"),
                                reason="set COMFYUI_PATH to a ComfyUI checkout to run")

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
PRE_V3 = Path(__file__).resolve().parent / "fixtures" / "pre_v3"
#: Order matters: each reuse example loads the file an earlier example saves.
STOCK = ["deepot_few_shot_calibration", "deepot_zero_shot", "deepot_full_recipe_unpaired", "deepot_reuse"]
REAL_MODELS = ["deepot_denoise_dncnn_taesd", "deepot_denoise_dncnn_taef1", "deepot_reuse_dncnn_taesd",
               "deepot_make_realistic_upscale", "deepot_make_realistic_denoise", "deepot_make_realistic_reuse"]
#: Saved images per run: the images of the batch the example blends, times its perceptions.
SAVED = {"deepot_few_shot_calibration": 1, "deepot_zero_shot": 5, "deepot_full_recipe_unpaired": 2,
         "deepot_reuse": 2, "deepot_denoise_dncnn_taesd": 3, "deepot_denoise_dncnn_taef1": 3,
         "deepot_reuse_dncnn_taesd": 1, "deepot_make_realistic_upscale": 1, "deepot_make_realistic_denoise": 12,
         "deepot_make_realistic_reuse": 1}
#: What the real-model examples need in the checkout's model folders.
NEEDED_FILES = {"upscale_models": ["dncnn_color_blind.pth", "4x_Compact_Pretrain.safetensors"],
                "vae_approx": ["taesd_encoder.", "taesd_decoder.", "taef1_encoder.", "taef1_decoder."]}
#: ComfyUI ships this picture in input/; the stock examples crop 256-pixel tiles out of it.
EXAMPLE_IMAGE, EXAMPLE_SIZE = "example.png", 768
PHOTO_FOLDER, PHOTOS = "deepot_photos", 12


def write_example_image(folder: Path, checkout: Path) -> None:
    """ComfyUI's own input/example.png, or a textured stand-in of the same size."""
    shipped = checkout / "input" / EXAMPLE_IMAGE
    if shipped.is_file():
        shutil.copy(shipped, folder / EXAMPLE_IMAGE)
        return
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:EXAMPLE_SIZE, 0:EXAMPLE_SIZE] / EXAMPLE_SIZE
    base = 0.5 + 0.3 * np.sin(20 * x + 9 * y)[..., None] * np.array([1.0, 0.7, 0.4])
    image = np.clip(base + 0.1 * rng.standard_normal((EXAMPLE_SIZE, EXAMPLE_SIZE, 3)), 0, 1)
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / EXAMPLE_IMAGE)


def write_photo_folder(folder: Path) -> None:
    """What a user puts in input/deepot_photos: Kodak photos from the development data, else crops of example.png."""
    from PIL import Image

    folder.mkdir()
    kodak = sorted((SHARED_DATA / "images" / "kodak24").glob("kodim*.png"))[:PHOTOS]
    if len(kodak) == PHOTOS:
        for photo in kodak:
            shutil.copy(photo, folder / photo.name)
        return
    with Image.open(folder.parent / EXAMPLE_IMAGE) as image:
        image = image.convert("RGB")
        for i in range(PHOTOS):
            x, y = (i % 4) * 128, (i // 4) * 192
            image.crop((x, y, x + 256, y + 256)).save(folder / f"crop{i:02d}.png")


def missing_models(checkout: Path) -> list:
    return [f"{folder}/{name}" for folder, names in NEEDED_FILES.items() for name in names
            if not any(p.name.startswith(name) for p in (checkout / "models" / folder).glob("*"))]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    checkout = Path(os.environ["COMFYUI_PATH"]).resolve()
    base = integration.make_base(tmp_path_factory.mktemp("comfy_examples"), checkout)
    (base / "input").mkdir()
    write_example_image(base / "input", checkout)
    write_photo_folder(base / "input" / PHOTO_FOLDER)
    with integration.running_comfyui(checkout, base) as server:
        server.missing_models = missing_models(checkout)
        yield server


@pytest.fixture(scope="module")
def definitions(comfy):
    """Every node as this server defines it (its own /object_info)."""
    return wt.object_info_definitions(comfy.get("/object_info"))


@pytest.fixture(scope="module")
def results(comfy, definitions):
    """Every example converted with the server's definitions and queued once, in order: name → (prompt, entry)."""
    names = STOCK + ([] if comfy.missing_models else REAL_MODELS)
    out = {}
    for name in names:
        prompt = wt.to_api(wt.load(EXAMPLES / f"{name}.json"), definitions)
        out[name] = (prompt, comfy.queue(prompt))
    return out


def result(results, comfy, name):
    if name not in results:
        pytest.skip(f"the real-model examples need {', '.join(comfy.missing_models)} in COMFYUI_PATH/models")
    return results[name]


def saved_images(prompt: dict, entry: dict) -> list:
    return [image for node_id, node in prompt.items() if node["class_type"] == "SaveImage"
            for image in entry["outputs"].get(node_id, {}).get("images", [])]


def of_type(prompt: dict, class_type: str) -> str:
    (node_id,) = [k for k, n in prompt.items() if n["class_type"] == class_type]
    return node_id


def test_every_example_is_listed_as_a_template(comfy):
    listed = set(comfy.get("/workflow_templates").get(integration.PACK_DIR_NAME, []))
    assert {p.stem for p in EXAMPLES.glob("*.json")} <= listed


@pytest.mark.parametrize("name", STOCK + REAL_MODELS)
def test_example_runs_to_completion(results, comfy, name):
    prompt, entry = result(results, comfy, name)
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = saved_images(prompt, entry)
    assert len(images) == SAVED[name]
    for image in images:
        assert (comfy.base / "output" / image["subfolder"] / image["filename"]).stat().st_size > 0


def test_few_shot_example_saves_the_transport_the_reuse_example_loads(results, comfy):
    prompt, entry = results["deepot_few_shot_calibration"]
    save_id = of_type(prompt, "DeepOT_SaveLatentTransport")
    saved = Path(entry["outputs"][save_id]["text"][0])
    assert saved.is_file() and saved.parent == comfy.base / "models" / "latent_transport"
    reuse_prompt, _ = results["deepot_reuse"]
    load = reuse_prompt[of_type(reuse_prompt, "DeepOT_LoadLatentTransport")]
    assert load["inputs"]["transport_name"] == saved.name


@pytest.mark.parametrize("name, vae, channels", [("deepot_denoise_dncnn_taesd", "taesd", 4),
                                                 ("deepot_denoise_dncnn_taef1", "taef1", 16)])
def test_denoising_examples_show_the_report_and_the_sweep_on_their_nodes(results, comfy, name, vae, channels):
    prompt, entry = result(results, comfy, name)
    (report,) = entry["outputs"][of_type(prompt, "DeepOT_FitLatentTransport")]["text"]
    assert report.startswith(f"Latent transport: {channels} channels, patch 3×3")
    assert f"samples: restored {(PHOTOS - 1) * 46 * 46}" in report  # 11 calibration photos of 48² latents, p = 3
    (sheet,) = entry["outputs"][of_type(prompt, "DeepOT_PDBlend")]["images"]
    width, height, _ = node_harness.load_pack().nodes.sweep_preview.layout(3, 1, 256, 256)  # 384 px shrunk to 256
    assert integration.view_image(comfy, sheet).size == (width, height)
    saved = Path(entry["outputs"][of_type(prompt, "DeepOT_SaveLatentTransport")]["text"][0])
    assert node_harness.core().LatentTransport.load(saved).metadata["space"] == f"comfy:{vae}"


def test_real_model_reuse_shows_the_file_it_loads(results, comfy):
    prompt, entry = result(results, comfy, "deepot_reuse_dncnn_taesd")
    (shown,) = entry["outputs"][of_type(prompt, "DeepOT_LoadLatentTransport")]["text"]
    assert shown.splitlines()[:4] == ["deepot_dncnn_taesd.safetensors", "space: comfy:taesd", "channels: 4",
                                      "patch: 3×3 (D = 36)"]


@pytest.mark.parametrize("name, fitted, size", [("deepot_make_realistic_upscale", True, EXAMPLE_SIZE),
                                                ("deepot_make_realistic_denoise", True, 384),
                                                ("deepot_make_realistic_reuse", False, EXAMPLE_SIZE)])
def test_make_realistic_shows_before_after_and_its_report(results, comfy, name, fitted, size):
    prompt, entry = result(results, comfy, name)
    shown = entry["outputs"][of_type(prompt, "DeepOT_MakeRealistic")]
    (report,) = shown["text"]
    assert ("fitted on 12 natural photo(s)" in report) == fitted and ("no fit" in report) != fitted
    (sheet,) = shown["images"]  # the restored image (p = 0) beside the result
    assert integration.view_image(comfy, sheet).size[0] > 2 * 128
    (saved,) = saved_images(prompt, entry)[:1]
    with integration.view_image(comfy, saved) as image:  # whole: the restored image's size, not the VAE's crop
        assert image.size == (size, size)


def test_make_realistic_moves_the_slider_without_refitting(results, comfy, definitions):
    """Only perception changed: ComfyUI runs the node again, the node reuses its fit and says so."""
    prompt, _ = result(results, comfy, "deepot_make_realistic_upscale")
    prompt = json.loads(json.dumps(prompt))
    make = of_type(prompt, "DeepOT_MakeRealistic")
    prompt[make]["inputs"]["perception"] = 0.5
    entry = comfy.queue(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (report,) = entry["outputs"][make]["text"]
    assert report.startswith("reused the fit")


# ------------------------------------------------- workflows saved before the V3 nodes
PRE_V3_ORDER = ["deepot_few_shot_calibration", "deepot_zero_shot", "deepot_full_recipe_unpaired", "deepot_reuse",
                "deepot_all_nodes"]


@pytest.fixture(scope="module")
def pre_v3_results(comfy, definitions, results):
    """Each old UI workflow (read with today's schemas) and its frontend-made API twin, queued in order."""
    out = {}
    for name in PRE_V3_ORDER:
        converted = wt.to_api(wt.load(PRE_V3 / "workflows" / f"{name}.json"), definitions, saved_before=True)
        twin = json.loads((PRE_V3 / "api" / f"{name}.api.json").read_text(encoding="utf-8"))
        out[name] = [comfy.queue(converted), comfy.queue(twin)]
    return out


@pytest.mark.parametrize("name", PRE_V3_ORDER)
def test_workflows_saved_before_the_v3_nodes_still_run(pre_v3_results, name):
    for entry in pre_v3_results[name]:
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert entry["outputs"], "nothing was executed"

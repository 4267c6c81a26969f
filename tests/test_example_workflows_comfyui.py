"""The example workflows' API twins, executed by a real ComfyUI (integration; needs ``COMFYUI_PATH``).

ComfyUI starts headless on the CPU with ``--base-directory`` set to a temporary
folder (custom_nodes/ComfyUI-DeepOT links to this pack; input/ holds
``example.png``), so the checkout is not touched. The examples use the
``pixel_space`` VAE, so no weights are needed. ``COMFYUI_PYTHON`` picks
ComfyUI's interpreter (default: this one). Helpers come from
``test_comfyui_integration.py``.
"""
import os
import shutil
from pathlib import Path

import pytest

import node_harness
import test_comfyui_integration as integration
import workflow_tools as wt

pytestmark = pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"),
                                reason="set COMFYUI_PATH to a ComfyUI checkout to run")

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
#: Order matters: the reuse example loads the file the few-shot example saves.
ORDER = ["deepot_few_shot_calibration", "deepot_zero_shot", "deepot_full_recipe_unpaired", "deepot_reuse"]
#: ComfyUI ships this picture in input/; the examples crop 256-pixel tiles out of it.
EXAMPLE_IMAGE, EXAMPLE_SIZE = "example.png", 768


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


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    checkout = Path(os.environ["COMFYUI_PATH"]).resolve()
    base = tmp_path_factory.mktemp("comfy_examples")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / integration.PACK_DIR_NAME).symlink_to(integration.PACK_ROOT, target_is_directory=True)
    (base / "input").mkdir()
    write_example_image(base / "input", checkout)
    with integration.running_comfyui(checkout, base) as server:
        yield server


@pytest.fixture(scope="module")
def results(comfy):
    """Every example's API twin, queued once in ORDER: name → (prompt, /history entry)."""
    definitions = {**wt.core_definitions(), **wt.pack_definitions()}
    out = {}
    for name in ORDER:
        prompt = wt.to_api(wt.load(EXAMPLES / f"{name}.json"), definitions)
        out[name] = (prompt, comfy.queue(prompt))
    return out


def saved_images(prompt: dict, entry: dict) -> list:
    return [image for node_id, node in prompt.items() if node["class_type"] == "SaveImage"
            for image in entry["outputs"].get(node_id, {}).get("images", [])]


def test_every_example_is_listed_as_a_template(comfy):
    listed = set(comfy.get("/workflow_templates").get(integration.PACK_DIR_NAME, []))
    assert {p.stem for p in EXAMPLES.glob("*.json")} <= listed


@pytest.mark.parametrize("name", ORDER)
def test_example_runs_to_completion(results, comfy, name):
    prompt, entry = results[name]
    assert entry["status"]["status_str"] == "success", entry["status"]
    blend = next(n for n in prompt.values() if n["class_type"] == "DeepOT_PDBlend")
    perceptions = node_harness.load_pack().nodes.blend.parse_perceptions(blend["inputs"]["perceptions"]) or [None]
    batch = {"deepot_reuse": 2, "deepot_full_recipe_unpaired": 2}.get(name, 1)
    images = saved_images(prompt, entry)
    assert len(images) == batch * len(perceptions)
    for image in images:
        assert (comfy.base / "output" / image["subfolder"] / image["filename"]).stat().st_size > 0


def test_few_shot_example_saves_the_transport_the_reuse_example_loads(results, comfy):
    prompt, entry = results["deepot_few_shot_calibration"]
    save_id = next(k for k, n in prompt.items() if n["class_type"] == "DeepOT_SaveLatentTransport")
    saved = Path(entry["outputs"][save_id]["text"][0])
    assert saved.is_file() and saved.parent == comfy.base / "models" / "latent_transport"
    reuse_prompt, _ = results["deepot_reuse"]
    load = next(n for n in reuse_prompt.values() if n["class_type"] == "DeepOT_LoadLatentTransport")
    assert load["inputs"]["transport_name"] == saved.name

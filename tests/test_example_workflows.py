"""The example workflows match the node definitions, convert to API format and show the full recipe.

No ComfyUI needed: core nodes are described in ``workflow_tools.CORE_NODES``;
``test_example_workflows_comfyui.py`` runs the API twins in a real ComfyUI.
Two kinds of example: stock ones run on any install (``pixel_space``,
``example.png``); the real-model ones use KAIR's DnCNN and madebyollin's tiny
autoencoders and declare those files for ComfyUI's missing-models dialog.
"""
import copy
from pathlib import Path

import pytest

import node_harness
import workflow_tools as wt

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
WORKFLOWS = sorted(EXAMPLES.glob("*.json"))
#: The examples the docs promise (issues 4, 6, 11); more may be added.
REQUIRED = {"deepot_few_shot_calibration", "deepot_zero_shot", "deepot_reuse", "deepot_denoise_dncnn_taesd",
            "deepot_denoise_dncnn_taef1", "deepot_reuse_dncnn_taesd"}
#: Examples that run with nothing installed.
STOCK = sorted(p for p in WORKFLOWS if p.stem in {"deepot_few_shot_calibration", "deepot_zero_shot", "deepot_reuse",
                                                  "deepot_full_recipe_unpaired"})
#: Real-model denoising examples: their latent space, and the transport file each saves.
DENOISE = {"deepot_denoise_dncnn_taesd": ("taesd", "deepot_dncnn_taesd"),
           "deepot_denoise_dncnn_taef1": ("taef1", "deepot_dncnn_taef1")}
MODEL_EXAMPLES = sorted(p for p in WORKFLOWS if p not in STOCK)
#: The short path (issue 23): one Make Realistic node; every other example is an advanced graph.
SIMPLE = sorted(p for p in WORKFLOWS if p.stem.startswith("deepot_make_realistic"))
ADVANCED = sorted(p for p in WORKFLOWS if p not in SIMPLE)
#: The ×4 upscaler example (a) names: a Compact model Load Upscale Model reads (zarxrax's Compact Pretrain).
COMPACT = {"name": "4x_Compact_Pretrain.safetensors", "url": "https://github.com/davlee1972/upscale_video",
           "directory": "upscale_models"}
#: Most nodes a short-path example may hold, Notes aside.
MAX_SIMPLE_NODES = 8
#: Where the files come from: KAIR's release, madebyollin's repository (which holds .pth files only).
DNCNN = {"name": "dncnn_color_blind.pth", "directory": "upscale_models",
         "url": "https://github.com/cszn/KAIR/releases/download/v1.0/dncnn_color_blind.pth"}
TAESD_URL = "https://github.com/madebyollin/taesd/raw/main/{}"
#: Where the examples expect the user's photos (a subfolder of ComfyUI/input).
PHOTO_FOLDER = "deepot_photos"
#: Thumbnails are shown by the template browser: keep them small.
MAX_THUMBNAIL_BYTES = 200_000
#: Loader nodes that need a downloaded model: the examples must run without any of them.
MODEL_LOADERS = {"CheckpointLoaderSimple", "UpscaleModelLoader", "UNETLoader", "CLIPLoader", "DiffusersLoader"}
KNOBS = ("patch_size", "eps", "strength", "perception", "detail_sigma")


@pytest.fixture(scope="module")
def definitions():
    return {**wt.core_definitions(), **wt.pack_definitions()}


def example(name: str) -> dict:
    return wt.load(EXAMPLES / f"{name}.json")


def only(workflow: dict, node_type: str) -> dict:
    found = wt.nodes_of(workflow, node_type)
    assert len(found) == 1, f"expected one {node_type}, found {len(found)}"
    return found[0]


def test_the_promised_examples_are_there():
    assert REQUIRED <= {p.stem for p in WORKFLOWS}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_matches_the_node_definitions(path, definitions):
    assert wt.check_workflow(wt.load(path), definitions) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_a_small_thumbnail(path):
    from PIL import Image

    thumbs = [path.with_suffix(ext) for ext in (".jpg", ".png") if path.with_suffix(ext).is_file()]
    assert thumbs, f"no {path.stem}.jpg or .png beside {path.name}"
    assert thumbs[0].stat().st_size < MAX_THUMBNAIL_BYTES
    with Image.open(thumbs[0]) as image:
        image.verify()
        assert min(image.size) >= 128


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_converts_to_a_complete_api_prompt(path, definitions):
    workflow = wt.load(path)
    prompt = wt.to_api(workflow, definitions)
    real_nodes = [n for n in workflow["nodes"] if n["type"] not in wt.VIRTUAL_NODES]
    assert set(prompt) == {str(n["id"]) for n in real_nodes}
    for node_id, node in prompt.items():
        definition = definitions[node["class_type"]]
        for spec in definition.inputs:
            if spec.required:
                assert spec.name in node["inputs"], f"{node_id} {node['class_type']} lacks {spec.name}"
        for value in node["inputs"].values():
            if isinstance(value, list):  # a link: [source id, output slot]
                source = prompt[value[0]]
                assert value[1] < len(definitions[source["class_type"]].outputs)
    assert any(definitions[n["class_type"]].output_node for n in prompt.values())


def test_at_least_two_examples_run_on_a_stock_install():
    assert len(STOCK) >= 2 and len(MODEL_EXAMPLES) >= 3


@pytest.mark.parametrize("path", STOCK, ids=lambda p: p.stem)
def test_workflow_runs_with_nothing_but_a_vae(path):
    workflow = wt.load(path)
    assert not {n["type"] for n in workflow["nodes"]} & MODEL_LOADERS
    assert [n["widgets_values"][0] for n in wt.nodes_of(workflow, "VAELoader")] == ["pixel_space"]
    assert {n["widgets_values"][0] for n in wt.nodes_of(workflow, "LoadImage")} == {"example.png"}


@pytest.mark.parametrize("path", ADVANCED, ids=lambda p: p.stem)
def test_workflow_uses_the_residual_decode_recipe(path):
    """PD Blend gets restored, the decode of Apply's output, and the decode of Apply's own input latent."""
    workflow = wt.load(path)
    blend = only(workflow, "DeepOT_PDBlend")
    inputs = wt.linked_inputs(workflow, blend)
    assert {"restored", "transported", "reconstructed"} <= set(inputs)
    transported, reconstructed = inputs["transported"][0], inputs["reconstructed"][0]
    assert transported["type"] == reconstructed["type"] == "VAEDecode"
    apply = wt.linked_inputs(workflow, transported)["samples"][0]
    assert apply["type"] == "DeepOT_ApplyLatentTransport"
    latent = wt.linked_inputs(workflow, apply)["latent"][0]
    assert wt.linked_inputs(workflow, reconstructed)["samples"][0] is latent
    assert latent["type"] == "VAEEncode"
    assert wt.linked_inputs(workflow, latent)["pixels"][0] is inputs["restored"][0]
    assert len(wt.nodes_of(workflow, "VAELoader")) == 1  # one VAE encodes and decodes everything
    assert blend["widgets_values"][1] > 0  # detail_sigma: the detail band is on


def test_few_shot_fits_calibration_pairs_and_saves_the_transport():
    workflow = example("deepot_few_shot_calibration")
    fit = only(workflow, "DeepOT_FitLatentTransport")
    inputs = wt.linked_inputs(workflow, fit)
    natural_path = wt.upstream_types(workflow, inputs["natural"][0])
    restored_path = wt.upstream_types(workflow, inputs["restored"][0])
    assert "DeepOT_DegradeImage" in restored_path and "DeepOT_DegradeImage" not in natural_path
    save = only(workflow, "DeepOT_SaveLatentTransport")
    assert wt.linked_inputs(workflow, save)["transport"][0] is fit
    note = only(workflow, "Note")["widgets_values"][0]
    for knob in KNOBS:
        assert knob in note, f"the Note does not explain {knob}"
    assert "restorer" in note.lower() and "VAE" in note


def test_zero_shot_fits_without_restored_and_sweeps_perceptions():
    workflow = example("deepot_zero_shot")
    fit = only(workflow, "DeepOT_FitLatentTransport")
    inputs = wt.linked_inputs(workflow, fit)
    assert "restored" not in inputs
    assert "DeepOT_HarmoniseColours" in wt.upstream_types(workflow, inputs["natural"][0])
    blend = only(workflow, "DeepOT_PDBlend")
    parse = node_harness.load_pack().nodes.blend.parse_perceptions
    values = parse(blend["widgets_values"][2])
    assert len(values) >= 3 and values[0] == 0 and max(values) == 1


def test_reuse_loads_the_file_the_few_shot_example_saves():
    saved = only(example("deepot_few_shot_calibration"), "DeepOT_SaveLatentTransport")["widgets_values"][0]
    reuse = example("deepot_reuse")
    load = only(reuse, "DeepOT_LoadLatentTransport")
    assert load["widgets_values"][0] == saved + ".safetensors"
    assert "deepot_few_shot_calibration" in only(reuse, "Note")["widgets_values"][0]
    apply = only(reuse, "DeepOT_ApplyLatentTransport")
    assert wt.linked_inputs(reuse, apply)["transport"][0] is load


# ---------------------------------------------------- examples on real models
def declared_models(node: dict) -> list:
    return (node.get("properties") or {}).get("models") or []


def vae_files(vae: str) -> list:
    return [{"name": f"{vae}_{part}.pth", "url": TAESD_URL.format(f"{vae}_{part}.pth"), "directory": "vae_approx"}
            for part in ("encoder", "decoder")]


@pytest.mark.parametrize("path", MODEL_EXAMPLES, ids=lambda p: p.stem)
def test_every_model_loader_says_where_its_files_come_from(path):
    """ComfyUI's template metadata: name, url, directory on the loader, and in the workflow's own list."""
    workflow = wt.load(path)
    loaders = wt.nodes_of(workflow, "UpscaleModelLoader") + wt.nodes_of(workflow, "VAELoader")
    assert len(loaders) == 2
    for node in wt.nodes_of(workflow, "UpscaleModelLoader"):
        # the frontend reads a loader's models whose name is one of its widget values
        (model,) = declared_models(node)
        assert model in (DNCNN, COMPACT) and node["widgets_values"] == [model["name"]]
    for node in wt.nodes_of(workflow, "VAELoader"):
        (vae,) = node["widgets_values"]
        assert declared_models(node) == vae_files(vae)  # the files Load VAE lists as `vae`
    # a VAE's files are not widget values, so the workflow-level list (read as is) must carry them
    assert workflow["models"] == [m for node in loaders for m in declared_models(node)]


@pytest.mark.parametrize("name", sorted(DENOISE))
def test_denoising_examples_fit_dncnn_pairs_of_a_photo_folder(name):
    workflow = example(name)
    vae, saved = DENOISE[name]
    assert [n["widgets_values"][0] for n in wt.nodes_of(workflow, "VAELoader")] == [vae]
    (folder,) = wt.nodes_of(workflow, "DeepOT_LoadImageFolder")
    assert folder["widgets_values"][0] == PHOTO_FOLDER
    fit = only(workflow, "DeepOT_FitLatentTransport")
    inputs = wt.linked_inputs(workflow, fit)
    natural_path = wt.upstream_types(workflow, inputs["natural"][0])
    restored_path = wt.upstream_types(workflow, inputs["restored"][0])
    assert "DeepOT_LoadImageFolder" in natural_path and "ImageUpscaleWithModel" not in natural_path
    assert {"DeepOT_LoadImageFolder", "DeepOT_DegradeImage", "ImageUpscaleWithModel",
            "UpscaleModelLoader", "DeepOT_UndoNoiseClipping"} <= restored_path
    assert_undo_matches_the_noise(workflow)
    # the photo the transport is shown on is held out of the fit
    blend = only(workflow, "DeepOT_PDBlend")
    shown = wt.linked_inputs(workflow, blend)["restored"][0]
    calibration = [wt.linked_inputs(workflow, inputs[key][0])["pixels"][0] for key in ("natural", "restored")]
    assert shown["type"] == "ImageFromBatch" and shown["widgets_values"] == [0, 1]
    assert all(n["type"] == "ImageFromBatch" and n["widgets_values"][0] >= 1 for n in calibration)
    save = only(workflow, "DeepOT_SaveLatentTransport")
    assert save["widgets_values"] == [saved, True]
    note = only(workflow, "Note")["widgets_values"][0]
    assert f"ComfyUI/input/{PHOTO_FOLDER}" in note and DNCNN["url"] in note and "madebyollin/taesd" in note
    assert blend["widgets_values"][2]  # a perceptions sweep: the labelled sheet shows on the node


def test_real_model_reuse_applies_the_file_the_taesd_example_saves():
    reuse = example("deepot_reuse_dncnn_taesd")
    load = only(reuse, "DeepOT_LoadLatentTransport")
    assert load["widgets_values"] == [DENOISE["deepot_denoise_dncnn_taesd"][1] + ".safetensors"]
    assert [n["widgets_values"][0] for n in wt.nodes_of(reuse, "VAELoader")] == ["taesd"]  # the VAE it was fitted in
    blend = only(reuse, "DeepOT_PDBlend")
    assert wt.linked_inputs(reuse, blend)["restored"][0]["type"] == "DeepOT_UndoNoiseClipping"
    assert_undo_matches_the_noise(reuse)  # restored exactly as when the transport was fitted
    assert "deepot_denoise_dncnn_taesd" in only(reuse, "Note")["widgets_values"][0]


def assert_undo_matches_the_noise(workflow):
    """Undo Noise Clipping sits right after DnCNN, with Degrade Image's σ, and everything DnCNN fed now gets its
    output (DnCNN's raw output reaches nothing else)."""
    undo, degrade, dncnn = (only(workflow, t) for t in ("DeepOT_UndoNoiseClipping", "DeepOT_DegradeImage",
                                                          "ImageUpscaleWithModel"))
    assert wt.linked_inputs(workflow, undo)["images"][0] is dncnn
    assert undo["widgets_values"] == [degrade["widgets_values"][4]] == [50]
    assert len(dncnn["outputs"][0]["links"]) == 1


# ------------------------------------------------------- the short path: Make Realistic
def test_the_short_path_examples_are_there():
    assert {p.stem for p in SIMPLE} == {"deepot_make_realistic_upscale", "deepot_make_realistic_denoise",
                                        "deepot_make_realistic_reuse"}


@pytest.mark.parametrize("path", SIMPLE, ids=lambda p: p.stem)
def test_short_path_examples_are_small_and_end_in_make_realistic(path):
    workflow = wt.load(path)
    real = [n for n in workflow["nodes"] if n["type"] not in wt.VIRTUAL_NODES]
    assert len(real) <= MAX_SIMPLE_NODES
    make = only(workflow, "DeepOT_MakeRealistic")
    inputs = wt.linked_inputs(workflow, make)
    assert inputs["vae"][0]["type"] == "VAELoader" and inputs["vae"][0]["widgets_values"] == ["taesd"]
    assert "ImageUpscaleWithModel" in wt.upstream_types(workflow, inputs["restored"][0]) | {inputs["restored"][0]["type"]}
    assert ("natural" in inputs) != ("transport" in inputs)
    save = only(workflow, "SaveImage")
    assert wt.linked_inputs(workflow, save)["images"][0] is make  # the realistic image is what gets saved
    assert "Make Realistic" in only(workflow, "Note")["widgets_values"][0]


def test_example_a_upscales_any_photo_and_learns_from_the_photo_folder():
    workflow = example("deepot_make_realistic_upscale")
    make = only(workflow, "DeepOT_MakeRealistic")
    inputs = wt.linked_inputs(workflow, make)
    assert inputs["restored"][0]["type"] == "ImageUpscaleWithModel"
    assert inputs["natural"][0]["type"] == "DeepOT_LoadImageFolder"
    assert inputs["natural"][0]["widgets_values"][0] == PHOTO_FOLDER
    assert only(workflow, "UpscaleModelLoader")["widgets_values"] == [COMPACT["name"]]
    assert make["widgets_values"][4] is True  # harmonise: the photos are another collection


def test_example_b_fits_dncnn_pairs_of_the_photos_without_harmonising():
    workflow = example("deepot_make_realistic_denoise")
    make = only(workflow, "DeepOT_MakeRealistic")
    inputs = wt.linked_inputs(workflow, make)
    assert inputs["restored"][0]["type"] == "DeepOT_UndoNoiseClipping"
    assert inputs["natural"][0]["type"] == "DeepOT_LoadImageFolder"
    assert "DeepOT_LoadImageFolder" in wt.upstream_types(workflow, inputs["restored"][0])
    assert_undo_matches_the_noise(workflow)
    assert make["widgets_values"][4] is False  # pairs share a palette: no harmonising


def test_example_c_applies_the_file_the_taesd_example_saves():
    workflow = example("deepot_make_realistic_reuse")
    inputs = wt.linked_inputs(workflow, only(workflow, "DeepOT_MakeRealistic"))
    assert inputs["transport"][0]["type"] == "DeepOT_LoadLatentTransport"
    assert inputs["transport"][0]["widgets_values"] == [DENOISE["deepot_denoise_dncnn_taesd"][1] + ".safetensors"]
    assert inputs["restored"][0]["type"] == "DeepOT_UndoNoiseClipping"


# ------------------------------------------------- the checker itself can fail
def _node(workflow, node_type):
    return wt.nodes_of(workflow, node_type)[0]


MUTATIONS = {
    "patch_size out of range": (lambda w: _node(w, "DeepOT_FitLatentTransport")["widgets_values"].__setitem__(0, 11),
                                "outside 1..9"),
    "even patch_size": (lambda w: _node(w, "DeepOT_FitLatentTransport")["widgets_values"].__setitem__(0, 4),
                        "step 2"),
    "missing widget value": (lambda w: _node(w, "DeepOT_PDBlend")["widgets_values"].pop(), "widget values"),
    "bad combo": (lambda w: _node(w, "DeepOT_DegradeImage")["widgets_values"].__setitem__(1, "cubic"),
                  "not one of"),
    "model VAE not on a stock install": (lambda w: _node(w, "VAELoader")["widgets_values"].__setitem__(
        0, "sdxl_vae.safetensors"), "stock install"),
    "model without download metadata": (lambda w: _node(w, "VAELoader").__setitem__(
        "widgets_values", ["taesd"]), "declare the model"),
    "bad seed control": (lambda w: _node(w, "DeepOT_DegradeImage")["widgets_values"].__setitem__(8, "random"),
                         "control_after_generate"),
    "unknown node": (lambda w: _node(w, "VAEDecode").__setitem__("type", "VAEDecodeTiledX"), "unknown node type"),
    "wrong link type": (lambda w: w["links"][0].__setitem__(5, "LATENT"), "typed 'LATENT'"),
    "null where forbidden": (lambda w: _node(w, "VAEEncode").__setitem__("order", None), "null at nodes/order"),
    "dangling link": (lambda w: w["links"].pop(), "does not start there"),
    "renamed input": (lambda w: _node(w, "DeepOT_ApplyLatentTransport")["inputs"][0].__setitem__("name", "latents"),
                      "does not exist"),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_checker_reports_a_broken_workflow(mutation, definitions):
    workflow = copy.deepcopy(example("deepot_few_shot_calibration"))
    change, expected = MUTATIONS[mutation]
    change(workflow)
    errors = wt.check_workflow(workflow, definitions)
    assert any(expected in e for e in errors), errors
    with pytest.raises(ValueError, match="does not match the node definitions"):
        wt.to_api(workflow, definitions)


def test_converter_follows_links_into_widgets_and_skips_muted_and_virtual_nodes():
    definitions = {
        **wt.core_definitions(),
        "IntSource": wt.node_def("IntSource", {"required": {"value": ("INT", {"min": 0, "max": 9})}}, ["INT"]),
        "Seeded": wt.node_def("Seeded", {"required": {"image": ("IMAGE",), "seed": ("INT", {"min": 0, "max": 9}),
                                                      "width": ("INT", {"min": 1, "max": 64})}}, ["IMAGE"]),
    }
    workflow = {
        "id": "x", "last_node_id": 5, "last_link_id": 2, "version": 0.4, "groups": [],
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": None}],
             "widgets_values": ["example.png", "image"]},
            {"id": 2, "type": "IntSource", "mode": 0, "inputs": [],
             "outputs": [{"name": "INT", "type": "INT", "links": [2]}], "widgets_values": [7]},
            {"id": 3, "type": "Seeded", "mode": 0,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 1},
                        {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 2}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": None}], "widgets_values": [5, "fixed", 32]},
            {"id": 4, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["hello"]},
            {"id": 5, "type": "IntSource", "mode": 2, "inputs": [],
             "outputs": [{"name": "INT", "type": "INT", "links": None}], "widgets_values": [1]},
        ],
        "links": [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "INT"]],
    }
    assert wt.check_workflow(workflow, definitions) == []
    prompt = wt.to_api(workflow, definitions)
    assert set(prompt) == {"1", "2", "3"}
    assert prompt["1"]["inputs"] == {"image": "example.png"}
    assert prompt["3"]["inputs"] == {"image": ["1", 0], "seed": 5, "width": ["2", 0]}
    assert prompt["3"]["_meta"] == {"title": "Seeded"}

"""Workflows saved with the V1 nodes (``fixtures/pre_v3``) still match today's nodes, without ComfyUI.

The files were written before the nodes moved to ComfyUI's V3 schema (see the
fixture folder's README): the four shipped examples, one graph using every
node with non-default widget values, the API prompts the real frontend made
of them, and the V1 server's ``/object_info``. A saved workflow stores widget
values by position and links by slot index, so node ids, input names, widget
order and output order must not move; optional inputs and outputs may only be
appended. ``test_example_workflows_comfyui.py`` runs the same files in a real
ComfyUI.
"""
import json
from pathlib import Path

import pytest

import node_harness
import workflow_tools as wt

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pre_v3"
OLD_INFO = json.loads((FIXTURES / "object_info.json").read_text(encoding="utf-8"))
WORKFLOWS = sorted((FIXTURES / "workflows").glob("*.json"))
#: Combos listing files or folders of the machine they run on: their options are not part of the schema.
LOCAL_COMBOS = {("DeepOT_LoadLatentTransport", "transport_name"), ("DeepOT_LoadImageFolder", "folder")}
#: Free text the frontend only shows; rewording it breaks no saved workflow.
PROSE = {"tooltip", "description"}


def api_twin(path: Path) -> dict:
    return json.loads((FIXTURES / "api" / f"{path.stem}.api.json").read_text(encoding="utf-8"))


def input_spec(node_id: str, name: str, spec: list) -> tuple:
    """(type, options) with V1 and V3 spellings of a combo made equal, prose and local file lists left out."""
    kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
    if isinstance(kind, list):  # V1 writes a combo as its option list
        kind, options["options"] = "COMBO", kind
    for key in ("multiselect", "multiline"):  # V3 spells out these defaults; absent means the same to the frontend
        if options.get(key) is False:
            del options[key]
    if (node_id, name) in LOCAL_COMBOS:
        options.pop("options", None)
    return kind, {k: v for k, v in options.items() if k not in PROSE}


@pytest.fixture(scope="module")
def info():
    return node_harness.object_info()


@pytest.fixture(scope="module")
def definitions():
    return {**wt.core_definitions(), **wt.pack_definitions()}


def test_every_old_node_id_still_exists(info):
    assert set(OLD_INFO) <= set(info)


@pytest.mark.parametrize("node_id", sorted(OLD_INFO))
def test_inputs_keep_their_names_order_and_widget_options(node_id, info):
    old, new = OLD_INFO[node_id]["input"], info[node_id]["input"]
    assert list(new["required"]) == list(old["required"])
    old_optional, new_optional = list(old.get("optional", {})), list(new.get("optional", {}))
    assert new_optional[:len(old_optional)] == old_optional, "optional inputs may only be appended"
    for section in ("required", "optional"):
        for name, spec in old.get(section, {}).items():
            assert input_spec(node_id, name, new[section][name]) == input_spec(node_id, name, spec), name
    hidden = lambda spec: {k: v if isinstance(v, str) else v[0] for k, v in spec.get("hidden", {}).items()}
    assert hidden(new) == hidden(old)  # V1 wrote "PROMPT", V3 writes ["PROMPT"]


@pytest.mark.parametrize("node_id", sorted(OLD_INFO))
def test_outputs_node_kind_and_names_stay(node_id, info):
    old, new = OLD_INFO[node_id], info[node_id]
    count = len(old["output"])
    for key in ("output", "output_name", "output_is_list"):
        assert new[key][:count] == old[key], key
    for key in ("name", "display_name", "category", "output_node"):
        assert new[key] == old[key], key


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_old_workflow_matches_todays_definitions(path, definitions):
    assert wt.check_workflow(wt.load(path), definitions, saved_before=True) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_old_workflow_converts_to_the_prompt_the_frontend_made(path, definitions):
    """Reading the stored widget values with today's schemas gives the inputs the V1 frontend sent."""
    ours = wt.to_api(wt.load(path), definitions, saved_before=True)
    theirs = api_twin(path)
    assert set(ours) == set(theirs)
    for node_id, node in theirs.items():
        assert ours[node_id]["class_type"] == node["class_type"]
        expected = dict(node["inputs"])
        for name, spec in ((s.name, s) for s in definitions[node["class_type"]].inputs):
            if name not in expected and "default" in spec.options and not spec.required:
                expected[name] = spec.options["default"]  # an optional widget appended since
        assert ours[node_id]["inputs"] == expected, (node_id, node["class_type"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_old_api_prompt_passes_todays_widget_checks(path, definitions):
    """What ComfyUI's prompt validation checks: known inputs, required ones present, values in range."""
    for node_id, node in api_twin(path).items():
        definition = definitions[node["class_type"]]
        for spec in definition.inputs:
            if spec.required:
                assert spec.name in node["inputs"], (node_id, spec.name)
        for name, value in node["inputs"].items():
            spec = definition.input(name)
            if node["class_type"] in wt.API_ONLY_INPUTS and name in wt.API_ONLY_INPUTS[node["class_type"]]:
                continue
            assert spec is not None, (node_id, name)
            if isinstance(value, list) and spec.type_name not in ("COMBO",):  # a link
                continue
            report = wt.Report()
            wt._check_value(report, f"{path.stem} node {node_id}", node["class_type"], spec, value)
            assert report.errors == []


def test_the_fixtures_cover_every_node_and_every_widget():
    """The all-nodes graph uses every node of the pack, each widget away from its default where it can be."""
    graph = wt.load(FIXTURES / "workflows" / "deepot_all_nodes.json")
    assert {n["type"] for n in graph["nodes"]} >= set(OLD_INFO)
    prompt = api_twin(FIXTURES / "workflows" / "deepot_all_nodes.json")
    changed = 0
    for node in prompt.values():
        if node["class_type"] not in OLD_INFO:
            continue
        spec = OLD_INFO[node["class_type"]]["input"]
        for section in ("required", "optional"):
            for name, (kind, *rest) in spec.get(section, {}).items():
                options = rest[0] if rest else {}
                if name in node["inputs"] and "default" in options and node["inputs"][name] != options["default"]:
                    changed += 1
    assert changed >= 12

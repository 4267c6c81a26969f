"""What the pack ships around its nodes: node-library docs, the text-on-node script, icon, registry metadata.

ComfyUI's node library asks ``/extensions/<pack folder>/docs/<node id>.md`` for a
custom node's help page (frontend ``nodeHelpService``); ComfyUI serves that from
the package's ``WEB_DIRECTORY``. The registry shows ``[tool.comfy] Icon`` and
publishes through ``.github/workflows``. ``test_comfyui_integration.py`` checks
that a real server serves the pages.
"""
import re
from pathlib import Path

import pytest

import node_harness
from test_nodes import NODE_IDS

ROOT = node_harness.PACK_ROOT
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def web_directory() -> Path:
    return (ROOT / node_harness.load_pack().WEB_DIRECTORY).resolve()


@pytest.mark.parametrize("node_id", sorted(NODE_IDS))
def test_every_node_has_a_help_page_naming_all_its_sockets(node_id):
    page = web_directory() / "docs" / f"{node_id}.md"
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {NODE_IDS[node_id]}\n")
    schema = node_harness.node_class(node_id).GET_SCHEMA()
    for spec in schema.inputs:
        assert f"`{spec.id}`" in text, f"{page.name} does not describe input {spec.id}"
    for spec in schema.outputs:
        assert f"`{spec.display_name or spec.io_type}`" in text, f"{page.name} does not describe an output"


def test_the_text_on_node_script_names_real_nodes_and_is_never_saved():
    script = (web_directory() / "js" / "deepot_text_on_node.js").read_text(encoding="utf-8")
    named = set(re.findall(r'"(DeepOT_\w+)"', script))
    assert named == {"DeepOT_MakeRealistic", "DeepOT_FitLatentTransport", "DeepOT_LoadLatentTransport", "DeepOT_SaveLatentTransport"}
    assert "widget.serialize = false" in script and "widget.options.serialize = false" in script


def test_the_icon_the_registry_shows_exists():
    from PIL import Image

    url = re.search(r'^Icon = "([^"]+)"', PYPROJECT, re.M).group(1)
    path = ROOT / url.split("/main/", 1)[1]
    with Image.open(path) as icon:
        assert icon.format == "PNG" and icon.size[0] == icon.size[1] >= 128
        assert len(icon.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # a picture, not a blank square


def test_the_minimum_comfyui_is_stated_once_and_matches_the_code():
    stated = re.search(r'^requires-comfyui = ">=([\d.]+)"', PYPROJECT, re.M).group(1)
    v3 = node_harness.v3()
    assert stated == v3.MIN_COMFYUI and v3.PINNED_API == "comfy_api.v0_0_2"


def test_a_registry_publish_workflow_runs_on_version_bumps():
    workflow = (ROOT / ".github" / "workflows" / "publish_action.yml").read_text(encoding="utf-8")
    assert "uses: Comfy-Org/publish-node-action@v1" in workflow
    assert "personal_access_token: ${{ secrets.REGISTRY_ACCESS_TOKEN }}" in workflow
    assert re.search(r'paths:\s*\n\s*- "pyproject.toml"', workflow)

"""Load the pack the way ComfyUI does (a package from its folder) and call nodes like its executor.

ComfyUI imports a custom-node folder with ``spec_from_file_location`` under a
name of its own, so the pack must work under any package name and never
import itself absolutely; its V3 loader then asks ``comfy_entrypoint`` for the
nodes. ``run`` mirrors ``execution.py``: widget defaults from the schema, range
checks of widget values, hidden inputs on a clone of the class, ``execute``
under ``torch.inference_mode()``, and an ``io.NodeOutput`` with one value per
schema output. Without ComfyUI the schemas come from the pack's stand-in of the
pinned API (``nodes/comfy_v3.py``).
"""
import asyncio
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui_deepot"


def load_pack():
    """The pack as the package ``comfyui_deepot`` (loaded once per test session)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def core():
    """``deepot_core`` as the pack sees it (its exception classes are the ones the nodes catch)."""
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.deepot_core")


def node_classes() -> dict:
    """Node id → class, as ComfyUI's V3 loader registers them from ``comfy_entrypoint``."""
    pack = load_pack()
    extension = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


def node_class(node_id: str):
    return node_classes()[node_id]


def object_info() -> dict:
    """The pack's nodes as ComfyUI's ``/object_info`` lists them (the frontend builds its nodes from this)."""
    return {node_id: cls.GET_NODE_INFO_V1() for node_id, cls in node_classes().items()}


def widget_defaults(cls) -> dict:
    """Default values of the required widget inputs (links have no default)."""
    out = {}
    for name, (kind, *rest) in cls.INPUT_TYPES().get("required", {}).items():
        options = rest[0] if rest else {}
        if "default" in options:
            out[name] = options["default"]
        elif kind == "COMBO" and options.get("options"):
            out[name] = options["options"][0]
    return out


def check_widget_ranges(cls, inputs: dict) -> None:
    """What ComfyUI's validation refuses before a node runs (min/max of INT and FLOAT widgets)."""
    types = cls.INPUT_TYPES(include_hidden=False)
    spec = {**types.get("required", {}), **types.get("optional", {})}
    for name, value in inputs.items():
        assert name in spec, f"{cls.__name__} has no input {name!r}"
        kind, *rest = spec[name]
        options = rest[0] if rest else {}
        if kind in ("INT", "FLOAT"):
            assert options.get("min", -float("inf")) <= value <= options.get("max", float("inf")), (name, value)


def run(node_id: str, **inputs):
    """Run a node like ComfyUI's executor; returns its ``NodeOutput`` (outputs in ``.args``, ``.ui``).

    ``prompt``, ``extra_pnginfo`` and ``unique_id`` are hidden inputs: they reach
    the node on its class (``cls.hidden``), as ComfyUI hands them over.
    """
    cls = node_class(node_id)
    hidden_names = {h.name: h for h in v3().io.Hidden}
    hidden = {hidden_names[k]: inputs.pop(k) for k in list(inputs) if k in hidden_names}
    call = {**widget_defaults(cls), **inputs}
    check_widget_ranges(cls, {k: v for k, v in call.items() if not isinstance(v, (torch.Tensor, dict))})
    with torch.inference_mode():
        out = cls.PREPARE_CLASS_CLONE(hidden).execute(**call)
    assert isinstance(out, v3().io.NodeOutput), f"{node_id}.execute must return io.NodeOutput, got {type(out)}"
    assert len(out.args) == len(cls.GET_SCHEMA().outputs), (out.args, cls.GET_SCHEMA().outputs)
    return out


def run_node(node_id: str, **inputs) -> tuple:
    """The outputs of ``run`` as a tuple, in schema order."""
    return tuple(run(node_id, **inputs).args)


def v3():
    """The pack's ``nodes.comfy_v3`` (ComfyUI's pinned API, or the stand-in without ComfyUI)."""
    return load_pack().nodes.comfy_v3

"""Load the pack the way ComfyUI does (a package from its folder) and call nodes like its executor.

ComfyUI imports a custom-node folder with ``spec_from_file_location`` under a
name of its own, so the pack must work under any package name and never
import itself absolutely. ``run_node`` mirrors ``execution.py``: widget
defaults from ``INPUT_TYPES``, range checks of widget values, the method named
by ``FUNCTION``, under ``torch.inference_mode()``, and a result tuple as long
as ``RETURN_TYPES`` (or a dict with ``result``, as output nodes return).
"""
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


def node_class(node_id: str):
    return load_pack().NODE_CLASS_MAPPINGS[node_id]


def object_info() -> dict:
    """The pack's nodes as ComfyUI's ``/object_info`` lists them (the frontend builds its nodes from this)."""
    pack = load_pack()
    out = {}
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        inputs = cls.INPUT_TYPES()
        returns = list(cls.RETURN_TYPES)
        out[node_id] = {
            "input": inputs, "input_order": {section: list(spec) for section, spec in inputs.items()},
            "output": returns, "output_is_list": [False] * len(returns),
            "output_name": list(getattr(cls, "RETURN_NAMES", returns)),
            "output_tooltips": list(getattr(cls, "OUTPUT_TOOLTIPS", [None] * len(returns))),
            "name": node_id, "display_name": pack.NODE_DISPLAY_NAME_MAPPINGS[node_id],
            "description": cls.DESCRIPTION, "category": cls.CATEGORY,
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        }
    return out


def widget_defaults(cls) -> dict:
    """Default values of the required widget inputs (links have no default)."""
    out = {}
    for name, (kind, *rest) in cls.INPUT_TYPES().get("required", {}).items():
        options = rest[0] if rest else {}
        if "default" in options:
            out[name] = options["default"]
        elif isinstance(kind, list) and kind:
            out[name] = kind[0]
    return out


def check_widget_ranges(cls, inputs: dict) -> None:
    """What ComfyUI's validation refuses before a node runs (min/max of INT and FLOAT widgets)."""
    types = cls.INPUT_TYPES()
    spec = {**types.get("required", {}), **types.get("optional", {})}
    for name, value in inputs.items():
        if name in types.get("hidden", {}):
            continue
        assert name in spec, f"{cls.__name__} has no input {name!r}"
        kind, *rest = spec[name]
        options = rest[0] if rest else {}
        if kind in ("INT", "FLOAT"):
            assert options.get("min", -float("inf")) <= value <= options.get("max", float("inf")), (name, value)


def run_node(node_id: str, **inputs):
    """Run a node like ComfyUI's executor; returns the output tuple (``result`` of an output node)."""
    cls = node_class(node_id)
    call = {**widget_defaults(cls), **inputs}
    check_widget_ranges(cls, {k: v for k, v in call.items() if not isinstance(v, (torch.Tensor, dict))})
    with torch.inference_mode():
        out = getattr(cls(), cls.FUNCTION)(**call)
    if isinstance(out, dict):
        assert "result" in out, "an output node's dict must hold 'result'"
        out = out["result"]
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES), (out, cls.RETURN_TYPES)
    return out

"""Check UI-format ComfyUI workflows against node definitions and convert them to API format.

ComfyUI is not importable in plain tests, so the core nodes the example
workflows use are described by ``CORE_NODES``, copied from ComfyUI's
``/object_info`` (0.3.64, frontend 1.27.10; tooltips left out). The pack's own
nodes come from their ``/object_info`` entries (``node_harness.object_info``), and
a running ComfyUI's own ``/object_info`` works too (``object_info_definitions``).
The widget rules mirror the frontend:
every INT/FLOAT/STRING/BOOLEAN/combo input is a widget in input order (also
when a link feeds it), an INT with ``control_after_generate`` (or named
``seed``/``noise_seed``) stores one more value, and an ``image_upload`` combo
is followed by the upload button's value. A workflow saved before an optional
widget was appended stores fewer values: the frontend gives the new widget its
default; ``saved_before=True`` accepts such files and ``to_api`` then does the same.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: Nodes that live only in the frontend: they have no API twin.
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute"}
#: Node modes the frontend leaves out of the API prompt (2 = muted, 4 = bypassed).
SKIPPED_MODES = {2, 4}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
CONTROL_NAMES = ("seed", "noise_seed")
#: Value the frontend stores for the upload button of an ``image_upload`` combo.
UPLOAD_VALUE = "image"
#: Combos whose options are files on the user's machine, and the values every install offers. Any other
#: value is a model the user must download: the node has to declare it in ``properties.models``
#: (ComfyUI's template metadata, which the frontend's missing-models dialog reads).
STOCK_COMBO_VALUES = {
    ("LoadImage", "image"): {"example.png"},  # shipped in ComfyUI's input folder
    ("VAELoader", "vae_name"): {"pixel_space"},  # the identity VAE, always listed
    ("UpscaleModelLoader", "model_name"): set(),
}
#: Values the frontend adds to the API prompt for widgets it never stores in ``widgets_values``.
API_ONLY_INPUTS = {"PreviewAny": {"preview": ""}}
#: Combos listing files in models/latent_transport: any ``.safetensors`` name is acceptable here.
FILE_COMBOS = {("DeepOT_LoadLatentTransport", "transport_name"): ".safetensors",
               ("DeepOT_LoadImageFolder", "folder"): ""}  # a subfolder of input/: any name

_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
_IMAGE, _VAE, _LATENT = ("IMAGE",), ("VAE",), ("LATENT",)

#: Core ComfyUI nodes used by the examples: inputs in order (section, spec), outputs, output node.
CORE_NODES = {
    "LoadImage": {"required": {"image": (["example.png"], {"image_upload": True})},
                  "output": ["IMAGE", "MASK"], "display": "Load Image"},
    "ImageCrop": {"required": {"image": _IMAGE,
                               "width": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
                               "height": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
                               "x": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1}),
                               "y": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1})},
                  "output": ["IMAGE"], "display": "Image Crop"},
    "ImageBatch": {"required": {"image1": _IMAGE, "image2": _IMAGE}, "output": ["IMAGE"], "display": "Batch Images"},
    "ImageFromBatch": {"required": {"image": _IMAGE,
                                    "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                                    "length": ("INT", {"default": 1, "min": 1, "max": 4096})},
                       "output": ["IMAGE"], "display": "ImageFromBatch"},
    "ImageScaleBy": {"required": {"image": _IMAGE, "upscale_method": (_METHODS,),
                                  "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})},
                     "output": ["IMAGE"], "display": "Upscale Image By"},
    "ImageScale": {"required": {"image": _IMAGE, "upscale_method": (_METHODS,),
                                "width": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
                                "height": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
                                "crop": (["disabled", "center"],)},
                   "output": ["IMAGE"], "display": "Upscale Image"},
    "ImageBlur": {"required": {"image": _IMAGE,
                               "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                               "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})},
                  "output": ["IMAGE"], "display": "ImageBlur"},
    "VAELoader": {"required": {"vae_name": (["pixel_space"],)}, "output": ["VAE"], "display": "Load VAE"},
    "UpscaleModelLoader": {"required": {"model_name": ("COMBO", {"options": []})}, "output": ["UPSCALE_MODEL"],
                           "display": "Load Upscale Model"},
    "ImageUpscaleWithModel": {"required": {"upscale_model": ("UPSCALE_MODEL", {}), "image": _IMAGE},
                              "output": ["IMAGE"], "display": "Upscale Image (using Model)"},
    "VAEEncode": {"required": {"pixels": _IMAGE, "vae": _VAE}, "output": ["LATENT"], "display": "VAE Encode"},
    "VAEDecode": {"required": {"samples": _LATENT, "vae": _VAE}, "output": ["IMAGE"], "display": "VAE Decode"},
    "SaveImage": {"required": {"images": _IMAGE, "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                  "output": [], "output_node": True, "display": "Save Image"},
    "PreviewImage": {"required": {"images": _IMAGE}, "output": [], "output_node": True, "display": "Preview Image"},
    "PreviewAny": {"required": {"source": ("*", {})}, "output": [], "output_node": True, "display": "Preview Any"},
}
#: Frontend-only nodes: their widgets (no sockets).
VIRTUAL_WIDGETS = {"Note": ["text"], "MarkdownNote": ["text"], "Reroute": []}


@dataclass
class Input:
    name: str
    kind: object  # a type name, or a list of combo options
    options: dict
    required: bool

    @property
    def type_name(self) -> str:
        return "COMBO" if isinstance(self.kind, (list, tuple)) else str(self.kind)

    @property
    def is_widget(self) -> bool:
        return self.type_name in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def widget_count(self) -> int:
        """How many values the frontend stores for this input in ``widgets_values``."""
        if not self.is_widget:
            return 0
        if self.type_name == "INT" and (self.options.get("control_after_generate") or self.name in CONTROL_NAMES):
            return 2
        if self.type_name == "COMBO" and self.options.get("image_upload"):
            return 2
        return 1


@dataclass
class NodeDef:
    name: str
    inputs: List[Input]
    outputs: List[str]
    output_node: bool = False
    display_name: str = ""

    def input(self, name: str) -> Optional[Input]:
        return next((i for i in self.inputs if i.name == name), None)


def node_def(name: str, input_types: dict, outputs, output_node: bool = False, display_name: str = "") -> NodeDef:
    """A node definition from ``INPUT_TYPES``-style sections (hidden inputs are not part of a workflow)."""
    inputs = []
    for section in ("required", "optional"):
        for input_name, spec in (input_types.get(section) or {}).items():
            kind, *rest = spec
            options = dict(rest[0]) if rest else {}
            if kind == "COMBO":  # the V3 form of a combo: the option list sits in the options
                kind = list(options.get("options", []))
            inputs.append(Input(input_name, kind, options, section == "required"))
    return NodeDef(name, inputs, list(outputs), bool(output_node), display_name or name)


def object_info_definitions(object_info: dict) -> Dict[str, NodeDef]:
    """Definitions from ``/object_info`` entries (ComfyUI's own, or ``node_harness.object_info()``)."""
    return {name: node_def(name, info["input"], info["output"], info.get("output_node", False),
                           info.get("display_name") or name)
            for name, info in object_info.items()}


def core_definitions() -> Dict[str, NodeDef]:
    return {name: node_def(name, spec, spec["output"], spec.get("output_node", False), spec["display"])
            for name, spec in CORE_NODES.items()}


def pack_definitions() -> Dict[str, NodeDef]:
    """Definitions of the pack's nodes, from the ``/object_info`` entries their schemas give."""
    import node_harness

    return object_info_definitions(node_harness.object_info())


# ------------------------------------------------------------------ checking
@dataclass
class Report:
    errors: List[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.errors.append(message)


def _where(node: dict) -> str:
    return f"node {node.get('id')} ({node.get('type')}{', ' + repr(node['title']) if node.get('title') else ''})"


def _check_value(report: Report, where: str, node_type: str, spec: Input, value, declared=()) -> None:
    """One widget value against its input; ``declared``: model file names the node's metadata lists."""
    kind = spec.type_name
    opts = spec.options
    if value is None:
        report.add(f"{where}: widget {spec.name!r} is null")
        return
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            report.add(f"{where}: {spec.name}={value!r} is not an integer")
            return
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            report.add(f"{where}: {spec.name}={value!r} is not a finite number")
            return
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            report.add(f"{where}: {spec.name}={value!r} is not a boolean")
        return
    elif kind == "STRING":
        if not isinstance(value, str):
            report.add(f"{where}: {spec.name}={value!r} is not a string")
        return
    elif kind == "COMBO":
        key = (node_type, spec.name)
        if key in FILE_COMBOS:
            if not (isinstance(value, str) and value.endswith(FILE_COMBOS[key])):
                report.add(f"{where}: {spec.name}={value!r} is not a {FILE_COMBOS[key]} file name")
        elif key in STOCK_COMBO_VALUES:
            if value not in STOCK_COMBO_VALUES[key] and not declared:
                report.add(f"{where}: {spec.name}={value!r} is not available on a stock install "
                           f"(use one of {sorted(STOCK_COMBO_VALUES[key])}, or declare the model's download "
                           "in the node's properties.models)")
        elif value not in list(spec.kind):
            report.add(f"{where}: {spec.name}={value!r} is not one of {list(spec.kind)}")
        return
    lo, hi = opts.get("min", -math.inf), opts.get("max", math.inf)
    if not lo <= value <= hi:
        report.add(f"{where}: {spec.name}={value!r} is outside {lo}..{hi}")
    if kind == "INT" and opts.get("step", 1) > 1 and (value - opts.get("min", 0)) % opts["step"]:
        report.add(f"{where}: {spec.name}={value!r} is off the widget's step {opts['step']} from {opts.get('min', 0)}")


def widget_values(node: dict, definition: NodeDef, report: Report, saved_before: bool = False) -> Dict[str, object]:
    """``widgets_values`` of a node, checked and named by input (extra control/upload values dropped)."""
    where = _where(node)
    values = node.get("widgets_values", [])
    if isinstance(values, dict):  # some frontend widgets store a dict; none of ours does
        report.add(f"{where}: widgets_values is a dict, expected a list")
        return {}
    widgets = [i for i in definition.inputs if i.is_widget]
    expected = sum(i.widget_count for i in widgets)
    stored, pos = [], 0  # the widgets the saved values cover; an optional tail may be missing
    for spec in widgets:
        if pos + spec.widget_count > len(values):
            break
        stored.append(spec)
        pos += spec.widget_count
    missing = widgets[len(stored):]
    if pos != len(values) or (missing and not saved_before) or any(
            spec.required or "default" not in spec.options for spec in missing):
        report.add(f"{where}: {len(values)} widget values but the node has {expected} "
                   f"({', '.join(i.name for i in widgets)})")
        return {}
    named, pos = {spec.name: spec.options["default"] for spec in missing}, 0
    declared = [m.get("name") for m in (node.get("properties") or {}).get("models") or [] if isinstance(m, dict)]
    for spec in stored:
        named[spec.name] = values[pos]
        _check_value(report, where, definition.name, spec, values[pos], declared)
        if spec.widget_count == 2:
            extra = values[pos + 1]
            if spec.type_name == "INT" and extra not in CONTROL_VALUES:
                report.add(f"{where}: control_after_generate of {spec.name} is {extra!r}, not one of {CONTROL_VALUES}")
            if spec.type_name == "COMBO" and extra != UPLOAD_VALUE:
                report.add(f"{where}: upload widget of {spec.name} is {extra!r}, expected {UPLOAD_VALUE!r}")
        pos += spec.widget_count
    return named


#: Where the UI schema (frontend zod, version 0.4) lets a value be null.
NULLABLE = {("inputs", "link"), ("outputs", "links")}


def _nulls(obj, path=()) -> List[str]:
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if value is None and (path[-1:] + (key,)) not in NULLABLE:
                found.append("/".join(map(str, path + (key,))))
            else:
                found += _nulls(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            # list items keep the list's own name as the last path element
            found += _nulls(value, path) if isinstance(value, (dict, list)) else (
                ["/".join(map(str, path + (i,)))] if value is None else [])
    return found


def check_workflow(workflow: dict, definitions: Dict[str, NodeDef], saved_before: bool = False) -> List[str]:
    """Every problem found in a UI-format workflow (empty list = fine).

    ``saved_before``: the file may predate optional widgets appended since (see the module docstring).
    """
    report = Report()
    for key in ("id", "last_node_id", "last_link_id", "nodes", "links", "version"):
        if key not in workflow:
            report.add(f"top-level key {key!r} is missing")
    if report.errors:
        return report.errors
    for path in _nulls(workflow):
        report.add(f"null at {path} (the frontend's schema forbids it there)")
    nodes = {}
    for node in workflow["nodes"]:
        if node["id"] in nodes:
            report.add(f"duplicate node id {node['id']}")
        nodes[node["id"]] = node
    if nodes and max(nodes) > workflow["last_node_id"]:
        report.add(f"last_node_id {workflow['last_node_id']} is below node id {max(nodes)}")
    links = {}
    for link in workflow["links"]:
        if not (isinstance(link, list) and len(link) == 6):
            report.add(f"link {link!r} is not [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        links[link[0]] = link
    if links and max(links) > workflow["last_link_id"]:
        report.add(f"last_link_id {workflow['last_link_id']} is below link id {max(links)}")

    for node in workflow["nodes"]:
        where = _where(node)
        kind = node.get("type")
        if kind in VIRTUAL_NODES:
            count = len(VIRTUAL_WIDGETS[kind])
            if len(node.get("widgets_values", [])) != count or not all(
                    isinstance(v, str) for v in node.get("widgets_values", [])):
                report.add(f"{where}: expected {count} text widget value(s)")
            continue
        definition = definitions.get(kind)
        if definition is None:
            report.add(f"{where}: unknown node type {kind!r} (neither core nor this pack)")
            continue
        widget_values(node, definition, report, saved_before)
        linked = set()
        for slot in node.get("inputs", []):
            spec = definition.input(slot.get("name"))
            if spec is None:
                report.add(f"{where}: input socket {slot.get('name')!r} does not exist on {kind}")
                continue
            if slot.get("type") != spec.type_name and not (spec.type_name == "*" or slot.get("type") == "*"):
                report.add(f"{where}: socket {spec.name} has type {slot.get('type')!r}, the node says {spec.type_name!r}")
            if slot.get("link") is not None:
                linked.add(spec.name)
        for spec in definition.inputs:
            if spec.required and not spec.is_widget and spec.name not in linked:
                report.add(f"{where}: required input {spec.name!r} is not connected")
        outputs_saved = len(node.get("outputs", []))
        if outputs_saved != len(definition.outputs) and not (saved_before and outputs_saved < len(definition.outputs)):
            report.add(f"{where}: {len(node.get('outputs', []))} output sockets, the node has {len(definition.outputs)}")
        for i, (slot, out_type) in enumerate(zip(node.get("outputs", []), definition.outputs)):
            if slot.get("type") != out_type:
                report.add(f"{where}: output {i} has type {slot.get('type')!r}, the node says {out_type!r}")
            for link_id in slot.get("links") or []:
                if link_id not in links or links[link_id][1] != node["id"] or links[link_id][2] != i:
                    report.add(f"{where}: output {i} lists link {link_id} that does not start there")

    for link_id, (_, src, src_slot, dst, dst_slot, link_type) in links.items():
        label = f"link {link_id}"
        if src not in nodes or dst not in nodes:
            report.add(f"{label}: joins missing node {src if src not in nodes else dst}")
            continue
        src_node, dst_node = nodes[src], nodes[dst]
        outputs, inputs = src_node.get("outputs", []), dst_node.get("inputs", [])
        if not (0 <= src_slot < len(outputs)) or not (0 <= dst_slot < len(inputs)):
            report.add(f"{label}: slot {src_slot} -> {dst_slot} out of range")
            continue
        if link_id not in (outputs[src_slot].get("links") or []) or inputs[dst_slot].get("link") != link_id:
            report.add(f"{label}: the nodes' sockets do not list it")
        src_def, dst_def = definitions.get(src_node["type"]), definitions.get(dst_node["type"])
        if src_def is None or dst_def is None:
            continue
        out_type = src_def.outputs[src_slot] if src_slot < len(src_def.outputs) else None
        in_spec = dst_def.input(inputs[dst_slot].get("name"))
        in_type = in_spec.type_name if in_spec else None
        if link_type != out_type and not (link_type == "*" and in_type == "*"):  # "*" inputs retype the link
            report.add(f"{label}: typed {link_type!r} but {_where(src_node)} output {src_slot} is {out_type!r}")
        if in_type not in ("*", out_type):
            report.add(f"{label}: {out_type!r} into {_where(dst_node)} input {inputs[dst_slot].get('name')!r} "
                       f"of type {in_type!r}")
    return report.errors


# ---------------------------------------------------------------- conversion
def to_api(workflow: dict, definitions: Dict[str, NodeDef], saved_before: bool = False) -> dict:
    """The API-format prompt of a UI workflow, as the frontend's ``graphToPrompt`` builds it.

    Virtual nodes and muted/bypassed nodes are left out (a link from a bypassed
    node is not followed here: the examples have none). Raises ``ValueError``
    when the workflow does not pass ``check_workflow``.
    """
    errors = check_workflow(workflow, definitions, saved_before)
    if errors:
        raise ValueError("workflow does not match the node definitions:\n" + "\n".join(errors))
    links = {link[0]: link for link in workflow["links"]}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n.get("order", 0)):
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in SKIPPED_MODES:
            continue
        definition = definitions[node["type"]]
        inputs = {**widget_values(node, definition, Report(), saved_before), **API_ONLY_INPUTS.get(node["type"], {})}
        for slot in node.get("inputs", []):
            link = links.get(slot.get("link"))
            if link is None:
                continue
            source = nodes[link[1]]
            if source.get("mode", 0) in SKIPPED_MODES or source["type"] in VIRTUAL_NODES:
                raise ValueError(f"{_where(node)}: input {slot['name']} comes from a muted/bypassed/virtual node")
            inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or definition.display_name}}
    return prompt


def load(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def nodes_of(workflow: dict, node_type: str) -> List[dict]:
    return [n for n in workflow["nodes"] if n.get("type") == node_type]


def linked_inputs(workflow: dict, node: dict) -> Dict[str, Tuple[dict, int]]:
    """Input name → (source node, output slot) of a node's connected inputs."""
    links = {link[0]: link for link in workflow["links"]}
    nodes = {n["id"]: n for n in workflow["nodes"]}
    return {slot["name"]: (nodes[links[slot["link"]][1]], links[slot["link"]][2])
            for slot in node.get("inputs", []) if slot.get("link") is not None}


def upstream_types(workflow: dict, node: dict) -> set:
    """Types of every node a node depends on (through its connected inputs)."""
    seen, todo, types = set(), [node], set()
    while todo:
        current = todo.pop()
        for source, _ in linked_inputs(workflow, current).values():
            if source["id"] not in seen:
                seen.add(source["id"])
                types.add(source["type"])
                todo.append(source)
    return types

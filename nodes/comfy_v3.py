"""ComfyUI's V3 node API at the version the pack is written against, or a small stand-in without ComfyUI.

Inside ComfyUI the nodes use ``comfy_api.v0_0_2`` (``io``, ``ui``, ``ComfyExtension``):
pinned, not ``latest``, so a ComfyUI update cannot silently change what a schema
means. Without ComfyUI (tests, the command line) the stand-in below offers the
same names with the same arguments — enough to declare the schemas, list them
the way ``/object_info`` does and call ``execute`` — and it never runs inside
ComfyUI. A ComfyUI that lacks the pinned API gets the stand-in too (so importing
never fails) and ``MISSING`` says why; the package's ``__init__`` logs that one
line and registers no nodes.
"""
import dataclasses
import enum
import sys
from abc import ABC, abstractmethod
from typing import Any, List, Optional

#: The versioned API the schemas are written against, and the oldest ComfyUI known to ship it as used here.
PINNED_API = "comfy_api.v0_0_2"
MIN_COMFYUI = "0.3.64"


def _inside_comfyui() -> bool:
    """ComfyUI is the host when it has already imported its own modules (it does before loading custom nodes)."""
    return "folder_paths" in sys.modules and "comfy.model_management" in sys.modules


# ----------------------------------------------------------------- stand-in
def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class _Input:
    io_type: str = None

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.extra_dict = extra_dict or {}

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                       "lazy": self.lazy}) | _prune(self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type


class _WidgetInput(_Input):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 socketless=None, widget_type=None, force_input=None, extra_dict=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default, self.socketless, self.widget_type, self.force_input = default, socketless, widget_type, force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _prune({"default": self.default, "socketless": self.socketless,
                                           "widgetType": self.widget_type, "forceInput": self.force_input})


class _Output:
    io_type: str = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _comfy_type(io_type: str, input_class=_Input) -> type:
    """A type like ``io.Latent``: ``.Input`` and ``.Output`` bound to ``io_type``."""
    return type(io_type.title(), (), {"io_type": io_type,
                                      "Input": type("Input", (input_class,), {"io_type": io_type}),
                                      "Output": type("Output", (_Output,), {"io_type": io_type})})


class _IntInput(_WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, min=None,
                 max=None, step=None, control_after_generate=None, display_mode=None, socketless=None,
                 force_input=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step, self.control_after_generate = min, max, step, control_after_generate
        self.display_mode = display_mode

    def as_dict(self):
        return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step,
                                           "control_after_generate": self.control_after_generate,
                                           "display": self.display_mode.value if self.display_mode else None})


class _FloatInput(_WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, min=None,
                 max=None, step=None, round=None, display_mode=None, socketless=None, force_input=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step, self.round, self.display_mode = min, max, step, round, display_mode

    def as_dict(self):
        return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step, "round": self.round,
                                           "display": self.display_mode})


class _StringInput(_WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, multiline=False,
                 placeholder=None, default=None, dynamic_prompts=None, socketless=None, force_input=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

    def as_dict(self):
        return super().as_dict() | _prune({"multiline": self.multiline, "placeholder": self.placeholder,
                                           "dynamicPrompts": self.dynamic_prompts})


class _BooleanInput(_WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 label_on=None, label_off=None, socketless=None, force_input=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.label_on, self.label_off = label_on, label_off

    def as_dict(self):
        return super().as_dict() | _prune({"label_on": self.label_on, "label_off": self.label_off})


class _ComboInput(_WidgetInput):
    def __init__(self, id, options=None, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 control_after_generate=None, socketless=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
        self.options, self.control_after_generate = options, control_after_generate

    def as_dict(self):
        return super().as_dict() | _prune({"multiselect": False, "options": self.options,
                                           "control_after_generate": self.control_after_generate})


class _Hidden(str, enum.Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class _HiddenHolder:
    def __init__(self, values: dict):
        for hidden in _Hidden:
            setattr(self, hidden.name, values.get(hidden))

    def __getattr__(self, key):
        return None


@dataclasses.dataclass
class _Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = None
    outputs: list = None
    hidden: list = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False

    def finalize(self) -> None:
        """As ComfyUI does: output nodes receive the prompt and PNG info; outputs get default ids."""
        if self.is_output_node:
            self.hidden = list(self.hidden or [])
            self.hidden += [h for h in (_Hidden.prompt, _Hidden.extra_pnginfo) if h not in self.hidden]
        for i, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"

    def validate(self) -> None:
        inputs, outputs = [i.id for i in self.inputs or []], [o.id for o in self.outputs or []]
        if len(set(inputs)) != len(inputs) or len(set(outputs)) != len(outputs) or set(inputs) & set(outputs):
            raise ValueError(f"{self.node_id}: input and output ids must be unique: {inputs} {outputs}")

    def get_v1_info(self, cls) -> dict:
        """The node as ``/object_info`` lists it (what the frontend builds the node from)."""
        inputs = {"required": {}}
        for i in self.inputs or []:
            spec = i.as_dict()
            spec.pop("optional", None)
            inputs.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), spec)
        for hidden in self.hidden or []:
            inputs.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        outputs = self.outputs or []
        return {"input": inputs, "input_order": {key: list(value) for key, value in inputs.items()},
                "output": [o.io_type for o in outputs], "output_is_list": [o.is_output_list for o in outputs],
                "output_name": [o.display_name or o.io_type for o in outputs],
                "output_tooltips": [o.tooltip or None for o in outputs],
                "name": self.node_id, "display_name": self.display_name, "description": self.description,
                "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
                "category": self.category, "output_node": self.is_output_node,
                "deprecated": self.is_deprecated, "experimental": self.is_experimental, "api_node": self.is_api_node}


class _ComfyNode:
    """Base of every node: classmethods only, no instance state (as in ComfyUI)."""
    hidden = None
    RELATIVE_PYTHON_MODULE = None

    @classmethod
    def define_schema(cls):
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> _Schema:
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        return cls.GET_SCHEMA().get_v1_info(cls)

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True) -> dict:
        inputs = cls.GET_NODE_INFO_V1()["input"]
        if not include_hidden:
            inputs.pop("hidden", None)
        return inputs

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict) -> type:
        """A copy of the class carrying the hidden inputs, as the executor hands one to ``execute``."""
        clone = type(f"{cls.__name__}Clone", (cls,), {})
        clone.hidden = _HiddenHolder(hidden_inputs or {})
        return clone


class _NodeOutput:
    def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class _PreviewText:
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


class _PreviewImage:
    """Keeps the image (ComfyUI would save it to its temp folder and list the file)."""

    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        self.image, self.animated = image, animated

    def as_dict(self) -> dict:
        return {"images": [], "animated": (self.animated,)}


class _ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called when the extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> List[type]:
        """The node classes the extension provides."""


def _standin_io():
    types = {name: _comfy_type(io_type, input_class) for name, io_type, input_class in (
        ("Int", "INT", _IntInput), ("Float", "FLOAT", _FloatInput), ("String", "STRING", _StringInput),
        ("Boolean", "BOOLEAN", _BooleanInput), ("Combo", "COMBO", _ComboInput), ("Image", "IMAGE", _Input),
        ("Mask", "MASK", _Input), ("Latent", "LATENT", _Input), ("Vae", "VAE", _Input))}
    return type("io", (), {**types, "Custom": staticmethod(_comfy_type), "ComfyNode": _ComfyNode,
                           "Schema": _Schema, "NodeOutput": _NodeOutput, "Hidden": _Hidden, "Input": _Input,
                           "Output": _Output})


# ------------------------------------------------------------------- choice
MISSING: Optional[str] = None  # why the pinned API is absent inside ComfyUI; None when all is well
try:
    from comfy_api.v0_0_2 import ComfyExtension, io, ui  # noqa: F401  (ComfyUI's, pinned)
    STANDIN = False
except ImportError as exc:
    STANDIN = True
    if _inside_comfyui():
        MISSING = (f"ComfyUI-DeepOT needs ComfyUI {MIN_COMFYUI} or newer: its nodes use the V3 node API "
                   f"{PINNED_API}, which this ComfyUI lacks ({exc}); update ComfyUI to load them.")
    io = _standin_io()
    ui = type("ui", (), {"PreviewText": _PreviewText, "PreviewImage": _PreviewImage})
    ComfyExtension = _ComfyExtension

"""Save / Load Latent Transport: ``.safetensors`` files in ComfyUI's ``models/latent_transport`` folder.

Saving never replaces a file unless ``overwrite`` is on: the node stops with a
message naming the file (no silent auto-numbering, so a workflow's Load node
and its Save node keep meaning the same file). A note of where the transport
came from (VAE / checkpoint names and the API prompt, when small) is embedded.
"""
import datetime as _dt
import json

from ..deepot_core.errors import TransportFileError, TransportInputError
from ..deepot_core.transport import LatentTransport
from . import comfy_bridge as bridge
from .apply import check_transport
from .comfy_v3 import io, ui
from .common import CATEGORY, Transport
from .guard import node_errors

SAVE_NAME = "Save Latent Transport"
LOAD_NAME = "Load Latent Transport"
#: Largest API prompt (JSON characters) embedded whole; larger ones are summarised (file headers stay small).
MAX_EMBEDDED_PROMPT_CHARS = 100_000
#: Input names that identify the VAE / model a workflow encoded with.
SOURCE_INPUTS = ("vae_name", "ckpt_name", "unet_name")
SUFFIX = ".safetensors"


def provenance(prompt, extra_pnginfo) -> dict:
    """A JSON-safe note of the workflow a transport came from: model files it loaded and the prompt itself."""
    note = {"saved_by": "ComfyUI-DeepOT", "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    if isinstance(prompt, dict):
        models = sorted({f"{node.get('class_type')}: {value}" for node in prompt.values() if isinstance(node, dict)
                         for key, value in (node.get("inputs") or {}).items()
                         if key in SOURCE_INPUTS and isinstance(value, str)})
        if models:
            note["models"] = models
        text = json.dumps(prompt, default=str)
        if len(text) <= MAX_EMBEDDED_PROMPT_CHARS:
            note["prompt"] = json.loads(text)
        else:
            note["prompt_nodes"] = sorted({str(n.get("class_type")) for n in prompt.values() if isinstance(n, dict)})
    if isinstance(extra_pnginfo, dict) and isinstance(extra_pnginfo.get("workflow"), dict):
        note["workflow_id"] = str(extra_pnginfo["workflow"].get("id", ""))
    return note


def recorded_space(prompt) -> str:
    """The latent space a transport saved from this prompt lives in, as the command line names spaces.

    ``comfy:<vae file>`` when the workflow loads exactly one VAE with VAELoader, else
    ``comfy:workflow``. The CLI refuses to apply a transport in another space, so a
    transport fitted on, say, ComfyUI's ``pixel_space`` (latents 2x − 1) is never run
    silently on the CLI's 0..1 pixel space.
    """
    names = set()
    if isinstance(prompt, dict):
        names = {node["inputs"]["vae_name"] for node in prompt.values()
                 if isinstance(node, dict) and node.get("class_type") == "VAELoader"
                 and isinstance((node.get("inputs") or {}).get("vae_name"), str)}
    return f"comfy:{names.pop()}" if len(names) == 1 else "comfy:workflow"


def file_name(name: str) -> str:
    """The widget's name with the ``.safetensors`` suffix added when missing."""
    name = str(name).strip()
    if not name or name in (".", SUFFIX):
        raise TransportInputError("filename is empty; type a name such as 'my_restorer_sd15'.")
    return name if name.endswith(SUFFIX) else name + SUFFIX


def file_space(transport: LatentTransport) -> str:
    """The latent space the file says it was fitted in (Save and the command line record it)."""
    metadata = transport.metadata if isinstance(transport.metadata, dict) else {}
    return str(metadata.get("space") or "not recorded")


def file_summary(name: str, transport: LatentTransport) -> str:
    """What Load shows on the node: the file's channels, patch size, samples and latent space."""
    d = transport.diagnostics
    p = d["patch_size"]
    samples = (f"natural {d['target_count']:.0f} (zero-shot: restored statistics come from each image)"
               if transport.zero_shot else f"restored {d['source_count']:.0f}, natural {d['target_count']:.0f}")
    return "\n".join([name, f"space: {file_space(transport)}", f"channels: {d['channels']}",
                      f"patch: {p}×{p} (D = {d['dim']})", f"samples: {samples}"])


class SaveLatentTransport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_SaveLatentTransport", display_name=SAVE_NAME, category=CATEGORY,
            description=("Saves a transport as models/latent_transport/<filename>.safetensors (safe to share: no "
                         "pickles). An existing file is never replaced unless 'overwrite' is on. The path shows on "
                         "the node."),
            inputs=[
                Transport.Input("transport", tooltip="The transport to save (from Fit Latent Transport)."),
                io.String.Input("filename", default="latent_transport",
                                tooltip="File name inside models/latent_transport (subfolders allowed, "
                                        "'.safetensors' added)."),
                io.Boolean.Input("overwrite", default=False, tooltip="Replace an existing file of that name. Off: "
                                                                     "saving to an existing name stops with an "
                                                                     "error."),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="The path of the saved file.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    @node_errors(SAVE_NAME)
    def execute(cls, transport, filename, overwrite=False):
        transport = check_transport(transport)
        path = bridge.save_path(file_name(filename))
        if path.exists() and not overwrite:
            raise TransportFileError(
                f"{path} already exists; turn on 'overwrite' to replace it, or choose another filename.")
        hidden = cls.hidden
        prompt, extra_pnginfo = (hidden.prompt, hidden.extra_pnginfo) if hidden is not None else (None, None)
        metadata = {"comfyui": provenance(prompt, extra_pnginfo), "space": recorded_space(prompt)}
        saved = str(transport.save(path, metadata=metadata, overwrite=overwrite))
        return io.NodeOutput(saved, ui=ui.PreviewText(saved))


class LoadLatentTransport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_LoadLatentTransport", display_name=LOAD_NAME, category=CATEGORY,
            description=("Loads a transport saved by Save Latent Transport from models/latent_transport. The file "
                         "is checked (format, checksum, shapes) and re-read whenever it changes on disk; its "
                         "channels, patch size, samples and latent space show on the node."),
            inputs=[
                io.Combo.Input("transport_name", options=bridge.list_transport_files(),
                               tooltip="A .safetensors file in models/latent_transport (press R to refresh the "
                                       "list after saving)."),
            ],
            outputs=[
                Transport.Output(display_name="transport", tooltip="The loaded transport: connect to Apply Latent "
                                                                   "Transport."),
                io.String.Output(display_name="info", tooltip="Channels, patch size, sample counts and "
                                                             "diagnostics of the file."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, transport_name, **_):
        return bridge.file_fingerprint(transport_name) or ""

    @classmethod
    def validate_inputs(cls, transport_name):
        try:
            bridge.find_transport(transport_name)
        except (OSError, ValueError) as exc:
            return f"{LOAD_NAME}: {exc}"
        return True

    @classmethod
    @node_errors(LOAD_NAME)
    def execute(cls, transport_name):
        path = bridge.find_transport(transport_name)
        transport = LatentTransport.load(path)
        summary = file_summary(transport_name, transport)
        lines = [f"file: {path}", transport.report()]
        note = transport.metadata.get("comfyui") if isinstance(transport.metadata, dict) else None
        if isinstance(note, dict) and note.get("models"):
            lines.append("fitted in a workflow using " + ", ".join(map(str, note["models"])))
        lines.append(f"space: {file_space(transport)}")
        return io.NodeOutput(transport, "\n".join(lines), ui=ui.PreviewText(summary))

"""ComfyUI's latent spaces outside ComfyUI: ``comfy:<VAE name>``, as Save Latent Transport records them.

A transport saved by the nodes lives in the latent space of the VAE its workflow
loaded with ComfyUI's VAELoader, with ComfyUI's conventions, which are not the
raw ones of the same weights:

- ``pixel_space``: z = 2x − 1 (``process_input`` in comfy/sd.py), decoded as
  clamp((z + 1)/2, 0, 1).
- ``taesd``, ``taesdxl``, ``taesd3``, ``taef1``: the tiny autoencoder scaled and
  shifted to mimic its full VAE (scale and shift from ``VAELoader.load_taesd`` in
  nodes.py; comfy/taesd/taesd.py): z = E((2x − 1)·½ + ½)/scale + shift, decoded
  as clamp(((D((z − shift)·scale) − ½)·2 + 1)/2, 0, 1).

Both are computed here operation for operation in float32, as ComfyUI does on the
CPU, so the latents equal ComfyUI's bit for bit and need no ComfyUI at all (the
TAESD weights come from a folder, or ComfyUI's ``models/vae_approx``). Any other
name is a file in ComfyUI's ``models/vae`` (subfolders allowed): ComfyUI itself
loads it from ``$COMFYUI_PATH``, on the CPU when no GPU is usable — this is the
only place the package imports ComfyUI, and only when asked to.
"""
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .autoencoders.taesd import DOWNSCALE, TAESDSpace, _check_images, load_taesd
from ..errors import TransportInputError

#: Prefix of the space names of files saved by the nodes.
COMFY_PREFIX = "comfy:"
#: Recorded when the workflow did not load exactly one VAE: the space is unknown.
UNKNOWN_COMFY_SPACE = COMFY_PREFIX + "workflow"
#: ComfyUI's VAE-free space (latents are 2x − 1).
COMFY_PIXEL = "pixel_space"
#: (scale, shift) ComfyUI gives each TAESD so its latents mimic the full VAE's (nodes.py, VAELoader.load_taesd).
COMFY_TAESD_SCALE_SHIFT: Dict[str, Tuple[float, float]] = {
    "taesd": (0.18215, 0.0),
    "taesdxl": (0.13025, 0.0),
    "taesd3": (1.5305, 0.0609),
    "taef1": (0.3611, 0.1159),
}
#: File endings ComfyUI lists in its model folders (folder_paths.supported_pt_extensions).
COMFY_MODEL_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")
#: Of those, the ones we read (never pickles other than torch's weights-only loader).
READABLE_SUFFIXES = (".safetensors", ".sft", ".pth", ".pt")
#: A ComfyUI checkout (the folder holding comfy/), and ComfyUI's --base-directory if it runs with one.
COMFYUI_PATH_ENV = "COMFYUI_PATH"
COMFYUI_BASE_ENV = "COMFYUI_BASE_DIRECTORY"


def comfy_name(space_name: str) -> str:
    """The VAE name inside ``comfy:NAME``, with '/' separators (ComfyUI on Windows records '\\')."""
    return space_name[len(COMFY_PREFIX):].replace("\\", "/")


def same_space(recorded: str, chosen: str) -> bool:
    """Whether a transport recorded in space ``recorded`` may run in ``chosen``.

    ``comfy:workflow`` (no single VAE known) matches any ComfyUI space; the channel
    count is still checked by the caller.
    """
    if recorded.startswith(COMFY_PREFIX) and chosen.startswith(COMFY_PREFIX):
        return recorded == UNKNOWN_COMFY_SPACE or comfy_name(recorded) == comfy_name(chosen)
    return recorded == chosen


class ComfyPixelSpace:
    """ComfyUI's ``pixel_space`` VAE: IMAGE [B,H,W,3] ↔ latents 2x − 1 [B,3,H,W]."""

    latent_channels = 3
    downscale = 1
    name = COMFY_PREFIX + COMFY_PIXEL

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return (images.float().movedim(-1, 1) * 2.0 - 1.0).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(latents) or latents.ndim != 4 or latents.shape[1] != 3:
            raise TransportInputError(f"pixel_space latents must be [B,3,H,W], got "
                                      f"{tuple(latents.shape) if torch.is_tensor(latents) else type(latents)}.")
        return torch.clamp((latents.float() + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1).contiguous()


class ComfyTAESDSpace(TAESDSpace):
    """A TAESD in ComfyUI's convention: inputs in [−1, 1] as ComfyUI feeds them, latents scaled and shifted."""

    def __init__(self, model, name: str, **kwargs):
        super().__init__(model, **kwargs)
        if name not in COMFY_TAESD_SCALE_SHIFT:
            raise TransportInputError(f"{name!r} is not one of ComfyUI's TAESD spaces "
                                      f"({', '.join(COMFY_TAESD_SCALE_SHIFT)}).")
        scale, shift = COMFY_TAESD_SCALE_SHIFT[name]
        # ComfyUI keeps both as float32 parameters of the model: the same rounding here.
        self.scale, self.shift = torch.tensor(scale), torch.tensor(shift)
        self.name = COMFY_PREFIX + name

    def _constants(self, like: torch.Tensor):
        return self.scale.to(like), self.shift.to(like)

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self._constants(x)
        x = x * 2.0 - 1.0  # ComfyUI's process_input; TAESD.encode then maps back to [0, 1]
        return self.model.encoder(x * 0.5 + 0.5) / scale + shift

    def _decode_batch(self, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self._constants(z)
        x = self.model.decoder((z - shift) * scale).sub(0.5).mul(2)  # TAESD.decode: [0, 1] → [−1, 1]
        return torch.clamp((x.float() + 1.0) / 2.0, min=0.0, max=1.0)  # ComfyUI's process_output


def comfy_weight_file(folder: Path, stem: str) -> Path:
    """The file ComfyUI's VAELoader picks for ``stem`` (e.g. taesd_encoder): the first listed name ``stem.*``."""
    names = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and p.name.startswith(stem + ".") and p.suffix.lower() in COMFY_MODEL_SUFFIXES) \
        if folder.is_dir() else []
    if not names:
        raise TransportInputError(f"no {stem}.* in {folder}; put ComfyUI's TAESD weights there "
                                  "(taesd_encoder.safetensors / taesd_decoder.safetensors and the like).")
    path = folder / names[0]
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise TransportInputError(f"{path}: only {', '.join(READABLE_SUFFIXES)} weight files are read here "
                                  "(no pickles); convert it to .safetensors.")
    return path


def comfy_models_dir() -> Optional[Path]:
    """ComfyUI's models folder: under $COMFYUI_BASE_DIRECTORY if set, else under $COMFYUI_PATH; None without."""
    base = os.environ.get(COMFYUI_BASE_ENV) or os.environ.get(COMFYUI_PATH_ENV)
    return Path(base).expanduser() / "models" if base else None


def comfy_taesd_space(name: str, folder=None) -> ComfyTAESDSpace:
    """ComfyUI's ``name`` TAESD space from ``folder`` (default: ComfyUI's models/vae_approx), without ComfyUI."""
    if folder is None:
        models = comfy_models_dir()
        if models is None:
            raise TransportInputError(
                f"comfy:{name} needs its weights: set {COMFYUI_PATH_ENV} to your ComfyUI (its models/vae_approx "
                f"is read) or pass --vae FOLDER holding {name}_encoder.* and {name}_decoder.*.")
        folder = models / "vae_approx"
    folder = Path(folder)
    if folder.is_file():  # an encoder or decoder file: its folder
        folder = folder.parent
    encoder = comfy_weight_file(folder, f"{name}_encoder")
    decoder = comfy_weight_file(folder, f"{name}_decoder")
    try:
        model = load_taesd(encoder, decoder)
    except (ValueError, OSError) as exc:
        raise TransportInputError(f"comfy:{name}: {exc}") from None
    return ComfyTAESDSpace(model, name)


# ------------------------------------------------------------------ full VAEs, through ComfyUI itself
class ComfyVAESpace:
    """ComfyUI's own VAE (``comfy.sd.VAE``) behind the latent-space interface."""

    def __init__(self, vae, name: str):
        self.vae = vae
        self.name = name
        ratio = getattr(vae, "downscale_ratio", DOWNSCALE)
        self.downscale = int(ratio) if isinstance(ratio, int) else DOWNSCALE
        self.latent_channels = int(getattr(vae, "latent_channels", 4))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(images[..., :3])
        self.latent_channels = int(latents.shape[1])
        return latents.float().cpu()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents)
        if images.ndim == 5:  # video VAEs decode to [B,T,H,W,C]
            images = images.reshape(-1, *images.shape[-3:])
        return images.float().cpu().clamp(0, 1)


def _accelerator_usable() -> bool:
    """A device ComfyUI would pick over the CPU (it dies probing CUDA on a machine without an NVIDIA driver)."""
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool((mps is not None and mps.is_available()) or (xpu is not None and xpu.is_available()))


def import_comfy(root: Path):
    """Import ComfyUI from ``root`` as a library: its own argument parsing off, the CPU when no GPU is usable.

    ComfyUI reads its settings from ``comfy.cli_args.args`` (defaults, since
    ``comfy.options`` leaves parsing off) when ``comfy.model_management`` is first
    imported; setting ``args.cpu`` before that is what ``--cpu`` does.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options  # noqa: F401 — imported first: keeps ComfyUI from parsing our argv
    from comfy.cli_args import args

    if "comfy.model_management" not in sys.modules and not _accelerator_usable():
        args.cpu = True
    base = os.environ.get(COMFYUI_BASE_ENV)
    if base and "folder_paths" not in sys.modules:
        args.base_directory = base
    import comfy.sd
    import comfy.utils
    import folder_paths
    return comfy.sd, comfy.utils, folder_paths


def _vae_name(path: Path, folder_paths) -> str:
    """The name ComfyUI's VAE list gives a file: relative to a models/vae folder, else its file name."""
    resolved = path.resolve()
    for folder in folder_paths.get_folder_paths("vae"):
        try:
            return resolved.relative_to(Path(folder).resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def load_comfy_vae(name: str) -> ComfyVAESpace:
    """VAE ``name`` of ComfyUI's models/vae (or a file path), loaded by the ComfyUI at $COMFYUI_PATH."""
    root = os.environ.get(COMFYUI_PATH_ENV)
    if not root or not Path(root, "comfy").is_dir():
        raise TransportInputError(
            f"--vae comfy:{name} needs {COMFYUI_PATH_ENV} set to a ComfyUI checkout (the folder holding comfy/); "
            "run with ComfyUI's own Python so its packages import.")
    try:
        comfy_sd, comfy_utils, folder_paths = import_comfy(Path(root))
    except Exception as exc:  # a missing ComfyUI dependency, most often: say which Python to use
        raise TransportInputError(f"could not import ComfyUI from {root}: {exc.__class__.__name__}: {exc}; "
                                  "run this command with ComfyUI's Python (its venv).") from None
    try:
        given = Path(name)
        path = given if given.is_file() else folder_paths.get_full_path("vae", name)
        if path is None:
            raise TransportInputError(f"no VAE named {name!r} in ComfyUI's models/vae "
                                      f"(found: {folder_paths.get_filename_list('vae')}).")
        path = Path(path)
        vae = comfy_sd.VAE(sd=comfy_utils.load_torch_file(str(path)))
        if getattr(vae, "first_stage_model", None) is None:
            raise TransportInputError(f"{path} is not a VAE ComfyUI recognises.")
    except TransportInputError:
        raise
    except Exception as exc:  # ComfyUI internals vary between versions: report, do not crash
        raise TransportInputError(f"could not load ComfyUI VAE {name!r}: {exc.__class__.__name__}: {exc}") from None
    return ComfyVAESpace(vae, COMFY_PREFIX + _vae_name(path, folder_paths))


def comfy_space(name: str, folder=None):
    """The space ``comfy:name``: native for pixel_space and the TAESDs (``folder`` holds TAESD weights), else ComfyUI."""
    name = name.replace("\\", "/")
    if COMFY_PREFIX + name == UNKNOWN_COMFY_SPACE:
        raise TransportInputError(
            "this transport was saved from a workflow without one VAE Loader, so its VAE is not recorded; "
            "pass --vae comfy:NAME with the VAE it was fitted with (e.g. comfy:taesd or comfy:sdxl/vae.safetensors).")
    if name == COMFY_PIXEL:
        return ComfyPixelSpace()
    if name in COMFY_TAESD_SCALE_SHIFT:
        return comfy_taesd_space(name, folder)
    if folder is not None:
        raise TransportInputError(f"comfy:{name} is a full VAE: it loads through ComfyUI (set {COMFYUI_PATH_ENV}), "
                                  "not from a TAESD folder.")
    return load_comfy_vae(name)

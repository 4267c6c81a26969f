"""Latent spaces by name: DOT's VAE-free pixel space, a TAESD-family pair, or ComfyUI's own VAE loader.

A space is anything with ``encode``/``decode``/``latent_channels``/``downscale``.
``resolve_space`` builds one from a command-line value and names it; transport
files record that name (metadata ``space``), and ``check_space`` refuses a
transport fitted in another space.
"""
import os
import sys
from pathlib import Path
from typing import Optional, Tuple

import torch

from .errors import TransportInputError
from .transport import LatentTransport

#: Name recorded for DOT's VAE-free space (3·p² pixel patches).
PIXEL_SPACE = "pixel"
#: Metadata key of the space a transport was fitted in (also read by ``check_space``).
SPACE_KEY = "space"


class ComfyVAESpace:
    """ComfyUI's own VAE (``comfy.sd.VAE``) behind the latent-space interface; best effort."""

    def __init__(self, vae, name: str):
        self.vae = vae
        self.name = name
        self.downscale = int(getattr(vae, "downscale_ratio", 8)) if isinstance(
            getattr(vae, "downscale_ratio", 8), int) else 8
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


def load_comfy_vae(name: str) -> ComfyVAESpace:
    """Load VAE ``name`` through a ComfyUI checkout at $COMFYUI_PATH (its models/vae folder or a file path)."""
    root = os.environ.get("COMFYUI_PATH")
    if not root or not Path(root, "comfy").is_dir():
        raise TransportInputError(
            "--vae comfy:NAME needs COMFYUI_PATH set to a ComfyUI checkout (the folder holding comfy/).")
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import comfy.sd
        import comfy.utils
        import folder_paths
        path = Path(name) if Path(name).is_file() else folder_paths.get_full_path("vae", name)
        if path is None:
            raise FileNotFoundError(f"no VAE named {name!r} in ComfyUI's models/vae "
                                    f"(found: {folder_paths.get_filename_list('vae')})")
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path)))
    except TransportInputError:
        raise
    except Exception as exc:  # ComfyUI internals vary between versions: report, do not crash
        raise TransportInputError(f"could not load ComfyUI VAE {name!r}: {exc.__class__.__name__}: {exc}") from None
    return ComfyVAESpace(vae, name)


def resolve_space(spec: Optional[str]) -> Tuple[object, str]:
    """A latent space and its name from a command-line value.

    ``None``/"pixel" → the pixel space; "comfy:NAME" → ComfyUI's VAE loader;
    a folder → the one TAESD pair in it (or "FOLDER:NAME" / an encoder file to pick one).
    """
    from .autoencoders import PixelSpace, TAESDSpace, find_taesd_pair

    if spec is None or spec == PIXEL_SPACE:
        return PixelSpace(), PIXEL_SPACE
    if spec.startswith("comfy:"):
        name = spec[len("comfy:"):]
        return load_comfy_vae(name), f"comfy:{Path(name).name}"
    path, name = Path(spec), None
    if not path.exists() and ":" in spec:
        folder, name = spec.rsplit(":", 1)
        path = Path(folder)
    if path.is_file():
        stem = path.name.split(".")[0]
        for part in ("_encoder", "_decoder"):
            if stem.endswith(part):
                name, path = stem[: -len(part)], path.parent
                break
        else:
            raise TransportInputError(f"{spec}: give a folder of TAESD weights or a <name>_encoder.* file.")
    if not path.is_dir():
        raise TransportInputError(f"--vae {spec}: no such folder or file (give a TAESD folder, "
                                  "a <name>_encoder.* file, 'pixel' or comfy:NAME).")
    try:
        encoder, decoder = find_taesd_pair(path, name)
        space = TAESDSpace.from_files(encoder, decoder)
    except (ValueError, OSError) as exc:
        raise TransportInputError(f"--vae {spec}: {exc}") from None
    return space, f"taesd:{encoder.name.rsplit('_encoder', 1)[0]}"


def check_space(transport: LatentTransport, space, space_name: str) -> None:
    """Refuse a transport fitted in another space (recorded name or channel count)."""
    recorded = transport.metadata.get(SPACE_KEY)
    if recorded is not None and recorded != space_name:
        raise TransportInputError(
            f"this transport was fitted in the {recorded!r} space but {space_name!r} was chosen; "
            f"pass the matching --vae (or fit a new transport in {space_name!r}).")
    channels = getattr(space, "latent_channels", None)
    if channels is not None and channels != transport.channels:
        raise TransportInputError(
            f"this transport fits {transport.channels}-channel latents but the {space_name!r} space makes "
            f"{channels}-channel latents; use the VAE it was fitted with.")

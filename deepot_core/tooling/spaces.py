"""Latent spaces by name: DOT's VAE-free pixel space, a TAESD-family pair, or one of ComfyUI's (``comfy:NAME``).

A space is anything with ``encode``/``decode``/``latent_channels``/``downscale``.
``resolve_space`` builds one from a command-line value and names it; transport
files record that name (metadata ``space``), and ``check_space`` refuses a
transport fitted in another space. ComfyUI's spaces, as the nodes record them,
are in ``comfy_spaces``.
"""
from pathlib import Path
from typing import Optional, Tuple

from .comfy_spaces import (COMFY_PREFIX, COMFY_TAESD_SCALE_SHIFT, ComfyVAESpace, comfy_name, comfy_space,  # noqa: F401
                           comfy_taesd_space, load_comfy_vae, same_space)
from ..errors import TransportInputError
from ..transport import LatentTransport

#: Name recorded for DOT's VAE-free space (3·p² pixel patches).
PIXEL_SPACE = "pixel"
#: Metadata key of the space a transport was fitted in (also read by ``check_space``).
SPACE_KEY = "space"


def resolve_space(spec: Optional[str], recorded: Optional[str] = None) -> Tuple[object, str]:
    """A latent space and its name from a command-line value.

    ``None``/"pixel" → the pixel space; "comfy:NAME" → ComfyUI's space NAME (see
    ``comfy_spaces``); a folder → the one TAESD pair in it (or "FOLDER:NAME" / an
    encoder file to pick one). When the transport was ``recorded`` in one of
    ComfyUI's TAESD spaces, a folder is read as that TAESD in ComfyUI's convention.
    """
    from .autoencoders import PixelSpace, TAESDSpace, find_taesd_pair

    if spec is None or spec == PIXEL_SPACE:
        return PixelSpace(), PIXEL_SPACE
    if spec.startswith(COMFY_PREFIX):
        space = comfy_space(comfy_name(spec))
        return space, space.name
    if recorded is not None and recorded.startswith(COMFY_PREFIX) and comfy_name(recorded) in COMFY_TAESD_SCALE_SHIFT:
        if not Path(spec).exists():
            raise TransportInputError(f"--vae {spec}: no such folder or file (give the folder holding "
                                      f"{comfy_name(recorded)}_encoder.* and {comfy_name(recorded)}_decoder.*).")
        space = comfy_taesd_space(comfy_name(recorded), spec)
        return space, space.name
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
    if recorded is not None and not same_space(recorded, space_name):
        raise TransportInputError(
            f"this transport was fitted in the {recorded!r} space but {space_name!r} was chosen; "
            f"pass the matching --vae (or fit a new transport in {space_name!r}).")
    channels = getattr(space, "latent_channels", None)
    if channels is not None and channels != transport.channels:
        raise TransportInputError(
            f"this transport fits {transport.channels}-channel latents but the {space_name!r} space makes "
            f"{channels}-channel latents; use the VAE it was fitted with.")

"""Image files ↔ IMAGE tensors ([1,H,W,3] float32 in 0..1) for the command line and the demo.

Why here and not in the nodes: ComfyUI loads its own images; this is for headless
pipelines. Pillow is imported inside the functions, so the core imports without it.
"""
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, Path]

#: File name endings read as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: JPEG quality used when an output name ends in .jpg / .jpeg.
JPEG_QUALITY = 95
#: Largest image we open (pixels); guards against decompression bombs from untrusted folders.
MAX_PIXELS = 1 << 28


class ImageFileError(OSError):
    """An image file that is missing, unreadable or cannot be written; the message says which."""


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with ComfyUI and our requirements
        raise ImageFileError("reading and writing images needs Pillow: pip install pillow") from exc
    return Image


def is_image_file(path: PathLike) -> bool:
    """True for a regular file whose name ends in one of ``IMAGE_SUFFIXES``."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def list_images(folder: PathLike, recursive: bool = False) -> List[Path]:
    """Sorted image files in ``folder`` (and its subfolders when ``recursive``)."""
    folder = Path(folder)
    if not folder.exists():
        raise ImageFileError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise ImageFileError(f"{folder} is not a folder; give a folder of images.")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if is_image_file(p))


def load_image(path: PathLike) -> torch.Tensor:
    """Read one image as IMAGE [1,H,W,3] float32 in 0..1 (grey expanded, alpha dropped, 16-bit scaled)."""
    Image = _pil()
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"image not found: {path}")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.float32) / (65535.0 if img.mode.startswith("I;16") else
                                                            max(float(np.asarray(img).max()), 1.0))
                array = np.repeat(array[..., None], 3, axis=-1)
            else:
                array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except ImageFileError:
        raise
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, DecompressionBomb...)
        raise ImageFileError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFileError(f"{path} holds an empty or unsupported image (shape {array.shape}).")
    return torch.from_numpy(np.ascontiguousarray(array))[None].clamp(0.0, 1.0)


def load_images(paths: Sequence[PathLike]) -> List[torch.Tensor]:
    """``load_image`` for each path (a list: sizes may differ)."""
    return [load_image(p) for p in paths]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """IMAGE [H,W,C] or [1,H,W,C] (C = 1, 3 or 4) → uint8 array, rounded; NaN refused."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch tensor, got {type(image).__name__}.")
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save one image at a time; got a batch of {image.shape[0]}.")
        image = image[0]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be [H,W,C] with C = 1, 3 or 4, got shape {tuple(image.shape)}.")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image contains NaN or Inf; refusing to write it.")
    array = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def save_image(image: torch.Tensor, path: PathLike) -> Path:
    """Write IMAGE [H,W,C] or [1,H,W,C] to ``path`` (PNG unless the name says otherwise); makes folders."""
    Image = _pil()
    path = Path(path)
    array = to_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if path.suffix.lower() in (".jpg", ".jpeg") and array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    try:
        Image.fromarray(array).save(path, **options)
    except Exception as exc:
        raise ImageFileError(f"cannot write image {path}: {exc.__class__.__name__}: {exc}") from None
    return path

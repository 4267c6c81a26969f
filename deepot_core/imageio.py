"""Image files ↔ IMAGE tensors ([1,H,W,3] float32 in 0..1) for the command line and the demo.

Why here and not in the nodes: headless pipelines need it too, and the Load Image Folder
node only adds ComfyUI's input folder on top (``load_batch`` fits a folder of photos into
one size×size batch). Pillow is imported inside the functions, so the core imports without it.
"""
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

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


# ------------------------------------------------------------- folder batches
#: How ``load_batch`` makes every image size×size: "crop" scales the short side to size and
#: centre-crops (no distortion); "stretch" resizes both sides to size (keeps the whole picture).
FIT_MODES = ("crop", "stretch")


class ImageBatch(NamedTuple):
    """What ``load_batch`` read: IMAGE [B,size,size,3], the files used, and (file, reason) of those skipped."""
    images: torch.Tensor
    used: List[Path]
    skipped: List[Tuple[Path, str]]


def resolve_subfolder(root: PathLike, name: str) -> Path:
    """The existing folder ``name`` inside ``root``, with the rules of ``paths.resolve_in_folder``."""
    from .paths import resolve_in_folder

    text = str(name).strip().rstrip("/\\") if isinstance(name, str) else name
    if not isinstance(text, str) or not text:
        raise ImageFileError("the folder name is empty; pick a folder of images from the list.")
    try:
        folder = resolve_in_folder(root, text, directory=True)
    except OSError as exc:
        raise ImageFileError(str(exc).replace("models folder", "folder")) from None
    if not folder.is_dir():
        raise ImageFileError(f"no folder named {text!r} in {Path(root)}; put your photos in a subfolder there "
                             "and refresh the node list (R).")
    return folder


def folder_fingerprint(folder: PathLike, recursive: bool = False) -> str:
    """A hash of the image listing (names, sizes, modification times): changes when photos are added or edited."""
    import hashlib

    folder = Path(folder)
    digest = hashlib.sha256()
    try:
        for path in list_images(folder, recursive):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError as exc:  # a missing folder still gets a (distinct) fingerprint; running it reports the error
        digest.update(f"error: {exc}".encode())
    return digest.hexdigest()


def fit_to_square(image: torch.Tensor, size: int, mode: str = "crop") -> torch.Tensor:
    """IMAGE [1,H,W,3] → [1,size,size,3] (antialiased bicubic; see ``FIT_MODES``)."""
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {', '.join(FIT_MODES)}, got {mode!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}.")
    h, w = image.shape[1:3]
    if mode == "crop":
        scale = size / min(h, w)
        target = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        target = (size, size)
    pixels = image.permute(0, 3, 1, 2)
    if target != (h, w):
        pixels = torch.nn.functional.interpolate(pixels, size=target, mode="bicubic", align_corners=False,
                                                 antialias=True)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    pixels = pixels[:, :, top:top + size, left:left + size]
    return pixels.permute(0, 2, 3, 1).clamp(0.0, 1.0).contiguous()


def load_batch(paths: Sequence[PathLike], size: int, mode: str = "crop",
               limit: Optional[int] = None, check: Optional[Callable[[Path], None]] = None) -> ImageBatch:
    """Read ``paths`` in order into one IMAGE batch [B,size,size,3], every image fitted to size×size.

    Unreadable files are skipped (with the reason), so one bad file does not spoil a folder;
    ``limit`` stops after that many readable images; ``check(path)`` may raise OSError to skip
    a file before it is opened (the nodes confine reads to ComfyUI's input folder with it).
    Only when nothing at all is readable is it an ``ImageFileError``.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 image, got {limit}.")
    images, used, skipped = [], [], []
    for path in map(Path, paths):
        if limit is not None and len(images) >= limit:
            break
        try:
            if check is not None:
                check(path)
            images.append(fit_to_square(load_image(path), size, mode))
        except OSError as exc:
            skipped.append((path, str(exc)))
            continue
        used.append(path)
    if not images:
        detail = "; ".join(f"{p.name}: {reason}" for p, reason in skipped[:3])
        raise ImageFileError(f"none of the {len(skipped)} image file(s) could be read"
                             + (f" ({detail})" if detail else "") + "; add PNG or JPEG photos.")
    return ImageBatch(torch.cat(images), used, skipped)

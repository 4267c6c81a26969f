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
#: Largest image we open (pixels), 16384²: guards against decompression bombs from untrusted folders.
#: Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``) is process-wide and is left as it is.
MAX_PIXELS = 1 << 28
#: Inserted before the suffix of an image being written (``.a.x1y2.partial.png``): hidden, never an input.
PARTIAL_SUFFIX = ".partial"
#: TIFF tags BitsPerSample and SampleFormat (2 = signed integers).
TIFF_BITS_PER_SAMPLE, TIFF_SAMPLE_FORMAT, TIFF_SIGNED_INTEGER = 258, 339, 2


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


def _integer_scale(img) -> float:
    """The value of full white in a mode-"I*" image: 2^bits − 1 (2^(bits−1) − 1 if signed), from its bit depth.

    16 bits for "I;16*" — how Pillow hands over 16-bit greyscale PNGs and TIFFs ("I"
    before Pillow 10, which ComfyUI's Load Image also reads as 16-bit) — or what a
    TIFF's BitsPerSample and SampleFormat tags say; never the image's own maximum.
    """
    bits, signed = 16, False
    tags = getattr(img, "tag_v2", None)
    if not img.mode.startswith("I;16") and tags is not None:
        found, sample_format = tags.get(TIFF_BITS_PER_SAMPLE), tags.get(TIFF_SAMPLE_FORMAT)
        found = max(found) if isinstance(found, (tuple, list)) and found else found
        if isinstance(found, int) and 1 <= found <= 32:
            bits = found
        sample_format = sample_format[0] if isinstance(sample_format, (tuple, list)) and sample_format else sample_format
        signed = sample_format == TIFF_SIGNED_INTEGER
    return float(2 ** (bits - 1 if signed else bits) - 1)


def _open(Image, path: Path):
    """``Image.open`` under Pillow's decompression-bomb guard as the host set it; beyond it, up to ``MAX_PIXELS``.

    Pillow refuses images over 2 × ``PIL.Image.MAX_IMAGE_PIXELS``, a process-wide
    setting that also guards every other node in ComfyUI, so it is never changed
    here. Photos between that and our own ``MAX_PIXELS`` are opened deliberately:
    the format's reader, found as ``Image.open`` finds it, reads only the header,
    and the size is checked against ``MAX_PIXELS`` before any pixel is decoded.
    """
    try:
        img = Image.open(path)
    except Image.DecompressionBombError:
        img = _open_past_pillows_guard(Image, path)
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise ImageFileError(f"{path} is {width}×{height} pixels, more than the {MAX_PIXELS} this reads; "
                             "downscale it first.")
    return img


def _open_past_pillows_guard(Image, path: Path):
    """What ``Image.open`` does, less its size check: try each registered reader that accepts the file's prefix."""
    Image.init()
    with open(path, "rb") as probe:
        prefix = probe.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        verdict = True if accept is None else accept(prefix)
        if not verdict or isinstance(verdict, str):  # a string: recognised but unsupported
            continue
        try:
            return factory(str(path))  # given a path, the reader opens (and on failure closes) the file itself
        except (SyntaxError, IndexError, TypeError, OSError, ValueError):
            continue
    raise ImageFileError(f"cannot read image {path}: not a format Pillow knows.")


def load_image(path: PathLike) -> torch.Tensor:
    """Read one image as IMAGE [1,H,W,3] float32 in 0..1, as a camera meant it.

    Like ComfyUI's Load Image: the EXIF orientation is applied (phone photos stand
    upright), grey is expanded, alpha dropped. 16-bit and other integer images
    (mode "I*") are scaled by their bit depth (2^bits − 1), never by their own
    maximum, so brightness does not depend on content; float images ("F") are read
    as 0..1.
    """
    Image = _pil()
    from PIL import ImageOps

    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"image not found: {path}")
    try:
        with _open(Image, path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            if upright.mode.startswith("I"):
                scale = _integer_scale(img)
                array = (np.asarray(upright, dtype=np.float64) / scale).astype(np.float32)
                array = np.repeat(array[..., None], 3, axis=-1)
            elif upright.mode == "F":
                array = np.repeat(np.asarray(upright, dtype=np.float32)[..., None], 3, axis=-1)
            else:
                array = np.asarray(upright.convert("RGB"), dtype=np.float32) / 255.0
    except ImageFileError:
        raise
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, DecompressionBomb...)
        raise ImageFileError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFileError(f"{path} holds an empty or unsupported image (shape {array.shape}).")
    if not np.isfinite(array).all():
        raise ImageFileError(f"{path} holds NaN or infinite pixel values.")
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
    """Write IMAGE [H,W,C] or [1,H,W,C] to ``path`` (PNG unless the name says otherwise); makes folders.

    Atomic: the image goes to a hidden temporary file beside ``path``, renamed over it
    only once complete, so an interrupted run never leaves a truncated image under
    the real name (a resumed ``apply`` would take it for done).
    """
    import os
    import tempfile

    Image = _pil()
    path = Path(path)
    array = to_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if path.suffix.lower() in (".jpg", ".jpeg") and array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=PARTIAL_SUFFIX + path.suffix,
                                         dir=path.parent)
    os.close(handle)
    try:
        Image.fromarray(array).save(temporary, **options)
        os.replace(temporary, path)
    except Exception as exc:
        raise ImageFileError(f"cannot write image {path}: {exc.__class__.__name__}: {exc}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def is_complete_image(path: PathLike) -> bool:
    """Whether ``path`` is an image file Pillow reads to its end (checksums included): not truncated, not junk."""
    Image = _pil()
    try:
        with _open(Image, Path(path)) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 — any failure means "not a usable image"
        return False


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

"""Load Image Folder: a folder of photos in ComfyUI's input directory as one IMAGE batch.

Why: Fit Latent Transport wants a dozen or so natural photos at once, and core
ComfyUI only loads one image per node. Reading, fitting to one size and skipping
bad files is ``deepot_core.tooling.imageio``; this module only confines the folder to the
input directory and turns the outcome into ComfyUI outputs and messages.
"""
from pathlib import Path

from ..deepot_core.errors import TransportFileError
from ..deepot_core.tooling.imageio import (IMAGE_SUFFIXES, ImageFileError, folder_fingerprint, list_images, load_batch,
                                   resolve_subfolder)
from ..deepot_core.tooling.paths import resolve_in_folder
from . import comfy_bridge as bridge
from .comfy_v3 import io
from .common import CATEGORY
from .guard import node_errors

DISPLAY_NAME = "Load Image Folder"
#: Default / smallest / largest side of the square images, in pixels (multiples of 8 suit every VAE).
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE, SIZE_STEP = 512, 64, 4096, 8
#: Default / largest number of images read.
DEFAULT_MAX_IMAGES, MAX_MAX_IMAGES = 12, 1000
#: How many skipped files the listing names one by one before summarising.
MAX_SKIPPED_LISTED = 20


def _folder(name: str) -> Path:
    """The photo folder ``name`` inside the input directory (escapes and missing folders refused)."""
    try:
        return resolve_subfolder(bridge.input_directory(), name)
    except ImageFileError as exc:
        raise TransportFileError(str(exc)) from None


def _confine(root: Path):
    """A ``load_batch`` check: every file read must resolve inside the input directory (symlinks too)."""
    def check(path: Path) -> None:
        resolve_in_folder(root, path.relative_to(root).as_posix(), must_exist=True)
    return check


def _listing(name: str, folder: Path, batch, total: int, size: int, max_images: int) -> str:
    """The STRING output: which files made the batch, which were skipped and why, which were left out."""
    lines = [f"{len(batch.used)} image(s) from {name!r} at {size}×{size}:"]
    lines += [f"  {p.relative_to(folder).as_posix()}" for p in batch.used]
    if batch.skipped:
        lines.append(f"skipped {len(batch.skipped)} unreadable file(s):")
        lines += [f"  {p.relative_to(folder).as_posix()}: {why}" for p, why in batch.skipped[:MAX_SKIPPED_LISTED]]
        if len(batch.skipped) > MAX_SKIPPED_LISTED:
            lines.append(f"  ... and {len(batch.skipped) - MAX_SKIPPED_LISTED} more")
    left = total - len(batch.used) - len(batch.skipped)
    if left > 0:
        lines.append(f"{left} more image file(s) not read (max_images = {max_images}).")
    return "\n".join(lines)


class LoadImageFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DeepOT_LoadImageFolder", display_name=DISPLAY_NAME, category=CATEGORY + "/calibration",
            description=("Loads the photos of a subfolder of ComfyUI's input folder as one IMAGE batch (sorted by "
                         "name), each scaled on its short side and centre-cropped to size×size so they batch: the "
                         "natural photos for Fit Latent Transport. Unreadable files are skipped and named in the "
                         "listing; the node re-runs when photos are added or changed."),
            inputs=[
                io.Combo.Input("folder", options=bridge.list_input_subfolders(),
                               tooltip="A subfolder of ComfyUI's input folder holding the photos (PNG, JPEG, "
                                       "WebP, TIFF, BMP); press R to refresh the list after adding one."),
                io.Int.Input("size", default=DEFAULT_SIZE, min=MIN_SIZE, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip="Side of the square images in pixels: each photo's short side is scaled to "
                                     "it and the long side centre-cropped."),
                io.Int.Input("max_images", default=DEFAULT_MAX_IMAGES, min=1, max=MAX_MAX_IMAGES, step=1,
                             tooltip="Most photos to load, the first by file name (unreadable files do not "
                                     "count)."),
                io.Boolean.Input("recursive", default=False, optional=True,
                                 tooltip="Also load photos from the folder's subfolders (sorted by their path)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The photos as one batch [B,size,size,3] (RGB; "
                                                              "alpha dropped, grey expanded)."),
                io.String.Output(display_name="files", tooltip="The files used, in batch order, and any skipped "
                                                              "with the reason."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder, recursive=False, **_):
        try:
            return folder_fingerprint(_folder(folder), bool(recursive))
        except OSError as exc:
            return f"error: {exc}"

    @classmethod
    def validate_inputs(cls, folder):
        try:
            _folder(folder)
        except OSError as exc:
            return f"{DISPLAY_NAME}: {exc}"
        return True

    @classmethod
    @node_errors(DISPLAY_NAME)
    def execute(cls, folder, size, max_images, recursive=False):
        root = bridge.input_directory().resolve()
        path = _folder(folder)
        try:
            files = list_images(path, bool(recursive))
            if not files:
                raise ImageFileError(
                    f"folder {folder!r} ({path}) holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                    + ("" if recursive else "; turn on 'recursive' if they are in subfolders") + ".")
            batch = load_batch(files, int(size), limit=int(max_images), check=_confine(root))
        except ImageFileError as exc:
            raise TransportFileError(str(exc)) from None
        images = batch.images.to(bridge.intermediate_device())
        return io.NodeOutput(images, _listing(folder, path, batch, len(files), int(size), int(max_images)))

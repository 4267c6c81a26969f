"""The one place the pack touches ComfyUI, with plain-torch fallbacks when it is absent.

Inside ComfyUI the nodes compute on ``comfy.model_management``'s device, report
to ``comfy.utils.ProgressBar``, honour Cancel and keep transport files in the
``latent_transport`` model folder of ``folder_paths`` (so ``extra_model_paths.yaml``
can add folders); photo folders are subfolders of its input directory. Without
ComfyUI (tests, command line) everything runs on the CPU, transport files live in
``$DEEPOT_MODELS_DIR`` or ``~/.cache/deepot/latent_transport``, and photo folders
in ``$DEEPOT_INPUT_DIR`` or the current directory.
"""
import functools
import importlib
import os
from pathlib import Path
from typing import Callable, List, Optional

import torch

from ..deepot_core.errors import TransportFileError
from ..deepot_core.tooling.paths import resolve_in_folder

#: ComfyUI model-folder type of transport files (``models/latent_transport``).
FOLDER_NAME = "latent_transport"
#: The only file type we read or write (never pickles).
EXTENSIONS = {".safetensors"}
#: Environment variable naming the transport folder when ComfyUI is absent.
MODELS_DIR_ENV = "DEEPOT_MODELS_DIR"
#: Transport folder when ComfyUI is absent and the variable is unset.
FALLBACK_FOLDER = Path.home() / ".cache" / "deepot" / FOLDER_NAME
#: Environment variable naming the input folder (of image folders) when ComfyUI is absent; else the CWD.
INPUT_DIR_ENV = "DEEPOT_INPUT_DIR"


@functools.lru_cache(maxsize=None)
def _optional(module: str):
    """The ComfyUI module, or None outside ComfyUI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _model_management():
    return _optional("comfy.model_management")


def _folder_paths():
    return _optional("folder_paths")


def in_comfyui() -> bool:
    return _model_management() is not None


# ------------------------------------------------------------------ devices
def torch_device() -> torch.device:
    """Where nodes compute: ComfyUI's main device (the GPU when there is one), else the CPU."""
    mm = _model_management()
    return mm.get_torch_device() if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (ComfyUI keeps them on the CPU unless --gpu-only)."""
    mm = _model_management()
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


# -------------------------------------------------------- progress, cancel
def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel."""
    mm = _model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI's progress bar, fed by core ``progress(done, total)`` callbacks; checks Cancel on every step.

    With ``total`` the bar spans several stages (``stage(offset)`` for each);
    without it, the core's own total of a single stage is used.
    """

    def __init__(self, total: Optional[int] = None):
        self.total = None if total is None else max(int(total), 1)
        utils = _optional("comfy.utils")
        self._bar = utils.ProgressBar(self.total or 1) if utils is not None else None

    def stage(self, offset: int = 0) -> Callable[[int, int], None]:
        """A core callback for the steps after ``offset``."""
        def callback(done: int, stage_total: int) -> None:
            check_interrupted()
            if self._bar is not None:
                total = self.total or max(int(stage_total), 1)
                self._bar.update_absolute(min(offset + done, total), total)
        return callback


# ------------------------------------------------------------ model folder
def register_folder() -> None:
    """Declare ``models/latent_transport`` to ComfyUI (kept first; folders from extra_model_paths.yaml stay)."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, FOLDER_NAME)
    paths, _ = fp.folder_names_and_paths.get(FOLDER_NAME, ([], set()))
    paths = [default] + [p for p in paths if p != default]
    fp.folder_names_and_paths[FOLDER_NAME] = (paths, set(EXTENSIONS))


def transport_folders() -> List[Path]:
    """Every folder searched for transport files; saving uses the first."""
    fp = _folder_paths()
    if fp is not None and FOLDER_NAME in fp.folder_names_and_paths:
        return [Path(p) for p in fp.get_folder_paths(FOLDER_NAME)]
    return [Path(os.environ.get(MODELS_DIR_ENV) or FALLBACK_FOLDER).expanduser()]


def list_transport_files() -> List[str]:
    """Names (relative to their folder, '/' separated) of every transport file, for the Load combo."""
    fp = _folder_paths()
    if fp is not None and FOLDER_NAME in fp.folder_names_and_paths:
        return fp.get_filename_list(FOLDER_NAME)
    names = set()
    for folder in transport_folders():
        if folder.is_dir():
            names.update(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                          if p.suffix in EXTENSIONS and p.is_file())
    return sorted(names)


def save_path(name: str) -> Path:
    """Where Save writes ``name`` (inside the first transport folder; escapes are refused)."""
    return resolve_in_folder(transport_folders()[0], name)


def find_transport(name: str) -> Path:
    """The existing file ``name`` in the first folder that holds it, or a TransportFileError."""
    folders = transport_folders()
    for folder in folders:
        path = resolve_in_folder(folder, name)
        if path.is_file():
            return path
    listing = ", ".join(str(f) for f in folders)
    raise TransportFileError(
        f"no transport file named {name!r} in {listing}; save one with Save Latent Transport, "
        "or refresh the node list (R) and pick an existing file.")


def file_fingerprint(name: str) -> Optional[str]:
    """Modification time, size and inode of a transport file: changes whenever the file is rewritten."""
    try:
        stat = find_transport(name).stat()
    except OSError:
        return None
    return f"{stat.st_mtime_ns}:{stat.st_size}:{stat.st_ino}"


# ------------------------------------------------------------ input folder
def input_directory() -> Path:
    """ComfyUI's input directory (honours --input-directory), else ``$DEEPOT_INPUT_DIR``, else the CWD."""
    fp = _folder_paths()
    getter = getattr(fp, "get_input_directory", None) if fp is not None else None
    if getter is not None:
        return Path(getter())
    return Path(os.environ.get(INPUT_DIR_ENV) or os.getcwd()).expanduser()


def list_input_subfolders() -> List[str]:
    """Names of the visible subfolders of the input directory, for the folder combo ([] when it is missing)."""
    root = input_directory()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return sorted(p.name for p in entries if not p.name.startswith(".") and p.is_dir())

"""Confine user-given file names to one models folder (names come from node widgets and downloads).

``resolve_in_folder(folder, name)`` is the one gate the nodes and the CLI use:
it refuses absolute paths, ``..``, empty or hidden-control names, and anything
whose resolved location (after following symlinks) leaves ``folder``.
"""
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import TransportFileError

#: Characters never allowed in a transport name (NUL breaks C APIs; the rest are Windows-reserved).
FORBIDDEN_CHARACTERS = set('\0<>:"|?*')
#: Longest name accepted, in characters (most file systems allow 255 per component).
MAX_NAME_LENGTH = 255


def resolve_in_folder(folder, name, allow_subfolders: bool = True, must_exist: bool = False,
                      directory: bool = False) -> Path:
    """The absolute path of ``name`` inside ``folder``, or ``TransportFileError`` saying why not.

    ``name`` is relative ("my.safetensors" or, when ``allow_subfolders``, "faces/my.safetensors",
    forward or back slashes). Refused: absolute or drive paths, ``..`` or ``.`` components,
    control characters, symlinks (at any level) that lead outside the folder, and directories.
    With ``must_exist`` a missing file is refused too. With ``directory`` the name must
    be a folder instead of a file (for folders of images).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TransportFileError(f"a transport name must be text, got {type(name).__name__}.")
    text = os.fspath(name)
    if not isinstance(text, str) or not text.strip():
        raise TransportFileError("the transport name is empty; pick a file from the list or type a name.")
    if len(text) > MAX_NAME_LENGTH or any(ch in FORBIDDEN_CHARACTERS or ord(ch) < 32 for ch in text):
        raise TransportFileError(
            f"{text[:60]!r} is not a usable file name (too long or holds control/reserved characters).")
    windows, posix = PureWindowsPath(text), PurePosixPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise TransportFileError(
            f"{text!r} is an absolute path; give a name relative to the models folder {folder}.")
    parts = windows.parts  # splits on both / and \
    if any(part in ("..", ".") for part in parts):
        raise TransportFileError(f"{text!r} leaves or re-enters its folder ('..' or '.'); give a plain name.")
    if len(parts) > 1 and not allow_subfolders:
        raise TransportFileError(f"{text!r} holds a folder separator; give a plain file name.")
    root = Path(folder).resolve()
    candidate = root.joinpath(*parts)
    resolved = candidate.resolve()  # follows every symlink on the way
    if resolved != root and root not in resolved.parents:
        raise TransportFileError(
            f"{text!r} points outside the models folder {root} (a symlink?); move the file into the folder.")
    if directory:
        if must_exist and not resolved.is_dir():
            raise TransportFileError(f"no folder named {text!r} in {root}.")
        return resolved
    if resolved.is_dir():
        raise TransportFileError(f"{text!r} is a directory, not a transport file.")
    if must_exist and not resolved.is_file():
        raise TransportFileError(f"no transport named {text!r} in {root}.")
    return resolved

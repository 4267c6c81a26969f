"""Shared command-line helpers: a tiny progress bar, the --vae option, clean error exits."""
import sys
import time
from typing import Optional

#: Exit status for user errors (bad input, missing files): argparse uses it too.
EXIT_USAGE = 2
#: Width of the progress bar in characters.
BAR_WIDTH = 28
#: Seconds between redraws, so a fast loop does not flood a log file.
REDRAW_INTERVAL = 0.1


class CliError(Exception):
    """A user error: printed as one line (no traceback) and exit status 2."""


class ProgressBar:
    """``bar(done, total)`` draws ``label [#####.....] done/total`` on stderr; a ProgressCallback."""

    def __init__(self, label: str, stream=None, enabled: bool = True):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.start = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < REDRAW_INTERVAL:
            return
        self._last = now
        filled = int(BAR_WIDTH * done / max(total, 1))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {now - self.start:.1f}s{end}")
        self.stream.flush()


def add_space_option(parser, default_help: str) -> None:
    parser.add_argument("--vae", default=None, metavar="SPACE",
                        help="latent space: 'pixel' (VAE-free, 3·p² pixel patches), a folder of TAESD weights "
                             "(<name>_encoder.* + <name>_decoder.*; FOLDER:NAME picks one), an encoder file, "
                             "or comfy:NAME, a space as ComfyUI's VAE Loader makes it: comfy:pixel_space, "
                             "comfy:taesd/taesdxl/taesd3/taef1 (weights from $COMFYUI_PATH/models/vae_approx) or a "
                             f"file of ComfyUI's models/vae such as comfy:sdxl/vae.safetensors (needs COMFYUI_PATH "
                             f"and ComfyUI's Python). {default_help}")


def space_for(spec: Optional[str], recorded: Optional[str] = None):
    """(space, name) for a --vae value (``recorded``: the space a transport file names, see ``resolve_space``)."""
    from ..spaces import resolve_space
    return resolve_space(spec, recorded)

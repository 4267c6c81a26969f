"""Progress and cancellation hooks, so long loops report to any host (ComfyUI, tqdm, nothing).

A callback is ``callback(done: int, total: int) -> None``; it may raise to cancel
(ComfyUI's interruption check does exactly that), and the loop stops cleanly.
"""
from typing import Callable, Optional

ProgressCallback = Optional[Callable[[int, int], None]]


def report(callback: ProgressCallback, done: int, total: int) -> None:
    """Call ``callback`` when one is given."""
    if callback is not None:
        callback(done, total)

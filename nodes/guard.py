"""Turn core errors into messages ComfyUI shows under the node's name, and check LATENT inputs.

ComfyUI prints an exception's text in its error dialog and keeps running, so a
node only has to raise a ValueError/OSError whose text starts with the node's
display name, says what is wrong and how to fix it. Core errors already say the
last two; ``node_errors`` adds the first. Other exceptions (bugs, ComfyUI's own
interruption on Cancel) pass through untouched.
"""
import functools

import torch

from ..deepot_core.errors import TransportFileError, TransportInputError


def node_errors(display_name: str):
    """Decorator for a node's FUNCTION: core errors become ``"<display name>: <message>"``."""
    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except TransportFileError as exc:
                raise OSError(f"{display_name}: {exc}") from exc
            except TransportInputError as exc:
                raise ValueError(f"{display_name}: {exc}") from exc
        return run
    return decorate


def latent_samples(latent, input_name: str) -> torch.Tensor:
    """The ``samples`` tensor of a LATENT dict, or a TransportInputError naming the input."""
    if not isinstance(latent, dict) or "samples" not in latent:
        got = f"a dict with keys {sorted(map(str, latent))}" if isinstance(latent, dict) else type(latent).__name__
        raise TransportInputError(
            f"'{input_name}' is not a LATENT with 'samples' (got {got}); connect it to VAE Encode "
            "or another node that outputs LATENT.")
    samples = latent["samples"]
    if not isinstance(samples, torch.Tensor) or getattr(samples, "is_nested", False):
        raise TransportInputError(
            f"'{input_name}' samples must be one tensor [B,C,H,W] or [B,C,T,H,W], got {type(samples).__name__}; "
            "this latent type is not supported.")
    return samples


def with_samples(latent: dict, samples: torch.Tensor) -> dict:
    """A new LATENT dict: every key of ``latent`` kept (noise_mask, batch_index, ...), ``samples`` replaced."""
    out = latent.copy()
    out["samples"] = samples
    return out


def check_mask_not_empty(mask, input_name: str) -> None:
    """An all-zero mask selects nothing: say so instead of silently doing nothing."""
    if mask is not None and isinstance(mask, torch.Tensor) and mask.numel() and not bool((mask > 0).any()):
        raise TransportInputError(
            f"'{input_name}' is all zero, so it selects nothing; paint the area to use in white, "
            "or disconnect the mask to use the whole image.")

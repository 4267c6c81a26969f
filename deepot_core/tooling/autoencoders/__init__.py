"""Latent spaces for Deep OT: TAESD-family tiny autoencoders and the plain pixel space."""
from .pixel import PixelSpace
from .taesd import (
    TAESDSpace,
    TinyAutoencoder,
    find_taesd_pair,
    list_taesd_pairs,
    load_taesd,
)

__all__ = ["PixelSpace", "TAESDSpace", "TinyAutoencoder", "find_taesd_pair", "list_taesd_pairs", "load_taesd"]

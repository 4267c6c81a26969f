"""deepot_core — Deep Optimal Transport (Adrai, Ohayon, Michaeli, Elad, NeurIPS 2023) in a latent space.

A pure torch + numpy + safetensors library (it never imports ComfyUI):

- ``PatchStatistics``: streaming float64 mean/covariance of every p×p latent patch.
- ``LatentTransport``: the closed-form Gaussian W2 map between two such sets,
  applied to every patch and folded back; zero-shot when the source is None.
- ``pd_blend``: the perception–distortion blend, with residual decode and detail band, the band's
  per-level natural slope (and, as an option, the natural marginal of its finest level).
- ``harmonise_colours``: recolour natural photos to the restored set's palette before encoding.
"""
__version__ = "0.1.0"

from .blend import pd_blend, pd_sweep
from .colour import colour_gap, harmonise_colours
from .constants import DEFAULT_DETAIL_SIGMA, DEFAULT_EPS, DEFAULT_PATCH_SIZE
from .errors import TransportFileError, TransportInputError
from .gaussian_ot import gaussian_map, gaussian_w2, transport_matrix
from .serialization import load_transport, read_metadata, save_transport
from .statistics import PatchStatistics
from .transport import LatentTransport

__all__ = [
    "PatchStatistics", "LatentTransport", "pd_blend", "pd_sweep", "harmonise_colours", "colour_gap",
    "gaussian_map", "gaussian_w2", "transport_matrix", "save_transport", "load_transport", "read_metadata",
    "TransportInputError", "TransportFileError", "DEFAULT_EPS", "DEFAULT_PATCH_SIZE", "DEFAULT_DETAIL_SIGMA",
]

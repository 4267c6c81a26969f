"""What every node of the pack shares: its menu category and its custom socket type."""
from .comfy_v3 import io

#: Menu category of every node (ComfyUI's "Add Node" menu: latent → transport).
CATEGORY = "latent/transport"
#: Socket type carrying a fitted ``LatentTransport`` between nodes.
TRANSPORT_TYPE = "LATENT_TRANSPORT"
#: The socket type for schemas: ``Transport.Input(...)`` / ``Transport.Output(...)``.
Transport = io.Custom(TRANSPORT_TYPE)
#: The video switch every node that blends or transports a batch offers (its input name contains "video").
VIDEO_TOOLTIP = ("The batch is the frames of one clip, in order (Load Video, a video VAE's decode): the detail "
                 "the transport adds follows the picture's motion instead of re-forming in every frame, and "
                 "per-clip choices (gains, a zero-shot transport's source) are made once for the clip.")

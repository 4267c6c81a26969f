"""What every node of the pack shares: its menu category and its custom socket type."""
from .comfy_v3 import io

#: Menu category of every node (ComfyUI's "Add Node" menu: latent → transport).
CATEGORY = "latent/transport"
#: Socket type carrying a fitted ``LatentTransport`` between nodes.
TRANSPORT_TYPE = "LATENT_TRANSPORT"
#: The socket type for schemas: ``Transport.Input(...)`` / ``Transport.Output(...)``.
Transport = io.Custom(TRANSPORT_TYPE)

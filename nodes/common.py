"""What every node of the pack shares: its menu category and its custom socket type."""

#: Menu category of every node (ComfyUI's "Add Node" menu: latent → transport).
CATEGORY = "latent/transport"
#: Socket type carrying a fitted ``LatentTransport`` between nodes.
TRANSPORT_TYPE = "LATENT_TRANSPORT"

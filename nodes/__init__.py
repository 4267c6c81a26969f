"""ComfyUI glue over ``deepot_core``: one module per concern, each node a V3 ``io.ComfyNode`` of a few lines.

Node ids (each schema's ``node_id``), input names, widget order and output order
are stored in users' workflows: never rename or reorder them; append new
optional inputs at the end. ``comfy_entrypoint`` is how ComfyUI finds the nodes.
"""
from . import comfy_bridge
from .apply import ApplyLatentTransport
from .blend import PDBlend
from .clipped_noise import UndoNoiseClipping
from .colour import HarmoniseColours
from .comfy_v3 import ComfyExtension
from .degrade import DegradeImage
from .files import LoadLatentTransport, SaveLatentTransport
from .fit import FitLatentTransport
from .image_folder import LoadImageFolder
from .make_realistic import MakeRealistic

comfy_bridge.register_folder()

#: Every node of the pack, in menu order.
NODES = [MakeRealistic, FitLatentTransport, ApplyLatentTransport, PDBlend, SaveLatentTransport, LoadLatentTransport,
         HarmoniseColours, DegradeImage, UndoNoiseClipping, LoadImageFolder]


class DeepOTExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> DeepOTExtension:
    """ComfyUI's V3 loader calls this to learn the pack's nodes."""
    return DeepOTExtension()

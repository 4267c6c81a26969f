"""ComfyUI glue over ``deepot_core``: one module per concern, each node a few lines.

Node ids (the keys below) are stored in users' workflows: never rename them.
"""
from . import comfy_bridge
from .apply import ApplyLatentTransport
from .blend import PDBlend
from .colour import HarmoniseColours
from .degrade import DegradeImage
from .files import LoadLatentTransport, SaveLatentTransport
from .fit import FitLatentTransport
from .image_folder import LoadImageFolder

comfy_bridge.register_folder()

NODE_CLASS_MAPPINGS = {
    "DeepOT_FitLatentTransport": FitLatentTransport,
    "DeepOT_ApplyLatentTransport": ApplyLatentTransport,
    "DeepOT_PDBlend": PDBlend,
    "DeepOT_SaveLatentTransport": SaveLatentTransport,
    "DeepOT_LoadLatentTransport": LoadLatentTransport,
    "DeepOT_HarmoniseColours": HarmoniseColours,
    "DeepOT_DegradeImage": DegradeImage,
    "DeepOT_LoadImageFolder": LoadImageFolder,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DeepOT_FitLatentTransport": "Fit Latent Transport",
    "DeepOT_ApplyLatentTransport": "Apply Latent Transport",
    "DeepOT_PDBlend": "PD Blend",
    "DeepOT_SaveLatentTransport": "Save Latent Transport",
    "DeepOT_LoadLatentTransport": "Load Latent Transport",
    "DeepOT_HarmoniseColours": "Harmonise Colours",
    "DeepOT_DegradeImage": "Degrade Image",
    "DeepOT_LoadImageFolder": "Load Image Folder",
}

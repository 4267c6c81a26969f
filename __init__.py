"""ComfyUI-DeepOT: Deep Optimal Transport for restored images, as ComfyUI nodes (``latent/transport``).

ComfyUI imports this file as a package and reads the two mappings below. The
library itself lives in ``deepot_core`` (no ComfyUI needed); ``nodes`` is the
glue. Imports stay relative: ComfyUI owns the top-level names ``nodes``,
``utils``, ``server``, ``execution`` and ``folder_paths``.
"""
if __package__:  # pytest imports this file as a plain module when the checkout's folder name is no identifier
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

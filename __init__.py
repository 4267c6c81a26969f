"""ComfyUI-DeepOT: Deep Optimal Transport for restored images, as ComfyUI nodes (``latent/transport``).

ComfyUI imports this file as a package and calls ``comfy_entrypoint`` (V3
nodes); ``WEB_DIRECTORY`` serves the node-library docs and the small script
that shows text results on the nodes. The library itself lives in
``deepot_core`` (no ComfyUI needed); ``nodes`` is the glue. Imports stay
relative: ComfyUI owns the top-level names ``nodes``, ``utils``, ``server``,
``execution`` and ``folder_paths``. On a ComfyUI without the pinned V3 API the
pack logs one line saying so and registers nothing.
"""
import logging

if __package__:  # pytest imports this file as a plain module when the checkout's folder name is no identifier
    from .nodes import comfy_v3

    WEB_DIRECTORY = "./web"
    if comfy_v3.MISSING:
        logging.getLogger(__name__).error(comfy_v3.MISSING)
        NODE_CLASS_MAPPINGS = {}  # loaded, with no nodes: ComfyUI adds no second message of its own
        __all__ = ["NODE_CLASS_MAPPINGS"]
    else:
        from .nodes import comfy_entrypoint

        __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]

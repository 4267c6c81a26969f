"""Make Realistic on full-size VAE architectures as ComfyUI builds them: plumbing, time and peak memory.

Real full-VAE weights are not available here, so each VAE is ComfyUI's own ``comfy.sd.VAE`` built from a randomly
initialised state dict of the real shapes:

- ``sd15_sdxl``: AutoencoderKL with quant convs, 4 latent channels (SD1.5 and SDXL share the architecture);
- ``sd3_flux1``: the same encoder/decoder without quant convs, 16 channels (SD3 and FLUX.1).

(A 32-channel state dict of this shape is read by ComfyUI 0.3.64 as HunyuanVideo 1.5's video VAE, and FLUX.2's VAE
is newer than it, so 32 channels are covered by TAEF2 in the tests, not here.)

Random weights decode to noise: this measures that the node runs through ComfyUI's VAE object (device, batching,
tiled encode/decode, any channel count), how long it takes and how much memory it peaks at, never quality (that is
measured in the TAESD family: docs/results.md). Each configuration runs in a fresh process, so the peak memory is
its own (CPU: peak resident set; CUDA: peak allocated)::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/venv/bin/python benchmarks/full_vae.py --size 512 --tiles 0 256

``--device cuda`` runs on ComfyUI's GPU. The pytest check (tests/test_full_vae.py) runs one small configuration.
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui_deepot"
SPACES = {"sd15_sdxl": 4, "sd3_flux1": 16}
#: ComfyUI's own AutoencoderKL configuration (comfy/sd.py, the SD1.x default) with the latent channels replaced.
DDCONFIG = {"double_z": True, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4],
            "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def import_comfyui(device: str):
    """ComfyUI's modules, on the CPU unless ``device`` is cuda (ComfyUI's own --cpu switch)."""
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout and run with its Python")
    sys.path.insert(0, str(Path(root).resolve()))
    from comfy.cli_args import args

    args.cpu = device == "cpu"
    import comfy.model_management  # noqa: F401  (sets up devices)
    import comfy.sd
    import folder_paths  # noqa: F401  (the pack sees it is inside ComfyUI)

    return comfy


def random_state_dict(comfy, space: str) -> dict:
    """A randomly initialised state dict with the real shapes of ``space``'s VAE (ComfyUI's own classes)."""
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL, AutoencodingEngine

    channels = SPACES[space]
    ddconfig = {**DDCONFIG, "z_channels": channels}
    torch.manual_seed(0)
    if space == "sd15_sdxl":
        model = AutoencoderKL(ddconfig=ddconfig, embed_dim=channels)
    else:
        part = "comfy.ldm.modules.diffusionmodules.model.{}"
        model = AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": part.format("Encoder"), "params": ddconfig},
            decoder_config={"target": part.format("Decoder"), "params": ddconfig})
    return {key: _initialised(key, value) for key, value in model.state_dict().items()}


def _initialised(key: str, value):
    """ComfyUI's layers skip initialisation (their memory is whatever it was): give each tensor the usual start."""
    import torch

    if value.ndim > 1:  # conv / linear weight: variance-preserving normal
        return torch.randn(value.shape) / float(value[0].numel()) ** 0.5
    if "norm" in key and key.endswith("weight"):
        return torch.ones(value.shape)
    return torch.zeros(value.shape)


def load_pack():
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def measure(space: str, size: int, tile: int, device: str) -> dict:
    """One configuration, in this process: build the VAE, run Make Realistic once, report."""
    comfy = import_comfyui(device)
    import torch

    vae = comfy.sd.VAE(sd=random_state_dict(comfy, space))
    pack = load_pack()
    node = pack.nodes.make_realistic.MakeRealistic.PREPARE_CLASS_CLONE({})
    g = torch.Generator().manual_seed(1)
    restored = torch.rand(1, size, size, 3, generator=g)
    natural = torch.rand(2, size // 2, size // 2, 3, generator=g)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        out = node.execute(restored=restored, vae=vae, perception=1.0, natural=natural, tile_size=tile)
    seconds = time.perf_counter() - start
    images = out.args[0]
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"space": space, "channels": vae.latent_channels, "size": size, "tile": tile, "device": device,
            "seconds": round(seconds, 2), "peak_mib": round(peak / 2 ** 20), "shape": list(images.shape),
            "finite": bool(torch.isfinite(images).all()), "vae_class": type(vae.first_stage_model).__name__}


def run_fresh(space: str, size: int, tile: int, device: str) -> dict:
    """``measure`` in a new process, so its peak memory is its own."""
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps([space, size, tile, device])],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"space": space, "size": size, "tile": tile, "device": device, "error": done.stderr.strip()[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows) -> str:
    lines = ["| VAE (ComfyUI class) | channels | image | tile | device | seconds | peak MiB | output | finite |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['space']} | | {r['size']}² | {r['tile']} | {r['device']} | error: "
                         f"{r['error'].splitlines()[-1]} | | | |")
            continue
        lines.append(f"| {r['space']} ({r['vae_class']}) | {r['channels']} | {r['size']}² | {r['tile'] or 'auto'} | "
                     f"{r['device']} | {r['seconds']} | {r['peak_mib']} | {r['shape']} | {r['finite']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--size", type=int, nargs="+", default=[256])
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 128],
                        help="tile_size values (0 = ComfyUI decides)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return 0
    rows = [run_fresh(space, size, tile, args.device) for space in args.spaces for size in args.size
            for tile in args.tiles]
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any("error" in r or not r["finite"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

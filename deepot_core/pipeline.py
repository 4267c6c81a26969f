"""The end-to-end Deep OT recipe shared by the command line, the demo and the benchmark.

encode (a latent space) → PatchStatistics → LatentTransport → apply → decode the
transported *and* the untransported latent → ``pd_blend`` (plain, or residual
decode + detail band), with optional colour harmonisation of the natural photos
before they are encoded. Two named recipes:

- ``PAPER_RECIPE``: the published DOT — plain blend of the decoded transport.
- ``FULL_RECIPE``: harmonise colours → residual decode → detail band (σ = 2 px),
  for natural photos from another collection (unpaired, zero-shot).
- ``PAIRED_RECIPE``: residual decode → detail band, for calibration pairs. Not
  harmonised: the clean and restored versions of the same photos already share a
  palette, and their pooled colour covariance differs by exactly the contrast the
  restorer lost, which harmonising would strip from the natural set.

Images are IMAGE tensors [1,H,W,3] (lists of them where sizes differ). A latent
space is anything with ``encode``/``decode``/``latent_channels``/``downscale``
(``PixelSpace``, ``TAESDSpace``, ``ComfyVAESpace``); ``resolve_space`` builds one
from a command-line string and names it, so transport files record their space.
"""
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .blend import pd_blend
from .colour import colour_gap, harmonise_colours
from .constants import DEFAULT_DETAIL_SIGMA, DEFAULT_EPS, DEFAULT_PATCH_SIZE
from .errors import TransportInputError
from .statistics import PatchStatistics
from .transport import LatentTransport

Progress = Optional[Callable[[int, int], None]]

#: Name recorded for DOT's VAE-free space (3·p² pixel patches).
PIXEL_SPACE = "pixel"
#: Metadata key of the space a transport was fitted in (also read by ``check_space``).
SPACE_KEY = "space"
#: Perceptions every sweep reports unless told otherwise.
DEFAULT_PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Noise σ (0–255 scale) and SR factor of the two standard tasks.
TASK_NOISE_SIGMA = 50.0
TASK_SR_SCALE = 4
TASKS = ("denoise50", "sr4")
#: Laplacian-pyramid levels (fewer for small images) and patch size of the SWD metric (ProGAN's 7×7).
SWD_LEVELS = 4
SWD_PATCH = 7


@dataclass(frozen=True)
class Recipe:
    """How a transport is fitted and blended: colour harmonisation, residual decode, detail band σ."""
    name: str
    harmonise: bool
    residual: bool
    detail_sigma: float


PAPER_RECIPE = Recipe("paper", harmonise=False, residual=False, detail_sigma=0.0)
FULL_RECIPE = Recipe("full", harmonise=True, residual=True, detail_sigma=DEFAULT_DETAIL_SIGMA)
PAIRED_RECIPE = Recipe("full", harmonise=False, residual=True, detail_sigma=DEFAULT_DETAIL_SIGMA)


def full_recipe(paired: bool, detail_sigma: float = DEFAULT_DETAIL_SIGMA) -> Recipe:
    """The full recipe for calibration pairs (no harmonising) or for unpaired natural photos."""
    return Recipe("full", harmonise=not paired, residual=True, detail_sigma=detail_sigma)


# ---------------------------------------------------------------------------- spaces
class ComfyVAESpace:
    """ComfyUI's own VAE (``comfy.sd.VAE``) behind the latent-space interface; best effort."""

    def __init__(self, vae, name: str):
        self.vae = vae
        self.name = name
        self.downscale = int(getattr(vae, "downscale_ratio", 8)) if isinstance(
            getattr(vae, "downscale_ratio", 8), int) else 8
        self.latent_channels = int(getattr(vae, "latent_channels", 4))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(images[..., :3])
        self.latent_channels = int(latents.shape[1])
        return latents.float().cpu()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents)
        if images.ndim == 5:  # video VAEs decode to [B,T,H,W,C]
            images = images.reshape(-1, *images.shape[-3:])
        return images.float().cpu().clamp(0, 1)


def load_comfy_vae(name: str) -> ComfyVAESpace:
    """Load VAE ``name`` through a ComfyUI checkout at $COMFYUI_PATH (its models/vae folder or a file path)."""
    root = os.environ.get("COMFYUI_PATH")
    if not root or not Path(root, "comfy").is_dir():
        raise TransportInputError(
            "--vae comfy:NAME needs COMFYUI_PATH set to a ComfyUI checkout (the folder holding comfy/).")
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import comfy.sd
        import comfy.utils
        import folder_paths
        path = Path(name) if Path(name).is_file() else folder_paths.get_full_path("vae", name)
        if path is None:
            raise FileNotFoundError(f"no VAE named {name!r} in ComfyUI's models/vae "
                                    f"(found: {folder_paths.get_filename_list('vae')})")
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path)))
    except TransportInputError:
        raise
    except Exception as exc:  # ComfyUI internals vary between versions: report, do not crash
        raise TransportInputError(f"could not load ComfyUI VAE {name!r}: {exc.__class__.__name__}: {exc}") from None
    return ComfyVAESpace(vae, name)


def resolve_space(spec: Optional[str]) -> Tuple[object, str]:
    """A latent space and its name from a command-line value.

    ``None``/"pixel" → the pixel space; "comfy:NAME" → ComfyUI's VAE loader;
    a folder → the one TAESD pair in it (or "FOLDER:NAME" / an encoder file to pick one).
    """
    from .autoencoders import PixelSpace, TAESDSpace, find_taesd_pair

    if spec is None or spec == PIXEL_SPACE:
        return PixelSpace(), PIXEL_SPACE
    if spec.startswith("comfy:"):
        name = spec[len("comfy:"):]
        return load_comfy_vae(name), f"comfy:{Path(name).name}"
    path, name = Path(spec), None
    if not path.exists() and ":" in spec:
        folder, name = spec.rsplit(":", 1)
        path = Path(folder)
    if path.is_file():
        stem = path.name.split(".")[0]
        for part in ("_encoder", "_decoder"):
            if stem.endswith(part):
                name, path = stem[: -len(part)], path.parent
                break
        else:
            raise TransportInputError(f"{spec}: give a folder of TAESD weights or a <name>_encoder.* file.")
    if not path.is_dir():
        raise TransportInputError(f"--vae {spec}: no such folder or file (give a TAESD folder, "
                                  "a <name>_encoder.* file, 'pixel' or comfy:NAME).")
    try:
        encoder, decoder = find_taesd_pair(path, name)
        space = TAESDSpace.from_files(encoder, decoder)
    except (ValueError, OSError) as exc:
        raise TransportInputError(f"--vae {spec}: {exc}") from None
    return space, f"taesd:{encoder.name.rsplit('_encoder', 1)[0]}"


def check_space(transport: LatentTransport, space, space_name: str) -> None:
    """Refuse a transport fitted in another space (recorded name or channel count)."""
    recorded = transport.metadata.get(SPACE_KEY)
    if recorded is not None and recorded != space_name:
        raise TransportInputError(
            f"this transport was fitted in the {recorded!r} space but {space_name!r} was chosen; "
            f"pass the matching --vae (or fit a new transport in {space_name!r}).")
    channels = getattr(space, "latent_channels", None)
    if channels is not None and channels != transport.channels:
        raise TransportInputError(
            f"this transport fits {transport.channels}-channel latents but the {space_name!r} space makes "
            f"{channels}-channel latents; use the VAE it was fitted with.")


# ---------------------------------------------------------------------------- encode / decode
def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad [B,H,W,C] at the bottom/right to a multiple of the space's downscale."""
    h, w = image.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    x = F.pad(image.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate")
    return x.permute(0, 2, 3, 1)


def encode(space, image: torch.Tensor) -> torch.Tensor:
    """Encode one IMAGE [B,H,W,3] (padded so the VAE does not crop it)."""
    return space.encode(pad_to_multiple(image[..., :3].float(), space.downscale))


def decode(space, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Decode and crop back to the image size before padding."""
    return space.decode(latents)[:, :height, :width]


def collect_statistics(space, images: Sequence[torch.Tensor], patch_size: int = DEFAULT_PATCH_SIZE,
                       progress: Progress = None) -> PatchStatistics:
    """Stream every image through the encoder into one PatchStatistics (memory stays flat)."""
    stats = PatchStatistics(patch_size)
    for i, image in enumerate(images):
        stats.update(encode(space, image))
        if progress is not None:
            progress(i + 1, len(images))
    return stats


def fit_transport(space, natural: Sequence[torch.Tensor], restored: Optional[Sequence[torch.Tensor]] = None,
                  patch_size: int = DEFAULT_PATCH_SIZE, eps: float = DEFAULT_EPS, harmonise: bool = False,
                  zero_shot: bool = False, space_name: str = PIXEL_SPACE, metadata: Optional[Dict] = None,
                  progress: Progress = None) -> LatentTransport:
    """Fit natural-photo statistics (and restored ones unless ``zero_shot``) into a LatentTransport.

    ``harmonise`` recolours the natural photos to the restored set's palette first
    (needs ``restored``, which zero-shot then uses for colour only). The space's
    name and the recipe go into the transport's metadata.
    """
    natural = list(natural)
    restored = None if restored is None else list(restored)
    if not natural:
        raise TransportInputError("no natural images to fit on; give at least one clean photo.")
    if not zero_shot and not restored:
        raise TransportInputError("no restored images to fit on; give the restorer's outputs or use zero-shot.")
    if harmonise and not restored:
        raise TransportInputError("harmonising colours needs the restored images as the colour reference.")
    info = {SPACE_KEY: space_name, "harmonised": bool(harmonise), "natural_images": len(natural),
            "restored_images": 0 if restored is None else len(restored)}
    if restored:
        info["colour_gap"] = colour_gap([i[..., :3] for i in natural], [i[..., :3] for i in restored])
    if harmonise:
        natural = harmonise_colours([i[..., :3] for i in natural], [i[..., :3] for i in restored])
    total = len(natural) + (0 if zero_shot else len(restored))

    def step(offset):
        return None if progress is None else (lambda done, _n: progress(offset + done, total))

    target = collect_statistics(space, natural, patch_size, step(0))
    source = None if zero_shot else collect_statistics(space, restored, patch_size, step(len(natural)))
    info.update(metadata or {})
    return LatentTransport(source, target, eps=eps, metadata=info)


def transport_image(space, transport: LatentTransport, restored: torch.Tensor,
                    strength: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decoded transport D(T(z)) and reconstruction D(z) of one restored IMAGE, both at its size."""
    h, w = restored.shape[1:3]
    z = encode(space, restored)
    moved = transport.apply(z, strength=strength)
    return decode(space, moved, h, w), decode(space, z, h, w)


def blend(restored: torch.Tensor, transported: torch.Tensor, reconstructed: torch.Tensor,
          perception: float, recipe: Recipe = FULL_RECIPE) -> torch.Tensor:
    """One point of the perception–distortion curve under ``recipe`` (plain or residual + detail band)."""
    restored = restored[..., :3]
    if recipe.residual:
        return pd_blend(restored, transported, perception, reconstructed=reconstructed,
                        detail_sigma=recipe.detail_sigma)
    return pd_blend(restored, transported, perception)


def sweep(space, transport: LatentTransport, restored: Sequence[torch.Tensor],
          perceptions: Sequence[float] = DEFAULT_PERCEPTIONS, recipe: Recipe = FULL_RECIPE,
          progress: Progress = None) -> Dict[float, List[torch.Tensor]]:
    """Transport every restored image once and blend it at every perception → {perception: [images]}."""
    out: Dict[float, List[torch.Tensor]] = {float(p): [] for p in perceptions}
    for i, image in enumerate(restored):
        moved, recon = transport_image(space, transport, image)
        for p in perceptions:
            out[float(p)].append(blend(image, moved, recon, p, recipe))
        if progress is not None:
            progress(i + 1, len(restored))
    return out


# ---------------------------------------------------------------------------- tasks
def degrade(images: Sequence[torch.Tensor], task: str, seed: int = 0) -> List[torch.Tensor]:
    """Degraded copies for a standard task (``degrade_images``, one seed per image):
    "denoise50" (Gaussian noise σ = 50/255, clipped like a saved photo) or "sr4"
    (antialiased bicubic ×1/4; sizes must be multiples of 4)."""
    from .degrade import degrade_images

    if task not in TASKS:
        raise TransportInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    out = []
    for k, image in enumerate(images):
        if task == "denoise50":
            out.append(degrade_images(image, noise_sigma=TASK_NOISE_SIGMA, seed=seed * 100003 + k))
            continue
        h, w = image.shape[1:3]
        if h % TASK_SR_SCALE or w % TASK_SR_SCALE:
            raise TransportInputError(f"×{TASK_SR_SCALE} SR needs sizes that are multiples of "
                                      f"{TASK_SR_SCALE}; got {h}×{w} (crop first).")
        out.append(degrade_images(image, scale=TASK_SR_SCALE, filter="bicubic"))
    return out


def restore_classical(degraded: Sequence[torch.Tensor], task: str) -> List[torch.Tensor]:
    """The weight-free MMSE-style restorer of each task (Wiener denoiser, bicubic upsampling)."""
    from .restorers import bicubic_upscale, wiener_denoise

    if task == "denoise50":
        return [wiener_denoise(d, TASK_NOISE_SIGMA) for d in degraded]
    if task == "sr4":
        return [bicubic_upscale(d, TASK_SR_SCALE) for d in degraded]
    raise TransportInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")


def centre_crop_square(image: torch.Tensor, size: int, multiple: int = 8) -> torch.Tensor:
    """Centre crop [1,H,W,C] to size×size (or the largest multiple of ``multiple`` that fits)."""
    h, w = image.shape[1:3]
    s = min(size, h, w) // multiple * multiple
    if s <= 0:
        raise TransportInputError(f"image of {h}×{w} is smaller than {multiple} pixels.")
    top, left = (h - s) // 2, (w - s) // 2
    return image[:, top:top + s, left:left + s]


# ---------------------------------------------------------------------------- metrics
def evaluate(outputs: Sequence[torch.Tensor], clean: Sequence[torch.Tensor],
             niqe_params: Optional[Path] = None, seed: int = 0, with_ssim: bool = True) -> Dict[str, object]:
    """Fidelity (mean PSNR, SSIM) and distribution distances (pyramid-patch SWD, patch Fréchet) to ``clean``.

    ``swd`` is ProGAN's (each set normalised by its own per-band statistics: texture
    *shape*); ``swd_joint`` normalises both sets together, so lost detail energy counts.
    NIQE (lower is better) is added when the pristine-model parameters are given.
    """
    from .metrics import niqe, patch_frechet_distance, psnr, sliced_wasserstein_patches, ssim

    outputs, clean = [o[..., :3].float() for o in outputs], [c[..., :3].float() for c in clean]
    if len(outputs) != len(clean):
        raise TransportInputError(f"{len(outputs)} outputs but {len(clean)} clean images.")
    pairs = [(o, c) for o, c in zip(outputs, clean)]
    for o, c in pairs:
        if o.shape != c.shape:
            raise TransportInputError(f"output {tuple(o.shape)} and clean {tuple(c.shape)} differ in size.")
    smallest = min(min(o.shape[1:3]) for o in outputs)
    levels = max(1, min(SWD_LEVELS, int(math.log2(max(smallest / SWD_PATCH, 1.0)))))
    swd = sliced_wasserstein_patches(outputs, clean, levels=levels, patch_size=SWD_PATCH, seed=seed)
    joint = sliced_wasserstein_patches(outputs, clean, levels=levels, patch_size=SWD_PATCH, seed=seed,
                                       normalize="joint")
    psnrs = torch.cat([psnr(o, c) for o, c in pairs])
    result = {"psnr": float(psnrs.double().mean())}
    if with_ssim:  # the slowest metric; one batched call where sizes agree
        same = len({o.shape for o in outputs}) == 1
        ssims = ssim(torch.cat(outputs), torch.cat(clean)) if same else torch.cat([ssim(o, c) for o, c in pairs])
        result["ssim"] = float(ssims.double().mean())
    result.update({
        "swd": float(swd["total"]), "swd_levels": [float(v) for v in swd["levels"]],
        "swd_lowpass": float(swd["lowpass"]),
        "swd_joint": float(joint["total"]), "swd_joint_levels": [float(v) for v in joint["levels"]],
        "swd_joint_lowpass": float(joint["lowpass"]),
        "patch_fd": float(patch_frechet_distance(outputs, clean, seed=seed)),
    })
    if niqe_params is not None:
        result["niqe"] = float(niqe(outputs, niqe_params).mean())
    return result

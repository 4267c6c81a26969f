"""The standard experiments of the demo and the benchmark: tasks, weight-free restorers, crops, metrics.

Two tasks: "denoise50" (Gaussian noise σ = 50 on the 0–255 scale) and "sr4"
(antialiased bicubic ×1/4). ``evaluate`` measures fidelity (PSNR, SSIM) and
distances to the clean images that need no pretrained network (pyramid-patch
SWD, patch Fréchet distance, NIQE).
"""
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import TransportInputError

#: Noise σ (0–255 scale) and SR factor of the two standard tasks.
TASK_NOISE_SIGMA = 50.0
TASK_SR_SCALE = 4
TASKS = ("denoise50", "sr4")
#: Laplacian-pyramid levels (fewer for small images) and patch size of the SWD metric (ProGAN's 7×7).
SWD_LEVELS = 4
SWD_PATCH = 7


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


def swd_levels(smallest: int) -> int:
    """Pyramid levels of the patch SWD for images whose smaller side is ``smallest``: at most ``SWD_LEVELS``, and
    none so coarse that a level is smaller than a patch."""
    return max(1, min(SWD_LEVELS, int(math.log2(max(smallest / SWD_PATCH, 1.0)))))


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
    levels = swd_levels(smallest)
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

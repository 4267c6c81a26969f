"""Perception–distortion curves of Deep OT on real images (issue 4 "proof", issue 6 targets).

Tasks: colour denoising σ = 50 (FFDNet) and ×4 super-resolution (CARN-M on an
antialiased bicubic LR), in one or more latent spaces (``--vae``: the TAESD family of
the development data, default TAEF2, 32 channels; ``--vae all`` runs the five), p = 3.
A transport is fitted on ``--n-fit`` images and applied to ``--n-test`` other,
held-apart images; every ratio is also given on the two disjoint halves of those
(6-photo sets swing by ±0.3× on these distances, so a result must hold on both). Protocols:

- ``calibration``: natural = the clean versions of the fit images (calibration pairs);
- ``unpaired``: natural = ``--n-fit`` photos of another collection (Kodak24; fit/test from CBSD68);
- ``zeroshot``: natural = that other collection, no restored statistics (source from each image).

Recipes: the paper's plain blend, and the full recipe (harmonise colours → residual
decode → detail band σ). Metrics against the clean held-apart images: PSNR, SSIM,
NIQE, SWD on Laplacian-pyramid patches (per level, total, low-pass), patch Fréchet.
The SWD in the tables and targets normalises both sets jointly (so the detail energy
an MMSE output lacks counts); ProGAN's per-set normalisation (texture shape only)
is reported beside it.
Writes ``pd_curve.md``, ``pd_curve.json`` and ``pd_curve.png`` into ``--out``.

Several spaces (or ``--collections``) run the issue-21 test: the unpaired full recipe (the library's default
``P.full_recipe(paired=False)``), fitted once per space and task on the ``--n-fit`` restored CBSD68 crops and
Kodak24 photos, measured on each test collection (``--per-collection`` centre crops each) and on all of them
pooled: ``cbsd68`` (the held-apart crops after the fit set), ``set14`` (less the grey ``bridge`` and the slide
``ppt3``), ``kodak13-24`` (apart from the Kodak 1–12 natural set) and ``sun_hays`` (12 of the 80 spread evenly,
halved first, since a 1024-px scene's centre 256² is a tiny detail). LIVE1 is deliberately not used: about 20 of
its 29 photos are Kodak photos at another size, overlapping the natural set. Tasks: also ``denoise50_unclipped``
(the same σ = 50 noise, not clipped; FFDNet as is). Perceptions 0, 0.5, 0.75, 1 only, no σ probes or paper
recipe, no SSIM or NIQE unless asked (``--ssim``, ``--niqe``), so the run stays affordable. Writes
``pd_collections.md`` (a table per space, one column per collection and pooled; then every issue-21 target cell,
met or not, and their count), ``.json`` and ``.png``. ``--halves`` gives the issue-10 run instead:
``pd_spaces.md`` (one table per space, the issue-10 targets met or not, on all held-apart crops and on each
half) and ``pd_spaces.png``.

    python benchmarks/pd_curve.py --out bench_out
    python benchmarks/pd_curve.py --vae all --collections --out bench_out
    python benchmarks/pd_curve.py --vae all --halves --protocols unpaired --no-niqe --ssim none --out bench_out

``--natural-marginal`` runs the full recipe with PD Blend's natural marginal (docs/natural_marginal.md).
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepot_core.constants import NATURAL_MARGINAL_SHAPE  # noqa: E402
from deepot_core.tooling import pipeline as P  # noqa: E402
from deepot_core.tooling import experiments as E  # noqa: E402
from deepot_core.tooling import spaces as S  # noqa: E402
from deepot_core.tooling.clipped_noise import undo_noise_clipping  # noqa: E402
from deepot_core.tooling.imageio import list_images, load_image  # noqa: E402
from deepot_core.tooling.metrics import patch_frechet_distance  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DEEPOT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
PROTOCOLS = ("calibration", "unpaired", "zeroshot")
#: The standard tasks and σ = 50 noise left unclipped (as FFDNet was trained: no clipping bias to undo).
TASKS = E.TASKS + ("denoise50_unclipped",)
DENOISE_TASKS = ("denoise50", "denoise50_unclipped")
RESTORER_NAMES = {"denoise50": "FFDNet σ=50", "sr4": "CARN-M ×4",
                  "denoise50_unclipped": "FFDNet σ=50, unclipped noise"}
#: How the denoiser's output is labelled when the clipping bias is undone (the default) or kept.
CLIPPING_LABELS = {True: "clipping bias undone", False: "clipping bias kept"}
#: Detail-band σ values tried (full recipe, extra rows) to see whether 2 px suits each task.
SIGMA_PROBE = (1.0, 2.0, 4.0)
#: Issue-6 targets: (task, protocol, perception) → limits relative to the MMSE output.
TARGETS = [
    {"task": "sr4", "protocol": "unpaired", "perception": 1.0,
     "psnr_loss": 2.5, "swd": 0.4, "patch_fd": 0.25, "swd_lowpass": 1.5, "niqe_lower": True},
    {"task": "denoise50", "protocol": "unpaired", "perception": 0.5,
     "psnr_loss": 1.5, "swd": 0.65, "patch_fd": 0.5},
    {"task": "sr4", "protocol": "calibration", "perception": 1.0,
     "psnr_loss": 3.2, "swd": 0.5, "patch_fd": 0.3},
]


#: The TAESD-family spaces of the development data: name → (``--vae`` spec relative to the data folder, latent).
SPACES = {
    "taesd": ("vae_approx:taesd", "SD1.5, 4 ch"),
    "taesdxl": ("vae_approx:taesdxl", "SDXL, 4 ch"),
    "taesd3": ("vae_approx:taesd3", "SD3, 16 ch"),
    "taef1": ("vae_approx:taef1", "FLUX.1, 16 ch"),
    "taef2": ("taesd", "FLUX.2, 32 ch"),
}
DEFAULT_SPACE = "taef2"
#: Issue-10 targets, unpaired full recipe at perception 1, in every space, on all held-apart crops and each half.
SPACE_TARGETS = {
    "sr4": {"psnr_loss": 3.0, "swd": 0.45, "patch_fd": 0.35, "swd_lowpass": 1.5},
    "denoise50": {"psnr_loss": 3.0, "swd": 0.5, "patch_fd": 0.5},
    "denoise50_unclipped": {"psnr_loss": 3.0, "swd": 0.5, "patch_fd": 0.5},
}
#: Perceptions at which SWD and patch-FD must not rise (each at most the one before).
MONOTONE_PERCEPTIONS = (0.5, 0.75, 1.0)
#: The sets every ratio is reported on: all held-apart crops, then the two disjoint halves.
SET_NAMES = ("all", "A", "B")

#: The folders (under ``images/``) of the fit set (restored, its first ``n_fit`` sorted photos) and of the
#: unpaired natural set (its first ``n_fit``); no test collection may take an image from either.
FIT_FOLDER, NATURAL_FOLDER = "cbsd68", "kodak24"


@dataclass(frozen=True)
class Collection:
    """A test collection of the issue-21 run: its folder under ``images/``, which sorted images it takes, and
    whether each photo is halved (antialiased bicubic) before the centre crop."""
    folder: str
    #: "after_fit": from index n_fit on; "from": from ``start``; "spread": evenly over all; "except": all but
    #: the names in ``exclude``
    rule: str
    start: int = 0
    exclude: Tuple[str, ...] = ()
    half_size: bool = False


#: Issue-21 test collections, in report order. LIVE1 is deliberately absent: about 20 of its 29 photos are Kodak
#: photos at another size, so it overlaps the Kodak natural set.
COLLECTIONS = {
    "cbsd68": Collection(FIT_FOLDER, "after_fit"),                       # the held-apart crops, after the fit set
    "set14": Collection("set14", "except", exclude=("bridge", "ppt3")),  # bridge is grey, ppt3 a slide, not a photo
    "kodak13-24": Collection(NATURAL_FOLDER, "from", start=12),          # after the Kodak 1–12 natural set
    "sun_hays": Collection("sun_hays80", "spread", half_size=True),      # 1024-px scenes: halved, or a crop is a detail
}
#: The pooled set: every collection's crops together, measured as one set.
POOLED = "pooled"
#: Degradation seeds: the fit set 1, each collection its own (2 + its place in ``COLLECTIONS``; cbsd68 gets 2,
#: the held-apart set's seed of the other modes), so a collection's noise does not depend on which others run.
FIT_SEED, TEST_SEED = 1, 2
#: Perceptions measured per collection: the MMSE output and the three of the monotone check.
COLLECTION_PERCEPTIONS = (0.0,) + MONOTONE_PERCEPTIONS
#: Where a target applies: every collection and the pooled set.
EVERY = "every"


class Target(NamedTuple):
    """One issue-21 limit at perception 1 (unpaired full recipe): ``metric`` ≤ ``limit`` (ratios to the MMSE
    output's on the same set; ``psnr_loss`` in dB; "monotone" has no limit) for ``tasks``, on ``where`` (``EVERY``,
    ``POOLED`` or a collection's name), in ``space`` (None: every space)."""
    metric: str
    limit: Optional[float]
    tasks: Tuple[str, ...]
    where: str
    space: Optional[str] = None


#: Issue-21 targets (unpaired full recipe at perception 1), one row per limit.
COLLECTION_TARGETS = (
    Target("psnr_loss", 3.0, TASKS, EVERY),               # ΔPSNR ≥ −3.0 dB on each collection and pooled
    Target("monotone", None, TASKS, EVERY),               # SWD and patch-FD never rise from 0.5 to 0.75 to 1
    Target("swd", 0.45, ("sr4",), POOLED),                # ×4 SR, pooled: SWD ≤ 0.45×
    Target("patch_fd", 0.35, ("sr4",), POOLED),           # ×4 SR, pooled: patch-FD ≤ 0.35×
    Target("swd_lowpass", 1.5, ("sr4",), POOLED),         # ×4 SR, pooled: the low-pass band stays the restorer's
    Target("swd", 0.6, DENOISE_TASKS, POOLED),            # denoising (clipped and unclipped), pooled: SWD ≤ 0.6×
    Target("patch_fd", 0.5, DENOISE_TASKS, POOLED),       # denoising, pooled: patch-FD ≤ 0.5×
    Target("swd", 0.25, ("sr4",), "cbsd68", "taef2"),      # TAEF2 ×4 SR on cbsd68: SWD no worse than today's
    Target("patch_fd", 0.10, ("sr4",), "cbsd68", "taef2"),  # TAEF2 ×4 SR on cbsd68: patch-FD no worse than today's
)


def space_spec(name: str, data: Path) -> str:
    """``--vae`` value → a ``resolve_space`` spec: a name of ``SPACES`` or any spec of the command line."""
    if name in SPACES:
        return str(data / SPACES[name][0])
    return name


class Restorer:
    """The MMSE restorer of one task, loaded from the development data.

    The denoising task's noise is clipped to 0..1 (as in a saved photo) and FFDNet was trained on unclipped
    noise, so by default its output has the clip's bias undone (``undo_noise_clipping``): that is the MMSE-like
    estimate the method starts from. ``undo_clipping=False`` gives FFDNet as is (``--keep-clipping-bias``).
    On ``denoise50_unclipped`` there is no bias to undo: FFDNet as is.
    """

    def __init__(self, task: str, data: Path, undo_clipping: bool = True):
        from benchmarks.restorers import load_carn_m, load_ffdnet
        self.task = task
        self.undo_clipping = undo_clipping and task == "denoise50"
        if task in DENOISE_TASKS:
            self.model = load_ffdnet(data / "restorers" / "ffdnet_color_kair" / "ffdnet_color.pth")
        else:
            self.model = load_carn_m(data / "restorers" / "carn_m" / "carn_m.pth")

    def __call__(self, degraded: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        from benchmarks.restorers import denoise_ffdnet, super_resolve_carn
        if self.task in DENOISE_TASKS:
            out = [denoise_ffdnet(self.model, d, E.TASK_NOISE_SIGMA) for d in degraded]
            if self.undo_clipping:
                out = [undo_noise_clipping(o, E.TASK_NOISE_SIGMA) for o in out]
            return out
        return [super_resolve_carn(self.model, d, E.TASK_SR_SCALE) for d in degraded]


def degrade(images: Sequence[torch.Tensor], task: str, seed: int = 0) -> List[torch.Tensor]:
    """``E.degrade``, and for ``denoise50_unclipped`` the same σ = 50 noise (one generator per image, seeded
    ``seed * 100003 + k`` as there) added without the clip to 0..1."""
    if task != "denoise50_unclipped":
        return E.degrade(images, task, seed=seed)
    out = []
    for k, image in enumerate(images):
        generator = torch.Generator(device="cpu").manual_seed(seed * 100003 + k)
        noise = torch.stack([torch.randn(image.shape[1:], generator=generator, dtype=torch.float32)
                             for _ in range(image.shape[0])])
        out.append(image.float() + noise * (E.TASK_NOISE_SIGMA / 255.0))
    return out


def load_set(folder: Path, start: int, count: int, crop: int) -> List[torch.Tensor]:
    """``count`` centre crops (crop×crop, multiples of 8) of the sorted images from ``start``."""
    paths = list_images(folder)[start:start + count]
    if len(paths) < count:
        raise SystemExit(f"{folder} holds too few images for {start}+{count}; lower --n-fit/--n-test.")
    return [E.centre_crop_square(load_image(p), crop) for p in paths]


def development_sets(data: Path, n_fit: int, n_test: int, crop: int):
    """(fit, held-apart, other collection): the first ``n_fit`` and the next ``n_test`` sorted CBSD68 crops, and
    the first ``n_fit`` Kodak24 crops, the sets every benchmark here measures on."""
    return (load_set(data / "images" / FIT_FOLDER, 0, n_fit, crop),
            load_set(data / "images" / FIT_FOLDER, n_fit, n_test, crop),
            load_set(data / "images" / NATURAL_FOLDER, 0, n_fit, crop))


def restore_sets(restore: "Restorer", fit_clean, test_clean):
    """The restorer's outputs on the degraded fit and held-apart sets (seeds 1 and 2), as ordinary tensors."""
    with torch.inference_mode():
        fit_restored = restore(degrade(fit_clean, restore.task, seed=1))
        test_restored = restore(degrade(test_clean, restore.task, seed=2))
    return [r.clone() for r in fit_restored], [r.clone() for r in test_restored]


def _ratio(value, base):
    return value / base if base else float("nan")


def _ratios(metrics: Dict, mmse: Dict) -> Dict:
    return {"psnr_loss": mmse["psnr"] - metrics["psnr"],
            "swd_ratio": _ratio(metrics["swd_joint"], mmse["swd_joint"]),
            "lowpass_ratio": _ratio(metrics["swd_joint_lowpass"], mmse["swd_joint_lowpass"]),
            "swd_progan_ratio": _ratio(metrics["swd"], mmse["swd"]),
            "patch_fd_ratio": _ratio(metrics["patch_fd"], mmse["patch_fd"])}


def _row(recipe: str, perception: float, metrics: Dict, mmse: Dict, extra: str = "") -> Dict:
    """One table row: the metrics on all held-apart crops, their ratios to the MMSE output's, and
    (when measured) the same ratios on each half under ``"halves"``."""
    metrics = dict(metrics)
    halves = metrics.pop("halves", None)
    row = {"recipe": recipe + extra, "perception": perception, **metrics, **_ratios(metrics, mmse)}
    if halves is not None:
        row["halves"] = [_ratios(h, m) for h, m in zip(halves, mmse["halves"])]
    return row


def halves_of(items: Sequence) -> List[Sequence]:
    """The two disjoint halves (first and second) of the held-apart crops."""
    half = len(items) // 2
    return [items[:half], items[half:]]


def run_protocol(space, space_name, protocol, fit_restored, fit_clean, other, test_restored, test_clean,
                 perceptions, recipes, niqe_params, sigma_probe=(), log=print, ssim=True,
                 halves=False) -> List[Dict]:
    """Fit under one protocol for each recipe, transport the test images, and measure every perception
    (with ``halves``, also on each half of the test images)."""
    natural = fit_clean if protocol == "calibration" else other

    def measure(images, perception=0.0):
        with_ssim = ssim is True or (ssim == "ends" and perception in (0.0, 1.0))
        metrics = E.evaluate(images, test_clean, niqe_params, with_ssim=with_ssim)
        if halves:
            metrics["halves"] = [E.evaluate(o, c, None, with_ssim=False)
                                 for o, c in zip(halves_of(images), halves_of(test_clean))]
        return metrics

    mmse = measure(test_restored)
    rows = []
    for recipe in recipes:
        if protocol == "zeroshot" and recipe.name == "paper":
            continue
        if recipe.name == "full":  # harmonise only natural photos of another collection
            recipe = P.full_recipe(paired=protocol == "calibration", detail_sigma=recipe.detail_sigma,
                                   natural_marginal=recipe.natural_marginal)
        t0 = time.time()
        transport = P.fit_transport(space, natural, fit_restored, harmonise=recipe.harmonise,
                                    zero_shot=protocol == "zeroshot", space_name=space_name)
        moved = [P.transport_image(space, transport, r) for r in test_restored]
        for p in perceptions:
            outputs = [P.blend(r, m, c, p, recipe) for r, (m, c) in zip(test_restored, moved)]
            metrics = mmse if p == 0 else measure(outputs, p)
            rows.append(_row(recipe.name, p, metrics, mmse))
        if recipe.residual:
            for sigma in sigma_probe:
                if sigma == recipe.detail_sigma:
                    continue
                probe = P.Recipe(recipe.name, recipe.harmonise, True, sigma, natural_marginal=recipe.natural_marginal)
                outputs = [P.blend(r, m, c, 1.0, probe) for r, (m, c) in zip(test_restored, moved)]
                rows.append(_row(recipe.name, 1.0, measure(outputs, 1.0), mmse,
                                 extra=f" σ={sigma:g}"))
        log(f"  {protocol:11s} {recipe.name:5s} done in {time.time() - t0:.1f}s")
    return rows


def run_benchmark(data: Path = DEFAULT_DATA, tasks=E.TASKS, protocols=PROTOCOLS, n_fit: int = 12,
                  n_test: int = 12, crop: int = 256, perceptions=PERCEPTIONS, recipes=None,
                  niqe: bool = True, sigma_probe=SIGMA_PROBE, log=print, ssim: bool = True,
                  vae: str = DEFAULT_SPACE, halves: bool = False, restored_cache: Optional[Dict] = None,
                  undo_clipping: bool = True) -> Dict:
    """Every (task, protocol, recipe, perception) row in one latent space; see the module docstring.

    ``restored_cache`` (task → (fit_restored, test_restored)) lets several spaces share one restorer run.
    """
    recipes = recipes or [P.PAPER_RECIPE, P.FULL_RECIPE]
    space, space_name = S.resolve_space(space_spec(vae, data))
    niqe_params = data / "metrics" / "niqe_pris_params.npz" if niqe else None
    fit_clean, test_clean, other = development_sets(data, n_fit, n_test, crop)
    results = {"config": {"space": space_name, "space_label": vae, "latent_channels": space.latent_channels,
                          "patch_size": P.DEFAULT_PATCH_SIZE, "n_fit": n_fit,
                          "n_test": n_test, "crop": crop, "fit_and_test": "CBSD68 (sorted; disjoint)",
                          "unpaired_natural": "Kodak24", "perceptions": list(perceptions),
                          "recipes": [r.__dict__ for r in recipes],
                          "denoiser": f"{RESTORER_NAMES['denoise50']}, {CLIPPING_LABELS[undo_clipping]}"},
               "tasks": {}}
    for task in tasks:
        log(f"{vae} {task}: {RESTORER_NAMES[task]}")
        if restored_cache is not None and task in restored_cache:
            fit_restored, test_restored = restored_cache[task]
        else:
            fit_restored, test_restored = restore_sets(Restorer(task, data, undo_clipping), fit_clean, test_clean)
            if restored_cache is not None:
                restored_cache[task] = (fit_restored, test_restored)
        results["tasks"][task] = {}
        for protocol in protocols:
            rows = run_protocol(space, space_name, protocol, fit_restored, fit_clean, other, test_restored,
                                test_clean, perceptions, recipes, niqe_params, sigma_probe, log, ssim, halves)
            results["tasks"][task][protocol] = rows
    results["targets"] = check_targets(results)
    return results


# ---------------------------------------------------------------------------- reporting
def find_row(results: Dict, task: str, protocol: str, recipe: str, perception: float) -> Optional[Dict]:
    for row in results["tasks"].get(task, {}).get(protocol, []):
        if row["recipe"] == recipe and abs(row["perception"] - perception) < 1e-9:
            return row
    return None


def check_targets(results: Dict) -> List[Dict]:
    """Each issue-6 target (full recipe) with the measured values and pass/fail per limit."""
    out = []
    for target in TARGETS:
        row = find_row(results, target["task"], target["protocol"], "full", target["perception"])
        if row is None:
            continue
        checks = {"psnr_loss": row["psnr_loss"] <= target["psnr_loss"],
                  "swd": row["swd_ratio"] <= target["swd"],
                  "patch_fd": row["patch_fd_ratio"] <= target["patch_fd"]}
        if "swd_lowpass" in target:
            checks["swd_lowpass"] = row["lowpass_ratio"] <= target["swd_lowpass"]
        if target.get("niqe_lower") and "niqe" in row:
            mmse = find_row(results, target["task"], target["protocol"], "full", 0.0)
            checks["niqe_lower"] = row["niqe"] < mmse["niqe"]
        out.append({**target, "measured": {"psnr_loss": row["psnr_loss"], "swd": row["swd_ratio"],
                                           "patch_fd": row["patch_fd_ratio"], "swd_lowpass": row["lowpass_ratio"],
                                           "niqe": row.get("niqe")},
                    "checks": checks, "met": all(checks.values())})
    return out


def markdown(results: Dict) -> str:
    cfg = results["config"]
    lines = [f"Space {cfg['space']}, p = {cfg['patch_size']}, fit on {cfg['n_fit']} and test on "
             f"{cfg['n_test']} held-apart {cfg['crop']}×{cfg['crop']} centre crops ({cfg['fit_and_test']}; "
             f"unpaired/zero-shot natural photos: {cfg['unpaired_natural']}). Ratios are against the MMSE "
             "output (perception 0); lower SWD / patch-FD / NIQE is better. Denoiser: "
             f"{cfg.get('denoiser', RESTORER_NAMES['denoise50'])}.", ""]
    for task, protocols in results["tasks"].items():
        for protocol, rows in protocols.items():
            lines += [f"**{RESTORER_NAMES[task]} — {protocol}**", "",
                      "| recipe | perception | PSNR | ΔPSNR | SSIM | NIQE | SWD ×1e3 (ratio) | SWD levels ×1e3 "
                      "| low-pass ×1e3 (ratio) | ProGAN SWD ratio | patch-FD (ratio) |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                levels = " / ".join(f"{v * 1e3:.0f}" for v in r["swd_joint_levels"])
                niqe = f"{r['niqe']:.2f}" if "niqe" in r else "–"
                ssim = f"{r['ssim']:.3f}" if "ssim" in r else "–"
                lines.append(
                    f"| {r['recipe']} | {r['perception']:g} | {r['psnr']:.2f} | {-r['psnr_loss']:+.2f} | "
                    f"{ssim} | {niqe} | {r['swd_joint'] * 1e3:.1f} (×{r['swd_ratio']:.2f}) | {levels} | "
                    f"{r['swd_joint_lowpass'] * 1e3:.1f} (×{r['lowpass_ratio']:.2f}) | ×{r['swd_progan_ratio']:.2f} | "
                    f"{r['patch_fd']:.4f} (×{r['patch_fd_ratio']:.2f}) |")
            lines.append("")
    if results.get("targets"):
        lines += ["**Issue-6 targets (full recipe)**", "",
                  "| task | protocol | perception | PSNR loss (≤) | SWD ratio (≤) | patch-FD ratio (≤) | "
                  "low-pass ratio (≤) | NIQE lower | met |", "|---|---|---|---|---|---|---|---|---|"]
        for t in results["targets"]:
            m, c = t["measured"], t["checks"]

            def cell(key, limit):
                return f"{m[key]:.2f} ({limit}) {'✓' if c[key] else '✗'}"
            low = cell("swd_lowpass", t["swd_lowpass"]) if "swd_lowpass" in c else "–"
            niqe = ("✓" if c["niqe_lower"] else "✗") if "niqe_lower" in c else "–"
            lines.append(f"| {t['task']} | {t['protocol']} | {t['perception']:g} | "
                         f"{cell('psnr_loss', t['psnr_loss'])} | {cell('swd', t['swd'])} | "
                         f"{cell('patch_fd', t['patch_fd'])} | {low} | {niqe} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ several latent spaces (issue 10)
def run_spaces(data: Path, spaces: Sequence[str], log=print, **kwargs) -> Dict:
    """``run_benchmark`` in each space (sharing the restorers' outputs), with halves, and the issue-10 checks."""
    cache: Dict = {}
    out = {"spaces": {}}
    for name in spaces:
        start = time.time()
        out["spaces"][name] = run_benchmark(data, vae=name, halves=True, restored_cache=cache, log=log, **kwargs)
        out["spaces"][name]["runtime_s"] = time.time() - start
    out["space_targets"] = check_space_targets(out)
    return out


def _set_ratios(row: Dict, set_name: str) -> Dict:
    if set_name == "all":
        return row
    return row["halves"][SET_NAMES.index(set_name) - 1]


def check_space_targets(spaces: Dict, protocol: str = "unpaired", recipe: str = "full") -> List[Dict]:
    """Per (space, task, set): the issue-10 limits at perception 1 and the monotone fall of SWD and patch-FD."""
    out = []
    for name, results in spaces["spaces"].items():
        for task, limits in SPACE_TARGETS.items():
            rows = {p: find_row(results, task, protocol, recipe, p) for p in MONOTONE_PERCEPTIONS}
            if any(r is None for r in rows.values()):
                continue
            for set_name in SET_NAMES:
                if set_name != "all" and "halves" not in rows[1.0]:
                    continue
                r = {p: _set_ratios(row, set_name) for p, row in rows.items()}
                top = r[1.0]
                measured = {"psnr_loss": top["psnr_loss"], "swd": top["swd_ratio"],
                            "patch_fd": top["patch_fd_ratio"], "swd_lowpass": top["lowpass_ratio"]}
                checks = {key: measured[key] <= limit for key, limit in limits.items()}
                checks["monotone"] = all(r[b][key] <= r[a][key] + 1e-12
                                         for a, b in zip(MONOTONE_PERCEPTIONS, MONOTONE_PERCEPTIONS[1:])
                                         for key in ("swd_ratio", "patch_fd_ratio"))
                out.append({"space": name, "task": task, "set": set_name, "limits": limits,
                            "measured": measured, "checks": checks, "met": all(checks.values())})
    return out


def _cell(ratios: Dict) -> str:
    return (f"{-ratios['psnr_loss']:+.2f} / {ratios['swd_ratio']:.2f}× / {ratios['patch_fd_ratio']:.2f}× "
            f"(low {ratios['lowpass_ratio']:.2f}×)")


def markdown_spaces(spaces: Dict, protocol: str = "unpaired", recipe: str = "full") -> str:
    """One table per space (ΔPSNR / SWD / patch-FD / low-pass ratios at each perception, on all crops and on
    each half), then every issue-10 target, met or not."""
    first = next(iter(spaces["spaces"].values()), {"config": {}})["config"]
    lines = [f"Denoiser: {first.get('denoiser', RESTORER_NAMES['denoise50'])}.", ""]
    for name, results in spaces["spaces"].items():
        cfg = results["config"]
        label = SPACES.get(name, (None, f"{cfg['latent_channels']} ch"))[1]
        lines += [f"**{name} ({label}) — {protocol}, {recipe} recipe** "
                  f"({cfg['n_test']} held-apart crops; A, B = its halves; {results.get('runtime_s', 0):.0f} s)", "",
                  "| task | perception | all | A | B |", "|---|---|---|---|---|"]
        for task in results["tasks"]:
            for row in results["tasks"][task].get(protocol, []):
                if row["recipe"] != recipe and not row["recipe"].startswith(recipe + " σ="):
                    continue
                if row["perception"] == 0:
                    continue
                cells = [_cell(row)] + [_cell(h) for h in row.get("halves", [])]
                cells += ["–"] * (3 - len(cells))
                extra = row["recipe"][len(recipe):].strip()
                lines.append(f"| {task} | {row['perception']:g}{' ' + extra if extra else ''} | "
                             + " | ".join(cells) + " |")
        lines.append("")
    targets = spaces.get("space_targets") or check_space_targets(spaces, protocol, recipe)
    if targets:
        lines += ["**Issue-10 targets at perception 1 (unpaired full recipe)**: ΔPSNR ≥ −3.0 dB; SR: SWD ≤ 0.45×, "
                  "patch-FD ≤ 0.35×, low-pass ≤ 1.5×; denoising: SWD ≤ 0.5×, patch-FD ≤ 0.5×; SWD and patch-FD "
                  "no higher at 1 than at 0.75, nor at 0.75 than at 0.5.", "",
                  "| space | task | set | PSNR loss | SWD | patch-FD | low-pass | monotone | met |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in targets:
            m, c = t["measured"], t["checks"]

            def mark(key):
                return "" if key not in c else (" ✓" if c[key] else " ✗")
            lines.append(f"| {t['space']} | {t['task']} | {t['set']} | {m['psnr_loss']:.2f}{mark('psnr_loss')} | "
                         f"{m['swd']:.2f}{mark('swd')} | {m['patch_fd']:.2f}{mark('patch_fd')} | "
                         f"{m['swd_lowpass']:.2f}{mark('swd_lowpass')} | {'✓' if c['monotone'] else '✗'} | "
                         f"{'yes' if t['met'] else 'no'} |")
        met = sum(t["met"] for t in targets)
        lines += ["", f"{met} of {len(targets)} (space, task, set) cells meet every target."]
    return "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a hint) when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pd_row(axes, curves: Dict[str, List[Dict]], limits: Dict[str, Optional[float]], title: str) -> None:
    """One task's two panels: ΔPSNR against SWD and against patch-FD ratios, one line per curve (perceptions 0.5
    and 1 labelled), with the task's limits dotted."""
    for name, pts in curves.items():
        for j, key in enumerate(("swd_ratio", "patch_fd_ratio")):
            axes[j].plot([r[key] for r in pts], [-r["psnr_loss"] for r in pts], marker="o", label=name)
            for r in pts:
                if r["perception"] in (0.5, 1.0):
                    axes[j].annotate(f"{r['perception']:g}", (r[key], -r["psnr_loss"]), fontsize=7)
    for j, (label, key) in enumerate((("SWD", "swd"), ("patch-FD", "patch_fd"))):
        ax = axes[j]
        if limits.get(key) is not None:
            ax.axvline(limits[key], color="grey", ls=":", lw=1)
        ax.axhline(-limits["psnr_loss"], color="grey", ls=":", lw=1)
        ax.set_title(f"{title}: ΔPSNR vs {label} ratio")
        ax.set_xlabel(f"{label} to clean / MMSE output's (lower = more natural)")
        ax.set_ylabel("ΔPSNR vs MMSE (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def plot_spaces(spaces: Dict, path: Path, protocol: str = "unpaired", recipe: str = "full") -> Optional[Path]:
    """PSNR against SWD and against patch-FD (ratios to the MMSE output), one line per space, per task."""
    plt = _pyplot()
    if plt is None:
        return None
    tasks = sorted({t for r in spaces["spaces"].values() for t in r["tasks"]})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        curves = {name: [r for r in results["tasks"].get(task, {}).get(protocol, []) if r["recipe"] == recipe]
                  for name, results in spaces["spaces"].items()}
        _pd_row(axes[i], curves, SPACE_TARGETS[task], f"{RESTORER_NAMES[task]}, {protocol}")
    return _save(fig, path)


def plot(results: Dict, path: Path) -> Optional[Path]:
    """PSNR against total SWD and against patch-FD, one line per (task, protocol, recipe)."""
    plt = _pyplot()
    if plt is None:
        return None
    tasks = list(results["tasks"])
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for protocol, rows in results["tasks"][task].items():
            for recipe in sorted({r["recipe"] for r in rows if "σ=" not in r["recipe"]}):
                pts = [r for r in rows if r["recipe"] == recipe]
                for j, key in enumerate(("swd_joint", "patch_fd")):
                    axes[i, j].plot([r[key] for r in pts], [r["psnr"] for r in pts], marker="o",
                                    label=f"{protocol} / {recipe}")
        for j, name in enumerate(("SWD (Laplacian-pyramid patches)", "patch Fréchet distance")):
            ax = axes[i, j]
            ax.set_title(f"{RESTORER_NAMES[task]}: PSNR vs {name}")
            ax.set_xlabel(f"{name} to clean (lower = more natural)")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------ several test collections (issue 21)
def half_size(image: torch.Tensor) -> torch.Tensor:
    """An IMAGE [1,H,W,C] at half size (antialiased bicubic), clamped to 0..1."""
    x = torch.nn.functional.interpolate(image.permute(0, 3, 1, 2), scale_factor=0.5, mode="bicubic",
                                        antialias=True)
    return x.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def select_paths(collection: Collection, paths: Sequence[Path], n_fit: int, count: int) -> List[Path]:
    """The ``count`` sorted images ``collection`` takes from ``paths`` (its folder's sorted images)."""
    if collection.rule == "after_fit":
        return list(paths[n_fit:n_fit + count])
    if collection.rule == "from":
        return list(paths[collection.start:collection.start + count])
    if collection.rule == "spread":
        return [paths[round(i * len(paths) / count)] for i in range(count)] if count <= len(paths) else []
    if collection.rule == "except":
        return [p for p in paths if p.stem not in collection.exclude][:count]
    raise ValueError(f"unknown selection rule {collection.rule!r}")


def collection_paths(data: Path, n_fit: int, per_collection: int, names: Sequence[str]) -> Dict[str, List[Path]]:
    """Each named collection's image files (in ``COLLECTIONS``' order); refuses a collection with too few images or
    one that takes an image of the fit or natural set (the first ``n_fit`` of ``FIT_FOLDER``, ``NATURAL_FOLDER``)."""
    unknown = set(names) - set(COLLECTIONS)
    if unknown:
        raise ValueError(f"unknown collection(s) {', '.join(sorted(unknown))}; choose from {', '.join(COLLECTIONS)}")
    out = {}
    for name in (n for n in COLLECTIONS if n in names):
        collection = COLLECTIONS[name]
        paths = list_images(data / "images" / collection.folder)
        chosen = select_paths(collection, paths, n_fit, per_collection)
        if len(set(chosen)) < per_collection:
            raise SystemExit(f"collection {name} ({collection.folder}) holds too few images for {per_collection}; "
                             "lower --per-collection.")
        if collection.folder in (FIT_FOLDER, NATURAL_FOLDER) and set(chosen) & set(paths[:n_fit]):
            raise SystemExit(f"collection {name} would share images with the first {n_fit} of {collection.folder} "
                             "(the fit or natural set); lower --n-fit or leave it out of --collections.")
        out[name] = chosen
    return out


def load_collection_image(path: Path, collection: Collection, crop: int) -> torch.Tensor:
    """One test crop: RGB, halved first where the collection says so, then centre-cropped."""
    image = load_image(path)[..., :3]
    return E.centre_crop_square(half_size(image) if collection.half_size else image, crop)


def test_collections(data: Path, n_fit: int, per_collection: int, crop: int,
                     names: Sequence[str] = tuple(COLLECTIONS)) -> Dict[str, List[torch.Tensor]]:
    """Name → ``per_collection`` centre crops (crop², or the largest multiple of 8 a photo holds: Set14's comic
    is 250 px wide, so 248²) of each named collection, in ``COLLECTIONS``' order; see ``collection_paths``."""
    return {name: [load_collection_image(p, COLLECTIONS[name], crop) for p in paths]
            for name, paths in collection_paths(data, n_fit, per_collection, names).items()}


def collection_seed(name: str) -> int:
    """The degradation seed of a collection's crops: its own, whichever others run."""
    return TEST_SEED + list(COLLECTIONS).index(name)


def with_pooled(sets: Dict[str, List]) -> Dict[str, List]:
    """``sets`` and, last, ``POOLED``: every set's items together, in order."""
    return {**sets, POOLED: [item for items in sets.values() for item in items]}


def restore_collections(restore: "Restorer", fit_clean, collections: Dict[str, List]):
    """The restorer's outputs on the degraded fit set and on each degraded collection, as ordinary tensors."""
    with torch.inference_mode():
        fit = [r.clone() for r in restore(degrade(fit_clean, restore.task, seed=FIT_SEED))]
        per = {name: [r.clone() for r in restore(degrade(clean, restore.task, seed=collection_seed(name)))]
               for name, clean in collections.items()}
    return fit, per


def _measure(outputs, clean, niqe_params, ssim, perception: float) -> Dict:
    with_ssim = ssim is True or (ssim == "ends" and perception in (0.0, 1.0))
    return E.evaluate(outputs, clean, niqe_params, with_ssim=with_ssim)


def per_image(outputs: Dict[float, List[torch.Tensor]], restored: List[torch.Tensor], clean: List[torch.Tensor],
              names: Sequence[str], set_patch_fd: Optional[Dict[float, float]] = None) -> Dict:
    """Per image of one collection: ΔPSNR at perception 1 against the MMSE output, and, where the set's patch-FD
    rises from 0.75 to 1, the images without which it does not (leave one out): which photos a broken curve comes
    from. ``set_patch_fd``: the whole set's patch-FD at 0.75 and 1 where already measured."""
    def mse(a, b):
        return float((a[..., :3].double() - b[..., :3].double()).pow(2).mean())

    def fd(p, keep):
        return patch_frechet_distance([outputs[p][i][..., :3].float() for i in keep],
                                      [clean[i][..., :3].float() for i in keep])

    loss = [10 * math.log10(max(mse(o, c), 1e-20) / max(mse(r, c), 1e-20))
            for o, r, c in zip(outputs[1.0], restored, clean)]
    everyone = range(len(clean))
    whole = set_patch_fd or {p: fd(p, everyone) for p in (0.75, 1.0)}
    drivers = []
    if len(clean) > 2 and whole[1.0] > whole[0.75]:
        for i in everyone:
            keep = [j for j in everyone if j != i]
            if fd(1.0, keep) <= fd(0.75, keep):
                drivers.append(names[i])
    return {"names": list(names), "psnr_loss_at_1": loss, "patch_fd_rise_without": drivers}


def run_collections(data: Path, spaces: Sequence[str], tasks=TASKS, names: Sequence[str] = tuple(COLLECTIONS),
                    n_fit: int = 12, per_collection: int = 12, crop: int = 256, niqe: bool = False, ssim=False,
                    undo_clipping: bool = True, natural_marginal: Optional[float] = None, log=print) -> Dict:
    """The unpaired full recipe in each space, fitted once per task (``n_fit`` restored CBSD68 crops, ``n_fit``
    Kodak24 photos), measured on each test collection and on all of them pooled, with the issue-21 checks.

    Each collection is restored once per task and shared by the spaces; the MMSE output's metrics, once per task.
    The recipe is the library's default (``P.full_recipe(paired=False)``), blended through ``P.sweep``.
    """
    start = time.time()
    recipe = P.full_recipe(paired=False)
    if natural_marginal is not None:
        recipe = replace(recipe, natural_marginal=natural_marginal)
    niqe_params = data / "metrics" / "niqe_pris_params.npz" if niqe else None
    fit_clean = load_set(data / "images" / FIT_FOLDER, 0, n_fit, crop)
    natural = load_set(data / "images" / NATURAL_FOLDER, 0, n_fit, crop)
    paths = collection_paths(data, n_fit, per_collection, names)
    clean = with_pooled(test_collections(data, n_fit, per_collection, crop, list(paths)))
    perceptions = [p for p in COLLECTION_PERCEPTIONS if p > 0]
    results = {"config": {"spaces": list(spaces), "tasks": list(tasks), "patch_size": P.DEFAULT_PATCH_SIZE,
                          "n_fit": n_fit, "per_collection": per_collection, "crop": crop,
                          "fit": f"{FIT_FOLDER} [0:{n_fit}] (sorted, restored)",
                          "natural": f"{NATURAL_FOLDER} [0:{n_fit}] (sorted)",
                          "collections": {name: {"folder": COLLECTIONS[name].folder, "rule": COLLECTIONS[name].rule,
                                                 "half_size": COLLECTIONS[name].half_size,
                                                 "seed": collection_seed(name), "images": [p.name for p in ps],
                                                 "sizes": [c.shape[1] for c in clean[name]]}
                                          for name, ps in paths.items()},
                          "perceptions": list(COLLECTION_PERCEPTIONS), "recipe": recipe.__dict__,
                          "denoiser": "; ".join(
                              {"denoise50": f"{RESTORER_NAMES['denoise50']}, {CLIPPING_LABELS[undo_clipping]}",
                               "denoise50_unclipped": f"{RESTORER_NAMES['denoise50_unclipped']}, as is"}[t]
                              for t in DENOISE_TASKS if t in tasks) or "none"},
               "spaces": {}}
    restored, mmse = {}, {}
    for task in tasks:
        t0 = time.time()
        fit_restored, per = restore_collections(Restorer(task, data, undo_clipping), fit_clean,
                                                {k: v for k, v in clean.items() if k != POOLED})
        restored[task] = (fit_restored, with_pooled(per))
        t1 = time.time()
        mmse[task] = {s: _measure(imgs, clean[s], niqe_params, ssim, 0.0) for s, imgs in restored[task][1].items()}
        log(f"{task}: {RESTORER_NAMES[task]}: restored in {t1 - t0:.1f}s, MMSE measured in {time.time() - t1:.1f}s")
    for name in spaces:
        space_start = time.time()
        space, space_name = S.resolve_space(space_spec(name, data))
        entry = results["spaces"][name] = {"config": {"space": space_name, "latent_channels": space.latent_channels},
                                           "tasks": {}}
        for task in tasks:
            t0 = time.time()
            fit_restored, per = restored[task]
            transport = P.fit_transport(space, natural, fit_restored, harmonise=recipe.harmonise,
                                        space_name=space_name)
            t1 = time.time()
            swept = {s: P.sweep(space, transport, per[s], perceptions, recipe) for s in clean if s != POOLED}
            swept = {**swept, POOLED: {p: [img for s in swept for img in swept[s][p]] for p in perceptions}}
            t2 = time.time()
            entry["tasks"][task] = {
                s: [_row(recipe.name, 0.0, mmse[task][s], mmse[task][s])]
                + [_row(recipe.name, p, _measure(swept[s][p], clean[s], niqe_params, ssim, p), mmse[task][s])
                   for p in perceptions] for s in clean}
            entry.setdefault("per_image", {})[task] = {
                s: per_image(swept[s], per[s], clean[s], results["config"]["collections"][s]["images"],
                             {r["perception"]: r["patch_fd"] for r in entry["tasks"][task][s]})
                for s in clean if s != POOLED}
            log(f"  {name:8s} {task:19s} fit {t1 - t0:.1f}s, transport+blend {t2 - t1:.1f}s, "
                f"metrics {time.time() - t2:.1f}s")
        entry["runtime_s"] = time.time() - space_start
    results["targets"] = check_collection_targets(results)
    results["runtime_s"] = time.time() - start
    return results


def collection_limits(space: str, task: str, set_name: str) -> Dict[str, Optional[float]]:
    """Metric → limit of every ``COLLECTION_TARGETS`` row that applies to one (space, task, set) cell."""
    return {t.metric: t.limit for t in COLLECTION_TARGETS
            if task in t.tasks and t.where in (EVERY, set_name) and t.space in (None, space)}


def _monotone(at: Dict[float, Dict]) -> bool:
    return all(at[b][key] <= at[a][key] + 1e-12 for a, b in zip(MONOTONE_PERCEPTIONS, MONOTONE_PERCEPTIONS[1:])
               for key in ("swd_ratio", "patch_fd_ratio"))


def check_collection_targets(results: Dict) -> List[Dict]:
    """Per (space, task, collection or pooled) cell: each issue-21 limit that applies, met or not."""
    out = []
    for space, entry in results["spaces"].items():
        for task, sets in entry["tasks"].items():
            for set_name, rows in sets.items():
                at = {r["perception"]: r for r in rows}
                limits = collection_limits(space, task, set_name)
                if not limits or any(p not in at for p in MONOTONE_PERCEPTIONS):
                    continue
                top = at[1.0]
                measured = {"psnr_loss": top["psnr_loss"], "swd": top["swd_ratio"],
                            "patch_fd": top["patch_fd_ratio"], "swd_lowpass": top["lowpass_ratio"]}
                checks = {key: _monotone(at) if key == "monotone" else measured[key] <= limit
                          for key, limit in limits.items()}
                out.append({"space": space, "task": task, "set": set_name, "limits": limits,
                            "measured": measured, "checks": checks, "met": all(checks.values())})
    return out


METRIC_LABELS = {"psnr_loss": "PSNR loss", "swd": "SWD", "patch_fd": "patch-FD", "swd_lowpass": "low-pass"}


def describe_targets() -> str:
    """``COLLECTION_TARGETS`` in words, for the report."""
    parts = []
    for t in COLLECTION_TARGETS:
        what = ("SWD and patch-FD never rise from 0.5 to 0.75 to 1" if t.metric == "monotone"
                else f"ΔPSNR ≥ −{t.limit:.1f} dB" if t.metric == "psnr_loss"
                else f"{METRIC_LABELS[t.metric]} ≤ {t.limit:g}×")
        where = "each collection and pooled" if t.where == EVERY else t.where
        tasks = "every task" if t.tasks == TASKS else ", ".join(t.tasks)
        parts.append(f"{what} ({tasks}; {where}{'; ' + t.space if t.space else ''})")
    return "; ".join(parts)


def per_image_markdown(results: Dict, worst: int = 2) -> List[str]:
    """Per space, task and collection: the photos that cost most at perception 1, and where patch-FD rises from
    0.75 to 1, the photos without which it does not (``per_image``)."""
    rows = []
    for name, entry in results["spaces"].items():
        for task, sets in entry.get("per_image", {}).items():
            for s, info in sets.items():
                order = sorted(range(len(info["names"])), key=lambda i: -info["psnr_loss_at_1"][i])[:worst]
                costly = ", ".join(f"{info['names'][i]} {-info['psnr_loss_at_1'][i]:+.2f}" for i in order)
                rise = ", ".join(info["patch_fd_rise_without"]) or "–"
                rows.append(f"| {name} | {task} | {s} | {costly} | {rise} |")
    if not rows:
        return []
    return ["**Per photo at perception 1**: the photos with the largest ΔPSNR (dB) in each collection, and, where "
            "the collection's patch-FD rises from perception 0.75 to 1, the photos without which it does not "
            "(leave one out; – where it does not rise, or no single photo explains it).", "",
            "| space | task | set | largest loss | rise gone without |", "|---|---|---|---|---|"] + rows + [""]


def markdown_collections(results: Dict) -> str:
    """One table per space (ΔPSNR / SWD / patch-FD / low-pass ratios per task and perception, one column per
    collection and pooled), then every (space, task, set) cell of the issue-21 targets, met or not, and the count."""
    cfg = results["config"]
    sets = list(cfg.get("collections", {})) + [POOLED]
    described = ", ".join(f"{n} ({c['folder']}{', halved' if c['half_size'] else ''})"
                          for n, c in cfg.get("collections", {}).items())
    lines = [f"Unpaired full recipe (the library's defaults), p = {cfg.get('patch_size')}: fitted on {cfg.get('fit')} "
             f"against {cfg.get('natural')}; tested on {cfg.get('per_collection')} centre crops of "
             f"{cfg.get('crop')} px per collection: {described}; pooled = all of them as one set. "
             f"Cell: ΔPSNR (dB) / SWD× / patch-FD× (low-pass×), ratios to the MMSE output's on the same set. "
             f"Denoiser: {cfg.get('denoiser', RESTORER_NAMES['denoise50'])}.", ""]
    for name, entry in results["spaces"].items():
        label = SPACES.get(name, (None, f"{entry['config'].get('latent_channels')} ch"))[1]
        lines += [f"**{name} ({label})** ({entry.get('runtime_s', 0):.0f} s)", "",
                  "| task | perception | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
        for task, per_set in entry["tasks"].items():
            for p in MONOTONE_PERCEPTIONS:
                cells = []
                for s in sets:
                    row = next((r for r in per_set.get(s, []) if abs(r["perception"] - p) < 1e-9), None)
                    cells.append(_cell(row) if row else "–")
                lines.append(f"| {task} | {p:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += per_image_markdown(results)
    targets = results.get("targets")
    if targets is None:
        targets = check_collection_targets(results)
    lines += [f"**Issue-21 targets at perception 1**: {describe_targets()}.", "",
              "| space | task | set | ΔPSNR | SWD | patch-FD | low-pass | monotone | met |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in targets:
        m, c, lim = t["measured"], t["checks"], t["limits"]

        def mark(key, value):
            text = f"{-value:+.2f}" if key == "psnr_loss" else f"{value:.2f}"
            if key not in c:
                return text
            limit = f"≥ {-lim[key]:+.1f}" if key == "psnr_loss" else f"≤ {lim[key]:g}"
            return f"{text} {'✓' if c[key] else '✗'} ({limit})"
        cells = [mark(key, m[key]) for key in ("psnr_loss", "swd", "patch_fd", "swd_lowpass")]
        monotone = "–" if "monotone" not in c else "✓" if c["monotone"] else "✗"
        lines.append(f"| {t['space']} | {t['task']} | {t['set']} | " + " | ".join(cells)
                     + f" | {monotone} | {'yes' if t['met'] else 'no'} |")
    met = sum(t["met"] for t in targets)
    lines += ["", f"{met} of {len(targets)} cells meet every target (a cell: one space, task and collection, "
                  "or the pooled set)."]
    return "\n".join(lines) + "\n"


def plot_collections(results: Dict, path: Path) -> Optional[Path]:
    """ΔPSNR against SWD and against patch-FD (ratios to the MMSE output) on the pooled set, one line per space,
    per task, with the pooled limits."""
    plt = _pyplot()
    if plt is None:
        return None
    tasks = list(results["config"]["tasks"])
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        curves = {name: entry["tasks"].get(task, {}).get(POOLED, []) for name, entry in results["spaces"].items()}
        _pd_row(axes[i], curves, collection_limits("", task, POOLED), f"{RESTORER_NAMES[task]}, pooled collections")
    return _save(fig, path)


def collections_mode(collections: Optional[List[str]], n_spaces: int, halves: bool) -> Optional[List[str]]:
    """The collections to run, or None for the held-apart modes: ``--collections`` (empty: all), else all of them
    when several spaces are given, unless ``--halves`` asks for the issue-10 run."""
    if collections is None:
        return list(COLLECTIONS) if n_spaces > 1 and not halves else None
    return [n for n in COLLECTIONS if n in collections] if collections else list(COLLECTIONS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the development data folder")
    parser.add_argument("--vae", nargs="+", default=[DEFAULT_SPACE],
                        help=f"latent spaces: {', '.join(SPACES)}, 'all', or any --vae of the command line "
                             "(a TAESD folder, FOLDER:NAME); several give pd_collections.md with the issue-21 "
                             "targets (with --halves: pd_spaces.md with the issue-10 targets)")
    parser.add_argument("--collections", nargs="*", choices=list(COLLECTIONS), default=None,
                        help="the issue-21 run on these test collections (no name: all; the default with several "
                             "spaces): unpaired full recipe only, perceptions 0/0.5/0.75/1, no SSIM or NIQE unless "
                             "asked; --protocols and --n-test do not apply")
    parser.add_argument("--per-collection", type=int, default=12, help="crops per test collection")
    parser.add_argument("--halves", action="store_true",
                        help="with several spaces: the issue-10 run (held-apart CBSD68 crops and their halves, "
                             "pd_spaces.md) instead of the collections")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench_out")
    parser.add_argument("--tasks", nargs="+", default=None, choices=TASKS,
                        help="default: denoise50 and sr4; in the collections run also denoise50_unclipped")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--n-fit", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--crop", type=int, default=256, help="centre-crop size (pixels, multiple of 8)")
    parser.add_argument("--niqe", action=argparse.BooleanOptionalAction, default=None,
                        help="measure NIQE (default: yes, but not in the collections run)")
    parser.add_argument("--ssim", choices=("all", "ends", "none"), default=None,
                        help="where to measure SSIM (the slowest metric): every perception, 0 and 1 only, nowhere "
                             "(default: all, but none in the collections run)")
    parser.add_argument("--keep-clipping-bias", action="store_true",
                        help="use FFDNet's output as is; by default the bias that the clipped noise leaves in it is "
                             "undone (deepot_core.tooling.clipped_noise)")
    parser.add_argument("--natural-marginal", action="store_true",
                        help="the full recipe with PD Blend's natural marginal (an option, off by default; "
                             "docs/natural_marginal.md)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"development data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    start = time.time()
    torch.manual_seed(0)
    vaes = list(SPACES) if args.vae == ["all"] else args.vae
    names = collections_mode(args.collections, len(vaes), args.halves)
    if names is not None and args.halves:
        parser.error("--halves is the held-apart run; leave out --collections")
    ssim_modes = {"all": True, "ends": "ends", "none": False}
    args.out.mkdir(parents=True, exist_ok=True)
    if names is not None:
        return main_collections(args, vaes, names, ssim=ssim_modes[args.ssim or "none"], start=start)
    options = dict(tasks=args.tasks or list(E.TASKS), protocols=args.protocols, n_fit=args.n_fit,
                   n_test=args.n_test, crop=args.crop, niqe=args.niqe is not False,
                   ssim=ssim_modes[args.ssim or "all"], undo_clipping=not args.keep_clipping_bias)
    if args.natural_marginal:
        options["recipes"] = [P.PAPER_RECIPE, replace(P.FULL_RECIPE, natural_marginal=NATURAL_MARGINAL_SHAPE)]
    if len(vaes) > 1:
        spaces = run_spaces(args.data, vaes, **options)
        spaces["runtime_s"] = time.time() - start
        table = markdown_spaces(spaces, "unpaired" if "unpaired" in args.protocols else args.protocols[0])
        return write_report(args.out, "pd_spaces", spaces, table, plot_spaces)
    results = run_benchmark(args.data, vae=vaes[0], **options)
    results["runtime_s"] = time.time() - start
    return write_report(args.out, "pd_curve", results, markdown(results), plot)


def write_report(out: Path, stem: str, results: Dict, table: str, plot_to) -> int:
    """``stem``.md (the table, also printed), .json (every figure) and .png (``plot_to``) in ``out``."""
    (out / f"{stem}.md").write_text(table)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    plot_to(results, out / f"{stem}.png")
    print(table)
    print(f"wrote {out}/{stem}.md, .json, .png — whole run {results['runtime_s']:.0f} s")
    return 0


def main_collections(args, vaes: Sequence[str], names: Sequence[str], ssim, start: float) -> int:
    """The issue-21 run: ``run_collections``, written to pd_collections.md, .json and .png."""
    results = run_collections(args.data, vaes, tasks=args.tasks or list(TASKS), names=names, n_fit=args.n_fit,
                              per_collection=args.per_collection, crop=args.crop, niqe=args.niqe is True, ssim=ssim,
                              undo_clipping=not args.keep_clipping_bias,
                              natural_marginal=NATURAL_MARGINAL_SHAPE if args.natural_marginal else None)
    results["runtime_s"] = time.time() - start
    return write_report(args.out, "pd_collections", results, markdown_collections(results), plot_collections)


if __name__ == "__main__":
    sys.exit(main())

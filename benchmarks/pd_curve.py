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
Writes ``pd_curve.md``, ``pd_curve.json`` and ``pd_curve.png`` into ``--out``; with
several spaces also ``pd_spaces.md`` (one table per space, the issue-10 targets met or
not, on all held-apart crops and on each half) and ``pd_spaces.png``.

    python benchmarks/pd_curve.py --out bench_out
    python benchmarks/pd_curve.py --vae all --protocols unpaired --no-niqe --ssim none --out bench_out

``--natural-marginal`` runs the full recipe with PD Blend's natural marginal (docs/natural_marginal.md).
"""
import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepot_core.constants import NATURAL_MARGINAL_SHAPE  # noqa: E402
from deepot_core.tooling import pipeline as P  # noqa: E402
from deepot_core.tooling import experiments as E  # noqa: E402
from deepot_core.tooling import spaces as S  # noqa: E402
from deepot_core.tooling.clipped_noise import undo_noise_clipping  # noqa: E402
from deepot_core.tooling.imageio import list_images, load_image  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DEEPOT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
PROTOCOLS = ("calibration", "unpaired", "zeroshot")
RESTORER_NAMES = {"denoise50": "FFDNet σ=50", "sr4": "CARN-M ×4"}
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
}
#: Perceptions at which SWD and patch-FD must not rise (each at most the one before).
MONOTONE_PERCEPTIONS = (0.5, 0.75, 1.0)
#: The sets every ratio is reported on: all held-apart crops, then the two disjoint halves.
SET_NAMES = ("all", "A", "B")


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
    """

    def __init__(self, task: str, data: Path, undo_clipping: bool = True):
        from benchmarks.restorers import load_carn_m, load_ffdnet
        self.task = task
        self.undo_clipping = undo_clipping
        if task == "denoise50":
            self.model = load_ffdnet(data / "restorers" / "ffdnet_color_kair" / "ffdnet_color.pth")
        else:
            self.model = load_carn_m(data / "restorers" / "carn_m" / "carn_m.pth")

    def __call__(self, degraded: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        from benchmarks.restorers import denoise_ffdnet, super_resolve_carn
        if self.task == "denoise50":
            out = [denoise_ffdnet(self.model, d, E.TASK_NOISE_SIGMA) for d in degraded]
            if self.undo_clipping:
                out = [undo_noise_clipping(o, E.TASK_NOISE_SIGMA) for o in out]
            return out
        return [super_resolve_carn(self.model, d, E.TASK_SR_SCALE) for d in degraded]


def load_set(folder: Path, start: int, count: int, crop: int) -> List[torch.Tensor]:
    """``count`` centre crops (crop×crop, multiples of 8) of the sorted images from ``start``."""
    paths = list_images(folder)[start:start + count]
    if len(paths) < count:
        raise SystemExit(f"{folder} holds too few images for {start}+{count}; lower --n-fit/--n-test.")
    return [E.centre_crop_square(load_image(p), crop) for p in paths]


def development_sets(data: Path, n_fit: int, n_test: int, crop: int):
    """(fit, held-apart, other collection): the first ``n_fit`` and the next ``n_test`` sorted CBSD68 crops, and
    the first ``n_fit`` Kodak24 crops, the sets every benchmark here measures on."""
    return (load_set(data / "images" / "cbsd68", 0, n_fit, crop),
            load_set(data / "images" / "cbsd68", n_fit, n_test, crop),
            load_set(data / "images" / "kodak24", 0, n_fit, crop))


def restore_sets(restore: "Restorer", fit_clean, test_clean):
    """The restorer's outputs on the degraded fit and held-apart sets (seeds 1 and 2), as ordinary tensors."""
    with torch.inference_mode():
        fit_restored = restore(E.degrade(fit_clean, restore.task, seed=1))
        test_restored = restore(E.degrade(test_clean, restore.task, seed=2))
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


def plot_spaces(spaces: Dict, path: Path, protocol: str = "unpaired", recipe: str = "full") -> Optional[Path]:
    """PSNR against SWD and against patch-FD (ratios to the MMSE output), one line per space, per task."""
    plt = _pyplot()
    if plt is None:
        return None
    tasks = sorted({t for r in spaces["spaces"].values() for t in r["tasks"]})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for name, results in spaces["spaces"].items():
            pts = [r for r in results["tasks"].get(task, {}).get(protocol, []) if r["recipe"] == recipe]
            for j, key in enumerate(("swd_ratio", "patch_fd_ratio")):
                axes[i, j].plot([r[key] for r in pts], [-r["psnr_loss"] for r in pts], marker="o", label=name)
                for r in pts:
                    if r["perception"] in (0.5, 1.0):
                        axes[i, j].annotate(f"{r['perception']:g}", (r[key], -r["psnr_loss"]), fontsize=7)
        for j, (name, limit) in enumerate((("SWD", SPACE_TARGETS[task]["swd"]),
                                           ("patch-FD", SPACE_TARGETS[task]["patch_fd"]))):
            ax = axes[i, j]
            ax.axvline(limit, color="grey", ls=":", lw=1)
            ax.axhline(-SPACE_TARGETS[task]["psnr_loss"], color="grey", ls=":", lw=1)
            ax.set_title(f"{RESTORER_NAMES[task]}, {protocol}: ΔPSNR vs {name} ratio")
            ax.set_xlabel(f"{name} to clean / MMSE output's (lower = more natural)")
            ax.set_ylabel("ΔPSNR vs MMSE (dB)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the development data folder")
    parser.add_argument("--vae", nargs="+", default=[DEFAULT_SPACE],
                        help=f"latent spaces: {', '.join(SPACES)}, 'all', or any --vae of the command line "
                             "(a TAESD folder, FOLDER:NAME); several give pd_spaces.md with the issue-10 targets")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench_out")
    parser.add_argument("--tasks", nargs="+", default=list(E.TASKS), choices=E.TASKS)
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--n-fit", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--crop", type=int, default=256, help="centre-crop size (pixels, multiple of 8)")
    parser.add_argument("--no-niqe", action="store_true", help="skip NIQE")
    parser.add_argument("--ssim", choices=("all", "ends", "none"), default="all",
                        help="where to measure SSIM (the slowest metric): every perception, 0 and 1 only, nowhere")
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
    options = dict(tasks=args.tasks, protocols=args.protocols, n_fit=args.n_fit, n_test=args.n_test,
                   crop=args.crop, niqe=not args.no_niqe, ssim={"all": True, "ends": "ends", "none": False}[args.ssim],
                   undo_clipping=not args.keep_clipping_bias)
    if args.natural_marginal:
        options["recipes"] = [P.PAPER_RECIPE, replace(P.FULL_RECIPE, natural_marginal=NATURAL_MARGINAL_SHAPE)]
    args.out.mkdir(parents=True, exist_ok=True)
    if len(vaes) > 1:
        spaces = run_spaces(args.data, vaes, **options)
        spaces["runtime_s"] = time.time() - start
        table = markdown_spaces(spaces, "unpaired" if "unpaired" in args.protocols else args.protocols[0])
        (args.out / "pd_spaces.md").write_text(table)
        (args.out / "pd_spaces.json").write_text(json.dumps(spaces, indent=1))
        plot_spaces(spaces, args.out / "pd_spaces.png")
        print(table)
        print(f"wrote {args.out}/pd_spaces.md, .json, .png — whole run {spaces['runtime_s']:.0f} s")
        return 0
    results = run_benchmark(args.data, vae=vaes[0], **options)
    results["runtime_s"] = time.time() - start
    table = markdown(results)
    (args.out / "pd_curve.md").write_text(table)
    (args.out / "pd_curve.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "pd_curve.png")
    print(table)
    print(f"wrote {args.out}/pd_curve.md, .json, .png — whole run {results['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much detail may perception 1 add to one image? The measurements behind docs/collections.md (issue 21).

At perception 1 the output is restored + d, d computed from the restored image alone; the MMSE error is orthogonal
to it, so ΔPSNR = −10·log10(1 + ‖d‖² / MMSE) per image, and "within the theory's 3 dB" means ‖d‖² ≤ that
image's MMSE. Four tables on the issue-21 test collections (``pd_curve.test_collections``, same fit and seeds):

1. the identity, image by image: measured ΔPSNR minus the prediction, and ‖d‖² / MMSE;
2. how well statistics of the restored image predict the clean photo's finest-level energy (the budget's unknown);
3. budgets tried for the added detail, per level k of the Laplacian pyramid, each with the estimate v̂_k =
   slope_k × the restored image's level k+1 (the library's cap, ``blend``): the library's own cap, that cap per
   region (a Gaussian window of σ pixels of each level), the W2 budget ‖d_k‖² ≤ (√v̂_k − √r_k)² and the literal
   budget ‖d_k‖² ≤ v̂_k − r_k. ΔPSNR per collection, SWD and patch-FD pooled, at perception 1, and the
   collections whose patch-FD rises from perception 0.75 to 1. Last, an oracle: the library's band held to each
   image's own MMSE, the best any estimate of the budget could do, and for Gaussian (unclipped) denoising the band
   held to SURE's estimate of it (table 4);
4. estimates of each image's MMSE that need the degraded input and the restorer, not the clean photo: for ×4 SR
   the restorer's error one scale down (the degraded input is the clean image there), for denoising Stein's
   unbiased risk estimate (SURE; valid for Gaussian noise, so for ``denoise50_unclipped``).

    python benchmarks/mmse_budget.py --vae taef2 taef1 --tasks sr4 denoise50
    python benchmarks/mmse_budget.py --vae taef2 taef1 --tasks denoise50_unclipped   (SURE's own task)
"""
import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pd_curve as B  # noqa: E402
from deepot_core.blend import _blend_step, _largest_gain, _natural_slope_band  # noqa: E402
from deepot_core.constants import DEFAULT_NATURAL_FLOORS, DEFAULT_NATURAL_SLOPES  # noqa: E402
from deepot_core.image_ops import gaussian_blur  # noqa: E402
from deepot_core.pyramid import collapse, laplacian_pyramid_bchw  # noqa: E402
from deepot_core.tooling import experiments as E  # noqa: E402
from deepot_core.tooling import pipeline as P  # noqa: E402
from deepot_core.tooling import spaces as S  # noqa: E402
from deepot_core.tooling.metrics import patch_frechet_distance, sliced_wasserstein_patches  # noqa: E402

LEVELS = len(DEFAULT_NATURAL_SLOPES)


def level_energies(image: torch.Tensor, levels: int = 5) -> List[float]:
    """Mean energy of each Laplacian level of an IMAGE [1,H,W,C], finest first."""
    return [float(b.pow(2).mean()) for b in laplacian_pyramid_bchw(image.permute(0, 3, 1, 2).double(), levels)]


def _mse(a, b) -> float:
    return float((a.double() - b.double()).pow(2).mean())


def _local(x: torch.Tensor, sigma: float) -> torch.Tensor:
    m = x.mean(dim=1, keepdim=True)
    return gaussian_blur(m.permute(0, 2, 3, 1), sigma).permute(0, 3, 1, 2)


def budgeted_band(base: torch.Tensor, band: torch.Tensor, form: str, sigma: float = 0.0) -> torch.Tensor:
    """The raw detail band under one budget (IMAGE layout): "cap" (output energy within v̂, per region with
    ``sigma``), "w2" ((√v̂ − √r)²) or "literal" (v̂ − r), per image and level, v̂ from the restored image."""
    b = laplacian_pyramid_bchw(base.permute(0, 3, 1, 2).double(), LEVELS + 1)
    h = laplacian_pyramid_bchw(band.permute(0, 3, 1, 2).double(), LEVELS + 1)

    def energy(x):
        return _local(x, sigma) if sigma > 0 else x.mean(dim=(1, 2, 3), keepdim=True)

    for k in range(LEVELS):
        a, x, c = energy(h[k] ** 2), energy(h[k] * b[k]), energy(b[k] ** 2)
        kept = energy(b[k + 1] ** 2)
        if sigma > 0:
            kept = F.interpolate(kept, size=c.shape[-2:], mode="bilinear", align_corners=False)
        v = torch.maximum(DEFAULT_NATURAL_SLOPES[k] * kept, c)
        if form == "cap":
            g = _largest_gain(a, x, c, v)
        else:
            budget = (v.sqrt() - c.sqrt()) ** 2 if form == "w2" else v - c
            g = torch.where(a > budget, (budget / a.clamp(min=1e-30)).sqrt(), torch.ones_like(a))
        h[k] = h[k] * g
    return collapse(h).permute(0, 2, 3, 1).to(band.dtype)


def within_budget(band: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """``band`` [B,H,W,C] scaled per image so that ‖d‖² ≤ ``budget`` (per image, broadcast; means over pixels and
    channels): by the identity above, a budget that is the image's MMSE keeps it within the theory's 3 dB."""
    budget = torch.as_tensor(budget, dtype=torch.float64).reshape(-1, 1, 1, 1)
    added = band.double().pow(2).mean(dim=(1, 2, 3), keepdim=True)
    gain = torch.where(added > budget, (budget.clamp(min=0) / added.clamp(min=1e-30)).sqrt(), torch.ones_like(added))
    return (band.double() * gain).to(band.dtype)


def within_mmse(base: torch.Tensor, band: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``within_budget`` with each image's true MMSE, known only with the clean photo (an oracle)."""
    return within_budget(band, (clean.double() - base.double()).pow(2).mean(dim=(1, 2, 3)))


def _library(b, d):
    return _natural_slope_band(b, d, DEFAULT_NATURAL_SLOPES, DEFAULT_NATURAL_FLOORS)


#: Budgets for the raw band, each given (base, band, clean, the task's estimate of the MMSE): only the oracle looks
#: at the clean photo, and none of these at the estimate.
VARIANTS = {
    "library cap and floor": lambda b, d, x, e: _library(b, d),
    "cap per region σ 2": lambda b, d, x, e: budgeted_band(b, d, "cap", 2.0),
    "cap per region σ 4": lambda b, d, x, e: budgeted_band(b, d, "cap", 4.0),
    "W2 budget": lambda b, d, x, e: budgeted_band(b, d, "w2"),
    "literal budget v̂ − r": lambda b, d, x, e: budgeted_band(b, d, "literal"),
    "library's band within each image's MMSE (oracle)": lambda b, d, x, e: within_mmse(b, _library(b, d), x),
}


def prepare(data: Path, space_name: str, task: str, clean: Dict[str, List[torch.Tensor]], restored, fit):
    """(base, raw band) per test crop: the library's blend step without cap or floor, collections in order."""
    space, label = S.resolve_space(B.space_spec(space_name, data))
    natural = B.load_set(data / "images" / B.NATURAL_FOLDER, 0, len(fit), 256)
    transport = P.fit_transport(space, natural, fit, harmonise=True, space_name=label)
    out = []
    for name in clean:
        for r in restored[name]:
            moved, recon = P.transport_image(space, transport, r)
            base, _, band = _blend_step(r, moved, recon, P.DEFAULT_DETAIL_SIGMA, None, None)
            out.append((base, band))
    return out


def identity_row(pairs, clean_all) -> str:
    diffs, ratios = [], []
    for (base, band), x in zip(pairs, clean_all):
        out = (base + band).clamp(0, 1)
        mmse, added = _mse(base, x), _mse(out, base)
        diffs.append(-10 * math.log10(_mse(out, x) / mmse) + 10 * math.log10(1 + added / mmse))
        ratios.append(added / mmse)
    return (f"{statistics.mean(diffs):+.2f} | {max(abs(v) for v in diffs):.2f} | {min(ratios):.2f}–{max(ratios):.2f} "
            f"| {sum(r > 1 for r in ratios)} of {len(ratios)}")


def predictor_rows(restored_all, clean_all) -> List[str]:
    slope = DEFAULT_NATURAL_SLOPES[0]
    v = [level_energies(x) for x in clean_all]
    r = [level_energies(x) for x in restored_all]
    estimates = {"photos' slope × the clean photo's level 1 (an oracle)": [slope * e[1] for e in v],
                 "photos' slope × the restored image's level 1": [slope * e[1] for e in r],
                 "the restored image's own slope, r_1² / r_2": [e[1] ** 2 / e[2] for e in r],
                 "the restored image's level 0": [e[0] for e in r]}
    rows = []
    for name, est in estimates.items():
        logs = [math.log(t[0] / e) for t, e in zip(v, est)]
        rows.append(f"| {name} | {math.exp(statistics.mean(logs)):.2f} | {statistics.stdev(logs):.2f} "
                    f"| {math.exp(min(logs)):.2f} |")
    return rows


def _spans(sizes: Sequence[int]) -> List[slice]:
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [slice(a, a + n) for a, n in zip(starts, sizes)]


def patch_fd_rises(pairs, bands, clean_all, sizes: Sequence[int], names: Sequence[str]) -> List[str]:
    """The collections (``names``, ``sizes`` crops each, in order) whose patch-FD at perception 1 is above the one
    at 0.75: there perception 1 overshoots the photos."""
    risen = []
    for name, span in zip(names, _spans(sizes)):
        fd = [patch_frechet_distance([(b + p * d).clamp(0, 1) for (b, _), d in zip(pairs[span], bands[span])],
                                     clean_all[span], seed=0) for p in (0.75, 1.0)]
        if fd[1] > fd[0]:
            risen.append(name)
    return risen


def variant_row(name, bands, pairs, clean_all, sizes, names) -> str:
    outs = [(b + d).clamp(0, 1) for (b, _), d in zip(pairs, bands)]
    gains = [-10 * math.log10(_mse(o, x) / _mse(b, x)) for o, x, (b, _) in zip(outs, clean_all, pairs)]
    per = [statistics.mean(gains[span]) for span in _spans(sizes)]
    bases = [b for b, _ in pairs]
    swd = [float(sliced_wasserstein_patches(o, clean_all, levels=4, patch_size=7, seed=0, normalize="joint")["total"])
           for o in (outs, bases)]
    fd = [patch_frechet_distance(o, clean_all, seed=0) for o in (outs, bases)]
    rises = patch_fd_rises(pairs, bands, clean_all, sizes, names)
    return (f"| {name} | " + " / ".join(f"{g:+.2f}" for g in per) + f" | {statistics.mean(gains):+.2f} "
            f"| {swd[0] / swd[1]:.2f} | {fd[0] / fd[1]:.2f} | {', '.join(rises) or 'none'} |")


def error_one_scale_down(restore, degraded: torch.Tensor) -> float:
    """The ×4 restorer's MSE on its own input degraded once more (cropped to a multiple of 4 first): the degraded
    image is the clean one at that scale, so this error is measurable wherever the restorer can be run."""
    h, w = (n - n % E.TASK_SR_SCALE for n in degraded.shape[1:3])
    target = degraded[:, :h, :w]
    with torch.inference_mode():
        again = restore(B.degrade([target], "sr4"))[0].clamp(0, 1)
    return _mse(again, target)


def sure_mse(restore, noisy: torch.Tensor, sigma: float, seed: int = 0, step: float = 1e-3) -> float:
    """Stein's unbiased estimate of a Gaussian denoiser's MSE on one noisy image [1,H,W,C] (σ on the 0..1 scale),
    without the clean photo: mean (y − f(y))² − σ² + 2σ²·div f / N, the divergence from one random probe,
    bᵀ(f(y + step·b) − f(y)) / step. Valid for additive Gaussian noise, not for noise clipped to 0..1."""
    probe = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(seed), dtype=noisy.dtype)
    with torch.inference_mode():
        f, f_probe = restore([noisy, noisy + step * probe])
    divergence = float((probe.double() * (f_probe.double() - f.double())).sum()) / step
    return _mse(noisy, f) - sigma ** 2 + 2 * sigma ** 2 * divergence / noisy.numel()


def estimate_row(label: str, estimates: Sequence[float], restored_all, clean_all, names_all) -> str:
    """How ``estimates`` (one per crop) estimate the restorer's MMSE: spread of log(MMSE / estimate), correlation
    of the logs, the extremes, and how many estimates are not positive (left out of the rest)."""
    mmse = [_mse(r.clamp(0, 1), x) for r, x in zip(restored_all, clean_all)]
    kept = [i for i, e in enumerate(estimates) if e > 0]
    dropped = len(estimates) - len(kept)
    if len(kept) < 2:
        return f"| {label} | – | – | – | – | – | {dropped} |"
    logs = {i: math.log(mmse[i] / estimates[i]) for i in kept}
    corr = float(torch.corrcoef(torch.tensor([[math.log(mmse[i]) for i in kept],
                                              [math.log(estimates[i]) for i in kept]], dtype=torch.float64))[0, 1])
    low, high = min(logs, key=logs.get), max(logs, key=logs.get)
    return (f"| {label} | {math.exp(statistics.mean(logs.values())):.2f} | {statistics.stdev(logs.values()):.2f} | "
            f"{corr:+.2f} | {math.exp(logs[low]):.2f} ({names_all[low]}) | {math.exp(logs[high]):.2f} "
            f"({names_all[high]}) | {dropped} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=B.DEFAULT_DATA)
    parser.add_argument("--vae", nargs="+", default=["taef2", "taef1"])
    parser.add_argument("--tasks", nargs="+", default=["sr4", "denoise50"], choices=B.TASKS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    clean = B.test_collections(args.data, 12, 12, 256)
    crop_names = [p.stem for paths in B.collection_paths(args.data, 12, 12, list(clean)).values() for p in paths]
    clean_all = [x for items in clean.values() for x in items]
    sizes = [len(items) for items in clean.values()]
    fit_clean = B.load_set(args.data / "images" / B.FIT_FOLDER, 0, 12, 256)
    identity = ["| space | task | measured − predicted ΔPSNR, mean (dB) | largest | ‖d‖²/MMSE | above 1 |",
                "|---|---|---|---|---|---|"]
    predictors, variants = [], []
    estimates = ["| task | estimate of the MMSE | geometric-mean MMSE / estimate | sd of log | correlation of logs "
                 "| smallest | largest | not positive |", "|---|---|---|---|---|---|---|---|"]
    for task in args.tasks:
        restorer = B.Restorer(task, args.data)
        fit, restored = B.restore_collections(restorer, fit_clean, clean)
        restored_all = [x for items in restored.values() for x in items]
        predictors += [f"**{task}**", "", "| estimate of v_0 | geometric-mean v_0 / estimate | sd of log | smallest |",
                       "|---|---|---|---|"] + predictor_rows(restored_all, clean_all) + [""]
        degraded_all = [y for name, items in clean.items() for y in B.degrade(items, task, seed=B.collection_seed(name))]
        if task == "sr4":
            estimate = [error_one_scale_down(restorer, y) for y in degraded_all]
            label = "the restorer's error one scale down"
        else:
            estimate = [sure_mse(restorer, y, E.TASK_NOISE_SIGMA / 255.0) for y in degraded_all]
            label = "SURE, one probe" + (" (the noise is clipped: not Gaussian)" if task == "denoise50" else "")
        estimates.append(f"| {task} " + estimate_row(label, estimate, restored_all, clean_all, crop_names))
        for space in args.vae:
            with torch.inference_mode():
                pairs = prepare(args.data, space, task, clean, restored, fit)
            identity.append(f"| {space} | {task} | " + identity_row(
                [(b, _natural_slope_band(b, d, DEFAULT_NATURAL_SLOPES, DEFAULT_NATURAL_FLOORS)) for b, d in pairs],
                clean_all))
            variants += [f"**{space}, {task}**", "",
                         f"| budget | ΔPSNR per collection ({' / '.join(clean)}) | all | SWD× | patch-FD× "
                         "| patch-FD rises from 0.75 to 1 on |", "|---|---|---|---|---|---|"]
            budgets = dict(VARIANTS)
            if task == "denoise50_unclipped":  # SURE holds for Gaussian noise only
                budgets["library's band within SURE's estimate"] = lambda b, d, x, e: within_budget(_library(b, d), e)
            variants += [variant_row(n, [f(b, d, x, e) for (b, d), x, e in zip(pairs, clean_all, estimate)], pairs,
                                     clean_all, sizes, list(clean)) for n, f in budgets.items()] + [""]
            print(f"{space} {task} done", file=sys.stderr, flush=True)
    print("\n".join(["## The identity, per image", ""] + identity + ["", "## Predicting the finest level", ""]
                    + predictors + ["## Estimating each image's MMSE", ""] + estimates
                    + ["", "## Budgets at perception 1", ""] + variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())

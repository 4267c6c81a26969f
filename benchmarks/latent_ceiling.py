"""How far each latent space can carry the recipe: the clean photo's own latent in place of the transport.

The transport moves a restored image's latent toward natural statistics; no latent-space map can do better, under
the same blend, than the clean photo's own latent. So for each space and task this prints, against the MMSE output:

- ``transport``: the unpaired full recipe as ``pd_curve.py`` runs it (fit on ``--n-fit`` restored CBSD68 crops and
  as many harmonised Kodak photos, applied to the held-apart crops);
- ``ceiling``: the same blend (residual decode, detail band, per-level caps) with D(E(clean)) in place of
  D(T(E(restored))): a perfect per-image latent, which no transport fitted without the clean photo can beat;
- ``ceiling, raw``: r + D(E(clean)) − D(E(r)) without the detail band or the caps (the decoder's every error kept).

Each cell is ΔPSNR / SWD / patch-FD (low-pass SWD) ratios, on all held-apart crops and on their two halves, the
figures of ``pd_curve.py``'s issue-10 table. Where ``transport`` is already near ``ceiling``, what is missing is the
latent space's, not the map's: the TAESD (SD1.5, 4 ch) denoising SWD is the case in point (docs/latent_ceiling.md).

    python benchmarks/latent_ceiling.py --vae all      # about 10 minutes on 2 cores
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pd_curve import (DEFAULT_DATA, REPO_ROOT, RESTORER_NAMES, SPACES, Restorer, _ratios,  # noqa: E402
                                 development_sets, halves_of, restore_sets, space_spec)
from deepot_core.errors import TransportInputError  # noqa: E402
from deepot_core.tooling import experiments as E  # noqa: E402
from deepot_core.tooling import pipeline as P  # noqa: E402
from deepot_core.tooling import spaces as S  # noqa: E402

PERCEPTIONS = (0.5, 1.0)
#: The rows of each space, in order: the fitted transport, then the two ceilings.
VARIANTS = ("transport", "ceiling", "ceiling, raw")
#: The blend of ``ceiling, raw``: residual decode alone (no detail band, no per-level caps or floors).
RAW_RECIPE = P.Recipe("raw", harmonise=False, residual=True, detail_sigma=0.0, natural_slopes=None)


def own_latent_decodes(space, clean: Sequence[torch.Tensor], restored: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """D(E(clean)) per image, at its restored image's size: what a transport that had moved the restored latent
    exactly onto the clean photo's own would decode to."""
    decodes = []
    for x, r in zip(clean, restored):
        if x.shape[:3] != r.shape[:3]:
            raise ValueError(f"clean image {tuple(x.shape)} and restored image {tuple(r.shape)} differ in size; "
                             "the ceiling needs each restored image's own clean photo")
        with torch.inference_mode():
            decodes.append(P.decode(space, P.encode(space, x[..., :3]), *r.shape[1:3]))
    return decodes


def metrics_with_halves(outputs: Sequence[torch.Tensor], clean: Sequence[torch.Tensor]) -> Dict:
    """``E.evaluate`` on all crops, and on each half under ``"halves"``."""
    metrics = E.evaluate(outputs, clean, None, with_ssim=False)
    metrics["halves"] = [E.evaluate(o, c, None, with_ssim=False) for o, c in zip(halves_of(outputs),
                                                                                 halves_of(clean))]
    return metrics


def ratios_with_halves(metrics: Dict, mmse: Dict) -> Dict:
    return {**_ratios(metrics, mmse), "halves": [_ratios(h, m) for h, m in zip(metrics["halves"], mmse["halves"])]}


def space_rows(space, space_name: str, fit_restored, other, test_restored, test_clean, mmse: Dict,
               perceptions=PERCEPTIONS) -> Dict[str, Dict[float, Dict]]:
    """variant → perception → ratios to the MMSE output, for one space and task."""
    recipe = P.full_recipe(paired=False)
    transport = P.fit_transport(space, other, fit_restored, harmonise=recipe.harmonise, space_name=space_name)
    moved = [P.transport_image(space, transport, r) for r in test_restored]
    own = [(d, recon) for d, (_, recon) in zip(own_latent_decodes(space, test_clean, test_restored), moved)]
    decodes = {"transport": moved, "ceiling": own, "ceiling, raw": own}
    out = {}
    for variant in VARIANTS:
        blend_recipe = RAW_RECIPE if variant == "ceiling, raw" else recipe
        out[variant] = {}
        for p in perceptions:
            outputs = [P.blend(r, m, c, p, blend_recipe) for r, (m, c) in zip(test_restored, decodes[variant])]
            out[variant][p] = ratios_with_halves(metrics_with_halves(outputs, test_clean), mmse)
    return out


def run(data: Path, spaces: Sequence[str], tasks=E.TASKS, n_fit: int = 12, n_test: int = 12, crop: int = 256,
        perceptions=PERCEPTIONS, log=print) -> Dict:
    """Every (task, space, variant, perception) cell, on the crops and protocol of ``pd_curve.py``'s issue-10 run."""
    resolved = {name: S.resolve_space(space_spec(name, data)) for name in spaces}  # a bad --vae fails first
    fit_clean, test_clean, other = development_sets(data, n_fit, n_test, crop)
    results = {"config": {"n_fit": n_fit, "n_test": n_test, "crop": crop, "perceptions": list(perceptions),
                          "denoiser": f"{RESTORER_NAMES['denoise50']}, clipping bias undone"}, "tasks": {}}
    for task in tasks:
        fit_restored, test_restored = restore_sets(Restorer(task, data), fit_clean, test_clean)
        mmse = metrics_with_halves(test_restored, test_clean)
        results["tasks"][task] = {}
        for name in spaces:
            start = time.time()
            space, space_name = resolved[name]
            results["tasks"][task][name] = space_rows(space, space_name, fit_restored, other, test_restored,
                                                      test_clean, mmse, perceptions)
            log(f"  {task} {name}: {time.time() - start:.0f} s")
    return results


def _cell(r: Dict) -> str:
    return (f"{-r['psnr_loss']:+.2f} / {r['swd_ratio']:.2f}× / {r['patch_fd_ratio']:.2f}× "
            f"(low {r['lowpass_ratio']:.2f}×)")


def markdown(results: Dict) -> str:
    """One table per task: each space's three variants at every perception, then perception 1 on each half."""
    cfg = results["config"]
    top = max(cfg["perceptions"])
    lines = [f"{cfg['n_test']} held-apart {cfg['crop']}² CBSD68 crops (A, B = its halves); transport fitted on "
             f"{cfg['n_fit']} restored crops and {cfg['n_fit']} harmonised Kodak photos. Each cell: ΔPSNR / SWD / "
             f"patch-FD (low-pass SWD) against the MMSE output. Denoiser: {cfg['denoiser']}.", ""]
    for task, spaces in results["tasks"].items():
        header = [f"@{p:g}" for p in cfg["perceptions"]] + [f"@{top:g} A", f"@{top:g} B"]
        lines += [f"**{RESTORER_NAMES[task]}**", "", "| space | variant | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for name, variants in spaces.items():
            label = SPACES.get(name, (None, name))[1]
            for variant, by_p in variants.items():
                rows = {float(p): r for p, r in by_p.items()}
                cells = [_cell(rows[float(p)]) for p in cfg["perceptions"]]
                cells += [_cell(h) for h in rows[float(top)]["halves"]]
                lines.append(f"| {name} ({label}) | {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the development data folder")
    parser.add_argument("--vae", nargs="+", default=["all"], help=f"latent spaces: {', '.join(SPACES)} or 'all'")
    parser.add_argument("--tasks", nargs="+", default=list(E.TASKS), choices=E.TASKS)
    parser.add_argument("--n-fit", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--crop", type=int, default=256, help="centre-crop size (pixels, multiple of 8)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench_out")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"development data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    if args.n_test < 2:
        parser.error("--n-test must be at least 2 (the table gives each half)")
    start = time.time()
    vaes = list(SPACES) if args.vae == ["all"] else args.vae
    try:
        results = run(args.data, vaes, args.tasks, args.n_fit, args.n_test, args.crop)
    except TransportInputError as error:
        print(f"latent_ceiling.py: {error}", file=sys.stderr)
        return 2
    results["runtime_s"] = time.time() - start
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latent_ceiling.md").write_text(table)
    (args.out / "latent_ceiling.json").write_text(json.dumps(results, indent=1))
    print(table)
    print(f"wrote {args.out}/latent_ceiling.md, .json — whole run {results['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

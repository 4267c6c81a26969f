"""``demo``: Deep OT end to end on photos shipped with scikit-image — no downloads, no weights.

Clean photos → a degradation (noise σ = 50, or ×4 downscale) → a weight-free MMSE
restorer (Wiener filter / bicubic) → fit on calibration pairs from some photos
(clean vs restored) → transport the *other* photos → a perception sweep. Writes
the images, a contact sheet, a PD-curve plot and metrics.json; reports the full
recipe (default) beside the paper's plain one.
"""
import json
import time
from pathlib import Path
from typing import Dict, List

import torch

from .common import CliError, ProgressBar, add_space_option, space_for

HELP = "run Deep OT end to end on sample photos (no downloads)"
#: Photos the transport is fitted on (calibration pairs) and photos it is applied to (held apart).
FIT_PHOTOS = ("coffee", "rocket", "motorcycle", "hubble_deep_field")
TEST_PHOTOS = ("astronaut", "chelsea")
#: Fit photos are cropped to this many times the test size: more patches for a steadier fit.
FIT_SIZE_FACTOR = 2
DEMO_PERCEPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Perceptions shown in the contact sheet (full recipe), beside the paper recipe at 1.
SHEET_PERCEPTIONS = (0.5, 1.0)
SHEET_LABEL_HEIGHT = 18
#: Perceptions where SSIM is measured (the slowest metric); PSNR and distances are measured everywhere.
SSIM_AT = (0.0, 1.0)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--task", choices=("denoise50", "sr4"), default="denoise50",
                   help="degradation: Gaussian noise σ = 50 (default) or ×4 downscale")
    add_space_option(p, "Default: pixel (DOT's VAE-free space).")
    p.add_argument("--size", type=int, default=256, help="test-crop size in pixels (fit crops are 2×)")
    p.add_argument("--patch-size", type=int, default=3, help="odd patch size p")
    p.add_argument("--detail-sigma", type=float, default=None,
                   help="detail band σ (px) of the full recipe; default 2 with a VAE and 0 in pixel space, "
                        "where decoding is exact and the transport's low-frequency part is wanted")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def sample_photos() -> Dict[str, torch.Tensor]:
    """Real colour photos that ship inside scikit-image (read from the installed package)."""
    try:
        import skimage.data as data
    except ImportError:
        raise CliError("the demo's photos come from scikit-image: pip install scikit-image") from None
    photos = {}
    for name in FIT_PHOTOS + TEST_PHOTOS:
        array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        photos[name] = torch.from_numpy(array[..., :3].copy()).float().div(255.0)[None]
    return photos


def _sheet(rows: List[List[torch.Tensor]], labels: List[str], path: Path) -> None:
    """Grid of equally sized images with a label above each column."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ..imageio import to_uint8
    h, w = rows[0][0].shape[1:3]
    sheet = Image.new("RGB", (w * len(labels), SHEET_LABEL_HEIGHT + h * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(labels):
        draw.text((j * w + 4, 3), label, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            tile = Image.fromarray(np.ascontiguousarray(to_uint8(image[:, :h, :w])))
            sheet.paste(tile, (j * w, SHEET_LABEL_HEIGHT + i * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def _plot(metrics: Dict, path: Path) -> bool:
    """PSNR against patch-FD and SWD for each recipe; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, sweep in metrics["recipes"].items():
        ps = sorted(sweep, key=float)
        for ax, key in zip(axes, ("patch_fd", "swd_joint")):
            ax.plot([sweep[p][key] for p in ps], [sweep[p]["psnr"] for p in ps], marker="o", label=name)
            for p in ps:
                ax.annotate(p, (sweep[p][key], sweep[p]["psnr"]), fontsize=7)
    for ax, title in zip(axes, ("patch Fréchet distance", "SWD (pyramid patches, joint norm.)")):
        ax.set_xlabel(f"{title} to clean (lower = more natural)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Perception–distortion curve (labels: perception)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def run(args) -> int:
    from .. import pipeline as P
    from .. import experiments as E
    from .. import spaces as S
    from ..imageio import save_image

    start = time.time()
    if args.size < 32 or args.size % 8:
        raise CliError(f"--size must be a multiple of 8, at least 32; got {args.size}.")
    space, space_name = space_for(args.vae)
    detail = args.detail_sigma
    if detail is None:
        detail = 0.0 if space_name == S.PIXEL_SPACE else P.DEFAULT_DETAIL_SIGMA
    # the natural-slope cap guards against decoders that over-render; the pixel space decodes exactly
    slopes = None if space_name == S.PIXEL_SPACE else P.DEFAULT_NATURAL_SLOPES
    recipes = [P.full_recipe(paired=True, detail_sigma=detail, natural_slopes=slopes), P.PAPER_RECIPE]
    photos = sample_photos()
    fit_clean = [E.centre_crop_square(photos[n], args.size * FIT_SIZE_FACTOR) for n in FIT_PHOTOS]
    test_clean = [E.centre_crop_square(photos[n], args.size) for n in TEST_PHOTOS]
    bar = ProgressBar("restoring", enabled=not args.quiet)
    fit_degraded, test_degraded = E.degrade(fit_clean, args.task, 1), E.degrade(test_clean, args.task, 2)
    fit_restored, test_restored = [], []
    for i, d in enumerate(fit_degraded + test_degraded):
        (fit_restored if i < len(fit_degraded) else test_restored).extend(E.restore_classical([d], args.task))
        bar(i + 1, len(fit_degraded) + len(test_degraded))
    out = args.out
    for name, c, d, r in zip(TEST_PHOTOS, test_clean, test_degraded, test_restored):
        for kind, image in (("clean", c), ("degraded", d), ("restored", r)):
            save_image(image, out / "photos" / f"{name}_{kind}.png")
    metrics = {"config": {"task": args.task, "space": space_name, "patch_size": args.patch_size,
                          "fit_photos": list(FIT_PHOTOS), "test_photos": list(TEST_PHOTOS),
                          "protocol": "calibration pairs", "recipes": [r.__dict__ for r in recipes]},
               "mmse": E.evaluate(test_restored, test_clean), "recipes": {}}
    if space_name == S.PIXEL_SPACE and recipes[0].detail_sigma == 0:
        metrics["config"]["note"] = ("pixel space with calibration pairs: decoding is exact and nothing is "
                                     "harmonised, so the full recipe equals the paper's plain blend")
    outputs = {}
    for recipe in recipes:
        transport = P.fit_transport(space, fit_clean, fit_restored, patch_size=args.patch_size,
                                    harmonise=recipe.harmonise, space_name=space_name,
                                    metadata={"created_by": "python -m deepot_core demo", "task": args.task},
                                    progress=ProgressBar(f"fit ({recipe.name})", enabled=not args.quiet))
        if recipe.name == "full":
            transport.save(out / "transport.safetensors", overwrite=True)
            metrics["transport"] = {k: v for k, v in transport.diagnostics.items() if k != "warnings"}
            metrics["transport"]["warnings"] = transport.diagnostics["warnings"]
        sweep = P.sweep(space, transport, test_restored, DEMO_PERCEPTIONS, recipe,
                        progress=ProgressBar(f"transport ({recipe.name})", enabled=not args.quiet))
        outputs[recipe.name] = sweep
        evals = ProgressBar(f"metrics ({recipe.name})", enabled=not args.quiet)
        metrics["recipes"][recipe.name] = {}
        for k, (p, images) in enumerate(sweep.items()):
            for name, image in zip(TEST_PHOTOS, images):
                save_image(image, out / "sweep" / recipe.name / f"{name}_p{p:.2f}.png")
            # SSIM is the slowest metric: only at the ends of the curve, to keep the demo fast.
            metrics["recipes"][recipe.name][f"{p:g}"] = E.evaluate(images, test_clean, with_ssim=p in SSIM_AT)
            evals(k + 1, len(sweep))
    nearest = torch.nn.functional.interpolate
    rows = []
    for i, name in enumerate(TEST_PHOTOS):
        shown = test_degraded[i]
        if shown.shape[1:3] != test_clean[i].shape[1:3]:  # SR input: nearest-neighbour up to compare
            shown = nearest(shown.permute(0, 3, 1, 2), size=test_clean[i].shape[1:3]).permute(0, 2, 3, 1)
        rows.append([test_clean[i], shown.clamp(0, 1), test_restored[i]]
                    + [outputs["full"][p][i] for p in SHEET_PERCEPTIONS] + [outputs["paper"][1.0][i]])
    labels = ["clean", "degraded", "restored (MMSE)"] + [f"full p={p:g}" for p in SHEET_PERCEPTIONS] + ["paper p=1"]
    _sheet(rows, labels, out / "contact_sheet.png")
    plotted = _plot(metrics, out / "pd_curve.png")
    metrics["runtime_s"] = time.time() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"{'recipe':6s} {'p':>5s} {'PSNR':>6s} {'SSIM':>6s} {'SWD':>7s} {'patchFD':>8s}")
    table = [("mmse", "0", metrics["mmse"])] + [(n, p, m) for n, sw in metrics["recipes"].items()
                                                 for p, m in sw.items()]
    for name, p, m in table:
        ssim = f"{m['ssim']:6.3f}" if "ssim" in m else f"{'-':>6s}"
        print(f"{name:6s} {float(p):5.2f} {m['psnr']:6.2f} {ssim} {m['swd_joint']:7.4f} {m['patch_fd']:8.4f}")
    note = "" if plotted else " (no pd_curve.png: pip install matplotlib)"
    print(f"wrote {out}/: photos/, sweep/, contact_sheet.png, pd_curve.png, metrics.json, transport.safetensors"
          f"{note} in {metrics['runtime_s']:.0f} s")
    return 0

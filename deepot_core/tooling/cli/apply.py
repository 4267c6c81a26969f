"""``apply``: a folder of restored images → a folder out at one perception (recursive, resumable)."""
from pathlib import Path
from typing import List, Tuple

from ...constants import DEFAULT_DETAIL_SIGMA, DEFAULT_NATURAL_SLOPES, NATURAL_MARGINAL_SHAPE
from .common import CliError, ProgressBar, add_space_option, space_for

HELP = "apply a transport to a folder of restored images"
#: Every output is a PNG at the input's relative path.
OUTPUT_SUFFIX = ".png"


def add_parser(sub) -> None:
    p = sub.add_parser("apply", help=HELP, description=HELP + ". Outputs are PNG files at the same "
                       "relative paths (two inputs that would share an output name are an error); complete "
                       "outputs newer than their input are skipped unless --overwrite; files under --out are "
                       "never read as inputs.")
    p.add_argument("--transport", type=Path, required=True, help="a .safetensors transport file")
    p.add_argument("--in", dest="input", type=Path, required=True, help="folder of restored images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--perception", type=float, default=0.5,
                   help="0 = the restored image, 1 = full transport (−1..2)")
    p.add_argument("--detail-sigma", type=float, default=DEFAULT_DETAIL_SIGMA,
                   help="Gaussian σ (px) of the detail band added by the residual decode; 0 = whole residual")
    p.add_argument("--no-natural-slope", action="store_true",
                   help="add the detail band as decoded (by default each fine pyramid level is kept within the "
                        "natural slope of photos: capped where a decoder over-renders, the finest raised where it "
                        "under-renders)")
    p.add_argument("--natural-marginal", action="store_true",
                   help="give the finest detail the generalised-Gaussian marginal photos share: texture comes back "
                        "where a denoiser left the image flat; lowers the patch SWD but raises NIQE "
                        "(docs/natural_marginal.md), so off by default")
    p.add_argument("--plain", action="store_true",
                   help="the paper's plain blend of the decoded transport (no residual decode / detail band)")
    p.add_argument("--undo-noise-clipping", type=float, default=None, metavar="SIGMA",
                   help="undo the bias of clipped Gaussian noise of this σ (0..255) in each restored image first; "
                        "default: the σ the transport file records (fit --undo-noise-clipping), else 0 = off")
    add_space_option(p, "Default: the space recorded in the transport file (pixel needs no weights).")
    p.add_argument("--recursive", action="store_true", help="also process subfolders (mirrored in --out)")
    p.add_argument("--overwrite", action="store_true", help="redo files that already exist in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _space_for_transport(spec, transport):
    """The --vae space, or the one recorded in the file; refuses a mismatch."""
    from ..spaces import PIXEL_SPACE, SPACE_KEY, check_space

    recorded = transport.metadata.get(SPACE_KEY)
    if spec is None:
        if recorded is None or recorded == PIXEL_SPACE:
            spec = PIXEL_SPACE
        elif recorded.startswith("comfy:"):
            spec = recorded
        else:
            raise CliError(f"this transport was fitted in the {recorded!r} space; pass --vae with its weights "
                           "(e.g. --vae path/to/taesd_folder).")
    space, name = space_for(spec, recorded)
    check_space(transport, space, name)
    return space, name


def output_jobs(inputs: List[Path], folder: Path, out: Path) -> List[Tuple[Path, Path]]:
    """(input, output) pairs: each output is the input's relative path with ``.png``; clashes are refused.

    Two inputs that differ only in their suffix (``a.png``, ``a.jpg``) or only in
    case (one file on Windows and macOS) would write one output: that is an error
    before any work, naming both — rename one of them.
    """
    jobs, seen = [], {}
    for src in inputs:
        dst = out / src.relative_to(folder).with_suffix(OUTPUT_SUFFIX)
        key = dst.as_posix().casefold()
        if key in seen:
            raise CliError(f"{seen[key]} and {src} would both be written to {dst}; rename one of them "
                           "(outputs are PNGs named after their input).")
        seen[key] = src
        jobs.append((src, dst))
    return jobs


def is_done(src: Path, dst: Path) -> bool:
    """An output counts as done when it is a complete image written after its input was last changed."""
    from ..imageio import is_complete_image

    try:
        if dst.stat().st_mtime_ns < src.stat().st_mtime_ns:
            return False
    except OSError:
        return False
    return is_complete_image(dst)


def _inside(path: Path, folder: Path) -> bool:
    for a, b in ((path.absolute(), folder.absolute()), (path.resolve(), folder.resolve())):
        if a == b or b in a.parents:
            return True
    return False


def run(args) -> int:
    from ...validation import check_scalar
    from ..clipped_noise import recorded_noise_sigma, undo_noise_clipping
    from ..degrade import MAX_NOISE_SIGMA
    from ..imageio import list_images, load_image, save_image
    from ..pipeline import PAPER_RECIPE, blend, full_recipe, transport_image
    from ...serialization import load_transport

    transport = load_transport(args.transport)
    space, _ = _space_for_transport(args.vae, transport)
    sigma = recorded_noise_sigma(transport.metadata) if args.undo_noise_clipping is None else \
        check_scalar(args.undo_noise_clipping, "--undo-noise-clipping", 0.0, MAX_NOISE_SIGMA)
    recipe = PAPER_RECIPE if args.plain else full_recipe(
        paired=False, detail_sigma=args.detail_sigma,
        natural_slopes=None if args.no_natural_slope else DEFAULT_NATURAL_SLOPES,
        natural_marginal=NATURAL_MARGINAL_SHAPE if args.natural_marginal else None)
    if args.out.resolve() == args.input.resolve():
        raise CliError("--out must differ from --in (inputs are never overwritten).")
    # outputs are never read back as inputs, even when --out lies inside --in
    inputs = [p for p in list_images(args.input, args.recursive) if not _inside(p, args.out)]
    if not inputs:
        raise CliError(f"no images in {args.input}{'' if args.recursive else ' (add --recursive for subfolders)'}.")
    jobs = output_jobs(inputs, args.input, args.out)
    todo = [(src, dst) for src, dst in jobs if args.overwrite or not is_done(src, dst)]
    bar = ProgressBar("applying", enabled=not args.quiet)
    for i, (src, dst) in enumerate(todo):
        restored = load_image(src)
        if sigma > 0:
            restored = undo_noise_clipping(restored, sigma)
        moved, recon = transport_image(space, transport, restored)
        save_image(blend(restored, moved, recon, args.perception, recipe), dst)  # atomic: never half a file
        bar(i + 1, len(todo))
    undone = f" (clipping bias of σ = {sigma:g} undone first)" if sigma > 0 else ""
    print(f"{len(todo)} written, {len(jobs) - len(todo)} already done, in {args.out}{undone}")
    return 0

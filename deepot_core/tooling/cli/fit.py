"""``fit``: folders of restored and natural images → a ``.safetensors`` transport (same files as the nodes)."""
from pathlib import Path

from ...constants import DEFAULT_EPS, DEFAULT_PATCH_SIZE
from .common import CliError, ProgressBar, add_space_option, space_for

HELP = "fit a transport from restored (MMSE) outputs and natural photos"


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help=HELP, description=HELP + ".")
    p.add_argument("--restored", type=Path, help="folder of the restorer's outputs (optional with --zero-shot)")
    p.add_argument("--natural", type=Path, required=True,
                   help="folder of clean photos (calibration pairs: the clean versions of the restored ones)")
    p.add_argument("--out", type=Path, required=True, help="transport file to write (.safetensors)")
    add_space_option(p, "Default: pixel.")
    p.add_argument("--patch-size", type=int, default=DEFAULT_PATCH_SIZE, help="odd latent patch size p (1–9)")
    p.add_argument("--eps", type=float, default=DEFAULT_EPS, help="relative eigenvalue floor of the source covariance")
    p.add_argument("--harmonise", action="store_true",
                   help="recolour the natural photos to the restored set's palette first (for unpaired sets)")
    p.add_argument("--zero-shot", action="store_true",
                   help="fit natural statistics only; each image is its own source at apply time")
    p.add_argument("--undo-noise-clipping", type=float, default=0.0, metavar="SIGMA",
                   help="σ (0..255) of clipped Gaussian noise the restorer was given: its bias is undone in the "
                        "restored images first (Undo Noise Clipping) and σ is recorded in the file, so apply "
                        "does the same; 0 = off")
    p.add_argument("--recursive", action="store_true", help="also read images in subfolders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing transport file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _images(folder: Path, recursive: bool, what: str):
    from ..imageio import list_images, load_image
    paths = list_images(folder, recursive)
    if not paths:
        raise CliError(f"no images in {folder} ({what}); give a folder of .png/.jpg files"
                       f"{'' if recursive else ' or add --recursive'}.")
    return [load_image(p) for p in paths]


def run(args) -> int:
    from ...validation import check_scalar
    from ..clipped_noise import UNDO_CLIPPING_KEY, undo_noise_clipping
    from ..degrade import MAX_NOISE_SIGMA
    from ..pipeline import fit_transport

    if args.out.suffix != ".safetensors":
        raise CliError(f"--out must end in .safetensors, got {args.out.name!r}.")
    if args.out.exists() and not args.overwrite:
        raise CliError(f"{args.out} already exists; choose another name or add --overwrite.")
    if args.restored is None and (not args.zero_shot or args.harmonise):
        raise CliError("--restored is required (unless --zero-shot without --harmonise).")
    sigma = check_scalar(args.undo_noise_clipping, "--undo-noise-clipping", 0.0, MAX_NOISE_SIGMA)
    space, space_name = space_for(args.vae)
    natural = _images(args.natural, args.recursive, "natural")
    restored = None if args.restored is None else _images(args.restored, args.recursive, "restored")
    metadata = {"created_by": "python -m deepot_core fit"}
    if sigma > 0:
        restored = None if restored is None else [undo_noise_clipping(r, sigma) for r in restored]
        metadata[UNDO_CLIPPING_KEY] = sigma
    transport = fit_transport(
        space, natural, restored, patch_size=args.patch_size, eps=args.eps, harmonise=args.harmonise,
        zero_shot=args.zero_shot, space_name=space_name, metadata=metadata,
        progress=ProgressBar("encoding", enabled=not args.quiet))
    transport.save(args.out, overwrite=args.overwrite)
    print(transport.report())
    if sigma > 0:
        print(f"restored images: the clipping bias of noise σ = {sigma:g} was undone before fitting; recorded as "
              f"{UNDO_CLIPPING_KEY}, so apply undoes it in every input too")
    print(f"wrote {args.out} (space {space_name})")
    return 0

"""Where PD Blend's natural marginal (``NATURAL_MARGINAL_SHAPE``, β = 0.63) comes from.

For every photo collection under ``--data``/images, the finest Laplacian level of each image is normalised by
its RMS; the table pools those coefficients per set and gives their kurtosis, the generalised-Gaussian shape with
that kurtosis, and the median and 99th percentile of |c| (photos: about 0.29 and 3.8).

    python benchmarks/natural_marginal.py       # about 30 s on 2 cores
"""
import argparse
import sys
from pathlib import Path
from typing import List

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pd_curve import DEFAULT_DATA  # noqa: E402
from deepot_core.constants import NATURAL_MARGINAL_SHAPE  # noqa: E402
from deepot_core.natural_marginal import generalised_gaussian_kurtosis, shape_for_kurtosis  # noqa: E402
from deepot_core.pyramid import laplacian_pyramid_bchw  # noqa: E402
from deepot_core.tooling.imageio import list_images, load_image  # noqa: E402

SAMPLE = 4_000_000  # coefficients per set for the percentiles (torch.quantile's limit is 16M)


def finest_normalised(images: List[torch.Tensor]) -> torch.Tensor:
    """All images' finest-level coefficients, each image divided by its own RMS, as one flat float64 vector."""
    parts = []
    for image in images:
        x = image[..., :3].permute(0, 3, 1, 2).double()
        finest = laplacian_pyramid_bchw(x, 1)[0]
        parts.append((finest / finest.pow(2).mean().sqrt().clamp_min(1e-12)).flatten())
    return torch.cat(parts)


def row(name: str, values: torch.Tensor) -> str:
    kurtosis = float(values.pow(4).mean() / values.pow(2).mean() ** 2)
    sample = values.abs()
    if sample.numel() > SAMPLE:
        sample = sample[torch.randperm(sample.numel(), generator=torch.Generator().manual_seed(0))[:SAMPLE]]
    q = torch.quantile(sample, torch.tensor([0.5, 0.99], dtype=torch.float64))
    try:
        shape = f"{shape_for_kurtosis(kurtosis):.2f}"
    except ValueError:
        shape = "–"
    return f"| {name} | {kurtosis:.1f} | {shape} | {float(q[0]):.2f} | {float(q[1]):.2f} |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args(argv)
    folder = args.data / "images"
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found; give --data the shared data folder.")
    print("| set | kurtosis | generalised-Gaussian shape | median |c| | 99th percentile |c| |")
    print("|---|---|---|---|---|")
    everything = []
    for collection in sorted(p for p in folder.iterdir() if p.is_dir()):
        values = finest_normalised([load_image(p) for p in list_images(collection)])
        everything.append(values)
        print(row(collection.name, values))
    print(row("all photos", torch.cat(everything)))
    default = NATURAL_MARGINAL_SHAPE
    print(f"\nNATURAL_MARGINAL_SHAPE {default} has kurtosis {generalised_gaussian_kurtosis(default):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Video without shimmer: does the added detail move with the picture? Video mode off and on, on synthetic clips.

Clips are made from held-out development photos as a camera would film them: a window moved by a fixed number of
pixels per frame (1–7 px, and 0.5 px sub-pixel), or a slow zoom, rendered by bicubic resampling of the photo.
Each frame is degraded and restored on its own (×4 SR by CARN-M, or σ = 50 noise, fresh every frame, denoised by
FFDNet with the clipping bias undone). Make Realistic's recipe then runs on the clip: the transport is fitted on
12 Kodak photos (harmonised) and the clip's restored frames, both latents of every frame are decoded once, and the
blend runs with video mode off and on. Per clip, space, task and mode it prints:

- shimmer: mean |band of frame t+1 moved back by the true motion − band of frame t| / mean |band|, over the
  pixels both frames see (band = output − restored frame; 0: the detail is glued to the picture);
- detail: mean band energy, and with video mode on its ratio to video mode off;
- ΔPSNR, SWD and patch-FD at perception 1 against the clean frames (SWD and patch-FD as ratios to the restored
  frames'), pooled over the clip's frames; and SWD and patch-FD frame by frame (each frame against its own clean
  frame, the ratios to the restored frame's averaged over the clip; ``frame_by_frame``).

    python benchmarks/video.py --vae taesd pixel_space --tasks sr4 denoise50 --frames 16 --size 256

The clips come from one held-out Kodak photo (kodim20) unless told otherwise: ``--photo`` takes any photos, and
``--collections`` adds the first photo of each named test collection of ``pd_curve.py`` (halved where that
collection halves its photos), so a setting chosen on kodim20 is checked on other collections.

``--time`` also times Make Realistic's whole recipe on 64 frames of 512² with video mode off and on (the CPU cost
the issue bounds at 2×). Writes video.md and video.json to --out, and a clip strip (video_strip.png) of a few frames.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pd_curve import (COLLECTIONS, SPACES, Restorer, collection_paths, half_size, load_set,  # noqa: E402
                                 space_spec)
from deepot_core.blend import pd_sweep  # noqa: E402
from deepot_core.realistic import decode_transport, fit_on_images, make_realistic  # noqa: E402
from deepot_core.tooling import experiments as E  # noqa: E402
from deepot_core.tooling.imageio import list_images, load_image, save_image  # noqa: E402
from deepot_core.tooling.metrics import patch_frechet_distance, sliced_wasserstein_patches  # noqa: E402
from deepot_core.tooling.spaces import resolve_space  # noqa: E402
from deepot_core.video import shift_exactly, warp_detail  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
#: Motions per frame: (name, (dx, dy) in output pixels, zoom factor per frame).
CLIPS = [(f"pan {k} px", (float(k), 0.0), 1.0) for k in range(1, 8)] + [
    ("pan 0.5 px", (0.5, 0.25), 1.0), ("zoom 1%", (0.0, 0.0), 1.01)]
#: Pixels at the border left out of every measure (bicubic rendering and padding effects).
MARGIN = 8
#: The clip each space and task shows in its strip (an integer pan: the crops follow it exactly).
STRIP_CLIP = "pan 4 px"


def render_clip(photo: torch.Tensor, size: int, frames: int, shift, zoom: float) -> torch.Tensor:
    """[T,size,size,3] windows of ``photo`` [1,H,W,3]: frame t sees the photo at c + t·shift + (x − c)/zoom^t."""
    _, h, w, _ = photo.shape
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    c = (size - 1) / 2
    x0 = (w - size - frames * abs(shift[0])) / 2 + (frames * abs(shift[0]) if shift[0] < 0 else 0)
    y0 = (h - size - frames * abs(shift[1])) / 2 + (frames * abs(shift[1]) if shift[1] < 0 else 0)
    out = []
    for t in range(frames):
        px = x0 + c + t * shift[0] + (xs - c) / zoom ** t
        py = y0 + c + t * shift[1] + (ys - c) / zoom ** t
        grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], dim=-1)[None].float()
        frame = F.grid_sample(photo.permute(0, 3, 1, 2).float(), grid, mode="bicubic", align_corners=True)
        out.append(frame.permute(0, 2, 3, 1).clamp(0, 1))
    return torch.cat(out)


def move_back(image: torch.Tensor, shift, zoom: float) -> torch.Tensor:
    """Frame t+1's pixels at frame t's positions ([T,H,W,C] in and out): sample t+1 at c + (x − c − shift)·zoom.

    A pan is an exact Fourier shift (of the reflect-padded frame); a zoom is interpolated bicubically between the
    samples of the frame's exact 2× upsampling (``warp_detail``). Plain bicubic between the frame's own pixels
    would dull the moved band's finest detail, and the measure would count its own blur as shimmer."""
    if zoom == 1.0:
        return shift_exactly(image.permute(0, 3, 1, 2).float(), (-shift[0], -shift[1])).permute(0, 2, 3, 1)
    _, h, w, _ = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    c = ((w - 1) / 2, (h - 1) / 2)
    px = c[0] + (xs - c[0] - shift[0]) * zoom
    py = c[1] + (ys - c[1] - shift[1]) * zoom
    flow = torch.stack([px - xs, py - ys])[None].float().expand(image.shape[0], -1, -1, -1)
    return warp_detail(image.permute(0, 3, 1, 2).float(), flow).permute(0, 2, 3, 1)


def shimmer(band: torch.Tensor, shift, zoom: float) -> float:
    """Mean |band_{t+1} moved back − band_t| / mean |band|, inside the margin every pair of frames sees."""
    back = move_back(band[1:], shift, zoom)
    reach = MARGIN + int(math.ceil(max(abs(shift[0]), abs(shift[1])))) + int(math.ceil(band.shape[1] * (zoom - 1)))
    inner = (slice(None), slice(reach, -reach), slice(reach, -reach))
    diff = (back - band[:-1])[inner].abs().mean()
    return float(diff / band[inner].abs().mean().clamp_min(1e-12))


def frame_by_frame(frames: torch.Tensor, clean: torch.Tensor) -> Tuple[List[float], List[float]]:
    """Each frame's SWD (normalised jointly, as ``swd_joint``) and patch-FD against its own clean frame.

    The pooled figures fit the patches of all frames at once, and sixteen independent draws of detail (video mode
    off) average out that fit's sampling error where one carried draw does not; one frame at a time, a draw shown
    in every frame counts as what it is in each frame."""
    levels = E.swd_levels(min(frames.shape[1:3]))
    swd, fd = [], []
    for frame, truth in zip(frames.split(1), clean.split(1)):
        swd.append(float(sliced_wasserstein_patches([frame], [truth], levels=levels, patch_size=E.SWD_PATCH, seed=0,
                                                    normalize="joint")["total"]))
        fd.append(float(patch_frechet_distance([frame], [truth], seed=0)))
    return swd, fd


def _mean_ratio(values: List[float], reference: List[float]) -> float:
    return sum(v / max(r, 1e-20) for v, r in zip(values, reference)) / len(values)


def clip_rows(space, space_name, task, clip, frames_clean, restore, natural, seed: int = 7) -> List[Dict]:
    name, shift, zoom = clip
    degraded = E.degrade(list(frames_clean.split(1)), task, seed=seed)
    with torch.inference_mode():
        restored = torch.cat([r.clone() for r in restore(degraded)]).clamp(0, 1)
    transport = fit_on_images(space, restored, natural)
    decoded = decode_transport(space, restored, transport)
    clean = list(frames_clean.split(1))
    base = E.evaluate(list(restored.split(1)), clean, with_ssim=False)
    base_swd, base_fd = frame_by_frame(restored, frames_clean)
    rows, outputs = {}, {}
    for video in (False, True):
        t0 = time.perf_counter()
        out = pd_sweep(restored, decoded.transported, [1.0], reconstructed=decoded.reconstructed, video=video)
        seconds = time.perf_counter() - t0
        band = out - restored
        outputs[video] = out
        metrics = E.evaluate(list(out.split(1)), clean, with_ssim=False)
        frame_swd, frame_fd = frame_by_frame(out, frames_clean)
        rows[video] = {"space": space_name, "task": task, "clip": name, "video": video,
                       "shimmer": shimmer(band, shift, zoom), "detail": float(band.pow(2).mean()),
                       "psnr_loss": base["psnr"] - metrics["psnr"],
                       "swd_ratio": metrics["swd_joint"] / base["swd_joint"],
                       "patch_fd_ratio": metrics["patch_fd"] / base["patch_fd"],
                       "frame_swd_ratio": _mean_ratio(frame_swd, base_swd),
                       "frame_patch_fd_ratio": _mean_ratio(frame_fd, base_fd), "blend_seconds": seconds}
    rows[True]["detail_vs_off"] = rows[True]["detail"] / max(rows[False]["detail"], 1e-20)
    rows[True]["swd_vs_off"] = rows[True]["swd_ratio"] / rows[False]["swd_ratio"]
    rows[True]["patch_fd_vs_off"] = rows[True]["patch_fd_ratio"] / rows[False]["patch_fd_ratio"]
    rows[True]["frame_swd_vs_off"] = rows[True]["frame_swd_ratio"] / rows[False]["frame_swd_ratio"]
    rows[True]["frame_patch_fd_vs_off"] = rows[True]["frame_patch_fd_ratio"] / rows[False]["frame_patch_fd_ratio"]
    return [rows[False], rows[True], {"strip": (restored, outputs)}]


def markdown(rows: List[Dict]) -> str:
    """One row per clip (video mode off and on side by side); a photo column where the clips come from several."""
    photos = len({r.get("photo") for r in rows}) > 1
    lines = ["| " + ("photo | " if photos else "") + "space | task | clip | shimmer off → on | detail on/off | "
             "ΔPSNR off / on (dB) | SWD off / on | patch-FD off / on | frame by frame: SWD, patch-FD on/off |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if photos else "")]
    for off, on in zip(rows[0::2], rows[1::2]):
        lines.append("| " + (f"{off['photo']} | " if photos else "") +
                     f"{off['space']} | {off['task']} | {off['clip']} | {off['shimmer']:.2f} → {on['shimmer']:.2f} "
                     f"| {on['detail_vs_off']:.2f} | {-off['psnr_loss']:+.2f} / {-on['psnr_loss']:+.2f} | "
                     f"{off['swd_ratio']:.2f} / {on['swd_ratio']:.2f} | "
                     f"{off['patch_fd_ratio']:.2f} / {on['patch_fd_ratio']:.2f} | "
                     f"{on['frame_swd_vs_off']:.2f}, {on['frame_patch_fd_vs_off']:.2f} |")
    return "\n".join(lines)


def extremes(rows: List[Dict]) -> str:
    """The issue's four limits against the worst clip of ``rows``: shimmer on ≤ 0.25, detail on/off ≥ 0.8, SWD and
    patch-FD on/off within 10 % of off."""
    on = [r for r in rows if r["video"]]

    def worst(key, pick):
        row = pick(on, key=lambda r: r[key])
        where = " ".join(filter(None, (row.get("photo"), row["space"], row["task"], row["clip"])))
        return f"{row[key]:.2f} ({where})"

    return "\n".join([
        f"- shimmer, video mode on, at most {worst('shimmer', max)} (limit 0.25)",
        f"- detail on/off at least {worst('detail_vs_off', min)} (limit 0.8)",
        f"- SWD on/off {worst('swd_vs_off', min)} to {worst('swd_vs_off', max)} (limit 0.9–1.1)",
        f"- patch-FD on/off {worst('patch_fd_vs_off', min)} to {worst('patch_fd_vs_off', max)} (limit 0.9–1.1)",
        f"- frame by frame, SWD on/off {worst('frame_swd_vs_off', min)} to {worst('frame_swd_vs_off', max)}, "
        f"patch-FD on/off {worst('frame_patch_fd_vs_off', min)} to {worst('frame_patch_fd_vs_off', max)} "
        "(limit 0.9–1.1)"])


def strip(restored: torch.Tensor, outputs: Dict[bool, torch.Tensor], shift, path: Path, frames=(0, 1, 2, 3, 4),
          crop=96, gain=4.0) -> Path:
    """The same piece of the scene in successive frames (each crop follows the pan), enlarged ×2: rows are the
    restored frames, video mode off, on, then the detail each adds (output − restored, ×``gain`` around grey).
    Off, the detail changes from column to column; on, it stays put."""
    h, w = restored.shape[1:3]
    left = (w - crop) // 2 + int(round(shift[0] * max(frames) / 2))  # the centre of the clip's middle frame
    top = (h - crop) // 2 + int(round(shift[1] * max(frames) / 2))

    def row(images):
        cells = []
        for t in frames:
            x0, y0 = left - int(round(t * shift[0])), top - int(round(t * shift[1]))
            cell = images[t:t + 1, y0:y0 + crop, x0:x0 + crop].permute(0, 3, 1, 2)
            cells.append(F.interpolate(cell, scale_factor=2, mode="nearest").permute(0, 2, 3, 1)[0])
        return torch.cat(cells, dim=1)

    rows = [row(restored), row(outputs[False]), row(outputs[True]),
            row(0.5 + gain * (outputs[False] - restored)), row(0.5 + gain * (outputs[True] - restored))]
    return save_image(torch.cat(rows, dim=0)[None].clamp(0, 1), path)


def time_make_realistic(space, natural: torch.Tensor, frames: int = 64, size: int = 512) -> Dict[str, float]:
    """Seconds of Make Realistic's whole recipe (fit, transport, both decodes, blend) on a pan of frames×size²,
    video mode off and on, each from scratch."""
    g = torch.Generator().manual_seed(0)
    photo = F.avg_pool2d(torch.rand(1, 3, size + 16, size + frames * 2 + 16, generator=g), 3, 1, 1)
    clip = render_clip(photo.permute(0, 2, 3, 1), size, frames, (2.0, 0.0), 1.0)
    out = {}
    for video in (False, True):
        t0 = time.perf_counter()
        make_realistic(space, clip, [1.0], natural=natural, video=video)
        out["on" if video else "off"] = time.perf_counter() - t0
    return out


def photo_file(data: Path, photo: str) -> Path:
    """``photo`` as a path, or as the stem of a Kodak photo; the photos there are listed when neither is found."""
    if Path(photo).is_file():
        return Path(photo)
    kodak = list_images(data / "images" / "kodak24")
    for path in kodak:
        if path.stem == photo:
            return path
    raise SystemExit(f"--photo {photo!r} is neither a file nor a Kodak photo ({', '.join(p.stem for p in kodak)}).")


def clip_photos(data: Path, photos: List[str], collections: List[str]) -> List[Tuple[str, torch.Tensor]]:
    """(name, IMAGE [1,H,W,3]) of every photo the clips are made from: each ``--photo``, then the first photo of
    each named collection (``pd_curve``'s selection, halved where that collection halves)."""
    out = [(path.stem, load_image(path)[..., :3]) for path in (photo_file(data, p) for p in photos)]
    for name, (path,) in collection_paths(data, 12, 1, collections).items():
        image = load_image(path)[..., :3]
        out.append((f"{name}/{path.stem}", half_size(image) if COLLECTIONS[name].half_size else image))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vae", nargs="+", default=["taesd", "pixel_space"],
                        help=f"latent spaces: {', '.join(SPACES)} or pixel_space")
    parser.add_argument("--tasks", nargs="+", default=list(E.TASKS), choices=list(E.TASKS))
    parser.add_argument("--clips", nargs="+", default=[c[0] for c in CLIPS])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photo", nargs="*", default=["kodim20"],
                        help="Kodak photos held out of the natural set (their stems), or any photos' paths")
    parser.add_argument("--collections", nargs="*", default=[], choices=list(COLLECTIONS),
                        help="also the first photo of each of these test collections (pd_curve.py's)")
    parser.add_argument("--seed", type=int, default=7, help="the degradation's seed (the noise of every frame)")
    parser.add_argument("--time", action="store_true",
                        help="also time Make Realistic on 64 frames of 512² in the first --vae space")
    parser.add_argument("--out", type=Path, default=Path("video_out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    natural = torch.cat(load_set(args.data / "images" / "kodak24", 0, 12, 256))
    photos = clip_photos(args.data, args.photo, args.collections)
    rows, strips = [], {}
    for task in args.tasks:
        restore = Restorer(task, args.data)
        for space_name in args.vae:
            space, _ = resolve_space("pixel" if space_name == "pixel_space" else space_spec(space_name, args.data))
            for k, (photo_name, photo) in enumerate(photos):
                for clip in [c for c in CLIPS if c[0] in args.clips]:
                    clean = render_clip(photo, args.size, args.frames, clip[1], clip[2])
                    off, on, extra = clip_rows(space, space_name, task, clip, clean, restore, natural, args.seed)
                    for row in (off, on):
                        row["photo"] = photo_name
                    rows += [off, on]
                    if k == 0 and (clip[0] == STRIP_CLIP or (space_name, task) not in strips):
                        strips[(space_name, task)] = (clip[1], *extra["strip"])
                    print(f"{photo_name:12.12s} {space_name:8s} {task:9s} {clip[0]:10s} "
                          f"shimmer {off['shimmer']:.2f} → {on['shimmer']:.2f}  detail ×{on['detail_vs_off']:.2f}"
                          f"  SWD ×{on['swd_vs_off']:.2f}  patch-FD ×{on['patch_fd_vs_off']:.2f}"
                          f"  frame by frame ×{on['frame_swd_vs_off']:.2f} ×{on['frame_patch_fd_vs_off']:.2f}",
                          flush=True)
    table = markdown(rows) + "\n\nWorst clip of this run against each limit:\n\n" + extremes(rows)
    print(table)
    text = "# Video mode: shimmer, detail and per-frame quality at perception 1\n\n" + table + "\n"
    if args.time:
        space, _ = resolve_space("pixel" if args.vae[0] == "pixel_space" else space_spec(args.vae[0], args.data))
        seconds = time_make_realistic(space, natural)
        line = (f"\nMake Realistic on 64 frames of 512² ({args.vae[0]}, CPU, {torch.get_num_threads()} threads): "
                f"video mode off {seconds['off']:.1f} s, on {seconds['on']:.1f} s "
                f"(×{seconds['on'] / seconds['off']:.2f}).\n")
        print(line)
        text += line
    (args.out / "video.md").write_text(text)
    (args.out / "video.json").write_text(json.dumps(rows, indent=1))
    for (space_name, task), (shift, restored, outputs) in strips.items():
        strip(restored, outputs, shift, args.out / f"strip_{space_name}_{task}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Core speed and memory: our fit/apply against the float64 unfold reference and POT, and PD Blend (prints tables).

    python benchmarks/bench_core.py                 # 2-core CPU, about 5 minutes
    python benchmarks/bench_core.py --quick         # smaller grid, a minute
    python benchmarks/bench_core.py --device cuda   # GPU: grid, peak memory, the 4096-px headline case

Reference (a) is the DOT reference code's literal form in float64: unfold every
patch, mean and covariance by matmul, the same closed-form A, then
unfold → matmul → fold → divide by the overlap count. Reference (b) is POT's
``ot.da.LinearTransport`` (fit + transform) at p = 1, where the patch map is a
per-pixel map. PD Blend is timed with residual decode, as by default and with its natural marginal
(an option: one sort of the finest level per image). Not a test: numbers depend on the machine.
"""
import argparse
import math
import os
import statistics as stats_mod
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deepot_core import LatentTransport, PatchStatistics, pd_blend  # noqa: E402
from deepot_core.constants import NATURAL_MARGINAL_SHAPE  # noqa: E402
from deepot_core.gaussian_ot import transport_matrix  # noqa: E402
from deepot_core.patch_apply import apply_unfold_reference  # noqa: E402

#: The reference materialises ~3 float64 copies of the unfolded patches; skip cases above this.
REFERENCE_MEMORY_LIMIT = 4 * 2 ** 30
#: On the CPU, skip reference cases whose matmuls exceed this many multiply-adds (they take minutes).
REFERENCE_CPU_FLOP_LIMIT = 3e10
CHANNELS, PATCHES, SIZES = (4, 16, 32), (1, 3, 5), (64, 128, 256, 512)
QUICK_SIZES = (64, 128, 256)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """Median wall time of ``repeats`` calls after one warm-up (CUDA-synchronised)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return stats_mod.median(times)


def peak_cuda(fn, device):
    """Peak extra CUDA memory of one call, in bytes (None on the CPU)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def pair(c, size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(1, c, size, size, generator=g)
    src = F.avg_pool2d(src, 3, 1, 1, count_include_pad=False)  # some spatial correlation, like a latent
    tgt = 1.3 * torch.randn(1, c, size, size, generator=g) + 0.2
    return src.to(device), tgt.to(device)


def our_fit(src, tgt, p):
    return LatentTransport.fit(PatchStatistics(p).update(src), PatchStatistics(p).update(tgt))


def reference_moments(x, p):
    cols = F.unfold(x.double(), p)[0]
    mean = cols.mean(1)
    xc = cols - mean[:, None]
    return mean, xc @ xc.T / (cols.shape[1] - 1)


def reference_fit(src, tgt, p):
    ms, cs = reference_moments(src, p)
    mt, ct = reference_moments(tgt, p)
    a = transport_matrix(cs, ct)
    return a, mt - a @ ms


def reference_cost(c, p, size):
    d, n = c * p * p, size * size
    return 3 * d * n * 8, 2 * d * d * n  # bytes held, multiply-adds (fit + apply)


def fmt_ms(seconds):
    return "-" if seconds is None else (f"{seconds * 1e3:.3g}" if seconds < 10 else f"{seconds * 1e3:.0f}")


def fmt_mb(nbytes):
    return "-" if nbytes is None else f"{nbytes / 2 ** 20:.0f}"


def run_grid(device, sizes, repeats, pot):
    print(f"\n## Fit and apply, batch 1, {device} ({torch.get_num_threads()} threads); times in ms (median)")
    print("ref = float64 unfold→matmul→fold reference; POT = ot.da.LinearTransport fit+transform at p=1")
    head = ("| C | p | latent | fit | ref fit | apply | ref apply | apply speed-up | fit speed-up "
            "| POT fit+transform | ours fit+apply | apply peak MB |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    apply_ratios, fit_ratios, pot_ratios, skipped = [], [], [], []
    for c in CHANNELS:
        for p in PATCHES:
            for size in sizes:
                src, tgt = pair(c, size, device)
                reps = repeats if size <= 128 else max(1, repeats // 2)
                fit_t = timed(lambda: our_fit(src, tgt, p), device, reps)
                tr = our_fit(src, tgt, p)
                apply_t = timed(lambda: tr.apply(src), device, reps)
                peak = peak_cuda(lambda: tr.apply(src), device)
                mem, flops = reference_cost(c, p, size)
                ref_fit_t = ref_apply_t = None
                too_slow = device.type == "cpu" and flops > REFERENCE_CPU_FLOP_LIMIT
                if mem > REFERENCE_MEMORY_LIMIT or too_slow:
                    why = f"needs {mem / 2 ** 30:.1f} GiB" if mem > REFERENCE_MEMORY_LIMIT else \
                        f"{flops / 1e9:.0f} GFLOP, minutes on this CPU"
                    skipped.append(f"C={c} p={p} {size}²: {why}")
                else:
                    ref_reps = 1 if flops > 1e9 else reps
                    ref_fit_t = timed(lambda: reference_fit(src, tgt, p), device, ref_reps)
                    a, b = reference_fit(src, tgt, p)
                    src64 = src.double()
                    ref_apply_t = timed(lambda: apply_unfold_reference(src64, a, b, p), device, ref_reps)
                    apply_ratios.append(ref_apply_t / apply_t)
                    fit_ratios.append(ref_fit_t / fit_t)
                pot_t = ours_total = None
                if pot is not None and p == 1:
                    xs = src[0].reshape(c, -1).T.double().cpu().numpy()
                    xt = tgt[0].reshape(c, -1).T.double().cpu().numpy()

                    def pot_run():
                        mapping = pot.da.LinearTransport()
                        mapping.fit(Xs=xs, Xt=xt)
                        return mapping.transform(Xs=xs)

                    pot_t = timed(pot_run, torch.device("cpu"), reps)
                    ours_total = timed(lambda: our_fit(src, tgt, 1).apply(src), device, reps)
                    pot_ratios.append(pot_t / ours_total)
                ratio = lambda num, den: "-" if num is None else f"{num / den:.1f}×"  # noqa: E731
                print(f"| {c} | {p} | {size}² | {fmt_ms(fit_t)} | {fmt_ms(ref_fit_t)} | {fmt_ms(apply_t)} | "
                      f"{fmt_ms(ref_apply_t)} | {ratio(ref_apply_t, apply_t)} | {ratio(ref_fit_t, fit_t)} | "
                      f"{fmt_ms(pot_t)} | {fmt_ms(ours_total)} | {fmt_mb(peak)} |", flush=True)
    gmean = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")  # noqa: E731
    print(f"\nGeometric-mean speed-up over the reference: apply {gmean(apply_ratios):.1f}× "
          f"(target ≥ 20× on a 2-core CPU), fit {gmean(fit_ratios):.2f}× (target ≥ 1×), "
          f"over {len(apply_ratios)} cases.")
    if pot is not None:
        print(f"Geometric-mean speed-up over POT LinearTransport at p=1 (fit+transform vs fit+apply): "
              f"{gmean(pot_ratios):.1f}× over {len(pot_ratios)} cases.")
    else:
        print("POT not installed (pip install pot): column (b) skipped.")
    for line in skipped:
        print(f"reference skipped: {line}")


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(key: str) -> int:
    """A memory figure (VmRSS, VmHWM) of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_probe_child(c, p, size):
    """Runs in a fresh process: peak RSS growth of one apply, as a multiple of the latent's bytes.

    The peak-RSS mark (VmHWM) is reset just before the apply (``clear_refs`` 5), so
    building the inputs and fitting do not set it; large blocks are mmap'ed and
    returned to the system on free, so the mark tracks live memory.
    """
    src, tgt = pair(c, size, torch.device("cpu"))
    tr = our_fit(src[..., :64, :64], tgt[..., :64, :64], p)
    tr.apply(src[..., :64, :64])  # warm caches and kernels on a small input
    del tgt
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = tr.apply(src)
    peak = _status_bytes("VmHWM")
    print(f"{(peak - before) / (src.numel() * src.element_size()):.2f}")
    del out


def memory_probe(device, c=4, p=5, size=512):
    print(f"\n## Apply peak extra memory, latent 1×{c}×{size}×{size} float32, p={p}")
    latent = c * size * size * 4
    if device.type == "cuda":
        src, tgt = pair(c, size, device)
        tr = our_fit(src, tgt, p)
        tr.apply(src)
        extra = peak_cuda(lambda: tr.apply(src), device)
        print(f"CUDA max_memory_allocated growth: {extra / latent:.2f}× the latent "
              f"({extra / 2 ** 20:.1f} MiB; the output itself is 1×; target ≤ 4×)")
        return
    cmd = [sys.executable, __file__, "--memory-child", f"{c},{p},{size}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        print(f"memory probe failed: {result.stderr.strip()[-400:]}")
        return
    print(f"peak RSS growth in a fresh process: {result.stdout.strip()}× the latent ({latent / 2 ** 20:.0f} MiB; "
          "includes the output, 1×; target ≤ 4×)")


def headline_cuda(device, repeats=200):
    """The issue's GPU target: a 4096-px image's 32-channel latent (1×32×512×512), p=3, apply only."""
    print("\n## CUDA: latent 1×32×512×512 (4096-px image, 32-channel VAE), p=3, apply (CUDA events)")
    src, tgt = pair(32, 512, device)
    tr = our_fit(src, tgt, 3)
    a, b = tr.map.matrix.to(device, torch.float32), tr.map.bias.to(device, torch.float32)
    conv_tf32, mm_tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    def event_median(fn):
        for _ in range(10):
            fn()
        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return stats_mod.median(times)

    try:
        rows = []
        bench_flag = torch.backends.cudnn.benchmark
        for label, tf32, tuned in (("float32", False, False), ("TF32", True, False),
                                   ("TF32 + cudnn.benchmark", True, True)):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = tuned
            ours = event_median(lambda: tr.apply(src))
            unfold = event_median(lambda: apply_unfold_reference(src, a, b, 3))
            rows.append((label, ours, unfold))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv_tf32, mm_tf32
        torch.backends.cudnn.benchmark = bench_flag
    latent_bytes = src.numel() * 4
    print("| precision | ours ms | unfold form (fp32) ms | speed-up |\n|---|---|---|---|")
    for label, ours, unfold in rows:
        print(f"| {label} | {ours:.3f} | {unfold:.3f} | {unfold / ours:.1f}× |")
    print(f"target: ≤ 0.3 ms incl. borders. Latent is {latent_bytes / 2 ** 20:.0f} MiB; one read + one write "
          f"at the card's bandwidth bounds the time from below.")
    print(f"device: {torch.cuda.get_device_name(device)}")
    conv_in = F.pad(src, (4, 4, 4, 4), mode="replicate")
    weight = torch.randn(32, 32, 5, 5, device=device)
    print("\nThe fused 5×5 convolution alone (the floor under apply), by layout and precision:")
    print("| layout | precision | ms |\n|---|---|---|")
    for layout, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        x, k = conv_in.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
        for label, tf32 in (("float32", False), ("TF32", True)):
            torch.backends.cudnn.allow_tf32 = tf32
            print(f"| {layout} | {label} | {event_median(lambda: F.conv2d(x, k)):.3f} |")
        torch.backends.cudnn.allow_tf32 = conv_tf32
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            tr.apply(src)
        torch.cuda.synchronize(device)
    print("\nWhere one apply's time goes (20 calls, float32):")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))


def blend_timings(device, repeats, sizes=(512, 1024, 2048)):
    """PD Blend (residual decode, default detail band, slopes and floor) on one RGB image per size."""
    print("\n| PD Blend, one RGB image (ms) | default | with the natural marginal (an option) |")
    print("|---|---|---|")
    for size in sizes:
        g = torch.Generator().manual_seed(size)
        restored, moved, recon = (torch.rand(1, size, size, 3, generator=g).to(device) for _ in range(3))
        cells = []
        for marginal in (None, NATURAL_MARGINAL_SHAPE):
            cells.append(fmt_ms(timed(lambda: pd_blend(restored, moved, 1.0, reconstructed=recon,
                                                       natural_marginal=marginal), device, repeats)))
        print(f"| {size}² | {cells[0]} | {cells[1]} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="smaller grid (no 512² latents), fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats per case")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_probe_child(*map(int, args.memory_child.split(",")))
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch sees no CUDA device.")
    try:
        import ot as pot
    except ImportError:
        pot = None
    repeats = args.repeats or (3 if args.quick else (5 if device.type == "cpu" else 20))
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {os.cpu_count()} CPUs"))
    start = time.perf_counter()
    run_grid(device, QUICK_SIZES if args.quick else SIZES, repeats, pot)
    memory_probe(device)
    blend_timings(device, max(1, repeats // 2), (512, 1024) if args.quick else (512, 1024, 2048))
    if device.type == "cuda":
        headline_cuda(device)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

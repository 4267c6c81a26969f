"""Long mutation run of the transport loader; prints the outcomes by mutation kind (not a test).

    python benchmarks/fuzz_transport_loader.py --iterations 100000            # seeded random mutations
    python benchmarks/fuzz_transport_loader.py --engine atheris --runs 50000  # coverage-guided (pip install atheris)

Every mutant of a set of valid files (signed files of this version, the unsigned golden files
of format 1, one with a ComfyUI-sized prompt in its metadata) must meet the contract of
``tests/file_mutations.py``: refused with a ``TransportFileError`` and a reason, or loaded
unchanged, within a bounded allocation. Violations are counted and their files kept in --out.
The atheris engine also feeds whole files of its own making (kind "raw").
"""
import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def base_files(folder: Path):
    """name → (bytes, transport): the valid files every mutation starts from."""
    from deepot_core import LatentTransport, PatchStatistics
    from test_statistics import latents

    prompt = {str(i): {"class_type": "VAEEncode", "inputs": {"text": "a photo, ünïcode \"quoted\" " * 20}}
              for i in range(40)}
    made = {
        "paired_c2_p3": LatentTransport.fit(latents(b=2, c=2, h=8, w=8, seed=1),
                                            latents(b=2, c=2, h=8, w=8, seed=2) * 2, patch_size=3,
                                            metadata={"note": "ünï \"q\" [x]"}),
        "zero_shot_c3_p1": LatentTransport.fit(None, PatchStatistics(1).update(latents(b=1, c=3, h=6, w=6, seed=3))),
        "paired_c16_p1_prompt": LatentTransport.fit(latents(b=1, c=16, h=6, w=6, seed=4),
                                                    latents(b=1, c=16, h=6, w=6, seed=5), patch_size=1,
                                                    metadata={"comfyui": {"prompt": prompt}, "space": "comfy:taef1"}),
    }
    out = {}
    for name, transport in made.items():
        out[name] = (transport.save(folder / f"{name}.safetensors").read_bytes(), transport)
    for path in sorted((ROOT / "tests" / "golden").glob("v1_*.transport.safetensors")):
        out["golden_" + path.name.split(".")[0]] = (path.read_bytes(), LatentTransport.load(path))
    return out


class Run:
    def __init__(self, out: Path, scratch: Path):
        self.out, self.scratch = out, scratch
        self.tally, self.violations, self.slowest = Counter(), 0, (0.0, None)

    def check(self, kind, mutated, original, reference, label):
        from file_mutations import load_outcome

        if mutated == original:
            self.tally[kind, "unchanged"] += 1
            return
        self.scratch.write_bytes(mutated)
        start = time.perf_counter()
        try:
            outcome = load_outcome(self.scratch, reference, original)
        except Exception as exc:  # noqa: BLE001 — a contract violation: keep the file, go on
            self.violations += 1
            outcome = f"VIOLATION:{type(exc).__name__}"
            keep = self.out / f"violation_{self.violations:04d}_{kind}.safetensors"
            keep.write_bytes(mutated)
            keep.with_suffix(".txt").write_text(f"{label}\n{traceback.format_exc()}")
        elapsed = time.perf_counter() - start
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, f"{kind} of {label.split()[0]}")
        self.tally[kind, outcome] += 1

    def table(self) -> str:
        outcomes = sorted({o for _, o in self.tally}, key=lambda o: (not o.startswith("loaded"), o))
        kinds = sorted({k for k, _ in self.tally})
        rows = ["| kind | total | " + " | ".join(outcomes) + " |", "|---" * (len(outcomes) + 2) + "|"]
        for kind in kinds + ["all"]:
            counts = [sum(n for (k, o), n in self.tally.items() if o == out and kind in (k, "all")) for out in outcomes]
            rows.append(f"| {kind} | {sum(counts)} | " + " | ".join(str(c) for c in counts) + " |")
        return "\n".join(rows)


def run_random(args, bases, run):
    from file_mutations import KINDS, mutate

    rng = random.Random(args.seed)
    names = sorted(bases)
    start = time.time()
    for i in range(args.iterations):
        kind = KINDS[i % len(KINDS)]
        name = names[(i // len(KINDS)) % len(names)]
        seed = rng.getrandbits(32)
        original, reference = bases[name]
        run.check(kind, mutate(original, kind, random.Random(seed)), original, reference, f"{name} seed {seed}")
        if args.progress and (i + 1) % args.progress == 0:
            print(f"{i + 1} mutations, {time.time() - start:.0f} s, {run.violations} violations", flush=True)


def run_atheris(args, bases, run):
    import atheris

    from file_mutations import KINDS, mutate

    names = sorted(bases)
    count = [0]

    def one_input(data: bytes):
        fdp = atheris.FuzzedDataProvider(data)
        choice = fdp.ConsumeIntInRange(0, len(KINDS))
        name = names[fdp.ConsumeIntInRange(0, len(names) - 1)]
        original, reference = bases[name]
        if choice == len(KINDS):  # bytes of atheris' own making: a whole file, behind a valid prefix, or spliced in
            mode, cut = fdp.ConsumeIntInRange(0, 2), fdp.ConsumeIntInRange(0, len(original))
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
            mutated = [body, original[:cut] + body, original[:cut] + body + original[cut + len(body):]][mode]
            run.check("raw", mutated, original, reference, name)
        else:
            kind = KINDS[choice]
            run.check(kind, mutate(original, kind, random.Random(fdp.ConsumeInt(8))), original, reference, name)
        count[0] += 1
        if count[0] % 1000 == 0:
            (run.out / "tally.json").write_text(json.dumps({f"{k}|{o}": n for (k, o), n in run.tally.items()}))
            (run.out / "table.md").write_text(run.table() + f"\n\nviolations: {run.violations}\n")

    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed or 1}", "-max_len=4096"], one_input)
    atheris.Fuzz()  # exits the process when done; table.md in --out holds the tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    parser.add_argument("--iterations", type=int, default=20_000, help="random engine: mutations to try")
    parser.add_argument("--runs", type=int, default=20_000, help="atheris engine: inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", type=int, default=0, help="print a line every N mutations")
    parser.add_argument("--out", type=Path, default=None, help="folder for violating files (default: a temp dir)")
    args = parser.parse_args()
    if args.engine == "atheris":  # coverage-guided: instrument the reader and loader before anything imports them
        import atheris
        with atheris.instrument_imports(include=["deepot_core.safetensors_reader", "deepot_core.serialization"]):
            import deepot_core.safetensors_reader  # noqa: F401
            import deepot_core.serialization  # noqa: F401
    out = args.out or Path(tempfile.mkdtemp(prefix="deepot_fuzz_"))
    out.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None)) / "mutant.safetensors"
    bases = base_files(scratch.parent)
    run = Run(out, scratch)
    start = time.time()
    (run_atheris if args.engine == "atheris" else run_random)(args, bases, run)
    total = sum(run.tally.values())
    print(f"engine {args.engine}, seed {args.seed}, {total} mutations of {len(bases)} valid files in "
          f"{time.time() - start:.0f} s; slowest load {run.slowest[0] * 1000:.1f} ms ({run.slowest[1]})")
    print(run.table())
    print(f"\ncontract violations: {run.violations}" + (f" (files in {out})" if run.violations else ""))
    shutil.rmtree(scratch.parent, ignore_errors=True)
    return 1 if run.violations else 0


if __name__ == "__main__":
    sys.exit(main())

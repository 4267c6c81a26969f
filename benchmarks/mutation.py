"""Mutation testing of the method's modules with mutmut: how many deliberate bugs do the tests catch?

Not a test and not run in CI: it takes tens of minutes on two cores. It copies
the working tree (tracked and untracked, not ignored, files) into a scratch
folder, writes mutmut's configuration there (never into this pyproject.toml),
runs ``mutmut run`` single-threaded (torch's thread pool does not survive
mutmut's fork: children hang and read as timeouts), and prints killed/total
per module. Survivors are written, with their diffs, to ``survivors.txt`` in
the scratch folder.

    pip install mutmut && nice -n 10 python benchmarks/mutation.py [--modules blend colour] [--jobs 2]

A mutant is *killed* when a test fails (or it times out, mutmut's ⏰); it
*survives* when every test covering it passes. Each survivor is either killed
by a new test or explained as equivalent in the project's notes; the run
itself proves nothing about which.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The method's modules: statistics, the map, its application, the transport, the blend, colour, the one-call
#: recipe, video, files.
MODULES = ("statistics", "gaussian_ot", "patch_apply", "transport", "blend", "natural_marginal", "colour",
           "realistic", "video", "serialization", "transport_document")
#: Tests that exercise those modules (mutmut runs, per mutant, only the ones that reach the mutated function).
TESTS = ("test_statistics.py", "test_statistics_contract.py", "test_gaussian_ot.py", "test_gaussian_ot_contract.py",
         "test_apply.py", "test_patch_apply_edges.py", "test_transport_contract.py", "test_blend.py",
         "test_natural_slope.py", "test_natural_floor.py", "test_natural_marginal.py", "test_colour.py",
         "test_serialization.py", "test_serialization_roundtrip.py", "test_serialization_fuzz.py",
         "test_transport_document.py", "test_golden_files.py", "test_hostile_core.py", "test_soak.py",
         "test_distributed.py", "test_nodes.py", "test_nodes_files.py", "test_pipeline.py", "test_make_realistic.py",
         "test_video.py")
#: mutmut statuses that mean "a test noticed".
KILLED = ("killed", "timeout")


def copy_tree(destination: Path) -> None:
    """The working tree as git sees it (committed or not, ignored files left out)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    if destination.exists():
        shutil.rmtree(destination)
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def configure(project: Path, modules, tests) -> None:
    only = ", ".join(f'"deepot_core/{m}.py"' for m in modules)
    selection = ", ".join(f'"tests/{t}"' for t in tests if (project / "tests" / t).is_file())
    with open(project / "pyproject.toml", "a") as config:
        config.write(f"""
[tool.mutmut]
source_paths = ["deepot_core/"]
only_mutate = [{only}]
also_copy = ["nodes", "__init__.py", "tests", "docs", "benchmarks"]
pytest_add_cli_args = ["-o", "addopts=", "-p", "no:cacheprovider", "-x", "-q"]
pytest_add_cli_args_test_selection = [{selection}]
""")


def results(project: Path):
    """{module: Counter(status)} and the surviving mutants' names, from ``mutmut results --all true``."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=project, capture_output=True, text=True).stdout
    counts, survivors = defaultdict(Counter), []
    for line in out.splitlines():
        match = re.match(r"\s*deepot_core\.(\w+)\.(\S+): (.+)$", line)
        if not match:
            continue
        module, _, status = match.groups()
        counts[module][status.strip()] += 1
        if status.strip() == "survived":
            survivors.append(f"deepot_core.{module}.{match.group(2)}")
    return counts, survivors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=MODULES)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "deepot-mutation")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--report-only", action="store_true", help="print the table of an earlier run")
    args = parser.parse_args(argv)
    if shutil.which("mutmut") is None:
        print("needs mutmut: pip install mutmut", file=sys.stderr)
        return 2
    project = args.workdir / "deepot"
    if not args.report_only:
        copy_tree(project)
        configure(project, args.modules, TESTS)
        # The property-based round trip draws 12 transports per mutant, not 120: under mutmut's trampolines its
        # 120 took a minute per mutant of the file modules (12 h for serialization alone).
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DEEPOT_ROUNDTRIP_EXAMPLES": "12",
               "DEEPOT_SHARED_DATA": str((REPO.parent / "shared" / "data").resolve())}
        run = subprocess.run(["mutmut", "run", "--max-children", str(args.jobs)], cwd=project, env=env,
                             stdout=subprocess.DEVNULL)
        if run.returncode != 0:  # e.g. the unmutated tests fail in the copy: every mutant is "not checked"
            print(f"mutmut run failed (exit {run.returncode}); run `mutmut run` in {project} to see why "
                  "(a file the tests read that the copy lacks belongs in also_copy)", file=sys.stderr)
            return 1
    counts, survivors = results(project)
    print(f"{'module':14s} {'killed':>7s} {'timeout':>8s} {'survived':>9s} {'no tests':>9s} {'total':>6s} {'score':>6s}")
    for module in args.modules:
        c = counts.get(module, Counter())
        total = sum(c.values())
        killed = sum(c[k] for k in KILLED)
        score = f"{100 * killed / total:5.1f}%" if total else "-"
        print(f"{module:14s} {c['killed']:7d} {c['timeout']:8d} {c['survived']:9d} {c['no tests']:9d} {total:6d} {score}")
        other = {k: v for k, v in c.items() if k not in ("killed", "timeout", "survived", "no tests")}
        if other:
            print(f"{'':14s} other: {dict(other)}")
    with open(args.workdir / "survivors.txt", "w") as report:
        for name in survivors:
            diff = subprocess.run(["mutmut", "show", name], cwd=project, capture_output=True, text=True).stdout
            report.write(f"== {name}\n" + "".join(f"{line}\n" for line in diff.splitlines()
                                                if line.startswith(("-", "+")) and not line.startswith(("---", "+++")))
                         + "\n")
    print(f"{len(survivors)} survivors, with diffs, in {args.workdir / 'survivors.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

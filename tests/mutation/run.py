"""Mutation check (issue 28 item 6): applies each mutation of tests/mutation/mutants.toml, one at a time,
to a copy of this checkout, runs the tests listed for it there and reports killed / survived as a
markdown table. Not collected by pytest (no test_ prefix) and not in CI: it rebuilds the C++ extension
for every C++ mutant and runs the Triton interpreter, so a full run takes tens of minutes.

    python tests/mutation/run.py                      # every mutant, table on stdout
    python tests/mutation/run.py --only cpu-mask-constant tiling-ramp-half-step
    python tests/mutation/run.py --list               # ids, files, and whether each text is still found
    python tests/mutation/run.py --output tests/mutation/results.md --baseline

Each mutant names its file (or several candidate paths, the first holding the text wins: files move
during refactors), the exact original text (which must occur exactly once), its replacement, the pytest
arguments that must fail on it, and why it is realistic. A mutant whose text is no longer found is
reported as `stale` (update the list); one marked `equivalent = "<reason>"` is expected to survive.

The checkout is copied once (without .git, build outputs and caches) to <tmp>/tree and its extension
built there with `python setup.py build_ext --inplace` (never pip; --no-build keeps the checkout's
in-place _C instead); that copy, build tree included, is kept as <tmp>/pristine. Each mutant then
restores <tmp>/tree from it (same path, same file times), applies its one change and, for a C++ file
compiled into _C (csrc/*.cpp, csrc/*.h, csrc/cpu/*), rebuilds: ninja recompiles only the changed
translation unit. CUDA files (csrc/cuda) are compiled by the SIMT harness itself, from the copy,
cached by source hash. Tests run with TRITON_INTERPRET=1 (the GPU-faithful interpreter) and
SWINIR_SIMT_REQUIRED=1, `-x` and without the cache plugin (nothing is written into the checkout).
Exit status: 0 when every non-equivalent mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = Path(__file__).with_name("mutants.toml")
# Not copied: version control, build trees and caches (the in-place _C*.so in swinir_kernels/ is kept).
EXCLUDED = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".benchmarks", ".whl", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = (".egg-info",)
# Sources compiled into swinir_kernels._C on a CPU-only machine, a superset (the *_args.h headers are
# partly included by the CUDA bindings only: rebuilding for them costs time, nothing else). csrc/cuda/*
# is not built without nvcc; the SIMT harness compiles it itself, from the copy, cached by source hash.
EXTENSION_SOURCES = ("csrc/cpu/", "csrc/swinir_ops.cpp", "csrc/checks.h", "csrc/limits.h", "csrc/window_attention_args.h",
                     "csrc/window_partition_args.h", "csrc/pixel_shuffle_args.h")


@dataclass
class Mutant:
    id: str
    files: list[str]
    original: str
    replacement: str
    tests: list[str]
    why: str
    equivalent: str = ""
    file: str = ""  # the candidate that holds `original` (resolved)
    problem: str = ""  # why it cannot be applied (stale)

    def resolve(self, root: Path) -> None:
        counts = []
        for candidate in self.files:
            path = root / candidate
            count = path.read_text().count(self.original) if path.is_file() else -1
            counts.append((candidate, count))
            if count == 1:
                self.file = candidate
                return
        found = ", ".join(f"{c}: {'missing' if n < 0 else f'{n} matches'}" for c, n in counts)
        self.problem = f"original text not found exactly once ({found})"

    @property
    def rebuilds_extension(self) -> bool:
        return self.file.startswith(EXTENSION_SOURCES)


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed, survived, stale, error, equivalent (survived as expected)
    seconds: float = 0.0
    detail: str = ""
    log: list[str] = field(default_factory=list)


def load(path: Path = MUTANTS) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    mutants = []
    for entry in data["mutant"]:
        files = entry["file"] if isinstance(entry["file"], list) else [entry["file"]]
        mutants.append(Mutant(entry["id"], files, entry["original"], entry["replacement"], entry["tests"],
                              entry["why"], entry.get("equivalent", "")))
    ids = [m.id for m in mutants]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise SystemExit(f"{path}: duplicate ids {sorted(duplicates)}")
    return mutants


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in EXCLUDED or n.endswith(EXCLUDED_SUFFIXES)} | (
        {"tmp"} if directory.endswith(os.path.join("bench", "results")) else set())


def copy_tree(destination: Path) -> Path:
    shutil.copytree(ROOT, destination, ignore=_ignore, symlinks=True)
    return destination


def restore(pristine: Path, tree: Path) -> Path:
    """tree := pristine, file times kept (copy2), so that ninja sees only the mutated file as changed."""
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(pristine, tree, symlinks=True)
    return tree


def environment(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TRITON_INTERPRET": "1", "SWINIR_SIMT_REQUIRED": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    # The first-use verification's on-disk records must not leak between mutants (or into the user's).
    env["XDG_CACHE_HOME"] = str(tree / ".mutation-cache")
    env["SWINIR_KERNELS_CACHE"] = str(tree / ".mutation-cache" / "swinir_kernels")
    return env


def run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[int | None, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(command, cwd=tree, env=environment(tree), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    return result.returncode, (result.stdout + result.stderr)[-4000:]


def build_extension(tree: Path, timeout: float) -> tuple[bool, str]:
    """Builds _C in place in `tree` (incrementally when its build/ is there); the old _C is removed
    first, so a failed build cannot leave it in use."""
    for stale in (tree / "swinir_kernels").glob("_C*.so"):
        stale.unlink()
    try:
        result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=environment(tree),
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"build timed out after {timeout:.0f} s"
    return result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def summary_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def run_mutant(mutant: Mutant, workdir: Path, timeout: float) -> Outcome:
    started = time.monotonic()
    tree = restore(workdir / "pristine", workdir / "tree")
    try:
        mutant.resolve(tree)
        if mutant.problem:
            return Outcome(mutant, "stale", time.monotonic() - started, mutant.problem)
        path = tree / mutant.file
        path.write_text(path.read_text().replace(mutant.original, mutant.replacement))
        if mutant.rebuilds_extension:
            built, output = build_extension(tree, timeout)
            if not built:  # a mutant that does not compile is killed by the compiler, not by a test
                return Outcome(mutant, "error", time.monotonic() - started, "build failed: " + summary_line(output))
        code, output = run_tests(tree, mutant.tests, timeout)
        seconds = time.monotonic() - started
        if code is None:
            return Outcome(mutant, "killed", seconds, output)  # a hang is a failure the suite notices
        if code == 0:
            return Outcome(mutant, "equivalent" if mutant.equivalent else "survived", seconds, summary_line(output))
        if code == 1:
            return Outcome(mutant, "killed", seconds, summary_line(output))
        return Outcome(mutant, "error", seconds, f"pytest exit {code}: {summary_line(output)}")
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def prepare(workdir: Path, build: bool, timeout: float) -> str:
    """Copies the checkout to workdir/tree, builds _C there (unless not `build`) and keeps the result as
    workdir/pristine; returns a line for the report."""
    started = time.monotonic()
    tree = copy_tree(workdir / "tree")
    line = "extension: the checkout's in-place _C (--no-build)"
    if build:
        built, output = build_extension(tree, timeout)
        if not built:
            raise SystemExit(f"the unmutated copy does not build:\n{output}")
        line = f"extension: built in the unmutated copy in {time.monotonic() - started:.0f} s"
    shutil.copytree(tree, workdir / "pristine", symlinks=True)
    return line


def run_baseline(mutants: list[Mutant], workdir: Path, timeout: float) -> list[tuple[str, int | None, str, float]]:
    """The unmutated copy must pass each distinct test selection, or a kill would mean nothing."""
    tree = restore(workdir / "pristine", workdir / "tree")
    results = []
    try:
        for tests in sorted({tuple(m.tests) for m in mutants}):
            started = time.monotonic()
            code, output = run_tests(tree, list(tests), timeout)
            results.append((" ".join(tests), code, summary_line(output), time.monotonic() - started))
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return results


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(outcomes: list[Outcome]) -> str:
    rows = ["| mutant | file | change | tests | result | s | note |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        m = o.mutant
        change = f"`{_short(m.original, 50)}` -> `{_short(m.replacement, 50)}`"
        note = m.equivalent if o.status == "equivalent" else o.detail
        rows.append("| " + " | ".join(_cell(c) for c in (
            m.id, m.file or m.files[0], change, " ".join(m.tests), f"**{o.status}**", f"{o.seconds:.0f}", _short(note, 140),
        )) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and whether each still applies")
    parser.add_argument("--baseline", action="store_true", help="first run each test selection on the unmutated copy")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per build and per test run")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    parser.add_argument("--no-build", action="store_true",
                        help="use the checkout's in-place _C for the unmutated copy instead of building it there")
    parser.add_argument("--mutants", type=Path, default=MUTANTS, help="the mutant list (TOML)")
    args = parser.parse_args(argv)

    mutants = load(args.mutants)
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            parser.error(f"unknown mutant ids: {sorted(unknown)}")
        mutants = [m for m in mutants if m.id in args.only]
    if args.list:
        for m in mutants:
            m.resolve(ROOT)
            print(f"{m.id:40} {m.file or '-':50} {m.problem or 'applies'}")
        return 0

    started = time.monotonic()
    outcomes, lines, baseline_failures = [], [], 0
    with tempfile.TemporaryDirectory(prefix="swinir-mutation-") as workdir:
        lines.append("- " + prepare(Path(workdir), not args.no_build, args.timeout))
        print(lines[-1], flush=True)
        if args.baseline:
            for tests, code, line, seconds in run_baseline(mutants, Path(workdir), args.timeout):
                status = "passes" if code == 0 else f"FAILS (exit {code}): its kills mean nothing"
                baseline_failures += code != 0
                lines.append(f"- baseline `{tests}`: {status} in {seconds:.0f} s ({line})")
                print(lines[-1], flush=True)
        for m in mutants:
            outcome = run_mutant(m, Path(workdir), args.timeout)
            outcomes.append(outcome)
            print(f"{m.id}: {outcome.status} ({outcome.seconds:.0f} s) {outcome.detail[:200]}", flush=True)
    elapsed = time.monotonic() - started
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "equivalent", "stale", "error")}
    report = "\n".join([
        table(outcomes), "",
        *lines,
        f"{len(outcomes)} mutants: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f"; {elapsed / 60:.1f} min on {os.cpu_count()} CPUs.",
    ])
    print("\n" + report)
    if args.output:
        args.output.write_text(report + "\n")
    return 0 if counts["survived"] == counts["stale"] == counts["error"] == baseline_failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark tooling works end to end on a CPU (tiny sizes), so the GPU runs of
bench/gpu_check.sh do not fail on a script error: the whole-model scripts with explicit backends,
the collection of the op benchmarks, the JSON -> CSV/markdown script, and the regression guard
(pytest-benchmark's --benchmark-compare-fail) docs/benchmarks.md documents. The op benchmarks themselves run
as smoke tests in CI (`python -m pytest bench/ --benchmark-disable`, .ci/run)."""

import csv
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

from tests.helpers import ROOT

OP_BENCHMARKS = ("bench_window_attention.py", "bench_window_partition.py", "bench_pixel_shuffle.py")
# Two shapes x {cpu, reference} of window_partition: four benchmarks of a few ms each.
SMALL_RUN = ["bench/bench_window_partition.py", "-k", "test_window_partition and (cpu or reference) and not compiled"]


def run(*args, env_extra=None, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env_extra or {}))
    env.pop("TRITON_INTERPRET", None)  # the scripts' own choice, as a user runs them
    with tempfile.TemporaryDirectory(prefix="benchmark-storage-") as storage:
        if args[:2] == ("-m", "pytest"):
            # nothing in the checkout (test_no_test_writes_into_the_checkout): no .pytest_cache, and
            # pytest-benchmark's storage (it makes ./.benchmarks even when it saves nothing) in a temporary folder
            args = (*args[:2], "-p", "no:cacheprovider", f"--benchmark-storage=file://{storage}", *args[2:])
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600,
                                cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def test_profile_swinir_groups_time_by_op_class(tmp_path):
    out = run("-m", "bench.profile_swinir", "--preset", "lightweight_sr_x2", "--size", "16", "--results-dir", str(tmp_path),
              "--providers", "cpu", "reference").stdout
    (csv_path,) = tmp_path.glob("profile_*.csv")
    rows = list(csv.DictReader(open(csv_path)))
    assert {row["path"] for row in rows} == {"cpu", "reference"}, out
    assert any(row["op_class"] == "attention" for row in rows)
    assert all(float(row["ms"]) >= 0 and int(row["launches"]) > 0 for row in rows)


def test_bench_swinir_times_explicit_backends(tmp_path):
    out = run("-m", "bench.bench_swinir", "--size", "16", "--repeats", "1", "--cases", "lightweight_sr_x4",
              "--providers", "cpu", "triton", "reference", env_extra={"SWINIR_BENCH_RESULTS_DIR": str(tmp_path)}).stdout
    assert "skipping triton: " in out  # the interpreter, or no Triton at all: never timed on a CPU
    rows = [row for path in tmp_path.glob("*.csv") for row in csv.DictReader(open(path))]
    assert {row["provider"] for row in rows} == {"cpu", "reference"}
    assert all(float(row["median_ms"]) > 0 for row in rows)
    assert {row["speedup_vs_reference"] for row in rows if row["provider"] == "reference"} == {"1.00"}


def test_op_benchmarks_are_collected_once_and_only_them():
    every = run("-m", "pytest", "bench/", "--collect-only", "-q", "--benchmark-disable").stdout.splitlines()
    ids = [line for line in every if "::" in line]
    assert len(ids) == len(set(ids)) and ids
    assert {line.split("::")[0].removeprefix("bench/") for line in ids} == set(OP_BENCHMARKS)
    # A module named on the command line is collected by pytest itself, not a second time by the hook.
    named = run("-m", "pytest", "bench/bench_pixel_shuffle.py", "--collect-only", "-q", "--benchmark-disable").stdout
    assert len([line for line in named.splitlines() if "::" in line]) == len([i for i in ids if "pixel_shuffle" in i])


def _scaled(run_json: dict, factor: float) -> dict:
    """A copy of a --benchmark-json document whose times are `factor` times the measured ones."""
    scaled = json.loads(json.dumps(run_json))
    for bench in scaled["benchmarks"]:
        stats = bench["stats"]
        for key in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total"):
            stats[key] *= factor
        stats["ops"] /= factor
        stats.pop("data", None)
    return scaled


def test_json_to_results_and_regression_guard(tmp_path):
    run_path = tmp_path / "run.json"
    run("-m", "pytest", *SMALL_RUN, "-q", "--benchmark-only", "--benchmark-max-time=0.05", "--benchmark-min-rounds=3",
        f"--benchmark-json={run_path}")
    measured = json.loads(run_path.read_text())
    assert len(measured["benchmarks"]) == 4
    for bench in measured["benchmarks"]:
        info = bench["extra_info"]
        assert info["bytes"] > 0 and info["gb_s"] == info["bytes"] / bench["stats"]["median"] / 1e9
    assert {b["group"] for b in measured["benchmarks"]} == {
        "window_partition forward float32 1x128x128x180", "window_partition forward float32 8x64x64x60"}

    device = measured["machine_info"]["swinir"]["device"]
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n<!-- bench-tables:{device} begin -->\nold\n<!-- bench-tables:{device} end -->\nafter\n")
    run("-m", "bench.results_from_json", str(run_path), "--readme", str(readme),
        env_extra={"SWINIR_BENCH_RESULTS_DIR": str(tmp_path)})
    rows = list(csv.DictReader(open(tmp_path / f"{device}.csv")))
    assert list(rows[0]) == ["op", "provider", "mode", "dtype", "shape", "median_ms", "gb_s", "speedup_vs_reference",
                             "peak_mb", "device", "torch", "commit", "date"]
    assert {row["provider"] for row in rows} == {"cpu", "reference"} and len(rows) == 4
    assert {row["speedup_vs_reference"] for row in rows if row["provider"] == "reference"} == {"1.00"}
    text = readme.read_text()
    assert "old" not in text and "| cpu ms | reference ms |" in text and text.startswith("before") and text.endswith("after\n")

    # The regression guard: slower than a baseline beyond the threshold fails, faster passes.
    for factor, should_fail in ((1e-3, True), (1e3, False)):
        baseline = tmp_path / f"baseline-{factor}.json"
        baseline.write_text(json.dumps(_scaled(measured, factor)))
        result = run("-m", "pytest", *SMALL_RUN, "-q", "--benchmark-only", "--benchmark-max-time=0.05",
                     "--benchmark-min-rounds=3", f"--benchmark-compare={baseline}",
                     "--benchmark-compare-fail=median:10%", check=False)
        output = result.stdout + result.stderr
        assert (result.returncode != 0) == should_fail, output[-3000:]
        assert ("Performance has regressed" in output) == should_fail, output[-3000:]


def test_build_records_the_commit_for_trees_without_git(tmp_path):
    # A copy of the tree outside any git checkout (as on a GPU machine): setup.py records the commit
    # it is given, and a later build there keeps it instead of writing "unknown".
    (tmp_path / "swinir_kernels").mkdir()
    (tmp_path / "setup.py").write_text(open(os.path.join(ROOT, "setup.py")).read())
    build_info = tmp_path / "swinir_kernels" / "_build_info.py"
    for env_extra in ({"SWINIR_KERNELS_COMMIT": "abc1234"}, {}):
        env = dict(os.environ, SWINIR_KERNELS_CUDA="0", GIT_CEILING_DIRECTORIES=str(tmp_path.parent), **env_extra)
        if not env_extra:
            env.pop("SWINIR_KERNELS_COMMIT", None)
        result = subprocess.run([sys.executable, "setup.py", "--name"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert 'COMMIT = "abc1234"' in build_info.read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="would build the CUDA extension for real")
def test_gpu_check_keeps_a_relative_outdir_after_changing_directory(tmp_path):
    # On a CPU torch the CUDA build fails at once; its log must still land in OUTDIR, given relative
    # to where the script was started (the script changes to the checkout before building). The script
    # runs `setup.py build_ext --inplace` where it lives: it runs from a copy of what the build reads,
    # so that nothing (build/, _build_info.py, a half-built _C) is written into this checkout.
    tree = tmp_path / "tree"
    copy_build_inputs(tree)
    (tmp_path / "start").mkdir()
    result = subprocess.run(["bash", str(tree / "bench" / "gpu_check.sh"), "rel/out", "attn-fwd"], cwd=tmp_path / "start",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "BUILD FAILED" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CUDA kernels cannot be built" in (tmp_path / "start" / "rel" / "out" / "build.log").read_text()
    assert not (tree / "rel").exists() and not (tree / "build").exists()


def copy_build_inputs(tree) -> None:
    """What `setup.py build_ext` and bench/gpu_check.sh read, copied into ``tree`` (no built _C, no caches)."""
    import shutil

    skip = shutil.ignore_patterns("_C*", "__pycache__", "_build_info.py", "*.so", "results")
    for name in ("csrc", "swinir_kernels", "bench"):
        shutil.copytree(os.path.join(ROOT, name), tree / name, ignore=skip)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy2(os.path.join(ROOT, name), tree / name)


# The tests that start processes (pytest, the bench scripts, gpu_check.sh and its setup.py build,
# python -m swinir, torchrun): each writes only under its tmp_path, never into the checkout it tests.
SPAWNING_TESTS = [
    "tests/app/test_bench_scripts.py",  # all but the test below (deselected with -k)
    "tests/app/test_cli.py::test_console_entry_point",
    "tests/app/test_cli.py::test_help_and_usage_errors_do_not_import_torch",
    "tests/app/test_train.py::test_python_m_swinir_train_without_a_runpy_warning",
    "tests/app/test_newcomer.py::test_version_without_torch",
    "tests/app/test_fresh_clone.py",
    "tests/app/test_distributed.py::test_restore_shares_a_folder_between_two_ranks",
]
# Not copied: git's data, and what earlier runs left in the checkout (git-ignored caches and build output)
NOT_COPIED = (".git", "build", ".pytest_cache", ".benchmarks", "__pycache__", ".coverage", "*.egg-info")


def _listing(tree) -> dict:
    """Every folder and file under ``tree``: path -> None (folder) or (size, mtime_ns) (file)."""
    found = {}
    for folder, dirs, names in os.walk(tree):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), tree)] = None
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), tree)] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.mark.slow
def test_no_test_writes_into_the_checkout(tmp_path):
    """The spawning tests run, as CI runs them, in a copy of this checkout (their ROOT is the copy, so
    they would write where they write here; a copy, not the checkout itself, so that other work in the
    checkout cannot disturb the comparison): afterwards no file of the copy changed (size and mtime), none
    was removed and none appeared, ignored ones (.pytest_cache, build/, _build_info.py, bench results)
    included. Python's own bytecode caches are turned off (PYTHONDONTWRITEBYTECODE=1) rather than
    excluded from the comparison: they are the interpreter's, not the tests', and would hide nothing else."""
    import shutil

    tree = tmp_path / "checkout"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    before = _listing(tree)
    assert "setup.py" in before and os.path.join("bench", "gpu_check.sh") in before
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "SWINIR_BENCH"))}
    env.update(PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", TRITON_INTERPRET="1",
               SWINIR_TESTSETS=os.path.join(str(tmp_path), "no-testsets"))
    # The runner's own writes are turned away as the tests' are: no .pytest_cache, and pytest-benchmark's
    # storage (the plugin makes an empty ./.benchmarks at every session start, tests or not) in tmp_path.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                             f"--benchmark-storage=file://{tmp_path / 'runner-benchmarks'}",
                             "--basetemp", str(tmp_path / "basetemp"), "-k", "not test_no_test_writes_into_the_checkout",
                             *SPAWNING_TESTS], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
    after = _listing(tree)
    appeared = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    assert not (appeared or removed or changed), f"appeared {appeared}, removed {removed}, changed {changed}"

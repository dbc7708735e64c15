"""The model-level benchmark and profiling scripts run end to end (tiny sizes on CPU), so the GPU
runs of bench/gpu_check.sh do not fail on a script error."""

import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env_extra or {}))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_profile_swinir_groups_time_by_op_class(tmp_path):
    out = run_script("profile_swinir.py", "--preset", "lightweight_sr_x2", "--size", "16", "--results-dir", str(tmp_path))
    assert "reference" in out and "ours" in out
    (csv_path,) = tmp_path.glob("profile_*.csv")
    rows = list(csv.DictReader(open(csv_path)))
    assert {row["path"] for row in rows} == {"reference", "ours"}
    assert any(row["op_class"] == "attention" for row in rows)
    assert all(float(row["ms"]) >= 0 and int(row["launches"]) > 0 for row in rows)


def test_bench_swinir_writes_rows(tmp_path):
    run_script(
        "bench_swinir.py", "--size", "16", "--repeats", "1", "--cases", "lightweight_sr_x4",
        env_extra={"SWINIR_BENCH_RESULTS_DIR": str(tmp_path)},
    )
    rows = [row for path in tmp_path.glob("*.csv") for row in csv.DictReader(open(path))]
    assert {row["provider"] for row in rows} == {"swinir", "reference"}
    assert all(float(row["median_ms"]) > 0 for row in rows)

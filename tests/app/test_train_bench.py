"""bench/bench_training.py runs end to end (tiny size on CPU) and writes its rows."""

import csv

from tests.app.test_bench_scripts import run


def test_bench_training_writes_rows_for_both_paths(tmp_path):
    out = run("bench/bench_training.py", "--cases", "lightweight_sr_x2", "--batch", "1", "--size", "8",
                     "--repeats", "1", "--threads", "1", env_extra={"SWINIR_BENCH_RESULTS_DIR": str(tmp_path)}).stdout
    assert "ms/step" in out
    rows = [row for path in tmp_path.glob("*.csv") for row in csv.DictReader(open(path))]
    assert {row["provider"] for row in rows} == {"swinir[auto]", "reference"}
    assert {row["op"] for row in rows} == {"train_step_lightweight_sr_x2"} and {row["shape"] for row in rows} == {"1x3x8x8"}
    assert all(row["mode"] == "fwd+bwd+adam" and float(row["median_ms"]) > 0 for row in rows)

"""The attention predictions (bench/predict_attention.py): made from the committed static report, and,
given a GPU run of bench/bench_window_attention.py, joined with its measured rows."""

import csv
import json
import os
import sys

import pytest

from tests.helpers import ROOT

from bench import predict_attention


def test_committed_predictions_are_the_scripts_output(tmp_path):
    """The committed table is what the script makes from the committed static report (rerun it after
    `python -m bench.static_report`)."""
    out = tmp_path / "predictions.md"
    predict_attention.main(["--out", str(out)])

    def table(text):
        return [line for line in text.splitlines() if line.startswith(("| SwinIR", "| HAT", "| DAT"))]

    committed = open(os.path.join(ROOT, "bench", "results", "attention-predictions.md")).read()
    assert table(out.read_text()) == table(committed)
    for kernel in ("cuda flash forward", "cuda flash backward", "triton flash forward", "triton flash backward"):
        assert any(line.startswith(f"| HAT (16x16, C 180) | {kernel} |") for line in table(committed)), kernel


def test_flash_predictions_state_their_bound():
    """The flash kernels at HAT's shape: forward and backward, each with a time above its HBM roofline and
    the term that bounds it."""
    for kernel in predict_attention.flash_kernels():
        prediction = predict_attention.predict_flash(kernel, predict_attention.GPUS["H100 SXM"])
        assert prediction["seconds"] > prediction["roofline"] > 0
        assert prediction["bound"] in prediction["terms"] and 0 < prediction["fraction"] < 1


def test_triton_flash_predictions_cover_both_shapes_and_directions():
    """The Triton flash kernels at HAT's 16x16 and DAT's 8x32 windows (256 tokens each): forward and backward
    predicted from the static report's sm_90 rows, a share of the roofline in (0, 1] and a stated bound on both
    GPUs; the backward is the sum of its four parts, the dK/dV part counting the partials' read-modify-write."""
    with open(predict_attention.REPORT) as f:
        report = list(csv.DictReader(f))
    entries = {(e["label"].split()[0], e["direction"]): e for e in predict_attention.triton_flash_predictions(report)}
    assert set(entries) == {(shape, d) for shape in ("HAT", "DAT") for d in ("forward", "backward")}
    for (shape, direction), entry in entries.items():
        assert not entry["missing"], (shape, direction)
        for gpu in predict_attention.GPUS:
            prediction = entry[gpu]
            assert 0 < prediction["fraction"] <= 1 and prediction["seconds"] > prediction["roofline"] > 0
            assert prediction["bound"].split()[0] in prediction["terms"]
            parts = [p[gpu]["seconds"] for _, _, p in entry["parts"]]
            assert prediction["seconds"] == pytest.approx(sum(parts))
        assert [launch.name for launch, _, _ in entry["parts"]] == (
            ["forward"] if direction == "forward" else ["preprocess", "dK/dV", "dQ", "partial sum"])
    launches = predict_attention.triton_flash_launches((16, 16), 180, 6)
    dkdv = launches["backward"][1]
    window_heads = 256 * 6
    assert dkdv.programs == 10 * 6 * 4  # 10 window groups x 6 heads x 4 key blocks of 64
    # The partials' read-modify-write alone (fp32, every window but each group's first reads) is in its L2 bytes.
    assert dkdv.l2_bytes > (2 * 256 - 10) * 6 * 256 * 256 * 4
    # The forward re-reads the k, v tiles per query block (4 of 64 rows) and the bias per (window, head).
    forward = launches["forward"][0]
    assert forward.programs == window_heads * 4
    assert forward.l2_bytes > window_heads * (8 * 256 * 60 + 256 * 256 * 2)


def benchmark(provider, mode, channels, median_s, dtype="bfloat16"):
    return {
        "extra_info": {"op": "shifted_window_attention", "provider": provider, "mode": mode, "dtype": dtype,
                       "shape": f"B1xH256xW256xC{channels}xnH6xws8xs4"},
        "stats": {"median": median_s},
    }


def test_measured_rows_go_next_to_their_predictions(tmp_path):
    run = {
        "machine_info": {"swinir": {"gpu": "NVIDIA H200"}},
        "benchmarks": [
            benchmark("triton", "forward", 180, 40e-6),
            benchmark("cuda", "forward+backward", 180, 200e-6),
            benchmark("reference", "forward", 180, 900e-6),  # not one of our kernels
            benchmark("triton", "forward", 180, 50e-6, dtype="float32"),  # not the predicted dtype
        ],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    out = tmp_path / "predictions.md"
    predict_attention.main(["--measured", str(path), "--out", str(out)])
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| NVIDIA H200")]
    assert [(row[2], row[3]) for row in rows] == [("triton", "forward"), ("cuda", "forward+backward")]

    with open(predict_attention.REPORT) as f:
        report = list(csv.DictReader(f))
    by_name = {(c, k.name): p["H200 SXM"] for _, c, k, _, p in predict_attention.predictions(report)}
    forward = by_name[180, "triton forward"]
    both = [by_name[180, "cuda tensor-core forward"], by_name[180, "cuda tensor-core backward"]]
    assert float(rows[0][4]) == pytest.approx(forward["seconds"] * 1e6, abs=0.051)
    assert float(rows[0][5]) == pytest.approx(40.0)
    assert float(rows[0][6]) == pytest.approx(40e-6 / forward["seconds"], abs=0.006)
    assert float(rows[1][4]) == pytest.approx(sum(p["seconds"] for p in both) * 1e6, abs=0.051)
    share = sum(p["roofline"] for p in both) / 200e-6
    assert float(rows[1][7].rstrip("% |")) == pytest.approx(100 * share, abs=0.051)


def test_a_run_on_another_gpu_adds_no_rows(tmp_path):
    run = {"machine_info": {"swinir": {"gpu": "NVIDIA A100-SXM4-80GB"}},
           "benchmarks": [benchmark("triton", "forward", 180, 40e-6)]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    out = tmp_path / "predictions.md"
    predict_attention.main(["--measured", str(path), "--out", str(out)])
    assert "no bf16 cuda/triton rows at these shapes on an H100 or H200" in out.read_text()

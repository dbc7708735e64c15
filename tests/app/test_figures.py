"""The figures: `python -m bench.plot` draws every benchmark figure from tiny rows (non-empty, of the
expected size, the same bytes twice), `swinir train`'s curves, and the one line a command says without
matplotlib."""

import csv
import importlib.util
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from tests.helpers import run_python

from bench import plot
from swinir import figures

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
# the tests that draw need it; those that simulate its absence do not
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib (pip install swinir-kernels[plot])")

DEVICE = "cpu-test"
STAMP = dict(device=DEVICE, torch="2.13.0+cpu", commit="abc1234", date="2026-12-01T10:00:00Z")
COLUMNS = ("op", "provider", "mode", "dtype", "shape", "median_ms", "gb_s", "speedup_vs_reference", "peak_mb",
           "device", "torch", "commit", "date")
PREDICTIONS = """# Predicted GPU attention times

Made by `python -m bench.predict_attention` at commit abc1234 from bench/results/static-report.csv.

| shape | kernel | blocks/SM | bound by | H100 roofline us | H100 predicted us | share | H200 roofline us | H200 predicted us | share | target |
|---|---|---|---|---|---|---|---|---|---|---|
| SwinIR-M (C 180) | triton forward | 8/64 | HBM | 31.5 | 35.5 | 88.7% | 21.9 | 28.6 | 76.8% | meets 70% |
| SwinIR-M (C 180) | triton backward | 8/64 | HBM | 55.1 | 66.7 | 82.5% | 38.4 | 56.2 | 68.4% | meets 50% |
"""


def _op_rows():
    rows = []
    for mode in ("forward", "forward+backward"):
        for dtype in ("float32", "bfloat16"):
            for size, reference_ms in ((64, 4.0), (128, 16.0)):
                shape = f"B1xH{size}xW{size}xC60xnH6xws8xs4"
                for provider, ms in (("reference", reference_ms), ("cpu", reference_ms / 3), ("sdpa-folded-bias", reference_ms)):
                    rows.append(dict(op="shifted_window_attention", provider=provider, mode=mode, dtype=dtype, shape=shape,
                                     median_ms=f"{ms:.4f}", speedup_vs_reference=f"{reference_ms / ms:.2f}", **STAMP))
    for provider, ms in (("reference", 1.0), ("cpu", 0.25), ("copy", 0.05)):  # one size: bars
        for mode in ("fwd_nchw", "fwd+bwd_nchw"):
            rows.append(dict(op="pixel_shuffle_tail", provider=provider, mode=mode, dtype="float32", shape="1x48x32x32",
                             median_ms=f"{ms}", speedup_vs_reference=f"{1.0 / ms:.2f}", **STAMP))
    for op, shape in (("swinir_lightweight_sr_x4", "1x3x32x32"), ("swinir_lightweight_sr_x4", "1x3x64x64")):
        for provider, ms, mb in (("swinir", 40.0, 3.0), ("reference", 60.0, 5.0)):
            rows.append(dict(op=op, provider=provider, mode="forward", dtype="float32", shape=shape,
                             median_ms=f"{ms * (4 if '64' in shape else 1)}", peak_mb=f"{mb}", **STAMP))
    return rows


def _results(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{DEVICE}.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_op_rows())
    with open(os.path.join(folder, "attention-predictions.md"), "w") as handle:
        handle.write(PREDICTIONS)
    with open(os.path.join(folder, f"train-finetune-{DEVICE}.csv"), "w", newline="") as handle:
        fields = ("phase", "step", "psnr", "ssim", "psnr_y", "ssim_y", "bicubic_psnr", "bicubic_psnr_y", "minutes",
                  "command", "device", "torch", "commit", "date")
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for phase, steps in (("scratch", (10, 20, 30)), ("finetune", (10, 20))):
            for step in steps:
                value = 25 + step / 10 + (3 if phase == "finetune" else 0)
                writer.writerow(dict(phase=phase, step=step, psnr=value, ssim=0.8 + step / 1000, psnr_y=value + 2,
                                     ssim_y=0.85, bicubic_psnr=26.0, bicubic_psnr_y=28.0, minutes="0.5",
                                     command="swinir train ...", **dict(STAMP, date="2026-12-01 10:00")))
    return str(folder)


def _svg_size(path):
    with open(path) as handle:
        head = handle.read(2000)
    width, height = (float(re.search(rf'{name}="([\d.]+)pt"', head).group(1)) for name in ("width", "height"))
    return width, height


@needs_matplotlib
def test_bench_plot_draws_every_figure_from_the_rows(tmp_path):
    results = _results(tmp_path / "results")
    written = plot.draw_all(results, str(tmp_path / "svg"))
    names = sorted(os.path.basename(path) for path in written)
    assert names == sorted([f"speedup-shifted_window_attention-{DEVICE}.svg", f"speedup-pixel_shuffle_tail-{DEVICE}.svg",
                            f"model-{DEVICE}.svg", "attention-predictions.svg", f"train-finetune-{DEVICE}.svg"])
    for path in written:
        size = os.path.getsize(path)
        assert 3_000 < size < 80_000, (path, size)  # tens of KB
        width, height = _svg_size(path)
        assert 250 < width < 1000 and 150 < height < 600, (path, width, height)  # points (1/72 inch)
        text = open(path).read()
        assert "abc1234" in text and DEVICE in text or "predictions" in path  # the caption: commit, device
    assert "PREDICTED" in open(tmp_path / "svg" / "attention-predictions.svg").read()
    # the same rows give the same bytes (no date, fixed ids)
    again = plot.draw_all(results, str(tmp_path / "again"))
    for first, second in zip(sorted(written), sorted(again)):
        assert open(first, "rb").read() == open(second, "rb").read(), first


@needs_matplotlib
def test_bench_plot_png_and_a_pytest_benchmark_json(tmp_path):
    results = str(tmp_path / "results")
    os.makedirs(results)
    run = {"datetime": "2026-12-01T10:00:00+00:00",
           "machine_info": {"swinir": {"device": "NVIDIA H100 80GB HBM3", "torch": "2.13.0", "commit": "def5678"}},
           "benchmarks": [
               {"group": "g", "stats": {"median": median},
                "extra_info": {"op": "window_partition", "provider": provider, "mode": "forward", "dtype": "float32",
                               "shape": shape, "bytes": 1000}}
               for shape in ("8x64x64x60", "1x128x128x180")
               for provider, median in (("reference", 2e-3), ("cuda", 1e-3))]}
    # one group per shape, as pytest-benchmark groups them
    for index, bench in enumerate(run["benchmarks"]):
        bench["group"] = bench["extra_info"]["shape"]
    with open(tmp_path / "run.json", "w") as handle:
        json.dump(run, handle)
    assert plot.main([str(tmp_path / "run.json"), "--results", results, "--out", str(tmp_path / "png"),
                      "--format", "png"]) == 0
    path = tmp_path / "png" / "speedup-window_partition-NVIDIA H100 80GB HBM3.png"
    image = Image.open(path)
    assert 300 < image.width < 1200 and 200 < image.height < 700, image.size
    assert np.asarray(image.convert("L")).min() < 100  # something is drawn
    assert path.stat().st_size < 150_000


@needs_matplotlib
def test_measured_gpu_rows_are_drawn_beside_the_predictions(tmp_path):
    results = _results(tmp_path / "results")
    shape = "B1xH256xW256xC180xnH6xws8xs4"
    rows = [dict(op="shifted_window_attention", provider=provider, mode="forward", dtype="bfloat16", shape=shape,
                 median_ms=ms, speedup_vs_reference="", **dict(STAMP, device="NVIDIA H100 80GB HBM3"))
            for provider, ms in (("triton", "0.040"), ("reference", "0.300"))]
    with open(os.path.join(results, "NVIDIA H100 80GB HBM3.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    assert plot._measured_us(plot.read_rows(results), "H100", "SwinIR-M (C 180)", "triton forward") == pytest.approx(40.0)
    assert plot._measured_us(plot.read_rows(results), "H200", "SwinIR-M (C 180)", "triton forward") is None
    plot.draw_all(results, str(tmp_path / "svg"))
    text = open(tmp_path / "svg" / "attention-predictions.svg").read()
    assert "H100 measured" in text and "hatched: predicted; solid: measured" in text and "PREDICTED:" not in text


@needs_matplotlib
def test_the_training_curves_figure(tmp_path):
    history = [dict(step=step, psnr=20 + step, ssim=0.5 + step / 100, psnr_y=22 + step, ssim_y=0.6) for step in (2, 4)]
    losses = [dict(step=step, loss=1.0 / step) for step in (1, 2, 3, 4)]
    path = str(tmp_path / "val.svg")
    figures.training_curves(path, history, losses, "a title")
    assert 5_000 < os.path.getsize(path) < 80_000
    width, height = _svg_size(path)
    assert 300 < width < 600 and 300 < height < 600
    assert figures.curve_points(history, losses)["loss"] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.25)]
    figures.training_curves(str(tmp_path / "empty.svg"), [], [], "")  # a run without --val, before any loss
    assert os.path.getsize(tmp_path / "empty.svg") > 1000


def test_caption_names_devices_commits_and_dates():
    rows = [dict(device="d", torch="t", commit="c1", date="2026-01-02T03:04:05Z"),
            dict(device="d", torch="t", commit="c2", date="2026-01-05 10:00")]
    assert figures.caption(rows, "x") == "d · torch t · commits c1, c2 · 2026-01-02 to 2026-01-05 · x"


_NO_MATPLOTLIB = """
    import sys
    sys.modules["matplotlib"] = None  # as if it were not installed: import matplotlib raises ImportError
"""


def test_without_matplotlib_bench_plot_says_so_in_one_line(tmp_path):
    results = _results(tmp_path / "results")
    result = run_python(_NO_MATPLOTLIB + f"""
    from bench import plot
    sys.exit(plot.main(["--results", {results!r}, "--out", {str(tmp_path / 'out')!r}]))
    """)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bench.plot: plots need matplotlib, which is not installed: pip install swinir-kernels[plot]"]
    assert not (tmp_path / "out").exists()


def test_without_matplotlib_swinir_train_says_so_in_one_line_and_trains(tmp_path):
    from swinir import imageio

    rng = np.random.default_rng(0)
    imageio.write_image(str(tmp_path / "hr" / "a.png"), rng.random((24, 24, 3)).astype(np.float32))
    out = tmp_path / "out"
    arch = ["embed_dim=6", "depths=[1]", "num_heads=[1]", "window_size=4", "img_size=8", "mlp_ratio=1.0",
            "upscale=1", "upsampler=", "drop_path_rate=0"]
    result = run_python(_NO_MATPLOTLIB + f"""
    import torch
    torch.set_num_threads(1)
    from swinir.commands import main
    sys.exit(main(["train", "--hr", {str(tmp_path / 'hr')!r}, "--val", {str(tmp_path / 'hr')!r}, "--noise", "25",
                   "--arch", *{arch!r}, "--patch", "8", "--batch", "2", "--steps", "2", "--val-every", "1",
                   "--workers", "0", "--out", {str(out)!r}, "-q"]))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "swinir train: no training plot (plots need matplotlib, which is not installed: "
        "pip install swinir-kernels[plot]; --no-plot silences this)"]
    assert (out / "val.csv").exists() and (out / "model.pth").exists() and not (out / "val.svg").exists()

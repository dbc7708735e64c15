"""The benchmark figures, drawn from the committed rows (nothing is timed here):

* ``speedup-<op>-<device>.svg``: per op, the speed-up of each backend over the eager reference against
  the problem size (B x H x W x C elements), forward and forward+backward panels, one line per backend
  and dtype (ours solid, the other baselines dashed); an op measured at one size only gets bars;
* ``model-<device>.svg``: the whole model (and the training step): latency and peak memory against the
  image size, ours against the reference;
* ``attention-predictions.svg``: the predicted GPU attention times
  (``bench/results/attention-predictions.md``), hatched and labelled "predicted", with the measured GPU
  rows beside them once the CSV files hold some;
* ``train-finetune-<device>.svg``: the committed fine-tuning run (``bench/results/train-finetune-*.csv``):
  Set5 PSNR/SSIM against step for both phases, with the bicubic baseline.

Every figure's caption names the device, torch version, commits and dates of the rows it draws.
Rows: ``bench/results/*.csv`` (op, provider, mode, dtype, shape, ... as bench/utils.COLUMNS), plus any
pytest-benchmark ``--benchmark-json`` files given (converted as ``bench.results_from_json``); of rows
repeating the same measurement (device, op, provider, mode, dtype, shape) the latest counts.

    python -m bench.plot                                  # all figures -> bench/results/figures/
    python -m bench.plot run.json --out /tmp/figures      # with a pytest-benchmark run's rows too

Needs matplotlib (``pip install swinir-kernels[plot]``); the SVG files are the same bytes for the same rows.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
OUT = os.path.join(RESULTS, "figures")
OURS = ("cuda", "triton", "cpu")  # our backends (bench/utils.OURS)
REFERENCE = "reference"
MODEL_OPS = re.compile(r"^(swinir_|train_step_)")
KEY = ("device", "op", "provider", "mode", "dtype", "shape")


# -- rows ------------------------------------------------------------------------------------------


def read_rows(results: str, runs: list[str] = ()) -> list[dict]:
    """The op/model rows of ``results``/*.csv (files with an ``op`` column) and of pytest-benchmark JSON
    ``runs``; of repeated measurements the latest (by date, then file order) is kept."""
    rows = []
    for path in sorted(glob.glob(os.path.join(results, "*.csv"))):
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames and "op" in reader.fieldnames and "median_ms" in reader.fieldnames:
                rows.extend(reader)
    if runs:
        from bench.results_from_json import rows_from_runs

        documents = []
        for path in runs:
            with open(path) as handle:
                documents.append(json.load(handle))
        rows.extend(rows_from_runs(documents))
    latest: dict[tuple, dict] = {}
    for order, row in enumerate(rows):
        key = tuple(row.get(name, "") for name in KEY)
        previous = latest.get(key)
        if previous is None or (row.get("date", ""), order) >= (previous.get("date", ""), previous["_order"]):
            latest[key] = dict(row, _order=order)
    return sorted(latest.values(), key=lambda row: row["_order"])


def shape_size(shape: str) -> int:
    """Elements of a shape: 'B1xH64xW64xC60xnH6...' -> B*H*W*C; '1x48x128x128' -> the product."""
    named = dict((key, int(value)) for key, value in re.findall(r"(?:^|x)([A-Za-z]+)(\d+)", shape))
    if named and {"H", "W"} <= named.keys():
        return named.get("B", 1) * named["H"] * named["W"] * named.get("C", 1)
    return math.prod(int(value) for value in re.findall(r"\d+", shape)) or 1


def shape_label(shape: str) -> str:
    named = dict((key, int(value)) for key, value in re.findall(r"(?:^|x)([A-Za-z]+)(\d+)", shape))
    if named and {"H", "W"} <= named.keys():
        return f"{named['H']}x{named['W']}, C {named.get('C', '?')}"
    return shape


def _image_label(shape: str) -> str:
    numbers = [int(value) for value in re.findall(r"\d+", shape)]
    return f"{numbers[-2]}x{numbers[-1]}" if len(numbers) >= 2 else shape


def image_pixels(shape: str) -> int:
    """Pixels of the (LR) image of a whole-model row: '1x3x32x32' -> 32*32 (the last two numbers)."""
    numbers = [int(value) for value in re.findall(r"\d+", shape)]
    return numbers[-1] * numbers[-2] if len(numbers) >= 2 else 1


def direction(mode: str) -> tuple[str, str]:
    """('forward' or 'forward+backward', the rest of the mode, e.g. the layout): 'fwd+bwd_nchw' ->
    ('forward+backward', 'nchw')."""
    backward = "bwd" in mode or "backward" in mode
    rest = re.sub(r"^(forward\+backward|forward|fwd\+bwd|fwd)_?", "", mode)
    return ("forward+backward" if backward else "forward"), rest


def speedup(row: dict, reference_ms: float | None) -> float | None:
    if row.get("speedup_vs_reference"):
        return float(row["speedup_vs_reference"])
    if reference_ms and row.get("median_ms"):
        return reference_ms / float(row["median_ms"])
    return None


# -- figures ---------------------------------------------------------------------------------------


def _caption(figure, rows: list[dict], extra: str = "", y: float = 0.0) -> None:
    from swinir import figures

    figure.text(0.01, y, figures.caption(rows, extra), fontsize=7, color="0.35", ha="left", va="top")


COLORS = {"cpu": "C0", "reference-compiled": "C1", "sdpa-folded-bias": "C2", "cuda": "C3", "triton": "C4",
          "flex": "C5", "compile": "C6", "copy": "C7"}  # one colour per backend in every figure


def _style(provider: str, dtype: str) -> dict:
    ours = provider in OURS
    return dict(color=COLORS.get(provider, "C9"), linestyle="-" if ours else "--", linewidth=1.8 if ours else 1.0,
                marker="o" if dtype in ("float32", "fp32") else "s", markersize=4)


def _size_label(rows: list[dict], size: int) -> str:
    shape = next(r["shape"] for r in rows if shape_size(r["shape"]) == size)
    return f"{shape_label(shape)}\n{size / 1e6:.2g} M"


def latest_run(rows: list[dict]) -> list[dict]:
    """The rows of the commit that measured the latest reference row (one run, not a mix of runs)."""
    references = [r for r in rows if r["provider"] == REFERENCE] or rows
    newest = max(references, key=lambda r: (r.get("date", ""), r["_order"]))
    return [r for r in rows if r.get("commit") == newest.get("commit")]


def speedup_figure(op: str, rows: list[dict], path: str) -> str:
    """One op's speed-ups over the eager reference (see the module docstring); ``copy`` (a plain copy
    of the bytes: the bound, not a backend) is left out."""
    from swinir import figures

    rows = [row for row in latest_run(rows) if row["provider"] != "copy"]

    plt = figures.pyplot()
    reference_ms = {(r["mode"], r["dtype"], r["shape"]): float(r["median_ms"]) for r in rows if r["provider"] == REFERENCE}
    directions = sorted({direction(r["mode"])[0] for r in rows}, key=lambda d: d != "forward")
    sizes = sorted({shape_size(r["shape"]) for r in rows})
    providers = [p for p in OURS if any(r["provider"] == p for r in rows)] + sorted(
        {r["provider"] for r in rows} - set(OURS) - {REFERENCE})
    figure, axes = plt.subplots(1, len(directions), figsize=(4.2 * len(directions) + 0.6, 3.4), squeeze=False,
                                sharey=True)
    for axis, where in zip(axes[0], directions):
        series = defaultdict(list)  # (provider, dtype, variant) -> [(size, speed-up, shape)]
        for row in rows:
            way, variant = direction(row["mode"])
            if way != where or row["provider"] == REFERENCE:
                continue
            value = speedup(row, reference_ms.get((row["mode"], row["dtype"], row["shape"])))
            if value is not None:
                series[(row["provider"], row["dtype"], variant)].append((shape_size(row["shape"]), value, row["shape"]))
        keys = sorted(series, key=lambda k: (providers.index(k[0]) if k[0] in providers else 99, k[1], k[2]))
        if len(sizes) == 1:  # one size: grouped bars, one per series
            for position, key in enumerate(keys):
                provider, dtype, variant = key
                value = series[key][0][1]
                style = _style(provider, dtype)
                axis.barh(position, value, color=style["color"], alpha=0.9 if provider in OURS else 0.45,
                          hatch=None if provider in OURS else "//", edgecolor="white")
                axis.text(value, position, f" {value:.2f}x", va="center", fontsize=7)
            axis.set_yticks(range(len(keys)), [" ".join(filter(None, (p, v, d))) for p, d, v in keys])
            axis.axvline(1.0, color="black", linewidth=0.8)
            axis.set_xlabel("speed-up over the eager reference (x)")
            axis.set_xlim(0, max([1.2] + [series[k][0][1] * 1.25 for k in keys]))
            axis.set_title(f"{where}, {shape_label(rows[0]['shape'])}", loc="left")
            axis.yaxis.set_tick_params(labelleft=True)
        else:
            for key in keys:
                provider, dtype, variant = key
                points = sorted(series[key])
                label = " ".join(filter(None, (provider, variant, dtype)))
                axis.plot([sizes.index(p[0]) for p in points], [p[1] for p in points], label=label,
                          **_style(provider, dtype))
            axis.axhline(1.0, color="black", linewidth=0.8)
            # the sizes in increasing order, evenly spaced (close sizes would overlap on a log axis)
            axis.set_xticks(range(len(sizes)), [_size_label(rows, size) for size in sizes], fontsize=7)
            axis.set_xlabel("problem size, increasing (B x H x W x C elements)")
            axis.set_title(where, loc="left")
    axes[0][0].set_ylabel("" if len(sizes) == 1 else "speed-up over the eager reference (x)")
    if len(sizes) > 1:
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=3, fontsize=7,
                      frameon=False)
    figure.suptitle(f"{op}: speed-up over the eager PyTorch reference (higher is better; 1 = the reference)",
                    x=0.01, ha="left", fontsize=9)
    figure.tight_layout()
    _caption(figure, rows, "medians of pytest-benchmark", y=0.0 if len(sizes) == 1 else -0.04 * (3 + len(labels) // 3))
    figures.save(figure, path)
    return path


def model_figure(rows: list[dict], path: str) -> str:
    """Whole-model latency and peak memory against image size, ours (solid) against the reference (dashed)."""
    from swinir import figures

    plt = figures.pyplot()
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(8.0, 3.4))
    ops = sorted({row["op"] for row in rows})
    for index, op in enumerate(ops):
        for row_provider_is_ours in (True, False):
            points = sorted((image_pixels(r["shape"]), float(r["median_ms"]), float(r["peak_mb"]) if r.get("peak_mb") else None,
                             r["shape"]) for r in rows if r["op"] == op and (r["provider"] != REFERENCE) == row_provider_is_ours)
            if not points:
                continue
            style = dict(color=f"C{index}", marker="o" if row_provider_is_ours else "s", markersize=5,
                         linestyle="-" if row_provider_is_ours else "--",
                         markerfacecolor=f"C{index}" if row_provider_is_ours else "white")
            label = f"{op} ({'ours' if row_provider_is_ours else 'reference'})"
            latency.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)
            with_memory = [p for p in points if p[2] is not None]
            if with_memory:
                memory.plot([p[0] for p in with_memory], [p[2] for p in with_memory], label=label, **style)
    shapes = {image_pixels(r["shape"]): r["shape"] for r in rows}
    for axis in (latency, memory):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(shapes), [_image_label(shapes[pixels]) for pixels in sorted(shapes)])
        axis.minorticks_off()
        axis.set_xlim(min(shapes) / 1.6, max(shapes) * 1.6)
        axis.set_xlabel("input image (LR pixels)")
    latency.set_yscale("log")
    latency.set_ylabel("latency per call (ms, log)")
    latency.set_title("latency (lower is better)", loc="left")
    memory.set_ylabel("peak memory (MB)")
    memory.set_title("peak memory (lower is better)", loc="left")
    handles, labels = latency.get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), ncols=1, fontsize=7, frameon=False)
    figure.suptitle("Whole model: forward (swinir_*) and training step (train_step_*: forward, loss, backward, Adam);\n"
                    "ours solid, the reference path dashed", x=0.01, ha="left", fontsize=9)
    figure.tight_layout()
    note = ("CPU peak memory = growth of the resident set (0 where glibc reused freed memory)"
            if all(r["device"].startswith("cpu") for r in rows) else "")
    _caption(figure, rows, note)
    figures.save(figure, path)
    return path


_PREDICTION_HEADER = re.compile(r"^\|\s*shape\s*\|\s*kernel\s*\|")


def read_predictions(path: str) -> tuple[list[dict], dict]:
    """The rows of attention-predictions.md's table (column name -> cell) and its stamp (commit, the text)."""
    rows, header = [], None
    with open(path) as handle:
        text = handle.read()
    for line in text.splitlines():
        if _PREDICTION_HEADER.match(line):
            header = [cell.strip() for cell in line.strip().strip("|").split("|")]
        elif header and line.startswith("|") and not set(line) <= set("|-: "):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.append(dict(zip(header, cells)))
    commit = re.search(r"at commit ([0-9a-f]{7,})", text)
    return rows, {"commit": commit.group(1) if commit else ""}


def predictions_figure(predictions: list[dict], stamp: dict, measured: list[dict], path: str) -> str:
    """Predicted GPU attention times (hatched, 'predicted') per kernel and GPU, measured rows beside them."""
    from swinir import figures

    plt = figures.pyplot()
    shapes = list(dict.fromkeys(row["shape"] for row in predictions))
    gpus = [name.split()[0] for name in predictions[0] if name.endswith("predicted us")] if predictions else []
    figure, axes = plt.subplots(1, len(shapes), figsize=(4.4 * len(shapes), 3.8), squeeze=False)
    for axis, shape in zip(axes[0], shapes):
        kernels = [row for row in predictions if row["shape"] == shape]
        width = 0.8 / max(1, 2 * len(gpus))
        for g, gpu in enumerate(gpus):
            positions = [k + (2 * g - len(gpus) + 0.5) * width for k in range(len(kernels))]
            predicted = [float(row[f"{gpu} predicted us"]) for row in kernels]
            roofline = [float(row[f"{gpu} roofline us"]) for row in kernels]
            axis.bar(positions, predicted, width, color=f"C{g}", alpha=0.45, hatch="//", edgecolor=f"C{g}",
                     label=f"{gpu} predicted")
            axis.scatter(positions, roofline, marker="_", s=120, color="black", zorder=3,
                         label="HBM roofline" if g == 0 else None)
            found = []
            for k, row in enumerate(kernels):
                value = _measured_us(measured, gpu, shape, row["kernel"])
                if value is not None:
                    found.append((positions[k] + width, value))
            if found:
                axis.bar([p for p, _ in found], [v for _, v in found], width, color=f"C{g}", label=f"{gpu} measured")
        axis.set_xticks(range(len(kernels)), [row["kernel"].replace("cuda tensor-core", "cuda TC").replace(" ", "\n", 1)
                                              for row in kernels], fontsize=7)
        axis.set_ylabel("time per call (us)")
        axis.set_title(shape, loc="left")
        axis.legend(fontsize=7)
    if not any(_measured_us(measured, gpu, None, None) is not None for gpu in gpus):
        note = "PREDICTED: no GPU has run these kernels yet (measured bars appear once GPU rows are in bench/results)"
    else:
        note = "hatched: predicted; solid: measured"
    figure.suptitle(f"Shifted-window attention on GPUs, bf16, B 1, 256x256 tokens, window 8 (TC: tensor cores)\n{note}", x=0.01,
                    ha="left", fontsize=9, color="firebrick" if note.startswith("PREDICTED") else "black")
    figure.tight_layout()
    extra = f"prediction model: python -m bench.predict_attention at commit {stamp.get('commit') or '?'}"
    _caption(figure, measured, extra)
    figures.save(figure, path)
    return path


def _measured_us(measured: list[dict], gpu: str, shape: str | None, kernel: str | None) -> float | None:
    """The measured time (us) of a GPU attention row matching the prediction's GPU, shape and kernel."""
    provider = None if kernel is None else ("triton" if kernel.startswith("triton") else "cuda")
    channels = None if shape is None else re.search(r"C (\d+)", shape)
    for row in measured:
        if row["op"] != "shifted_window_attention" or gpu.lower() not in row["device"].lower():
            continue
        if shape is None:
            return float(row["median_ms"]) * 1e3
        if (row["provider"] == provider and row["dtype"] == "bfloat16" and channels
                and f"C{channels.group(1)}x" in row["shape"] and "H256xW256" in row["shape"]
                and ("backward" in kernel) == ("backward" in row["mode"])):
            return float(row["median_ms"]) * 1e3
    return None


def finetune_figure(rows: list[dict], path: str) -> str:
    """The committed fine-tuning run: Set5 PSNR (RGB, Y) and SSIM against step, phases one after the other."""
    from swinir import figures

    plt = figures.pyplot()
    phases = list(dict.fromkeys(row["phase"] for row in rows))
    offsets, offset = {}, 0
    for phase in phases:
        offsets[phase] = offset
        offset += max(int(row["step"]) for row in rows if row["phase"] == phase)
    figure, (psnr, ssim) = plt.subplots(2, 1, figsize=(5.8, 4.6), sharex=True)
    for p, phase in enumerate(phases):
        mine = [row for row in rows if row["phase"] == phase]
        steps = [offsets[phase] + int(row["step"]) for row in mine]
        minutes = mine[0].get("minutes", "")
        label = f"{phase} ({minutes} min)" if minutes else phase
        psnr.plot(steps, [float(row["psnr"]) for row in mine], marker="o", markersize=3, color=f"C{p}", label=f"{label}, RGB")
        psnr.plot(steps, [float(row["psnr_y"]) for row in mine], marker="o", markersize=3, color=f"C{p}",
                  linestyle=":", label=f"{label}, Y")
        ssim.plot(steps, [float(row["ssim"]) for row in mine], marker="o", markersize=3, color=f"C{p}", label=f"{label}, RGB")
        if p:
            for axis in (psnr, ssim):
                axis.axvline(offsets[phase], color="0.5", linewidth=0.8)
    if rows and rows[0].get("bicubic_psnr"):
        psnr.axhline(float(rows[0]["bicubic_psnr"]), color="black", linestyle="--", linewidth=0.9, label="bicubic, RGB")
        psnr.axhline(float(rows[0]["bicubic_psnr_y"]), color="black", linestyle=":", linewidth=0.9, label="bicubic, Y")
    low = min(float(row["psnr"]) for row in rows)
    psnr.set_ylim(max(low, float(rows[0].get("bicubic_psnr") or low) - 8), None)
    psnr.set_ylabel("Set5 x2 PSNR (dB)")
    psnr.legend(fontsize=7, ncols=2, loc="lower right")
    ssim.set_ylim(max(0.0, min(float(row["ssim"]) for row in rows[len(rows) // 4:]) - 0.05), None)
    ssim.set_ylabel("Set5 x2 SSIM")
    ssim.set_xlabel("step (the fine-tuning phase continues from the scratch phase's model)")
    figure.suptitle("swinir train on 18 McMaster images, validated on held-out Set5 (x2, EMA weights)",
                    x=0.01, ha="left", fontsize=9)
    figure.tight_layout()
    _caption(figure, rows, "python -m bench.bench_training_finetune")
    figures.save(figure, path)
    return path


# -- the command -----------------------------------------------------------------------------------


def draw_all(results: str = RESULTS, out: str = OUT, runs: list[str] = (), kind: str = "svg") -> list[str]:
    """Every figure the rows in ``results`` (and ``runs``) allow, written to ``out`` as ``kind`` files; the paths."""
    rows = read_rows(results, runs)
    written = []
    by_device: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_device[row["device"]].append(row)
    for device, device_rows in sorted(by_device.items()):
        ops: dict[str, list[dict]] = defaultdict(list)
        for row in device_rows:
            ops[row["op"]].append(row)
        for op, op_rows in sorted(ops.items()):
            if not MODEL_OPS.match(op) and any(r["provider"] == REFERENCE for r in op_rows):
                written.append(speedup_figure(op, op_rows, os.path.join(out, f"speedup-{op}-{device}.{kind}")))
        model_rows = [row for row in device_rows if MODEL_OPS.match(row["op"])]
        if model_rows:
            written.append(model_figure(model_rows, os.path.join(out, f"model-{device}.{kind}")))
    predictions_path = os.path.join(results, "attention-predictions.md")
    if os.path.exists(predictions_path):
        predictions, stamp = read_predictions(predictions_path)
        if predictions:
            measured = [row for row in rows if not row["device"].startswith("cpu")]
            written.append(predictions_figure(predictions, stamp, measured, os.path.join(out, f"attention-predictions.{kind}")))
    for path in sorted(glob.glob(os.path.join(results, "train-finetune-*.csv"))):
        with open(path, newline="") as handle:
            finetune_rows = list(csv.DictReader(handle))
        if finetune_rows:
            name = os.path.splitext(os.path.basename(path))[0]
            written.append(finetune_figure(finetune_rows, os.path.join(out, f"{name}.{kind}")))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN.json", help="pytest-benchmark --benchmark-json files (optional)")
    parser.add_argument("--results", default=RESULTS, help="folder of the rows (default bench/results)")
    parser.add_argument("--out", default=OUT, help="folder the figures go to (default bench/results/figures)")
    parser.add_argument("--format", choices=("svg", "png"), default="svg", help="file type (default svg)")
    args = parser.parse_args(argv)
    from swinir import figures

    try:
        figures.pyplot()
    except figures.PlotUnavailable as missing:
        print(f"bench.plot: {missing}", file=sys.stderr)
        return 1
    written = draw_all(args.results, args.out, args.runs, args.format)
    for path in written:
        print(f"{os.path.relpath(path)}  ({os.path.getsize(path) // 1024} KB)")
    if not written:
        print(f"bench.plot: no rows to draw in {args.results}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Predicted times of the GPU attention kernels at SwinIR-M and SwinIR-S shapes on an H100 and an H200,
from a stated model and the static report (bench/results/static-report.csv): a prediction, not a
measurement, written next to the HBM roofline so that the first GPU run can be read against it.

    python -m bench.predict_attention      # writes bench/results/attention-predictions.md
    python -m bench.predict_attention --measured run.json   # + measured next to predicted (a GPU run)

``--measured`` takes the pytest-benchmark JSON of ``bench/bench_window_attention.py`` on an H100 or an
H200 (``bench/gpu_check.sh``'s attn-fwd and attn-bwd-bf16 stages) and adds a table of the cuda and triton
rows at these shapes: the measured median next to the predicted time (forward; forward+backward as the
sum of the two kernels' predictions) and the share of the roofline each reaches.

The model, per kernel and direction (B 1, 256 x 256 tokens, window 8, shift 4, 6 heads, bf16):

* HBM bytes: what the kernel must read and write (q, k, v, out forward; q, k, v, dO, dq, dk, dv and
  the bias-gradient partials backward) plus the bias once. Neighbouring heads share 32-byte sectors,
  so a head's 60-byte slices cost HBM bytes once but L2-to-SM bytes per sector touched.
* L2-to-SM bytes: sectors touched. A program that reads two neighbouring heads' slices of a token in one
  iteration (the Triton forward) fetches the sector they share once (the second copy hits L1 or its
  pending miss): its loads cost the sectors of 2-head runs; its stores (L1 is write-through) and every
  access of a one-head-per-program kernel cost the sectors of each head slice. The bias: once per
  program (Triton: held in registers) or block (CUDA: staged in shared memory).
* Achieved bandwidth: the measured copy ceiling (H100 3.0 TB/s, H200 4.3 TB/s; kernel-physics.md),
  scaled by Little's law: an SM needs bandwidth-per-SM x latency (0.8 us) bytes in flight; it has
  resident blocks (from the static report's occupancy) x the bytes one block has in flight: one
  window's tiles (of its heads), times the pipeline's stages where the report shows async copies
  (LDGSTS: Triton's software pipelining issues the next window's copies before this one's compute).
* Compute: tensor-core FLOPs as executed (head_dim padded to 16/32, tokens to 64) at 60% of the
  measured dense bf16 rate (800/790 TFLOP/s; mma.sync/WMMA-class instructions, not wgmma, reach about
  that share on Hopper); the softmax's exponentials on the SFU (16 per SM per clock); L2-to-SM sectors
  at 5.5 TB/s; shared-memory traffic at 128 bytes per SM per clock, counted from the CUDA tensor-core
  kernels' structure (tc_shared_bytes: tiles staged, WMMA fragments loaded by each warp, fp32 strips
  stored and read back, the bias and bias-gradient tiles; bank conflicts none, as padded).
* Overlap: memory and compute overlap when a kernel keeps two blocks per SM, pipelines its loop (async
  copies) or prefetches the next window (the CUDA tensor-core kernels); otherwise they add up.
* Waves: blocks / (SMs x resident blocks) rounded up, so a partial last wave costs a whole one.
* Serial tail: what one block reads alone after every other block is done (the CUDA backward's last
  block of a head adds the head's bias-gradient partials) at one SM's L2 bandwidth (64 bytes per clock).
* Launches: 3 us per kernel launch on the stream.

Predicted time = waves-rounded max (or sum) of those terms + launches. Fraction of roofline =
(minimal bytes / copy ceiling) / predicted time. Targets (issue 13): forward >= 70%, backward >= 50%.
"""

import argparse
import csv
import functools
import importlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "bench", "results", "static-report.csv")
TC_KERNEL = os.path.join(ROOT, "csrc", "cuda", "window_attention_tc_kernel.cu")
OUT = os.path.join(ROOT, "bench", "results", "attention-predictions.md")

GPUS = {  # measured ceilings where kernel-physics.md gives them, datasheet figures otherwise
    "H100 SXM": {"copy": 3.0e12, "tensor": 800e12, "sms": 132, "clock": 1.755e9},
    "H200 SXM": {"copy": 4.3e12, "tensor": 790e12, "sms": 132, "clock": 1.755e9},
}
LATENCY = 0.8e-6  # HBM load latency under load, for Little's law
MMA_SYNC_SHARE = 0.6  # of the dense tensor rate, for mma.sync/WMMA-class instructions
L2_BANDWIDTH = 5.5e12
SFU_PER_SM_PER_CLOCK = 16
SHARED_BYTES_PER_SM_PER_CLOCK = 128
L2_BYTES_PER_SM_PER_CLOCK = 64
LAUNCH_SECONDS = 3e-6
SECTOR = 32

TOKENS, WINDOW, HEADS, ELEMENT = 256 * 256, 8, 6, 2  # bf16
N = WINDOW * WINDOW


@dataclass
class Kernel:
    """One GPU attention kernel at one shape: what it moves and computes, from its design."""

    name: str  # as docs/benchmarks.md calls it
    direction: str  # forward | backward
    channels: int
    report_kernel: str  # kernel name in the static report
    report_match: tuple  # substrings of the report's specialization that pick the row
    blocks: int  # blocks (programs) launched
    phase_bytes: int  # bytes one block loads for one window (what it has in flight)
    hbm_bytes: float
    l2_bytes: float  # L2-to-SM bytes (sectors touched, bias re-reads)
    tensor_flops: float  # executed, padded
    shared_bytes: float  # shared-memory traffic of the whole call
    exponentials: float
    overlapped: bool  # prefetches the next window by hand (memory and compute overlap within a block)
    launches: int
    serial_tail_bytes: float = 0.0  # read by one block after all others are done


def sectors_per_slice(slice_bytes: int, stride_bytes: int, slices: int) -> float:
    """Mean 32-byte sectors a slice of `slice_bytes` at offsets k * stride_bytes touches."""
    total = 0
    for k in range(slices):
        start = k * stride_bytes
        total += (start + slice_bytes - 1) // SECTOR - start // SECTOR + 1
    return total / slices


def tc_shared_bytes(direction: str, padded_dim: int) -> int:
    """Shared-memory bytes one (window, head) of the CUDA tensor-core kernel moves (window_attention_tc_kernel.cu):
    4 warps each own a 16-row strip of the 64 padded tokens; a product (multiply_into_strip) loads each of
    its warp's A fragments once per depth step and every B fragment (16 x 16 operands), then stores its
    fp32 accumulators to the warp's strip, which the softmax or the global store reads back."""
    warps, tile, tokens, fp32 = 4, 16, N, 4

    def product(depth: int, columns: int) -> int:
        a = depth // tile * tile * tile * ELEMENT
        b = depth // tile * columns // tile * tile * tile * ELEMENT
        return warps * (a + b + tile * columns * fp32)

    strip = tokens * tokens * fp32  # a (64, 64) fp32 strip set, all warps
    square = tokens * tokens * ELEMENT  # the (64, 64) P or dS tile
    head_rows = tokens * padded_dim * fp32  # an output strip read back by the global store
    if direction == "forward":
        tiles = 3 * tokens * padded_dim * ELEMENT
        softmax = strip + tokens * tokens * fp32 + square  # S, the fp32 bias, P written
        return tiles + product(padded_dim, tokens) + softmax + product(tokens, padded_dim) + head_rows
    tiles = 4 * tokens * padded_dim * ELEMENT
    softmax = 2 * strip + tokens * tokens * fp32 + 2 * square + 2 * tokens * tokens * fp32  # + dBias read/write
    return tiles + 2 * product(padded_dim, tokens) + softmax + 3 * (product(tokens, padded_dim) + head_rows)


def tc_constant(name: str) -> int:
    """A `constexpr int name = value;` of the tensor-core kernel, so the model follows the kernel's grouping."""
    match = re.search(rf"constexpr int {name} = (\d+);", open(TC_KERNEL).read())
    if match is None:
        raise ValueError(f"{TC_KERNEL}: no `constexpr int {name} = <number>;`")
    return int(match.group(1))


@functools.lru_cache(maxsize=1)
def triton_attention_module():
    """swinir_kernels.triton.window_attention, whose launchers' rules the model follows (imported by its
    module path: the package attribute of that name is an op)."""
    return importlib.import_module("swinir_kernels.triton.window_attention")


def kernels(channels: int) -> list[Kernel]:
    import torch

    triton_attention = triton_attention_module()

    head_dim = channels // HEADS
    padded_dim = 16 * math.ceil(head_dim / 16) if head_dim > 16 else 16
    windows = TOKENS // N
    window_heads = windows * HEADS
    slice_bytes = head_dim * ELEMENT
    # Sectors touched per byte used: a head's slice of a token, or a pair of neighbouring heads' slices
    # (the Triton forward's loads), at the offsets of the heads (or pairs) in a row.
    amplification = sectors_per_slice(slice_bytes, slice_bytes, HEADS) * SECTOR / slice_bytes
    pair_amplification = sectors_per_slice(2 * slice_bytes, 2 * slice_bytes, HEADS // 2) * SECTOR / (2 * slice_bytes)
    forward_bytes = 4 * channels * ELEMENT * TOKENS
    backward_bytes = 7 * channels * ELEMENT * TOKENS
    bias_bytes = HEADS * N * N * ELEMENT
    forward_flops = window_heads * 2 * (2 * N * N * padded_dim)
    backward_flops = window_heads * 5 * (2 * N * N * padded_dim)
    exps = window_heads * N * N
    phase_forward = 3 * N * slice_bytes
    phase_backward = 4 * N * slice_bytes
    heads_per_program = triton_attention.forward_heads_per_program(HEADS, torch.bfloat16)
    assert heads_per_program == 2, "the model's Triton forward reads head pairs"
    triton_programs_forward = HEADS // heads_per_program * math.ceil(
        windows / triton_attention.forward_windows_per_program(windows, head_dim))
    triton_groups_backward = math.ceil(windows / triton_attention.backward_windows_per_program(windows))
    partials_triton = 2 * HEADS * triton_groups_backward * N * N * 4  # fp32, written and read back
    # The tensor-core kernel's rules: at most kMaxBackwardGroups groups of at least
    # kMinBackwardWindowsPerGroup windows per head; kForwardWindowsPerItem windows per forward block.
    tc_groups = min(tc_constant("kMaxBackwardGroups"), math.ceil(windows / tc_constant("kMinBackwardWindowsPerGroup")))
    tc_groups_backward = math.ceil(windows / math.ceil(windows / tc_groups))
    partials_tc = 2 * HEADS * tc_groups_backward * N * N * 4
    tc_blocks_forward = HEADS * math.ceil(windows / tc_constant("kForwardWindowsPerItem"))
    common = dict(exponentials=exps)
    return [
        Kernel("triton forward", "forward", channels, "_window_attention_fwd_kernel",
               ("qkv_ptr:*bf16", f"HEAD_DIM={head_dim}", "NUM_HEADS=6", "IMAGE_LAYOUT=True", "HAS_SHIFT=True"),
               triton_programs_forward, 2 * phase_forward, forward_bytes + bias_bytes,
               forward_bytes * (3 / 4 * pair_amplification + 1 / 4 * amplification)
               + triton_programs_forward * 2 * N * N * ELEMENT, forward_flops, 0, overlapped=False, launches=1,
               **common),
        Kernel("triton backward", "backward", channels, "_window_attention_bwd_kernel",
               ("qkv_ptr:*bf16", f"HEAD_DIM={head_dim}", "NUM_HEADS=6", "IMAGE_LAYOUT=True", "HAS_SHIFT=True"),
               HEADS * triton_groups_backward, phase_backward, backward_bytes + bias_bytes + partials_triton,
               backward_bytes * amplification + partials_triton + HEADS * triton_groups_backward * N * N * ELEMENT,
               backward_flops, 0, overlapped=False, launches=3, **common),  # + the partials' sum and its cast to bf16
        Kernel("cuda tensor-core forward", "forward", channels, "window_attention_tc_forward_kernel", ("<__nv_bfloat16, 8>",),
               tc_blocks_forward, phase_forward, forward_bytes + bias_bytes,
               forward_bytes * amplification + tc_blocks_forward * N * N * 4, forward_flops,
               window_heads * tc_shared_bytes("forward", padded_dim), overlapped=True, launches=1, **common),
        Kernel("cuda tensor-core backward", "backward", channels, "window_attention_tc_backward_kernel", ("<__nv_bfloat16, 8>",),
               HEADS * tc_groups_backward, phase_backward, backward_bytes + bias_bytes + partials_tc,
               backward_bytes * amplification + partials_tc, backward_flops,
               window_heads * tc_shared_bytes("backward", padded_dim),
               overlapped=True, launches=1, serial_tail_bytes=tc_groups_backward * N * N * 4, **common),
    ]  # fmt: skip


def report_row(rows: list[dict], kernel: Kernel) -> dict | None:
    """The sm_90 row of the static report for this kernel at this shape (None when it is not there)."""
    for row in rows:
        if row["sm"] == "90" and row["kernel"] == kernel.report_kernel and all(
            part in row["specialization"] for part in kernel.report_match
        ):
            return row
    return None


def predict(kernel: Kernel, row: dict, gpu: dict) -> dict:
    resident = int(re.match(r"\d+/64 \((\d+) blocks", row["occupancy"]).group(1))
    pipelined = row["async_copies"] != "-"
    stages = int(re.search(r"num_stages=(\d+)", row["specialization"]).group(1)) if pipelined else 1
    per_sm_needed = gpu["copy"] / gpu["sms"] * LATENCY
    in_flight = resident * kernel.phase_bytes * stages
    bandwidth = gpu["copy"] * min(1.0, in_flight / per_sm_needed)
    terms = {
        "HBM": kernel.hbm_bytes / bandwidth,
        "L2": kernel.l2_bytes / L2_BANDWIDTH,
        "tensor": kernel.tensor_flops / (gpu["tensor"] * MMA_SYNC_SHARE),
        "SFU": kernel.exponentials / (gpu["sms"] * SFU_PER_SM_PER_CLOCK * gpu["clock"]),
        "shared": kernel.shared_bytes / (gpu["sms"] * SHARED_BYTES_PER_SM_PER_CLOCK * gpu["clock"]),
    }
    memory = max(terms["HBM"], terms["L2"])
    compute = max(terms["tensor"], terms["SFU"], terms["shared"])
    overlap = kernel.overlapped or pipelined or resident >= 2
    body = max(memory, compute) if overlap else memory + compute
    slots = gpu["sms"] * resident
    waves = kernel.blocks / slots
    body *= math.ceil(waves) / waves if waves > 1 else 1.0
    tail = kernel.serial_tail_bytes / (L2_BYTES_PER_SM_PER_CLOCK * gpu["clock"])
    seconds = body + tail + kernel.launches * LAUNCH_SECONDS
    minimal = (4 if kernel.direction == "forward" else 7) * kernel.channels * ELEMENT * TOKENS
    roofline = minimal / gpu["copy"]
    bound = max(terms, key=terms.get)
    return {"seconds": seconds, "roofline": roofline, "fraction": roofline / seconds, "bound": bound,
            "resident": resident, "overlap": overlap, "waves": waves}  # fmt: skip



def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def predictions(rows: list[dict]) -> list[tuple[str, int, Kernel, dict | None, dict]]:
    """(shape label, channels, kernel, its static-report row or None, {gpu name: prediction}) for every kernel."""
    result = []
    for label, channels in (("SwinIR-M (C 180)", 180), ("SwinIR-S (C 60)", 60)):
        for kernel in kernels(channels):
            row = report_row(rows, kernel)
            result.append((label, channels, kernel, row, {} if row is None else {
                name: predict(kernel, row, gpu) for name, gpu in GPUS.items()}))
    return result


# Benchmark provider -> the kernels of this model it runs (bf16: the CUDA backend's tensor-core kernels).
PROVIDER_KERNELS = {"triton": "triton", "cuda": "cuda tensor-core"}


def measured_lines(runs: list[dict], predicted: list) -> list[str]:
    """Markdown: the cuda and triton rows of bench_window_attention.py runs at the predicted shapes (bf16),
    measured median next to the prediction for the run's GPU."""
    by_kernel = {(channels, kernel.name): prediction for _, channels, kernel, _, prediction in predicted}
    lines = [
        "## Measured next to predicted",
        "",
        "| GPU | shape | backend | mode | predicted us | measured us | measured / predicted | measured share of roofline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shape_channels = {f"B1xH256xW256xC{channels}xnH{HEADS}xws{WINDOW}xs4": channels for channels in (180, 60)}
    for run in runs:
        gpu_label = run["machine_info"].get("swinir", {}).get("gpu") or ""
        gpu = next((name for name in GPUS if name.split()[0] in gpu_label), None)
        if gpu is None:
            continue
        for bench in run["benchmarks"]:
            info = bench.get("extra_info", {})
            channels = shape_channels.get(info.get("shape"))
            if (info.get("op") != "shifted_window_attention" or info.get("dtype") != "bfloat16" or channels is None
                    or info.get("provider") not in PROVIDER_KERNELS or not bench.get("stats")):
                continue
            prefix = PROVIDER_KERNELS[info["provider"]]
            directions = ("forward",) if info["mode"] == "forward" else ("forward", "backward")
            parts = [by_kernel.get((channels, f"{prefix} {direction}"), {}).get(gpu) for direction in directions]
            if None in parts:
                continue
            predicted_s = sum(part["seconds"] for part in parts)
            roofline_s = sum(part["roofline"] for part in parts)
            median = bench["stats"]["median"]
            lines.append(
                f"| {gpu_label} | C {channels} | {info['provider']} | {info['mode']} | {predicted_s * 1e6:.1f} | "
                f"{median * 1e6:.1f} | {median / predicted_s:.2f} | {roofline_s / median:.1%} |"
            )
    if len(lines) == 4:
        lines.append("| (no bf16 cuda/triton rows at these shapes on an H100 or H200 in the given runs) | | | | | | | |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measured", nargs="+", default=[], metavar="RUN.json",
                        help="pytest-benchmark JSON of bench/bench_window_attention.py on an H100 or H200")
    parser.add_argument("--out", default=OUT, help="the markdown file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(REPORT, newline="") as f:
        rows = list(csv.DictReader(f))
    predicted = predictions(rows)
    lines = [
        "# Predicted GPU attention times" + ("" if args.measured else " (a prediction: no GPU has run these kernels)"),
        "",
        f"Made by `python -m bench.predict_attention` at commit {commit()} from bench/results/static-report.csv;",
        "the model is stated in that script's docstring. B 1, 256 x 256 tokens, window 8, shift 4, 6 heads, bf16.",
        "Roofline = the minimal bytes (4Cs forward, 7Cs backward per token) at the measured copy ceiling.",
        "",
        "| shape | kernel | blocks/SM (regs, shared) | bound by | H100 roofline us | H100 predicted us | share | H200 roofline us | H200 predicted us | share | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for label, channels, kernel, row, prediction in predicted:
        if row is None:
            missing.append(f"{kernel.name} at C {channels}")
            continue
        h100, h200 = prediction["H100 SXM"], prediction["H200 SXM"]
        target = 0.7 if kernel.direction == "forward" else 0.5
        verdict = "meets" if min(h100["fraction"], h200["fraction"]) >= target else "misses"
        lines.append(
            f"| {label} | {kernel.name} | {row['occupancy']} | {h100['bound']}"
            f"{'' if h100['overlap'] else ' + compute (serial)'} | {h100['roofline'] * 1e6:.1f} | "
            f"{h100['seconds'] * 1e6:.1f} | {h100['fraction']:.1%} | {h200['roofline'] * 1e6:.1f} | "
            f"{h200['seconds'] * 1e6:.1f} | {h200['fraction']:.1%} | {verdict} {target:.0%} |"
        )
    if missing:
        lines += ["", "Not in the static report (no row to predict from): " + ", ".join(missing) + "."]
    if args.measured:
        runs = []
        for path in args.measured:
            with open(path) as f:
                runs.append(json.load(f))
        lines += [""] + measured_lines(runs, predicted)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

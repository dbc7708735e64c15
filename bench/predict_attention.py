"""Predicted times of the GPU attention kernels at SwinIR-M and SwinIR-S shapes on an H100 and an H200,
from a stated model and the static report (bench/results/static-report.csv): a prediction, not a
measurement, written next to the HBM roofline so that the first GPU run can be read against it.

    python bench/predict_attention.py      # writes bench/results/attention-predictions.md

The model, per kernel and direction (B 1, 256 x 256 tokens, window 8, shift 4, 6 heads, bf16):

* HBM bytes: what the kernel must read and write (q, k, v, out forward; q, k, v, dO, dq, dk, dv and
  the bias-gradient partials backward) plus the bias once. Neighbouring heads share 32-byte sectors,
  so a head's 60-byte slices cost HBM bytes once but L2-to-SM bytes per sector touched.
* Achieved bandwidth: the measured copy ceiling (H100 3.0 TB/s, H200 4.3 TB/s; kernel-physics.md),
  scaled by Little's law: an SM needs bandwidth-per-SM x latency (0.8 us) bytes in flight; it has
  resident blocks (from the static report's occupancy) x the bytes one block loads per window phase.
* Compute: tensor-core FLOPs as executed (head_dim padded to 16/32, tokens to 64) at 60% of the
  measured dense bf16 rate (800/790 TFLOP/s; mma.sync/WMMA-class instructions, not wgmma, reach about
  that share on Hopper); the softmax's exponentials on the SFU (16 per SM per clock); L2-to-SM sectors
  at 5.5 TB/s; shared-memory traffic at 128 bytes per SM per clock.
* Overlap: memory and compute overlap when a kernel keeps two blocks per SM or prefetches the next
  window (the CUDA tensor-core kernels); otherwise (one block per SM, no prefetch) they add up.
* Waves: blocks / (SMs x resident blocks) rounded up, so a partial last wave costs a whole one.
* Launches: 3 us per kernel launch on the stream.

Predicted time = waves-rounded max (or sum) of those terms + launches. Fraction of roofline =
(minimal bytes / copy ceiling) / predicted time. Targets (issue 13): forward >= 70%, backward >= 50%.
"""

import csv
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "bench", "results", "static-report.csv")
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
LAUNCH_SECONDS = 3e-6
SECTOR = 32

TOKENS, WINDOW, HEADS, ELEMENT = 256 * 256, 8, 6, 2  # bf16
N = WINDOW * WINDOW


@dataclass
class Kernel:
    """One GPU attention kernel at one shape: what it moves and computes, from its design."""

    name: str  # as the README calls it
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
    overlapped: bool  # prefetches the next window (memory and compute overlap within a block)
    launches: int


def sectors_per_slice(slice_bytes: int, stride_bytes: int, slices: int) -> float:
    """Mean 32-byte sectors a slice of `slice_bytes` at offsets k * stride_bytes touches."""
    total = 0
    for k in range(slices):
        start = k * stride_bytes
        total += (start + slice_bytes - 1) // SECTOR - start // SECTOR + 1
    return total / slices


def kernels(channels: int) -> list[Kernel]:
    head_dim = channels // HEADS
    padded_dim = 16 * math.ceil(head_dim / 16) if head_dim > 16 else 16
    windows = TOKENS // N
    window_heads = windows * HEADS
    slice_bytes = head_dim * ELEMENT
    # q, k, v (and dO): per token and head, sectors touched / bytes used.
    amplification = sectors_per_slice(slice_bytes, slice_bytes, HEADS) * SECTOR / slice_bytes
    forward_bytes = 4 * channels * ELEMENT * TOKENS
    backward_bytes = 7 * channels * ELEMENT * TOKENS
    bias_bytes = HEADS * N * N * ELEMENT
    forward_flops = window_heads * 2 * (2 * N * N * padded_dim)
    backward_flops = window_heads * 5 * (2 * N * N * padded_dim)
    exps = window_heads * N * N
    phase_forward = 3 * N * slice_bytes
    phase_backward = 4 * N * slice_bytes
    triton_groups_forward = math.ceil(windows / 4)
    triton_groups_backward = min(64, windows)
    partials_triton = 2 * HEADS * triton_groups_backward * N * N * 4  # fp32, written and read back
    tc_groups_backward = min(64, math.ceil(windows / 8))
    partials_tc = 2 * HEADS * tc_groups_backward * N * N * 4
    # Tensor-core CUDA kernels stage tiles in shared memory: q, k, v written once and read by WMMA, the
    # fp32 score strip written and read by the softmax, P written and read (forward); backward about 3x.
    tc_shared_forward = window_heads * (2 * 3 * N * padded_dim * ELEMENT + 4 * N * (N + 4) * 4 + 2 * N * N * ELEMENT)
    common = dict(exponentials=exps)
    return [
        Kernel("triton forward", "forward", channels, "_window_attention_fwd_kernel",
               ("qkv_ptr:*bf16", f"HEAD_DIM={head_dim}", "NUM_HEADS=6", "IMAGE_LAYOUT=True", "HAS_SHIFT=True"),
               HEADS * triton_groups_forward, phase_forward, forward_bytes + bias_bytes,
               forward_bytes * amplification + HEADS * triton_groups_forward * bias_bytes / HEADS, forward_flops,
               0, overlapped=False, launches=1, **common),
        Kernel("triton backward", "backward", channels, "_window_attention_bwd_kernel",
               ("qkv_ptr:*bf16", f"HEAD_DIM={head_dim}", "NUM_HEADS=6", "IMAGE_LAYOUT=True", "HAS_SHIFT=True"),
               HEADS * triton_groups_backward, phase_backward, backward_bytes + bias_bytes + partials_triton,
               backward_bytes * amplification + partials_triton, backward_flops, 0, overlapped=False, launches=2,
               **common),
        Kernel("cuda tensor-core forward", "forward", channels, "window_attention_tc_forward_kernel", ("<__nv_bfloat16, 8>",),
               HEADS * math.ceil(windows / 8), phase_forward, forward_bytes + bias_bytes,
               forward_bytes * amplification + HEADS * math.ceil(windows / 8) * N * N * 4, forward_flops,
               tc_shared_forward, overlapped=True, launches=1, **common),
        Kernel("cuda tensor-core backward", "backward", channels, "window_attention_tc_backward_kernel", ("<__nv_bfloat16, 8>",),
               HEADS * tc_groups_backward, phase_backward, backward_bytes + bias_bytes + partials_tc,
               backward_bytes * amplification + partials_tc, backward_flops, 3 * tc_shared_forward,
               overlapped=True, launches=1, **common),
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
    per_sm_needed = gpu["copy"] / gpu["sms"] * LATENCY
    in_flight = resident * kernel.phase_bytes
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
    overlap = kernel.overlapped or resident >= 2
    body = max(memory, compute) if overlap else memory + compute
    slots = gpu["sms"] * resident
    waves = kernel.blocks / slots
    body *= math.ceil(waves) / waves if waves > 1 else 1.0
    seconds = body + kernel.launches * LAUNCH_SECONDS
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


def main() -> int:
    with open(REPORT, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [
        "# Predicted GPU attention times (a prediction: no GPU has run these kernels)",
        "",
        f"Made by `python bench/predict_attention.py` at commit {commit()} from bench/results/static-report.csv;",
        "the model is stated in that script's docstring. B 1, 256 x 256 tokens, window 8, shift 4, 6 heads, bf16.",
        "Roofline = the minimal bytes (4Cs forward, 7Cs backward per token) at the measured copy ceiling.",
        "",
        "| shape | kernel | blocks/SM (regs, shared) | bound by | H100 roofline us | H100 predicted us | share | H200 roofline us | H200 predicted us | share | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for label, channels in (("SwinIR-M (C 180)", 180), ("SwinIR-S (C 60)", 60)):
        for kernel in kernels(channels):
            row = report_row(rows, kernel)
            if row is None:
                missing.append(f"{kernel.name} at C {channels}")
                continue
            h100, h200 = (predict(kernel, row, GPUS[name]) for name in GPUS)
            target = 0.7 if kernel.direction == "forward" else 0.5
            verdict = "meets" if min(h100["fraction"], h200["fraction"]) >= target else "misses"
            lines.append(
                f"| {label} | {kernel.name} | {row['occupancy']} | {h100['bound']}"
                f"{'' if h100['overlap'] else ' + compute (serial)'} | {h100['roofline'] * 1e6:.1f} | "
                f"{h100['seconds'] * 1e6:.1f} | {h100['fraction']:.0%} | {h200['roofline'] * 1e6:.1f} | "
                f"{h200['seconds'] * 1e6:.1f} | {h200['fraction']:.0%} | {verdict} {target:.0%} |"
            )
    if missing:
        lines += ["", "Not in the static report (no row to predict from): " + ", ".join(missing) + "."]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

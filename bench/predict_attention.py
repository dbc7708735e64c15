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

The flash kernels (large windows: HAT's 16x16, DAT's 8x32, 256 tokens, head_dim 30) get a second table
from the same terms: the CUDA ones from their code alone (flash_kernels()), the Triton ones
(swinir_kernels/triton/window_attention_flash.py) from their structure, their tile tables and the static
report's sm_90 rows (triton_flash_launches(): the k, v and bias tiles re-read per query block, q and dO
per key block, the bias-gradient partials' read-modify-write at L2; the backward is the sum of its
launches, the busiest SM's program count rounding each).
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



# ---- the flash kernels (csrc/cuda/window_attention_flash_kernel.cu) at HAT's 16x16 windows ---------------
#
# Shape: B 1, 256 x 256 tokens, window 16 x 16 (N 256), shift 8, C 180, 6 heads (head_dim 30), bf16: the
# kernels' bf16 variant (4 warps, kRows 64 query or key rows per block, key blocks of 64). Independent of
# the static report: residency from the kernels' shared memory (FLASH_SHARED, as flash_layout computes it:
# 53,248 / 75,776 / 94,208 bytes for forward / dq / dkv at head_dim 30) and their declared register budget
# (128 x 128 threads), 228 KB of shared memory and 64 K registers per SM. Counted per block from the code:
#   forward   6,144 blocks (window, head, query block): q once; per key block k, v tiles (the k, v re-reads
#             of a window's 4 query blocks hit L2); the fp32 bias row block (64 x 64 x 4 bytes) from L2 per key
#             block; per warp S = q k^T and O += P v (WMMA fragments from shared memory, fp32 strips stored
#             and read back, O rescaled in shared memory).
#   backward  the statistics pass (the forward, reading dO instead of writing out), dq (6,144 blocks), dkv
#             (groups of 8 windows: 768 blocks) whose bias-gradient partial (fp32, per window read and
#             written at L2) and the last kernel's sum over 32 groups, 4 launches.
FLASH_TOKENS, FLASH_WINDOW, FLASH_CHANNELS, FLASH_HEADS = 256 * 256, 16, 180, 6
FLASH_SHARED = {"forward": 53248, "dq": 75776, "dkv": 94208}
FLASH_REGISTERS, FLASH_THREADS, FLASH_ROWS = 128, 128, 64
SM_SHARED, SM_REGISTERS = 228 * 1024, 65536


def flash_resident(shared: int) -> int:
    return min(SM_SHARED // (shared + 1024), SM_REGISTERS // (FLASH_REGISTERS * FLASH_THREADS), 2048 // FLASH_THREADS)


def strip_product_bytes(depth: int, columns: int, accumulate: bool) -> int:
    """Shared-memory bytes of one warp's strip_product (bf16 WMMA m16n16k16): per 16-column tile, its A and
    B fragments per depth step, the fp32 accumulator stored (and loaded first when accumulating)."""
    fragment, accumulator = 16 * 16 * ELEMENT, 16 * 16 * 4
    return columns // 16 * (depth // 16 * 2 * fragment + accumulator * (2 if accumulate else 1))


def flash_kernels() -> list[dict]:
    n, hd = FLASH_WINDOW * FLASH_WINDOW, FLASH_CHANNELS // FLASH_HEADS
    dp, rows, warps = 16 * math.ceil(hd / 16), FLASH_ROWS, FLASH_ROWS // 16
    windows = FLASH_TOKENS // n
    window_heads = windows * FLASH_HEADS
    blocks_per_head = n // rows
    slice_bytes = hd * ELEMENT
    amplification = sectors_per_slice(slice_bytes, slice_bytes, FLASH_HEADS) * SECTOR / slice_bytes
    strip = 16 * rows * 4  # a warp's fp32 (16, 64) score strip
    out_strip = 16 * dp * 4
    prob_rows = 16 * rows * ELEMENT
    kv_tiles = 2 * rows * dp * ELEMENT
    bias_block = rows * rows * 4  # the fp32 bias (or partial) rows of a (query block, key block) tile
    # Forward, per block: per key block, per warp S, the softmax (strip read, P written, O rescaled), O += P v.
    forward_warp = (strip_product_bytes(dp, rows, False) + strip + prob_rows + 2 * out_strip
                    + strip_product_bytes(rows, dp, True))
    forward_block = blocks_per_head * (warps * forward_warp + kv_tiles) + rows * dp * ELEMENT + warps * out_strip
    forward_blocks = window_heads * blocks_per_head
    key_reads = window_heads * blocks_per_head * 2 * n * slice_bytes  # k, v per query block
    forward_l2 = (key_reads + window_heads * 2 * n * slice_bytes) * amplification \
        + forward_blocks * blocks_per_head * bias_block
    flops = window_heads * 2 * (2 * n * n * dp)
    exps = window_heads * n * n
    minimal_forward = 4 * FLASH_CHANNELS * ELEMENT * FLASH_TOKENS
    minimal_backward = 7 * FLASH_CHANNELS * ELEMENT * FLASH_TOKENS
    bias_bytes = FLASH_HEADS * n * n * 4
    # dq, per block: per key block, per warp S and dP, the strips read, dS written, dq += dS k.
    dq_warp = 2 * strip_product_bytes(dp, rows, False) + 2 * strip + prob_rows + strip_product_bytes(rows, dp, True)
    dq_block = blocks_per_head * (warps * dq_warp + kv_tiles) + 2 * rows * dp * ELEMENT + warps * out_strip
    # dkv, per (window, key block): per query block the row pass (S, dP, P and dS written) and the column
    # pass (dk += dS^T q, dv += P^T dO).
    dkv_warp = (2 * strip_product_bytes(dp, rows, False) + 2 * strip + 2 * prob_rows
                + 2 * strip_product_bytes(rows, dp, True))
    dkv_window = blocks_per_head * (warps * dkv_warp + kv_tiles) + kv_tiles + 2 * warps * out_strip
    groups = min(32, math.ceil(windows / 4), (1 << 24) // (FLASH_HEADS * n * n))
    groups = math.ceil(windows / math.ceil(windows / groups))
    dkv_blocks = groups * FLASH_HEADS * blocks_per_head
    partial_bytes = groups * FLASH_HEADS * n * n * 4
    backward_l2 = (2 * forward_l2  # statistics pass and dq: the forward's traffic, dO for out
                   + (window_heads * blocks_per_head * 2 * n * slice_bytes + window_heads * 2 * n * slice_bytes)
                   * amplification  # dkv: q, dO per key block; k, v once
                   + 2 * window_heads * n * n * 4  # dkv: the bias tile and the partial read-modify-write
                   + window_heads * n * n * 4)
    common = {"channels": FLASH_CHANNELS}
    return [
        dict(name="cuda flash forward", direction="forward", blocks=forward_blocks,
             resident=flash_resident(FLASH_SHARED["forward"]), hbm=minimal_forward + bias_bytes, l2=forward_l2,
             flops=flops, exps=exps, shared=forward_blocks * forward_block, launches=1, minimal=minimal_forward,
             **common),
        dict(name="cuda flash backward", direction="backward",
             blocks=(forward_blocks, forward_blocks, dkv_blocks),
             resident=(flash_resident(FLASH_SHARED["forward"]), flash_resident(FLASH_SHARED["dq"]),
                       flash_resident(FLASH_SHARED["dkv"])),
             hbm=minimal_backward + 3 * bias_bytes + 2 * partial_bytes, l2=backward_l2,
             flops=window_heads * 2 * (2 * n * n * dp) * 4, exps=3 * exps,  # fwd 2 products; dq 3; dkv 4 (+1 shared)
             shared=forward_blocks * (forward_block + dq_block) + window_heads * blocks_per_head * dkv_window,
             launches=4, minimal=minimal_backward, **common),
    ]  # fmt: skip


def predict_flash(kernel: dict, gpu: dict) -> dict:
    """The same terms as predict(): HBM at the copy ceiling, L2 sectors, WMMA FLOPs at 60% of the dense rate,
    exponentials on the SFU, shared-memory traffic; overlapped (>= 2 blocks per SM); waves rounded up."""
    blocks = kernel["blocks"] if isinstance(kernel["blocks"], tuple) else (kernel["blocks"],)
    resident = kernel["resident"] if isinstance(kernel["resident"], tuple) else (kernel["resident"],)
    # The kernels of a direction run one after another: wave rounding weighted by each one's share of blocks.
    rounding = sum(b * (math.ceil(b / (gpu["sms"] * r)) / (b / (gpu["sms"] * r)) if b > gpu["sms"] * r else 1)
                   for b, r in zip(blocks, resident)) / sum(blocks)
    terms = {
        "HBM": kernel["hbm"] / gpu["copy"],
        "L2": kernel["l2"] / L2_BANDWIDTH,
        "tensor": kernel["flops"] / (gpu["tensor"] * MMA_SYNC_SHARE),
        "SFU": kernel["exps"] / (gpu["sms"] * SFU_PER_SM_PER_CLOCK * gpu["clock"]),
        "shared": kernel["shared"] / (gpu["sms"] * SHARED_BYTES_PER_SM_PER_CLOCK * gpu["clock"]),
    }
    seconds = max(terms.values()) * rounding + kernel["launches"] * LAUNCH_SECONDS
    roofline = kernel["minimal"] / gpu["copy"]
    return {"seconds": seconds, "roofline": roofline, "fraction": roofline / seconds,
            "bound": max(terms, key=terms.get), "terms": terms, "resident": resident}  # fmt: skip


# ---- the Triton flash kernels (swinir_kernels/triton/window_attention_flash.py), bf16 ------------------
#
# Shapes: B 1, 256 x 256 tokens, image layout, shifted, head_dim 30: HAT's 16 x 16 windows (C 180, 6 heads)
# and DAT's 8 x 32 (C 90, 3 heads), both N 256. Tiles, warps and stages from the module (flash_blocks,
# flash_config: rows and dq 64 x 64, dkdv 32 query rows x 64 keys, BLOCK_D 32, 4 warps, 2 stages) and its
# dK/dV grouping (flash_backward_windows_per_program: 10 groups of 26 windows). Residency, async copies
# (pipelined or not) from the static report's sm_90 rows of the same kernel at the same window, head_dim,
# layout and dtype (the report compiles NUM_HEADS=2: the head count changes addressing, not the tiles).
# Each launch is predicted as predict() does (HBM with Little's law, L2 sectors, tensor at 60%, SFU, shared
# memory; overlapped when pipelined or two programs share an SM), with the busiest SM's program count
# rounded up (ceil(programs / SMs) over the mean): the backward is the sum of its launches. Counted:
#   forward     (window, head, query block): q once, per key block the k and v tiles (a window's 4 query
#               blocks re-read them: L2) and the bf16 bias tile (re-read per (window, head): L2); out once.
#               Shared memory (wgmma on sm_90, the report's 6 tensor-core instructions): the staged k, v, bias
#               tiles written once (cp.async) and read once, q once.
#   preprocess  the forward's loop again, dO read instead of out written, lse and delta (fp32) stored.
#   dK/dV       (window group, head, key block), no async copies in the report (not pipelined): per window
#               k, v once; per query block (32 rows) q, dO, lse, delta (re-read by each of the 4 key blocks:
#               L2), the bias tile, and the fp32 bias-gradient partial tile read and written (L2; the group's
#               first window writes only); dk, dv stored. HBM: the partials written once. Shared memory per
#               step: the M-32 dots (S, dP) on mma.sync with 2 x 2 warps (operands read by 2 warps), the
#               M-64 ones (dV, dK) on wgmma with P^T and dS^T through shared memory; the bias and partial
#               tiles converted to the accumulator layout through shared memory.
#   dQ          (window, head, query block): q, dO, lse, delta once; per key block k, v (L2 re-reads), the
#               bias tile; k read twice from shared memory (S and dQ).
#   partial sum torch's partial.sum(0) and .to(bf16): the partials read once, HBM only, 2 launches.
# HBM: every launch reads q, k, v and dO (the image's qkv and dO, 94 MB at HAT, exceed the 50 MB L2) and
# writes what it produces; the roofline stays the minimal 4C / 7C per token.
TRITON_FLASH_SHAPES = (("HAT (16x16, C 180)", (16, 16), 180, 6), ("DAT (8x32, C 90)", (8, 32), 90, 3))
BIAS_ELEMENT, STATS_BYTES, PARTIAL_ELEMENT = 2, 8, 4  # bf16 rel_bias; fp32 lse + delta per row; fp32 partials


@functools.lru_cache(maxsize=1)
def triton_flash_module():
    return importlib.import_module("swinir_kernels.triton.window_attention_flash")


@dataclass
class FlashLaunch:
    """One launch of the Triton flash forward or backward at one shape."""

    name: str
    report_kernel: str | None  # None: not a Triton kernel (torch's partial sum), HBM at the copy ceiling
    report_match: tuple
    programs: int
    phase_bytes: float  # what one program loads per step of its loop (in flight, per stage)
    hbm_bytes: float
    l2_bytes: float
    tensor_flops: float
    exponentials: float
    shared_bytes: float
    launches: int = 1


def triton_flash_launches(window: tuple, channels: int, heads: int) -> dict[str, list[FlashLaunch]]:
    """{"forward": [launch], "backward": [preprocess, dK/dV, dQ, partial sum]} at B 1, 256 x 256 tokens."""
    flash = triton_flash_module()
    wh, ww = window
    n, hd = wh * ww, channels // heads
    d = max(16, 1 << (hd - 1).bit_length())  # BLOCK_D
    key = dict(N=n, BLOCK_D=d, dtype="bfloat16", DOT_PRECISION="tf32")
    blocks = {kind: flash.flash_blocks(kind, key) for kind in ("rows", "dq", "dkdv")}
    windows = FLASH_TOKENS // n
    window_heads = windows * heads
    slice_bytes = hd * ELEMENT
    slice_l2 = sectors_per_slice(slice_bytes, slice_bytes, heads) * SECTOR  # L2-to-SM bytes of a head slice
    tensor = channels * ELEMENT * FLASH_TOKENS  # one C-wide bf16 tensor (q, k, v, dO, out, dq, dk, dv)
    bias = heads * n * n * BIAS_ELEMENT
    stats = window_heads * n * STATS_BYTES
    product = window_heads * 2 * n * n * d  # one (N x N x BLOCK_D) product over every (window, head)
    exps = window_heads * n * n
    match = (f"HEAD_DIM={hd}", f"N={n}", f"WINDOW_H={wh}", f"WINDOW_W={ww}", "IMAGE_LAYOUT=True",
             "HAS_SHIFT=True", "qkv_ptr:*bf16")

    def rows_launch(name, report_kernel, backward):
        bm, bn = blocks["rows"]["BLOCK_M"], blocks["rows"]["BLOCK_N"]
        programs = window_heads * math.ceil(n / bm)
        step_shared = 2 * (2 * bn * d * ELEMENT + bm * bn * BIAS_ELEMENT)  # k, v, bias: written, read
        return FlashLaunch(
            name, report_kernel, match, programs, 2 * bn * slice_l2 + bm * bn * BIAS_ELEMENT,
            4 * tensor + bias + (stats if backward else 0),  # q, k, v and out (forward) or dO (preprocess)
            window_heads * (n * slice_l2 * (2 + 2 * math.ceil(n / bm)) + n * n * BIAS_ELEMENT)
            + (stats if backward else 0),
            2 * product, exps, programs * (2 * bm * d * ELEMENT + math.ceil(n / bn) * step_shared))

    # dK/dV: steps of (32 query rows, 64 keys); groups of windows per (head, key block).
    bm, bn = blocks["dkdv"]["BLOCK_M"], blocks["dkdv"]["BLOCK_N"]
    key_blocks = math.ceil(n / bn)
    groups = math.ceil(windows / flash.flash_backward_windows_per_program(windows, key_blocks))
    partials = groups * heads * n * n * PARTIAL_ELEMENT
    steps = window_heads * key_blocks * math.ceil(n / bm)
    tile_q, tile_k = bm * d * ELEMENT, bn * d * ELEMENT
    scores, bias_tile, partial_tile = bm * bn * ELEMENT, bm * bn * BIAS_ELEMENT, bm * bn * PARTIAL_ELEMENT
    # q: written, read by 2 warps (S), by wgmma (dK); dO: written, by wgmma (dV), by 2 warps (dP); k, v: by
    # 2 warps each; P^T, dS^T written and read; bias and partial converted.
    step_shared = 8 * tile_q + 4 * tile_k + 4 * scores + 2 * bias_tile + 2 * partial_tile
    dkdv = FlashLaunch(
        "dK/dV", "_flash_bwd_dkdv_kernel", match, groups * heads * key_blocks,
        2 * bm * slice_l2 + bias_tile + bm * STATS_BYTES + partial_tile,
        6 * tensor + bias + stats + partials,  # q, k, v, dO read; dk, dv written; the partials written once
        window_heads * (n * slice_l2 * (4 + 2 * key_blocks) + key_blocks * n * STATS_BYTES + n * n * BIAS_ELEMENT)
        + (2 * windows - groups) * heads * n * n * PARTIAL_ELEMENT,  # the partials' read-modify-write
        4 * product, exps, steps * step_shared + window_heads * key_blocks * 2 * tile_k)
    bm, bn = blocks["dq"]["BLOCK_M"], blocks["dq"]["BLOCK_N"]
    dq_programs = window_heads * math.ceil(n / bm)
    dq = FlashLaunch(
        "dQ", "_flash_bwd_dq_kernel", match, dq_programs, 2 * bn * slice_l2 + bm * bn * BIAS_ELEMENT,
        5 * tensor + bias + stats,  # q, k, v, dO read; dq written
        window_heads * (n * slice_l2 * (3 + 2 * math.ceil(n / bm)) + n * n * BIAS_ELEMENT + n * STATS_BYTES),
        3 * product, exps,
        dq_programs * (4 * bm * d * ELEMENT  # q, dO; per key block k, v, bias staged and read, k read again
                       + math.ceil(n / bn) * (2 * (2 * bn * d * ELEMENT + bm * bn * BIAS_ELEMENT)
                                              + bn * d * ELEMENT)))
    summed = heads * n * n * PARTIAL_ELEMENT
    partial_sum = FlashLaunch("partial sum", None, (), 0, 0, partials + 2 * summed + heads * n * n * ELEMENT,
                              0, 0, 0, 0, launches=2)
    return {"forward": [rows_launch("forward", "_flash_fwd_kernel", False)],
            "backward": [rows_launch("preprocess", "_flash_bwd_preprocess_kernel", True), dkdv, dq, partial_sum]}


def predict_triton_flash(launch: FlashLaunch, row: dict | None, gpu: dict) -> dict:
    """predict()'s terms for one launch; rounding: the busiest SM's programs over the mean."""
    if launch.report_kernel is None:
        terms = dict.fromkeys(("HBM", "L2", "tensor", "SFU", "shared"), 0.0)
        terms["HBM"] = launch.hbm_bytes / gpu["copy"]
        return {"seconds": terms["HBM"] + launch.launches * LAUNCH_SECONDS, "terms": terms, "bound": "HBM",
                "overlap": True, "resident": None}
    resident = int(re.match(r"\d+/64 \((\d+) blocks", row["occupancy"]).group(1))
    pipelined = row["async_copies"] != "-"
    stages = int(re.search(r"num_stages=(\d+)", row["specialization"]).group(1)) if pipelined else 1
    busiest = math.ceil(launch.programs / gpu["sms"])
    per_sm = min(resident, busiest)
    in_flight = per_sm * launch.phase_bytes * stages
    bandwidth = gpu["copy"] * min(1.0, in_flight / (gpu["copy"] / gpu["sms"] * LATENCY))
    terms = {
        "HBM": launch.hbm_bytes / bandwidth,
        "L2": launch.l2_bytes / L2_BANDWIDTH,
        "tensor": launch.tensor_flops / (gpu["tensor"] * MMA_SYNC_SHARE),
        "SFU": launch.exponentials / (gpu["sms"] * SFU_PER_SM_PER_CLOCK * gpu["clock"]),
        "shared": launch.shared_bytes / (gpu["sms"] * SHARED_BYTES_PER_SM_PER_CLOCK * gpu["clock"]),
    }
    memory, compute = max(terms["HBM"], terms["L2"]), max(terms["tensor"], terms["SFU"], terms["shared"])
    overlap = pipelined or per_sm >= 2
    body = max(memory, compute) if overlap else memory + compute
    rounding = busiest / (launch.programs / gpu["sms"])
    return {"seconds": body * rounding + launch.launches * LAUNCH_SECONDS, "terms": terms,
            "bound": max(terms, key=terms.get), "overlap": overlap, "resident": resident}


def triton_flash_predictions(rows: list[dict]) -> list[dict]:
    """Per shape and direction: {label, direction, parts: [(launch, row, {gpu: prediction})], missing,
    and per gpu: seconds, roofline, fraction, terms (summed over the parts), bound (of the longest part)}."""
    result = []
    for label, window, channels, heads in TRITON_FLASH_SHAPES:
        minimal = {"forward": 4, "backward": 7}
        for direction, launches in triton_flash_launches(window, channels, heads).items():
            parts = [(launch, report_row(rows, launch) if launch.report_kernel else None) for launch in launches]
            entry = {"label": label, "direction": direction, "channels": channels,
                     "missing": [launch.name for launch, row in parts if launch.report_kernel and row is None]}
            entry["parts"] = [(launch, row, {} if entry["missing"] else {
                name: predict_triton_flash(launch, row, gpu) for name, gpu in GPUS.items()})
                for launch, row in parts]
            if not entry["missing"]:
                for name, gpu in GPUS.items():
                    predicted = [prediction[name] for _, _, prediction in entry["parts"]]
                    seconds = sum(p["seconds"] for p in predicted)
                    roofline = minimal[direction] * channels * ELEMENT * FLASH_TOKENS / gpu["copy"]
                    longest = max(zip(predicted, parts), key=lambda pair: pair[0]["seconds"])
                    bound = longest[0]["bound"] + ("" if longest[0]["overlap"] else " + compute (serial)")
                    entry[name] = {
                        "seconds": seconds, "roofline": roofline, "fraction": roofline / seconds,
                        "terms": {t: sum(p["terms"][t] for p in predicted) for t in predicted[0]["terms"]},
                        "bound": bound if direction == "forward" else f"{bound} ({longest[1][0].name})",
                    }
            result.append(entry)
    return result


def flash_lines(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "## The flash kernels at 16x16 and 8x32 windows",
        "",
        "B 1, 256 x 256 tokens, image layout, shifted, head_dim 30, bf16; HAT: window 16 x 16 (256 tokens), C 180,",
        "6 heads; DAT: window 8 x 32 (256 tokens), C 90, 3 heads. `csrc/cuda/window_attention_flash_kernel.cu`",
        "modelled from its structure (see flash_kernels()); the Triton ones",
        "(`swinir_kernels/triton/window_attention_flash.py`) from their structure and the static report's sm_90",
        "rows (see triton_flash_launches(); the backward = preprocess + dK/dV + dQ + the partials' sum, its parts",
        "listed under it). Terms in us on the H100: HBM / L2 / tensor / SFU / shared memory (the backward's summed",
        "over its parts). Roofline = 4C (forward) or 7C (backward) bytes per token at the copy ceiling.",
        "",
        "| shape | kernel | blocks/SM | bound by | H100 terms us | H100 roofline us | H100 predicted us | share "
        "| H200 roofline us | H200 predicted us | share | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def verdict(direction, h100, h200):
        target = 0.7 if direction == "forward" else 0.5
        return f"{'meets' if min(h100['fraction'], h200['fraction']) >= target else 'misses'} {target:.0%}"

    def terms(prediction):
        return " / ".join(f"{value * 1e6:.0f}" for value in prediction["terms"].values())

    for kernel in flash_kernels():
        h100, h200 = predict_flash(kernel, GPUS["H100 SXM"]), predict_flash(kernel, GPUS["H200 SXM"])
        lines.append(
            f"| HAT (16x16, C 180) | {kernel['name']} | {', '.join(map(str, h100['resident']))} | {h100['bound']} | "
            f"{terms(h100)} | {h100['roofline'] * 1e6:.1f} | {h100['seconds'] * 1e6:.1f} | {h100['fraction']:.1%} | "
            f"{h200['roofline'] * 1e6:.1f} | {h200['seconds'] * 1e6:.1f} | {h200['fraction']:.1%} | "
            f"{verdict(kernel['direction'], h100, h200)} |"
        )
    missing = []
    entries = triton_flash_predictions(rows)
    for entry in entries:
        name = f"triton flash {entry['direction']}"
        if entry["missing"]:
            missing.append(f"{name} at {entry['label']} ({', '.join(entry['missing'])})")
            continue
        h100, h200 = entry["H100 SXM"], entry["H200 SXM"]
        resident = ", ".join(str(p["H100 SXM"]["resident"]) for _, row, p in entry["parts"] if row is not None)
        lines.append(
            f"| {entry['label']} | {name} | {resident} | {h100['bound']} | {terms(h100)} | "
            f"{h100['roofline'] * 1e6:.1f} | {h100['seconds'] * 1e6:.1f} | {h100['fraction']:.1%} | "
            f"{h200['roofline'] * 1e6:.1f} | {h200['seconds'] * 1e6:.1f} | {h200['fraction']:.1%} | "
            f"{verdict(entry['direction'], h100, h200)} |"
        )
        if entry["direction"] == "backward":
            for launch, row, prediction in entry["parts"]:
                p100, p200 = prediction["H100 SXM"], prediction["H200 SXM"]
                programs = f"{launch.programs} programs" if launch.programs else "torch"
                lines.append(
                    f"| {entry['label']} | . {launch.name} ({programs}) | {p100['resident'] or '-'} | "
                    f"{p100['bound']}{'' if p100['overlap'] else ' + compute (serial)'} | {terms(p100)} | | "
                    f"{p100['seconds'] * 1e6:.1f} | | | {p200['seconds'] * 1e6:.1f} | | |"
                )
    if missing:
        lines += ["", "Not in the static report (no row to predict from): " + "; ".join(missing) + "."]
    # What the Triton kernels' L2 term is made of, at HAT's shape (per (window, head), L2-to-SM bytes).
    n, hd, heads = 256, 30, 6
    slice_l2 = sectors_per_slice(hd * ELEMENT, hd * ELEMENT, heads) * SECTOR
    forward = {"k, v per query block": 2 * 4 * n * slice_l2, "bias": n * n * BIAS_ELEMENT, "q, out": 2 * n * slice_l2}
    dkdv = {"partial RMW": (2 * 256 - 10) / 256 * n * n * PARTIAL_ELEMENT,
            "q, dO per key block": 2 * 4 * n * slice_l2, "bias": n * n * BIAS_ELEMENT,
            "k, v, dk, dv, lse, delta": 4 * n * slice_l2 + 4 * n * STATS_BYTES}

    def shares(parts):
        return ", ".join(f"{name} {value / sum(parts.values()):.0%}" for name, value in parts.items())

    hat_backward = next(e for e in entries if e["label"].startswith("HAT") and e["direction"] == "backward")
    cap = hat_backward["H100 SXM"]["roofline"] / hat_backward["H100 SXM"]["terms"]["HBM"] if not hat_backward[
        "missing"] else float("nan")
    lines += ["", f"Triton at HAT, L2 bytes: forward {shares(forward)}; dK/dV {shares(dkdv)}.",
              "HBM alone: the backward's three kernels each read q, k, v and dO (15C bytes per token with the",
              f"writes, against 7C), so its HBM term caps it at {cap:.0%} of the roofline (H100) before the L2 term."]
    return lines


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
    lines += flash_lines(rows)
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

"""Window attention for large windows (more tokens or wider heads than the register kernel of
window_attention.py holds): FlashAttention-2-style Triton kernels for the Swin family's big windows
(HAT/DRCT/ATD 16x16 = 256 tokens, DAT/RGT 8x32 and 32x8 with per-axis shifts, SRFormer 22x22 = 484,
GRL 32x32 = 1024) and head_dims up to 128 (odd ones too: DRCT's 53, 77, 122).

Same semantics, layouts and precision rules as :mod:`swinir_kernels.triton.window_attention` (read its
docstring): per window w and head h, ``out = softmax(q k^T * scale + rel_bias[h] + mask) v``; window
layout qkv (B*nW, N, 3C) -> out (B*nW, N, C) with an optional mask (nW, N, N) used as mask[w % nW];
image layout qkv (B, H, W, 3C) -> out (B, H, W, C) with the roll by -shift, the partition and its reverse
folded into the addressing and the official -100 shift mask computed from coordinates. Windows are
wh x ww pixels (``window_size=(wh, ww)``) and the shift is per axis (``shift=(sh, sw)``): token
(ti, tj) (t = ti*ww + tj) of window (b, wr, wc) is pixel (b, (wr*wh + ti + sh) % H, (wc*ww + tj + sw) % W),
and an axis whose shift is 0 is not cut into regions (see :func:`_shift_regions`).

Kernels (nothing N x N is ever in memory but the bias and the mask the caller passes):

* forward, one program per (window, head, block of BLOCK_M query rows): the query tile stays in
  registers while the program walks the key blocks of BLOCK_N tokens with an online softmax (running
  row max and sum, base 2, fp32; fp64 for fp64), reading each key block's bias and mask tiles (or
  computing the shift regions) as it goes; out = acc / sum at the end;
* backward, recomputing (the autograd op saves only qkv and rel_bias: no output, no statistics):
  1. ``_flash_bwd_preprocess_kernel``, per (window, head, query block): the forward's loop again, then
     the row log-sum-exp (base 2) and delta = rowsum(dO * O) into (windows, heads, N) scratch (O(N));
  2. ``_flash_bwd_dkdv_kernel``, per (window group, head, key block): its windows in order, for each
     the key block's dK and dV accumulated in registers over the query blocks, and the bias gradient of
     (every query row, this key block's columns) added into the group's fp32 (fp64) partial
     (groups, nH, N, N): each element of a partial is read and written by one program only, in window
     order, so the sum is deterministic; the host sums the partials in a fixed order;
  3. ``_flash_bwd_dq_kernel``, per (window, head, query block): dQ over the key blocks.
  With P = exp2(S*log2e - lse): dV = P^T dO, dP = dO V^T, dS = P * (dP - delta), dQ = dS K * scale,
  dK = dS^T Q * scale, dBias = sum over windows of dS. No atomics anywhere.

Tiles: BLOCK_D = the next power of two >= max(16, head_dim), channels masked (other=0); token blocks
masked too, padded key columns -inf (probability 0). Each kernel kind (rows: forward and preprocess; dq;
dkdv) has its own BLOCK_M x BLOCK_N and warps, pure functions of the specialization (_TILES,
:func:`flash_blocks`, :func:`flash_config`, through launch_configs.launch_config), chosen on sm_90 cubins
so that none spills. Offsets are int64 (the per-window part computed once, :func:`_window_origin`, the
per-token part in int32) and grids 1-D; window counts are not specialized. The launch geometry, scale
split and checks are window_attention.py's (_Problem, _check_launch).

Precision, as the register kernel's: softmax statistics, accumulators and the bias-gradient partials in
fp32 (fp64 for fp64, the scale an fp32 hi/lo pair); exp2 with log2(e) folded into the scale; the bias
and mask read in their own dtypes and added in the accumulation dtype; fp16/bf16 operands go to tl.dot
as they are (P and dS rounded to them, as FlashAttention-2 does), fp32 ones with DOT_PRECISION (ieee or
tf32). delta is rowsum(dO * O) with O recomputed in the accumulation dtype, not the rounded output.
"""

import functools

import torch
import triton
import triton.language as tl

from . import window_attention as _registers
from .launch_configs import launch_config
from .window_attention import _LOG2E, _MASK_VALUE, _device_guard, _scale_in_compute_dtype


def _dot_kind(key: dict) -> str:
    """'16-bit', 'tf32', 'ieee' (fp32 with exact products) or 'fp64': what the tiles cost."""
    if key["dtype"] in ("float16", "bfloat16"):
        return "16-bit"
    if key["dtype"] == "float64":
        return "fp64"
    return key["DOT_PRECISION"]


# (dot kind, BLOCK_D at most) -> {kernel kind: (BLOCK_M, BLOCK_N, warps)}, in order of BLOCK_D. Kernel
# kinds: "rows" (the forward and the backward's preprocess) and "dq" (BLOCK_M query rows per program,
# BLOCK_N keys per step of its loop); "dkdv" (BLOCK_N keys per program, BLOCK_M query rows per step).
# Chosen on sm_90 cubins (Triton's compiler and ptxas, no GPU needed) as the largest tiles with no spill
# and no stack at HAT's 16x16 (window layout, masked), DAT's 8x32, SRFormer's 22x22, GRL's 32x32 and 8x8
# at head_dim > 64; the most registers a thread any of them takes is in the comment.
_TILES = {
    # FlashAttention-2's 64 x 64 at head_dim <= 64; 64 keys would spill at 128 (22x22), so 32.
    "16-bit": ((64, {"rows": (64, 64, 4), "dq": (64, 64, 4), "dkdv": (32, 64, 4)}),  # 238
               (128, {"rows": (64, 32, 8), "dq": (64, 32, 8), "dkdv": (16, 64, 8)})),  # 240
    # fp32 operands: twice the registers of 16-bit ones in every tile.
    "tf32": ((32, {"rows": (64, 64, 4), "dq": (64, 64, 4), "dkdv": (32, 64, 4)}),  # 238
             (64, {"rows": (64, 32, 4), "dq": (64, 32, 4), "dkdv": (32, 32, 4)}),  # 200
             (128, {"rows": (64, 32, 8), "dq": (32, 32, 8), "dkdv": (32, 32, 8)})),  # 240
    # FMA dots (fp32 with exact products, fp64): operands in registers (64 x 64 fp32 spills kilobytes).
    "ieee": ((64, {"rows": (32, 32, 4), "dq": (32, 32, 4), "dkdv": (32, 32, 4)}),  # 152
             (128, {"rows": (16, 32, 4), "dq": (16, 16, 4), "dkdv": (16, 16, 4)})),  # 168
    "fp64": ((32, {"rows": (32, 32, 4), "dq": (32, 32, 4), "dkdv": (16, 32, 8)}),  # 248
             (64, {"rows": (32, 32, 8), "dq": (32, 32, 8), "dkdv": (16, 32, 8)}),  # 190
             (128, {"rows": (16, 32, 8), "dq": (16, 32, 8), "dkdv": (32, 16, 8)})),  # 198
}


def _tile(kind: str, key: dict) -> tuple:
    return next(tiles[kind] for widest, tiles in _TILES[_dot_kind(key)] if key["BLOCK_D"] <= widest)


def flash_blocks(kind: str, key: dict) -> dict:
    """BLOCK_M and BLOCK_N of kernel `kind` ("rows", "dq" or "dkdv"), a pure function of the
    specialization key (N, BLOCK_D, dtype, DOT_PRECISION): _TILES's, capped at the padded window, with
    half the keys per step in the row kernels when N is not a multiple of 8: rows of the bias (and mask)
    tiles are then not 16-byte aligned, their loads not vectorised, and a 64 x 64 tile spills (7x11
    windows, 77 tokens)."""
    block_m, block_n, _ = _tile(kind, key)
    if kind != "dkdv" and key["N"] % 8 and _dot_kind(key) in ("16-bit", "tf32"):
        block_n = min(block_n, 32)
    tokens = max(16, triton.next_power_of_2(key["N"]))
    return {"BLOCK_M": min(block_m, tokens), "BLOCK_N": min(block_n, tokens)}


def flash_config(kind: str, key: dict) -> dict:
    """Warps and stages of kernel `kind` for `key` (its constexprs with its blocks, and the dtype): _TILES's
    warps; two stages in 16-bit and TF32 (the next step's tiles copied to shared memory, cp.async, during
    this step's dots), one for the FMA dots of fp32 IEEE and fp64, whose operands go to registers."""
    return {"num_warps": _tile(kind, key)[2], "num_stages": 1 if _dot_kind(key) in ("ieee", "fp64") else 2}


# ---------------------------------------------------------------------------------------------------
# Shared pieces


@triton.jit
def _window_origin(window, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W,
                   IMAGE_LAYOUT: tl.constexpr):
    """(origin, row0, col0) of `window` (int64; windows batch-major then row-major over the
    (H/wh, W/ww) grid): image layout, origin = the first row of its image in the (rows, channels) view
    and (row0, col0) the int32 rolled coordinates of its first token; window layout, origin = its first
    row (row0, col0 unused). Computed once per window, so the per-token arithmetic is int32."""
    if IMAGE_LAYOUT:
        windows_per_row = W // WINDOW_W
        windows_per_image = (H // WINDOW_H) * windows_per_row
        image = window // windows_per_image
        in_image = (window % windows_per_image).to(tl.int32)
        return image * H * W, (in_image // windows_per_row) * WINDOW_H, (in_image % windows_per_row) * WINDOW_W
    else:
        return window * N, 0, 0


@triton.jit
def _token_rows(origin, row0, col0, tokens, WINDOW_W: tl.constexpr, H, W, shift_h, shift_w,
                IMAGE_LAYOUT: tl.constexpr):
    """int64 row of each token (int32 indices in the window) in the (rows, channels) view of qkv and
    out; image layout: token (ti, tj) is pixel ((row0 + ti + sh) % H, (col0 + tj + sw) % W), the roll
    by -shift undone. Padded tokens give rows that the loads and stores mask off."""
    if IMAGE_LAYOUT:
        h = row0 + tokens // WINDOW_W + shift_h
        w = col0 + tokens % WINDOW_W + shift_w
        h = tl.where(h >= H, h - H, h)
        w = tl.where(w >= W, w - W, w)
        return origin + h.to(tl.int64) * W + w
    else:
        return origin + tokens


@triton.jit
def _shift_regions(row0, col0, tokens, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W, shift_h, shift_w):
    """Region id 0..8 of each token in the rolled image, as reference.shift_attention_mask labels it:
    along H region 0 below H-wh, 1 below H-sh, else 2, likewise along W. An axis whose shift is 0 is not
    cut: there the official slices [0:-wh], [-wh:-0], [-0:] are (first rows, nothing, every row), the
    last overwriting the first, so every token has the same region along that axis."""
    h = row0 + tokens // WINDOW_W
    w = col0 + tokens % WINDOW_W
    region_h = (h >= H - WINDOW_H).to(tl.int32) + (h >= H - shift_h).to(tl.int32)
    region_w = (w >= W - WINDOW_W).to(tl.int32) + (w >= W - shift_w).to(tl.int32)
    region_h = tl.where(shift_h > 0, region_h, 0)
    region_w = tl.where(shift_w > 0, region_w, 0)
    return region_h * 3 + region_w


@triton.jit
def _window_mask(mask_ptr, window, num_mask_windows, N: tl.constexpr, HAS_MASK: tl.constexpr):
    """The window's (N, N) mask tile, mask[window % nW] (mask_ptr itself when there is no mask)."""
    if HAS_MASK:
        return mask_ptr + (window % num_mask_windows) * (N * N)
    else:
        return mask_ptr


@triton.jit
def _scores(
    q, k, head_bias_ptr, window_mask_ptr, q_tokens, k_tokens, q_regions, k_regions, qk_scale_log2,
    N: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """(q k^T * scale + bias + mask) * log2(e) of one (query block, key block) tile, in fp32 (fp64 for
    fp64 q, k); padded key columns -inf. head_bias_ptr: rel_bias[head], read in its own dtype;
    window_mask_ptr: the window's mask (see _window_mask); q/k_regions: shift regions when HAS_SHIFT."""
    k_valid = k_tokens < N
    pair_offsets = q_tokens[:, None] * N + k_tokens[None, :]
    pair_valid = (q_tokens < N)[:, None] & k_valid[None, :]
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
    bias = tl.load(head_bias_ptr + pair_offsets, mask=pair_valid, other=0.0)
    scores += bias.to(scores.dtype) * _LOG2E
    if HAS_MASK:
        mask = tl.load(window_mask_ptr + pair_offsets, mask=pair_valid, other=0.0)
        scores += mask.to(scores.dtype) * _LOG2E
    if HAS_SHIFT:
        scores = tl.where(q_regions[:, None] != k_regions[None, :], scores + _MASK_VALUE * _LOG2E, scores)
    return tl.where(k_valid[None, :], scores, float("-inf"))


@triton.jit
def _attend_rows(
    qkv_ptr, head_bias_ptr, window_mask_ptr, q, q_tokens, q_regions, origin, row0, col0, head, dims, H, W,
    shift_h, shift_w, qk_scale_log2, ACC: tl.constexpr, C: tl.constexpr, HEAD_DIM: tl.constexpr,
    N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, IMAGE_LAYOUT: tl.constexpr,
    HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """The online softmax of one query block over every key block: (acc, m, l) with acc = sum_j
    exp2(s_j - m) v_j (un-normalised), m the row max and l = sum_j exp2(s_j - m), in ACC (base 2).
    Every key block holds a valid key, so m is finite after the first and no row divides by 0."""
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=ACC)
    m = tl.full((BLOCK_M,), float("-inf"), dtype=ACC)
    l = tl.zeros((BLOCK_M,), dtype=ACC)
    dim_valid = dims < HEAD_DIM
    for start in range(0, N, BLOCK_N):
        k_tokens = start + tl.arange(0, BLOCK_N)
        k_rows = _token_rows(origin, row0, col0, k_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
        kv_offsets = k_rows[:, None] * (3 * C) + C + head * HEAD_DIM + dims[None, :]
        kv_valid = (k_tokens < N)[:, None] & dim_valid[None, :]
        k = tl.load(qkv_ptr + kv_offsets, mask=kv_valid, other=0.0)
        v = tl.load(qkv_ptr + kv_offsets + C, mask=kv_valid, other=0.0)
        k_regions = k_tokens  # unused unless shifted
        if HAS_SHIFT:
            k_regions = _shift_regions(row0, col0, k_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
        s = _scores(q, k, head_bias_ptr, window_mask_ptr, q_tokens, k_tokens, q_regions, k_regions, qk_scale_log2,
                    N, HAS_MASK, HAS_SHIFT, DOT_PRECISION)
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)  # 0 at the first block (m = -inf)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m = m_new
    return acc, m, l


@triton.jit
def _query_block(program, NUM_HEADS: tl.constexpr, N: tl.constexpr, BLOCK_M: tl.constexpr):
    """(window, head, first query token) of a row program: query blocks fastest, so the programs that
    read one (window, head)'s keys run together."""
    q_blocks: tl.constexpr = (N + BLOCK_M - 1) // BLOCK_M
    q_block = (program % q_blocks).to(tl.int32)
    head = (program // q_blocks) % NUM_HEADS
    window = program // (q_blocks * NUM_HEADS)
    return window, head, q_block * BLOCK_M


# ---------------------------------------------------------------------------------------------------
# Forward


# register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): any count up to
# 255 keeps two 4-warp programs per SM (one 8-warp program at BLOCK_D 128), so the constraint is no spill;
# the query tile, the accumulator and the score tile live across the key loop. The report's launches take
# 80-230 registers, the family's windows in _TILES up to 248.
@triton.jit
def _flash_fwd_kernel(
    qkv_ptr, bias_ptr, mask_ptr, out_ptr,
    H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr,
    WINDOW_W: tl.constexpr, IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Program (window, head, query block): out rows = softmax(q k^T * scale + bias[h] + mask) v."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    ACC: tl.constexpr = tl.float64 if qkv_ptr.dtype.element_ty == tl.float64 else tl.float32
    qk_scale_log2 = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr) * _LOG2E
    window, head, first = _query_block(tl.program_id(0).to(tl.int64), NUM_HEADS, N, BLOCK_M)
    origin, row0, col0 = _window_origin(window, N, WINDOW_H, WINDOW_W, H, W, IMAGE_LAYOUT)
    head_bias_ptr = bias_ptr + head * (N * N)
    window_mask_ptr = _window_mask(mask_ptr, window, num_mask_windows, N, HAS_MASK)
    q_tokens = first + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q_rows = _token_rows(origin, row0, col0, q_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
    q_valid = (q_tokens < N)[:, None] & (dims < HEAD_DIM)[None, :]
    channels = head * HEAD_DIM + dims[None, :]
    q = tl.load(qkv_ptr + q_rows[:, None] * (3 * C) + channels, mask=q_valid, other=0.0)
    q_regions = q_tokens  # unused unless shifted
    if HAS_SHIFT:
        q_regions = _shift_regions(row0, col0, q_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
    acc, m, l = _attend_rows(
        qkv_ptr, head_bias_ptr, window_mask_ptr, q, q_tokens, q_regions, origin, row0, col0, head, dims, H, W,
        shift_h, shift_w, qk_scale_log2, ACC, C, HEAD_DIM, N, WINDOW_H, WINDOW_W, IMAGE_LAYOUT, HAS_MASK,
        HAS_SHIFT, BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION,
    )
    out = acc / l[:, None]
    tl.store(out_ptr + q_rows[:, None] * C + channels, out.to(out_ptr.dtype.element_ty), mask=q_valid)


# ---------------------------------------------------------------------------------------------------
# Backward


# register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): as the forward's
# (its loop, then dO); the report's launches take 72-230 registers.
@triton.jit
def _flash_bwd_preprocess_kernel(
    grad_out_ptr, qkv_ptr, bias_ptr, mask_ptr, lse_ptr, delta_ptr,
    H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr,
    WINDOW_W: tl.constexpr, IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Program (window, head, query block): recomputes the forward's rows (the output is not saved) and
    stores lse = m + log2(l) (base 2: P = exp2(S*log2e - lse)) and delta = rowsum(dO * O), with O in the
    accumulation dtype (not rounded to out's), into (windows, heads, N) scratch."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    ACC: tl.constexpr = lse_ptr.dtype.element_ty
    qk_scale_log2 = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr) * _LOG2E
    window, head, first = _query_block(tl.program_id(0).to(tl.int64), NUM_HEADS, N, BLOCK_M)
    origin, row0, col0 = _window_origin(window, N, WINDOW_H, WINDOW_W, H, W, IMAGE_LAYOUT)
    head_bias_ptr = bias_ptr + head * (N * N)
    window_mask_ptr = _window_mask(mask_ptr, window, num_mask_windows, N, HAS_MASK)
    q_tokens = first + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q_rows = _token_rows(origin, row0, col0, q_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
    q_valid = (q_tokens < N)[:, None] & (dims < HEAD_DIM)[None, :]
    channels = head * HEAD_DIM + dims[None, :]
    q = tl.load(qkv_ptr + q_rows[:, None] * (3 * C) + channels, mask=q_valid, other=0.0)
    q_regions = q_tokens
    if HAS_SHIFT:
        q_regions = _shift_regions(row0, col0, q_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
    acc, m, l = _attend_rows(
        qkv_ptr, head_bias_ptr, window_mask_ptr, q, q_tokens, q_regions, origin, row0, col0, head, dims, H, W,
        shift_h, shift_w, qk_scale_log2, ACC, C, HEAD_DIM, N, WINDOW_H, WINDOW_W, IMAGE_LAYOUT, HAS_MASK,
        HAS_SHIFT, BLOCK_M, BLOCK_N, BLOCK_D, DOT_PRECISION,
    )
    grad_out = tl.load(grad_out_ptr + q_rows[:, None] * C + channels, mask=q_valid, other=0.0)
    delta = tl.sum(grad_out.to(ACC) * acc, axis=1) / l
    stats = (window * NUM_HEADS + head) * N + q_tokens
    tl.store(lse_ptr + stats, m + tl.log2(l), mask=q_tokens < N)
    tl.store(delta_ptr + stats, delta, mask=q_tokens < N)


@triton.jit
def _row_statistics(lse_ptr, delta_ptr, window, head, q_tokens, NUM_HEADS: tl.constexpr, N: tl.constexpr):
    """The preprocess kernel's lse and delta of these query rows (0 for padded rows, whose dO is 0)."""
    stats = (window * NUM_HEADS + head) * N + q_tokens
    lse = tl.load(lse_ptr + stats, mask=q_tokens < N, other=0.0)
    delta = tl.load(delta_ptr + stats, mask=q_tokens < N, other=0.0)
    return lse, delta


# register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): as the forward's;
# K, V and the dK, dV accumulators live across the query loop, with the score, P, dP and dS tiles of a
# step. The report's launches take 104-240 registers.
# Window counts are not specialized (Triton would compile another binary for a count of 1 or a multiple
# of 16), so a call and its small first-use check input share one binary.
@triton.jit(do_not_specialize=["num_windows", "windows_per_program"])
def _flash_bwd_dkdv_kernel(
    grad_out_ptr, qkv_ptr, bias_ptr, mask_ptr, lse_ptr, delta_ptr, grad_qkv_ptr, grad_bias_partial_ptr,
    num_windows, windows_per_program, H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr,
    WINDOW_W: tl.constexpr, IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Program (group g, head h, key block kb), key blocks fastest: for the windows of group g
    (g*windows_per_program, ... up to num_windows), in order, dK and dV of the key block's tokens
    (accumulated over every query block, stored once), and the bias gradient's columns of this key block
    summed over the group's windows into grad_bias_partial[g, h] (groups, nH, N, N): this program alone
    reads and writes those elements, the first window storing, the next ones adding, so the partial's
    bits depend on the inputs alone."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    ACC: tl.constexpr = grad_bias_partial_ptr.dtype.element_ty
    k_blocks: tl.constexpr = (N + BLOCK_N - 1) // BLOCK_N
    scale = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr)
    qk_scale_log2 = scale * _LOG2E
    program = tl.program_id(0).to(tl.int64)
    k_block = (program % k_blocks).to(tl.int32)
    head = (program // k_blocks) % NUM_HEADS
    group = program // (k_blocks * NUM_HEADS)
    first_window = group * windows_per_program
    k_tokens = k_block * BLOCK_N + tl.arange(0, BLOCK_N)
    k_valid = k_tokens < N
    dims = tl.arange(0, BLOCK_D)
    dim_valid = dims < HEAD_DIM
    kv_valid = k_valid[:, None] & dim_valid[None, :]
    channels = head * HEAD_DIM + dims[None, :]
    grad_dtype = grad_qkv_ptr.dtype.element_ty
    partial_ptr = grad_bias_partial_ptr + (group * NUM_HEADS + head) * (N * N)
    head_bias_ptr = bias_ptr + head * (N * N)
    for window in range(first_window, tl.minimum(first_window + windows_per_program, num_windows)):
        origin, row0, col0 = _window_origin(window, N, WINDOW_H, WINDOW_W, H, W, IMAGE_LAYOUT)
        window_mask_ptr = _window_mask(mask_ptr, window, num_mask_windows, N, HAS_MASK)
        k_rows = _token_rows(origin, row0, col0, k_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
        k_offsets = k_rows[:, None] * (3 * C) + C + channels
        k = tl.load(qkv_ptr + k_offsets, mask=kv_valid, other=0.0)
        v = tl.load(qkv_ptr + k_offsets + C, mask=kv_valid, other=0.0)
        k_regions = k_tokens
        if HAS_SHIFT:
            k_regions = _shift_regions(row0, col0, k_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
        grad_k = tl.zeros((BLOCK_N, BLOCK_D), dtype=ACC)
        grad_v = tl.zeros((BLOCK_N, BLOCK_D), dtype=ACC)
        for start in range(0, N, BLOCK_M):
            q_tokens = start + tl.arange(0, BLOCK_M)
            q_token_valid = q_tokens < N
            q_rows = _token_rows(origin, row0, col0, q_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
            q_valid = q_token_valid[:, None] & dim_valid[None, :]
            q = tl.load(qkv_ptr + q_rows[:, None] * (3 * C) + channels, mask=q_valid, other=0.0)
            grad_out = tl.load(grad_out_ptr + q_rows[:, None] * C + channels, mask=q_valid, other=0.0)
            lse, delta = _row_statistics(lse_ptr, delta_ptr, window, head, q_tokens, NUM_HEADS, N)
            q_regions = q_tokens
            if HAS_SHIFT:
                q_regions = _shift_regions(row0, col0, q_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
            s = _scores(q, k, head_bias_ptr, window_mask_ptr, q_tokens, k_tokens, q_regions, k_regions,
                        qk_scale_log2, N, HAS_MASK, HAS_SHIFT, DOT_PRECISION)
            # Padded columns are -inf (p 0); padded rows are zeroed (their dO, lse and delta are 0).
            p = tl.where(q_token_valid[:, None], tl.exp2(s - lse[:, None]), 0.0)
            grad_v += tl.dot(tl.trans(p.to(grad_out.dtype)), grad_out, input_precision=DOT_PRECISION)
            grad_p = tl.dot(grad_out, tl.trans(v), input_precision=DOT_PRECISION)
            grad_s = p * (grad_p - delta[:, None])
            grad_k += tl.dot(tl.trans(grad_s.to(q.dtype)), q, input_precision=DOT_PRECISION)
            # The barrier orders the previous window's stores of these elements before this load (other
            # threads of the program may have made them); the first window reads nothing.
            tl.debug_barrier()
            pair_ptrs = partial_ptr + q_tokens[:, None] * N + k_tokens[None, :]
            pair_valid = q_token_valid[:, None] & k_valid[None, :]
            later_window = (q_tokens * 0 + window) > first_window  # (BLOCK_M,): the interpreter masks by tensors
            running = tl.load(pair_ptrs, mask=pair_valid & later_window[:, None], other=0.0)
            tl.store(pair_ptrs, running + grad_s.to(ACC), mask=pair_valid)
        tl.store(grad_qkv_ptr + k_offsets, (grad_k * scale).to(grad_dtype), mask=kv_valid)
        tl.store(grad_qkv_ptr + k_offsets + C, grad_v.to(grad_dtype), mask=kv_valid)


# register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): as the forward's;
# the query and dO tiles and the dQ accumulator live across the key loop, with the score, P, dP and dS
# tiles of a step. The report's launches take 90-244 registers.
@triton.jit
def _flash_bwd_dq_kernel(
    grad_out_ptr, qkv_ptr, bias_ptr, mask_ptr, lse_ptr, delta_ptr, grad_qkv_ptr,
    H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr,
    WINDOW_W: tl.constexpr, IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Program (window, head, query block): dQ = sum over key blocks of dS K * scale."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    ACC: tl.constexpr = lse_ptr.dtype.element_ty
    scale = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr)
    qk_scale_log2 = scale * _LOG2E
    window, head, first = _query_block(tl.program_id(0).to(tl.int64), NUM_HEADS, N, BLOCK_M)
    origin, row0, col0 = _window_origin(window, N, WINDOW_H, WINDOW_W, H, W, IMAGE_LAYOUT)
    head_bias_ptr = bias_ptr + head * (N * N)
    window_mask_ptr = _window_mask(mask_ptr, window, num_mask_windows, N, HAS_MASK)
    q_tokens = first + tl.arange(0, BLOCK_M)
    q_token_valid = q_tokens < N
    dims = tl.arange(0, BLOCK_D)
    dim_valid = dims < HEAD_DIM
    q_rows = _token_rows(origin, row0, col0, q_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
    q_valid = q_token_valid[:, None] & dim_valid[None, :]
    channels = head * HEAD_DIM + dims[None, :]
    q_offsets = q_rows[:, None] * (3 * C) + channels
    q = tl.load(qkv_ptr + q_offsets, mask=q_valid, other=0.0)
    grad_out = tl.load(grad_out_ptr + q_rows[:, None] * C + channels, mask=q_valid, other=0.0)
    lse, delta = _row_statistics(lse_ptr, delta_ptr, window, head, q_tokens, NUM_HEADS, N)
    q_regions = q_tokens
    if HAS_SHIFT:
        q_regions = _shift_regions(row0, col0, q_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
    grad_q = tl.zeros((BLOCK_M, BLOCK_D), dtype=ACC)
    for start in range(0, N, BLOCK_N):
        k_tokens = start + tl.arange(0, BLOCK_N)
        k_rows = _token_rows(origin, row0, col0, k_tokens, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
        kv_offsets = k_rows[:, None] * (3 * C) + C + channels
        kv_valid = (k_tokens < N)[:, None] & dim_valid[None, :]
        k = tl.load(qkv_ptr + kv_offsets, mask=kv_valid, other=0.0)
        v = tl.load(qkv_ptr + kv_offsets + C, mask=kv_valid, other=0.0)
        k_regions = k_tokens  # unused unless shifted
        if HAS_SHIFT:
            k_regions = _shift_regions(row0, col0, k_tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
        s = _scores(q, k, head_bias_ptr, window_mask_ptr, q_tokens, k_tokens, q_regions, k_regions, qk_scale_log2,
                    N, HAS_MASK, HAS_SHIFT, DOT_PRECISION)
        p = tl.where(q_token_valid[:, None], tl.exp2(s - lse[:, None]), 0.0)
        grad_p = tl.dot(grad_out, tl.trans(v), input_precision=DOT_PRECISION)
        grad_s = p * (grad_p - delta[:, None])
        grad_q += tl.dot(grad_s.to(k.dtype), k, input_precision=DOT_PRECISION)
    tl.store(grad_qkv_ptr + q_offsets, (grad_q * scale).to(grad_qkv_ptr.dtype.element_ty), mask=q_valid)


# ---------------------------------------------------------------------------------------------------
# Host side


class _FlashProblem(_registers._Problem):
    """The register kernel's launch geometry (runtime scalars, constexprs, the checks of _check_launch),
    with each flash kernel kind's blocks (flash_blocks) in place of its padded window (BLOCK_N), and the
    launch configurations."""

    def __init__(self, qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
        if not image_layout:
            window_size, shift = (1, 1), (0, 0)  # unused by the window layout (N comes from qkv)
        super().__init__(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
        del self.constexprs["BLOCK_N"]
        self.tokens = self.constexprs["N"]
        self.dtype = self.config_key["dtype"]
        key = dict(self.constexprs, dtype=self.dtype)
        self.blocks = {kind: flash_blocks(kind, key) for kind in ("rows", "dq", "dkdv")}

    def arguments(self, kernel: str, kind: str) -> dict:
        """The launch's scalars, constexprs (with kernel kind `kind`'s blocks) and configuration
        (flash_config's, or a table's: launch_configs.py)."""
        constexprs = dict(self.constexprs, **self.blocks[kind])
        config = launch_config(kernel, dict(constexprs, dtype=self.dtype), functools.partial(flash_config, kind))
        return dict(self.scalars, **constexprs, **config)

    def row_programs(self, kind: str) -> int:
        """Programs of a row kernel: one per (window, head, block of query rows)."""
        return self.num_windows * self.constexprs["NUM_HEADS"] * triton.cdiv(self.tokens, self.blocks[kind]["BLOCK_M"])


def flash_backward_windows_per_program(num_windows: int, key_blocks: int) -> int:
    """Windows one dK/dV program walks (its bias-gradient columns summed over them), a function of the
    shape: the programs per head, window groups x key blocks, are at most about the register kernel's
    MAX_BIAS_PROGRAMS_PER_HEAD (40: one wave on 132 SMs at a few heads), so there are
    max(1, 40 // key_blocks) groups at most, whatever the image size, and the fp32 partials
    (groups, nH, N, N) stay bounded: with 64-key blocks (16-bit) 10 groups, 2.6 MB a head, at 256 tokens;
    5, 4.7 MB, at 484; 2, 8.4 MB, at 1024."""
    groups = min(num_windows, max(1, _registers.MAX_BIAS_PROGRAMS_PER_HEAD // key_blocks))
    return triton.cdiv(num_windows, groups)


def _prepare(qkv, rel_bias, mask):
    return qkv.contiguous(), rel_bias.contiguous(), None if mask is None else mask.contiguous()


def flash_forward(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
    """out of the flash forward: window layout qkv (B*nW, N, 3C) with mask (nW, N, N) or None, or image
    layout qkv (B, H, W, 3C) with window_size (wh, ww) and shift (sh, sw) (unused in the window layout)."""
    qkv, rel_bias, mask = _prepare(qkv, rel_bias, mask)
    problem = _FlashProblem(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    out = qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))
    if problem.num_windows == 0:
        return out
    with _device_guard(qkv):
        _flash_fwd_kernel[(problem.row_programs("rows"),)](
            qkv, rel_bias, mask, out, **problem.arguments("_flash_fwd_kernel", "rows")
        )
    return out


def flash_backward(grad_out, qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
    """(grad_qkv, grad_rel_bias) of :func:`flash_forward`, recomputed from its inputs; grad_rel_bias in
    rel_bias's dtype, summed from per-window-group partials in a fixed order (deterministic)."""
    qkv, rel_bias, mask = _prepare(qkv, rel_bias, mask)
    grad_out = grad_out.contiguous()
    problem = _FlashProblem(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    grad_qkv = torch.empty_like(qkv)
    if problem.num_windows == 0:
        return grad_qkv, torch.zeros_like(rel_bias)
    accumulate = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    lse = qkv.new_empty((problem.num_windows, num_heads, problem.tokens), dtype=accumulate)
    delta = torch.empty_like(lse)
    key_blocks = triton.cdiv(problem.tokens, problem.blocks["dkdv"]["BLOCK_N"])
    windows_per_program = flash_backward_windows_per_program(problem.num_windows, key_blocks)
    groups = triton.cdiv(problem.num_windows, windows_per_program)
    partial = qkv.new_empty((groups, *rel_bias.shape), dtype=accumulate)  # (groups, nH, N, N)
    with _device_guard(qkv):
        _flash_bwd_preprocess_kernel[(problem.row_programs("rows"),)](
            grad_out, qkv, rel_bias, mask, lse, delta, **problem.arguments("_flash_bwd_preprocess_kernel", "rows")
        )
        _flash_bwd_dkdv_kernel[(groups * num_heads * key_blocks,)](
            grad_out, qkv, rel_bias, mask, lse, delta, grad_qkv, partial, problem.num_windows, windows_per_program,
            **problem.arguments("_flash_bwd_dkdv_kernel", "dkdv"),
        )
        _flash_bwd_dq_kernel[(problem.row_programs("dq"),)](
            grad_out, qkv, rel_bias, mask, lse, delta, grad_qkv, **problem.arguments("_flash_bwd_dq_kernel", "dq")
        )
    return grad_qkv, partial.sum(0).to(rel_bias.dtype)

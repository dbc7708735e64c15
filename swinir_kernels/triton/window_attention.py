"""Fused (shifted-)window attention with a relative position bias: Triton kernels and the custom ops
``swinir_kernels::window_attention_triton``, ``swinir_kernels::shifted_window_attention_triton`` and
their backward ops (argument lists identical to the C++ schemas in csrc/swinir_ops.cpp).
Windows of more than REGISTER_KERNEL_MAX_TOKENS tokens or head_dims above REGISTER_KERNEL_MAX_HEAD_DIM
(limits.py: 64 and 64) run, behind the same ops, on the flash kernels of window_attention_flash.py.

Per window w and head h (N tokens, head_dim d, all in registers)::

    S = q k^T * scale + rel_bias[h] + mask_w        (N, N), fp32
    P = softmax(S)  (row-wise)                      (N, N), fp32
    O = P v                                         (N, d)

Two layouts share one kernel (``IMAGE_LAYOUT`` constexpr):

* window layout: qkv (B*nW, N, 3C) -> out (B*nW, N, C); mask (nW, N, N) optional, window w uses
  mask[w % nW];
* image layout: qkv (B, H, W, 3C) -> out (B, H, W, C), windows of wh x ww pixels shifted by
  (sh, sw); the cyclic shift, the partition and its reverse are index arithmetic: token (ti, tj) of
  window (b, wr, wc) is pixel ((wr*wh + ti + sh) % H, (wc*ww + tj + sw) % W) of image b, and the
  official -100 shift mask is computed from the same coordinates (only when sh or sw > 0).

Kernel shape: one program per (group of windows, head group), walking its windows in order with its
heads' (N, N) bias tiles loaded once and held in registers (in rel_bias's dtype). The forward's head
group is a pair of neighbouring heads when the head count is even (forward_heads_per_program: the two
slices of a token are one run of 2 * head_dim channels, so the 32-byte sectors they share are fetched
once), the backward's one head (its bias-gradient sum is per head). The forward's window loop is
software-pipelined in 16-bit and TF32, the backward's in 16-bit (num_stages 2: the next window's
tiles are copied to shared memory, cp.async, during this one's compute). Tokens are padded to BLOCK_N
(a power of two >= 16: 64 for ws = 7 and 8) and head_dim to BLOCK_D (30 -> 32, 10 -> 16) in
registers by masked loads (other=0), so tl.dot sees power-of-two tiles >= 16. Channel strides are 1
by construction (the launchers make qkv, out and the gradients contiguous), so the compiler sees
contiguous rows of BLOCK_D channels whose divisibility follows from the constexprs HEAD_DIM and 3C:
it vectorises each row load to gcd(HEAD_DIM, 3C) elements up to 16 bytes (2 bf16 for head_dim 30).
Softmax uses exp2 with log2(e) folded into the scale. All offsets are int64 and the grid is 1-D, so
more than 65,535 windows need nothing special. Windows per program, warps and stages come from pure
functions of the shape (forward_windows_per_program, backward_windows_per_program, forward_config,
backward_config; tuning is an opt-in table, see launch_configs.py).

The backward recomputes S and P (nothing N x N is saved): dV = P^T dO, dP = dO V^T,
dS = P * (dP - rowsum(P * dP)), dQ = dS K * scale, dK = dS^T Q * scale, each stored as soon as it
is computed. Each program owns one head and a contiguous, shape-determined group of windows: it writes
their complete dQ/dK/dV (no atomics) and one fp32 (N, N) partial bias gradient summing its windows'
dS, and the (at most MAX_BIAS_PROGRAMS_PER_HEAD per head) partials are summed in a fixed order on the
host, so the bias gradient's bits depend on the inputs alone.

Precision: softmax and every accumulation run in fp32 (fp64 for fp64 inputs, with the scale passed as
an fp32 pair that sums to it in fp64, since a launch makes float arguments fp32). fp16/bf16 operands
go to tl.dot as they are, with fp32 accumulation. fp32 operands use the precision chosen by
``SWINIR_KERNELS_FP32_PRECISION``:

* ``ieee``: exact fp32 products (FMA on a GPU); the reference mode, ~1e-5 from fp64;
* ``tf32``: tensor cores with 10-bit mantissas, ~1e-3 relative; much faster on a GPU.

Unset, it is ``tf32`` on a GPU when ``torch.backends.cuda.matmul.allow_tf32`` is True and ``ieee``
otherwise (``ieee`` under TRITON_INTERPRET=1; the tests' GPU-faithful interpreter rounds the operands
of TF32 dots as tensor cores do).

The bias is held in rel_bias's own dtype, never rounded to qkv's: rounding an fp32 bias to 16 bits
changes the output by more than the output's own rounding (fp64 reference, SwinIR-M-like window,
bias ~ N(0, 1): bf16 8.0e-3 against 5.4e-3 for rounding the output; bias ~ N(0, 9): 3.7e-2 against
7.8e-3; fp16 1.0e-3 against 8.5e-4, and 4.3e-3 against 9.8e-4). A 16-bit bias (a model run in
fp16/bf16) is held in 16 bits, at half the registers of an fp32 one.
"""

import contextlib
import os
import struct
from typing import Optional

import torch
import triton
import triton.language as tl

from ..registry.window_attention import fp32_precision, register_fake_and_autograd
from .limits import MAX_HEAD_DIM, MAX_TOKENS, REGISTER_KERNEL_MAX_HEAD_DIM, REGISTER_KERNEL_MAX_TOKENS
from .launch_configs import launch_config

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"

# Bias-gradient partials (backward programs) per head: at most this many (see
# backward_windows_per_program). 40, as the CUDA tensor-core backward's groups: SwinIR-M's backward is then
# 240 programs, one wave of two resident programs on each of 132 SMs (64 made 384: a second, partial wave).
MAX_BIAS_PROGRAMS_PER_HEAD = 40

# Kernel constants (Triton kernels read only constexpr globals).
_LOG2E = tl.constexpr(1.4426950408889634)
_MASK_VALUE = tl.constexpr(-100.0)  # the official shift mask's additive value (reference.MASK_VALUE)
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _fp32_fma_dot(key: dict) -> bool:
    """fp32 dots with exact IEEE products are FMA loops without tensor cores, whose operand tiles live in
    registers: they need more warps to fit."""
    return key["dtype"] == "float32" and key["DOT_PRECISION"] == "ieee"


def forward_config(key: dict) -> dict:
    """The forward's launch configuration, a pure function of `key` (the constexprs, HEADS_PER_PROGRAM and
    qkv's dtype; see swinir_kernels/triton/launch_configs.py). Registers per thread on sm_90 at 64 tokens
    (bench/static_report.py lists them for every launch; tests/kernels/test_static_report.py fails on a spill):
    16-bit and TF32 at 4 warps and 2 stages, head pairs, 150-235 (253 at ws 7), no spill: two or three
    programs per SM, each with the next window's tiles in flight; fp32 IEEE spills at 4 warps, so 16
    warps (about 70), unpipelined; fp64 at 8 warps 214-246, no spill (4 warps spill, 2 stages take
    98-131 KB of shared memory)."""
    if key["BLOCK_N"] < 64:
        return {"num_warps": 4, "num_stages": 1}
    if _fp32_fma_dot(key):
        return {"num_warps": 16, "num_stages": 1}
    if key["dtype"] == "float64":
        return {"num_warps": 8, "num_stages": 1}
    return {"num_warps": 4, "num_stages": 2}


def backward_config(key: dict) -> dict:
    """The backward keeps S, P, dP, dS, the held bias and the bias-gradient sum live. At 64 tokens, sm_90:
    16-bit at 4 warps and 2 stages 206-248 registers, two programs per SM, no spill, but for the image
    layout at ws 7 (the rolled coordinates of 49 tokens: 255 + a spill stack), which takes 8 warps; fp32
    (TF32 and IEEE) spills at 4 warps (8 bytes to kilobytes), 8 warps 238-255 without, unpipelined (2
    stages spill); fp64 at 8 warps 252, no spill (with the register savings in the kernel; 4 warps spill)."""
    if key["BLOCK_N"] < 64:
        return {"num_warps": 4, "num_stages": 1}
    if key["dtype"] in ("float16", "bfloat16"):
        image_ws7 = key["IMAGE_LAYOUT"] and key["N"] != key["BLOCK_N"]
        return {"num_warps": 8 if image_ws7 else 4, "num_stages": 2}
    return {"num_warps": 8, "num_stages": 1}


@triton.jit
def _rolled_coordinates(window, tokens, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W):
    """Image index and rolled (h, w) coordinates (wr*wh + ti, wc*ww + tj) of each token t = ti*ww + tj
    of `window` (int64, windows batch-major then row-major over the (H/wh, W/ww) grid)."""
    windows_per_row = W // WINDOW_W
    windows_per_image = (H // WINDOW_H) * windows_per_row
    image = window // windows_per_image
    in_image = window % windows_per_image
    h = (in_image // windows_per_row) * WINDOW_H + tokens // WINDOW_W
    w = (in_image % windows_per_row) * WINDOW_W + tokens % WINDOW_W
    return image, h, w


@triton.jit
def _token_rows(window, tokens, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W, shift_h, shift_w,
                IMAGE_LAYOUT: tl.constexpr):
    """(BLOCK_N,) int64: the row of each token of `window` in the (rows, channels) view of qkv and out."""
    if IMAGE_LAYOUT:
        image, h, w = _rolled_coordinates(window, tokens, WINDOW_H, WINDOW_W, H, W)
        return (image * H + (h + shift_h) % H) * W + (w + shift_w) % W  # undo the roll by -shift
    else:
        return window * N + tokens


@triton.jit
def _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr):
    """scale as fp64 for fp64 qkv, else fp32. A float argument reaches a compiled kernel as fp32, so
    the scale comes as two: hi = fp32(scale), lo = fp32(scale - hi); their fp64 sum carries ~48 bits
    (fp64 attention stays fp64-accurate), their fp32 sum is hi. tl.cast rather than .to(): under the
    plain interpreter a float argument is a Python float, which has no .to()."""
    if qkv_ptr.dtype.element_ty == tl.float64:  # resolved at compile time: one branch is generated
        scale = tl.cast(scale_hi, tl.float64) + tl.cast(scale_lo, tl.float64)
    else:
        scale = tl.cast(scale_hi, tl.float32) + tl.cast(scale_lo, tl.float32)
    return scale


@triton.jit
def _shift_regions(window, tokens, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W, shift_h, shift_w):
    """(BLOCK_N,) region id 0..8 of each token in the rolled image: along H region 0 below H-wh, 1
    below H-sh, else 2, likewise along W (the official calculate_mask slices); an axis whose shift is
    0 is not cut (its slices degenerate in calculate_mask)."""
    _, h, w = _rolled_coordinates(window, tokens, WINDOW_H, WINDOW_W, H, W)
    region_h = tl.where(shift_h > 0, (h >= H - WINDOW_H).to(tl.int32) + (h >= H - shift_h).to(tl.int32), 0)
    region_w = tl.where(shift_w > 0, (w >= W - WINDOW_W).to(tl.int32) + (w >= W - shift_w).to(tl.int32), 0)
    return region_h * 3 + region_w


@triton.jit
def _head_bias(bias_ptr, head, tokens, N: tl.constexpr):
    """rel_bias[head] as a (BLOCK_N, BLOCK_N) tile in rel_bias's own dtype (padded pairs 0; see the module
    docstring on precision). Evict-last: the other programs on the SM read the same few tiles (the whole
    bias is 48 KB in bf16 at 6 heads), and the fp64 backward re-reads its tile per window."""
    token_valid = tokens < N
    pair_offsets = tokens[:, None] * N + tokens[None, :]
    return tl.load(
        bias_ptr + head * (N * N) + pair_offsets,
        mask=token_valid[:, None] & token_valid[None, :],
        other=0.0,
        eviction_policy="evict_last",
    )


@triton.jit
def _probabilities(
    q, k, bias, mask_ptr, window, tokens, H, W, shift_h, shift_w, num_mask_windows, qk_scale_log2,
    N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """P = softmax(q k^T * scale + bias + mask) of one (window, head): (BLOCK_N, BLOCK_N) in fp32 (fp64
    for fp64 q, k), computed in base 2; padded columns get probability 0. bias: the head's tile."""
    token_valid = tokens < N
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
    scores += bias.to(scores.dtype) * _LOG2E
    if HAS_MASK:
        pair_offsets = tokens[:, None] * N + tokens[None, :]
        pair_valid = token_valid[:, None] & token_valid[None, :]
        mask = tl.load(mask_ptr + (window % num_mask_windows) * (N * N) + pair_offsets, mask=pair_valid, other=0.0)
        scores += mask.to(scores.dtype) * _LOG2E
    if HAS_SHIFT:
        regions = _shift_regions(window, tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
        scores = tl.where(regions[:, None] != regions[None, :], scores + _MASK_VALUE * _LOG2E, scores)
    scores = tl.where(token_valid[None, :], scores, float("-inf"))
    # Every row has N >= 1 finite entries (padded rows too: their q is 0), so no row is all -inf.
    p = tl.exp2(scores - tl.max(scores, axis=1)[:, None])
    return p / tl.sum(p, axis=1)[:, None]


@triton.jit
def _head_tile_offsets(window, head, tokens, dims, row_stride, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, H, W, shift_h, shift_w,
                       HEAD_DIM: tl.constexpr, IMAGE_LAYOUT: tl.constexpr):
    """(BLOCK_N, BLOCK_D) int64 offsets of head `head`'s channels of the tokens of `window` in a
    (rows, row_stride) channels-last tensor (channel stride 1)."""
    rows = _token_rows(window, tokens, N, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w, IMAGE_LAYOUT)
    return rows[:, None] * row_stride + head * HEAD_DIM + dims[None, :]


@triton.jit
def _attend(
    qkv_ptr, bias, mask_ptr, out_ptr, window, head, tokens, dims, tile_valid, H, W, shift_h, shift_w, num_mask_windows,
    qk_scale_log2, C: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
    IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """out = softmax(q k^T * scale + bias + mask) v for one (window, head); bias: the head's tile."""
    q_offsets = _head_tile_offsets(window, head, tokens, dims, 3 * C, N, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w, HEAD_DIM, IMAGE_LAYOUT)
    q = tl.load(qkv_ptr + q_offsets, mask=tile_valid, other=0.0)
    k = tl.load(qkv_ptr + q_offsets + C, mask=tile_valid, other=0.0)
    v = tl.load(qkv_ptr + q_offsets + 2 * C, mask=tile_valid, other=0.0)
    p = _probabilities(
        q, k, bias, mask_ptr, window, tokens, H, W, shift_h, shift_w, num_mask_windows, qk_scale_log2,
        N, WINDOW_H, WINDOW_W, HAS_MASK, HAS_SHIFT, DOT_PRECISION,
    )
    out = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    out_offsets = _head_tile_offsets(window, head, tokens, dims, C, N, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w, HEAD_DIM, IMAGE_LAYOUT)
    tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=tile_valid)


# register budget: 224; N=49 255; qkv_ptr:*fp32 240; qkv_ptr:*fp64 255 (bench/static_report.py checks it on
# sm_90, with no local memory): at least two 4-warp programs per SM in 16-bit and TF32 (two heads' softmax
# and held bias tiles); ws 7 (the rolled coordinates of 49 tokens) and fp64 (a checking path) may take the
# whole register file.
# Window counts are not specialized (Triton would compile another binary for a count of 1 or a multiple
# of 16), so a call and its small first-use check input (swinir_kernels/_verification.py) share one binary.
@triton.jit(do_not_specialize=["num_windows", "windows_per_program"])
def _window_attention_fwd_kernel(
    qkv_ptr, bias_ptr, mask_ptr, out_ptr,
    num_windows, windows_per_program, H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
    IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr, HEADS_PER_PROGRAM: tl.constexpr,
):
    """Program (g, j): out[rows(w), h*d:(h+1)*d] = softmax(q k^T * scale + bias[h] + mask) v for the
    windows w of group g (g*windows_per_program, ... up to num_windows), in order, and the heads h of
    head group j: heads 2j and 2j+1 when HEADS_PER_PROGRAM is 2 (see forward_heads_per_program), else
    head j. The heads' bias tiles are loaded once and held in registers.

    Paired heads: the two heads' slices of a token are one contiguous run (120 bytes at head_dim 30),
    read in the same iteration, so the 32-byte sectors they share are fetched from L2 once; alone, each
    60-byte slice costs 2.8 sectors on average (1.5x its bytes), a pair 1.24x. The window loop is
    software-pipelined (num_stages 2): the next window's tiles are copied to shared memory while this
    one's are computed.

    qkv is read as (rows, 3C) with channels [q | k | v], each head-major; out as (rows, C); rows(w)
    from :func:`_token_rows`; scale = scale_hi + scale_lo (see :func:`_scale_in_compute_dtype`)."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    PAIRED_HEADS: tl.constexpr = HEADS_PER_PROGRAM == 2
    qk_scale_log2 = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr) * _LOG2E
    program = tl.program_id(0).to(tl.int64)
    head_groups: tl.constexpr = NUM_HEADS // HEADS_PER_PROGRAM
    first_window = (program // head_groups) * windows_per_program
    first_head = (program % head_groups) * HEADS_PER_PROGRAM
    tokens = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    tile_valid = (tokens < N)[:, None] & (dims < HEAD_DIM)[None, :]
    bias_first = _head_bias(bias_ptr, first_head, tokens, N)
    if PAIRED_HEADS:
        bias_second = _head_bias(bias_ptr, first_head + 1, tokens, N)
    for window in range(first_window, tl.minimum(first_window + windows_per_program, num_windows)):
        _attend(
            qkv_ptr, bias_first, mask_ptr, out_ptr, window, first_head, tokens, dims, tile_valid, H, W, shift_h,
            shift_w, num_mask_windows, qk_scale_log2, C, HEAD_DIM, N, WINDOW_H, WINDOW_W, IMAGE_LAYOUT, HAS_MASK,
            HAS_SHIFT, DOT_PRECISION,
        )
        if PAIRED_HEADS:
            _attend(
                qkv_ptr, bias_second, mask_ptr, out_ptr, window, first_head + 1, tokens, dims, tile_valid, H, W,
                shift_h, shift_w, num_mask_windows, qk_scale_log2, C, HEAD_DIM, N, WINDOW_H, WINDOW_W, IMAGE_LAYOUT, HAS_MASK,
                HAS_SHIFT, DOT_PRECISION,
            )


# register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): two 4-warp programs
# per SM in 16-bit holding P, dP, dS and the bias-gradient sum; the constraint that matters is no spills.
# Window counts are not specialized (Triton would compile another binary for a count of 1 or a multiple
# of 16), so a call and its small first-use check input (swinir_kernels/_verification.py) share one binary.
@triton.jit(do_not_specialize=["num_windows", "windows_per_program"])
def _window_attention_bwd_kernel(
    grad_out_ptr, qkv_ptr, bias_ptr, mask_ptr, grad_qkv_ptr, grad_bias_partial_ptr,
    num_windows, windows_per_program, H, W, shift_h, shift_w, num_mask_windows, scale_hi, scale_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, N: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
    IMAGE_LAYOUT: tl.constexpr, HAS_MASK: tl.constexpr, HAS_SHIFT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Program (g, h) handles head h of the windows of group g (g*windows_per_program, ... up to
    num_windows), in order: writes their dQ, dK, dV into grad_qkv (rows, 3C) and sum_w dS_w into
    grad_bias_partial[g, h] (groups, nH, N, N). Each gradient tile is stored as soon as it is computed,
    so fewer tiles are live at once (registers). fp64 tiles take twice the registers: there (a checking
    path) the bias tile is re-read per window, q and k are re-read for dQ and dK instead of held across
    the softmax, and the running dS sum lives in the program's partial instead of registers, so that
    nothing spills."""
    C: tl.constexpr = NUM_HEADS * HEAD_DIM
    scale = _scale_in_compute_dtype(scale_hi, scale_lo, qkv_ptr)
    qk_scale_log2 = scale * _LOG2E
    program = tl.program_id(0).to(tl.int64)
    first_window = (program // NUM_HEADS) * windows_per_program
    head = program % NUM_HEADS
    tokens = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    token_valid = tokens < N
    tile_valid = token_valid[:, None] & (dims < HEAD_DIM)[None, :]
    grad_dtype = grad_qkv_ptr.dtype.element_ty
    if grad_bias_partial_ptr.dtype.element_ty != tl.float64:
        bias = _head_bias(bias_ptr, head, tokens, N)
    pair_valid = token_valid[:, None] & token_valid[None, :]
    partial_ptrs = grad_bias_partial_ptr + program * (N * N) + tokens[:, None] * N + tokens[None, :]
    grad_bias = tl.zeros((BLOCK_N, BLOCK_N), dtype=grad_bias_partial_ptr.dtype.element_ty)
    for window in range(first_window, tl.minimum(first_window + windows_per_program, num_windows)):
        q_offsets = _head_tile_offsets(window, head, tokens, dims, 3 * C, N, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w, HEAD_DIM, IMAGE_LAYOUT)
        out_offsets = _head_tile_offsets(window, head, tokens, dims, C, N, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w, HEAD_DIM, IMAGE_LAYOUT)
        q = tl.load(qkv_ptr + q_offsets, mask=tile_valid, other=0.0)
        k = tl.load(qkv_ptr + q_offsets + C, mask=tile_valid, other=0.0)
        grad_out = tl.load(grad_out_ptr + out_offsets, mask=tile_valid, other=0.0)
        if grad_bias_partial_ptr.dtype.element_ty == tl.float64:
            bias = _head_bias(bias_ptr, head, tokens, N)
        p = _probabilities(
            q, k, bias, mask_ptr, window, tokens, H, W, shift_h, shift_w, num_mask_windows, qk_scale_log2,
            N, WINDOW_H, WINDOW_W, HAS_MASK, HAS_SHIFT, DOT_PRECISION,
        )
        grad_v = tl.dot(tl.trans(p.to(grad_out.dtype)), grad_out, input_precision=DOT_PRECISION)
        tl.store(grad_qkv_ptr + q_offsets + 2 * C, grad_v.to(grad_dtype), mask=tile_valid)
        v = tl.load(qkv_ptr + q_offsets + 2 * C, mask=tile_valid, other=0.0)
        grad_p = tl.dot(grad_out, tl.trans(v), input_precision=DOT_PRECISION)
        # Softmax backward; padded rows have grad_out = 0 and padded columns p = 0, so their dS is 0.
        grad_s = p * (grad_p - tl.sum(p * grad_p, axis=1)[:, None])
        if grad_bias_partial_ptr.dtype.element_ty == tl.float64:
            # The barrier orders the previous window's stores before these loads, which other threads of the
            # program may make.
            tl.debug_barrier()
            running = tl.load(partial_ptrs, mask=pair_valid, other=0.0)  # the first window reads garbage, dropped
            tl.store(partial_ptrs, tl.where(window > first_window, running + grad_s, grad_s), mask=pair_valid)
        else:
            grad_bias += grad_s.to(grad_bias.dtype)
        if grad_bias_partial_ptr.dtype.element_ty == tl.float64:
            k = tl.load(qkv_ptr + q_offsets + C, mask=tile_valid, other=0.0)
        grad_q = tl.dot(grad_s.to(k.dtype), k, input_precision=DOT_PRECISION) * scale
        tl.store(grad_qkv_ptr + q_offsets, grad_q.to(grad_dtype), mask=tile_valid)
        if grad_bias_partial_ptr.dtype.element_ty == tl.float64:
            q = tl.load(qkv_ptr + q_offsets, mask=tile_valid, other=0.0)
        grad_k = tl.dot(tl.trans(grad_s.to(q.dtype)), q, input_precision=DOT_PRECISION) * scale
        tl.store(grad_qkv_ptr + q_offsets + C, grad_k.to(grad_dtype), mask=tile_valid)
    if grad_bias_partial_ptr.dtype.element_ty != tl.float64:
        tl.store(partial_ptrs, grad_bias, mask=pair_valid)


def _dot_precision(qkv: torch.Tensor) -> str:
    dtype = qkv.dtype
    if dtype == torch.float32:
        return fp32_precision(qkv)
    if dtype == torch.float64:
        return "ieee"
    return "tf32"  # Triton's default; the setting only changes fp32 operands


def _device_guard(t: torch.Tensor):
    """Triton launches on the current device: make it t's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check_launch(qkv: torch.Tensor, tokens: int, head_dim: int) -> None:
    """What the kernels need beyond the public functions' checks (these ops may be called directly)."""
    if qkv.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"qkv: expected dtype float16, bfloat16, float32 or float64, got {qkv.dtype}")
    if tokens > MAX_TOKENS:
        raise ValueError(f"tokens per window (wh*ww): the Triton kernels take at most {MAX_TOKENS}, got {tokens}")
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(f"head_dim = C // num_heads: the Triton kernels take at most {MAX_HEAD_DIM}, got {head_dim}")
    if qkv.device.type == "cpu" and not INTERPRETING:
        raise RuntimeError("qkv: the Triton kernels run CPU tensors only under TRITON_INTERPRET=1, got a CPU tensor")


def _split_scale(scale: float) -> dict:
    """scale_hi = fp32(scale), scale_lo = fp32(scale - scale_hi): see :func:`_scale_in_compute_dtype`."""
    hi = struct.unpack("f", struct.pack("f", scale))[0]
    return {"scale_hi": hi, "scale_lo": scale - hi}


class _Problem:
    """Launch geometry shared by the forward and backward launchers: the kernel's runtime scalars and
    constexprs for one call, from the op's arguments."""

    def __init__(self, qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
        (wh, ww), (sh, sw) = window_size, shift
        tokens = qkv.shape[-2] if not image_layout else wh * ww
        head_dim = qkv.shape[-1] // 3 // num_heads
        _check_launch(qkv, tokens, head_dim)
        if image_layout:
            B, H, W, _ = qkv.shape
            self.num_windows = B * (H // wh) * (W // ww)
        else:
            H = W = 1  # unused by the window layout
            self.num_windows = qkv.shape[0]
        self.scalars = dict(
            H=H, W=W, shift_h=sh, shift_w=sw, num_mask_windows=1 if mask is None else mask.shape[0], **_split_scale(scale)
        )
        self.constexprs = dict(
            NUM_HEADS=num_heads,
            HEAD_DIM=head_dim,
            N=tokens,
            WINDOW_H=wh,
            WINDOW_W=ww,
            IMAGE_LAYOUT=image_layout,
            HAS_MASK=mask is not None,
            HAS_SHIFT=image_layout and (sh > 0 or sw > 0),
            BLOCK_N=max(16, triton.next_power_of_2(tokens)),
            BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
            DOT_PRECISION=_dot_precision(qkv),
        )
        # What a launch configuration may depend on: the specialization (constexprs and dtype).
        self.config_key = dict(self.constexprs, dtype=str(qkv.dtype).removeprefix("torch."))


def forward_windows_per_program(num_windows: int, head_dim: int) -> int:
    """Windows one forward program walks (its two bias tiles, 2 N^2 elements, are loaded once for them),
    a function of the shape: 4 at head_dim > 16, where a window's q, k, v and out tiles of two heads are
    8 N head_dim elements (the bias costs an eighth of the program's traffic at head_dim 30); 8 below,
    where they are 2.6x smaller. SwinIR-M (1,024 windows, head_dim 30) gets 768 programs, SwinIR-S
    (head_dim 10) 384: about one wave of their two or three resident 4-warp programs on 132 SMs."""
    return min(num_windows, 4 if head_dim > 16 else 8)


def forward_heads_per_program(num_heads: int, dtype: torch.dtype) -> int:
    """Heads one forward program computes: pairs of neighbouring heads when the count is even (their
    slices are read as one run, see _window_attention_fwd_kernel), else one; one for fp64, whose two held
    fp64 bias tiles would spill (a checking path)."""
    return 2 if num_heads % 2 == 0 and dtype != torch.float64 else 1


def backward_windows_per_program(num_windows: int) -> int:
    """Windows one backward program walks, each program writing one fp32 (N, N) bias-gradient partial
    per head: at most MAX_BIAS_PROGRAMS_PER_HEAD programs per head, so the partials are at most
    MAX_BIAS_PROGRAMS_PER_HEAD * nH * N * N * 4 bytes (40 programs: 3.9 MB at SwinIR-M) whatever the
    image size. A function of the shape only: the partials' fixed-order sum, and so the bias
    gradient's bits, do not depend on the device."""
    return triton.cdiv(num_windows, min(num_windows, MAX_BIAS_PROGRAMS_PER_HEAD))


def _register_kernel_takes(problem: _Problem) -> bool:
    """Small windows keep today's fast path, this module's register kernels (a whole window in
    registers); more than REGISTER_KERNEL_MAX_TOKENS tokens or a head_dim above
    REGISTER_KERNEL_MAX_HEAD_DIM go to the flash kernels (window_attention_flash.py)."""
    return (problem.constexprs["N"] <= REGISTER_KERNEL_MAX_TOKENS
            and problem.constexprs["HEAD_DIM"] <= REGISTER_KERNEL_MAX_HEAD_DIM)


def _forward(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
    qkv, rel_bias = qkv.contiguous(), rel_bias.contiguous()
    mask = None if mask is None else mask.contiguous()
    problem = _Problem(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    if not _register_kernel_takes(problem):
        return _flash.flash_forward(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    out = qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))
    if problem.num_windows == 0:
        return out
    windows_per_program = forward_windows_per_program(problem.num_windows, problem.constexprs["HEAD_DIM"])
    heads_per_program = forward_heads_per_program(num_heads, qkv.dtype)
    grid = (triton.cdiv(problem.num_windows, windows_per_program) * (num_heads // heads_per_program),)
    constexprs = dict(problem.constexprs, HEADS_PER_PROGRAM=heads_per_program)
    config = launch_config(
        "_window_attention_fwd_kernel", dict(problem.config_key, HEADS_PER_PROGRAM=heads_per_program), forward_config
    )
    with _device_guard(qkv):
        _window_attention_fwd_kernel[grid](
            qkv, rel_bias, mask, out, problem.num_windows, windows_per_program,
            **problem.scalars, **constexprs, **config,
        )
    return out


def _backward(grad_out, qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout):
    grad_out, qkv, rel_bias = grad_out.contiguous(), qkv.contiguous(), rel_bias.contiguous()
    mask = None if mask is None else mask.contiguous()
    problem = _Problem(qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    if not _register_kernel_takes(problem):
        return _flash.flash_backward(grad_out, qkv, rel_bias, mask, num_heads, scale, window_size, shift, image_layout)
    grad_qkv = torch.empty_like(qkv)
    if problem.num_windows == 0:
        return grad_qkv, torch.zeros_like(rel_bias)
    windows_per_program = backward_windows_per_program(problem.num_windows)
    groups = triton.cdiv(problem.num_windows, windows_per_program)
    accumulate = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    partial = qkv.new_empty((groups, *rel_bias.shape), dtype=accumulate)  # (groups, nH, N, N)
    config = launch_config("_window_attention_bwd_kernel", problem.config_key, backward_config)
    with _device_guard(qkv):
        _window_attention_bwd_kernel[(groups * num_heads,)](
            grad_out, qkv, rel_bias, mask, grad_qkv, partial, problem.num_windows, windows_per_program,
            **problem.scalars, **problem.constexprs, **config,
        )
    return grad_qkv, partial.sum(0).to(rel_bias.dtype)


@torch.library.custom_op("swinir_kernels::window_attention_triton", mutates_args=())
def _window_attention(
    qkv: torch.Tensor, rel_bias: torch.Tensor, mask: Optional[torch.Tensor], num_heads: int, scale: float
) -> torch.Tensor:
    return _forward(qkv, rel_bias, mask, num_heads, scale, window_size=(1, 1), shift=(0, 0), image_layout=False)


@torch.library.custom_op("swinir_kernels::_window_attention_backward_triton", mutates_args=())
def _window_attention_backward(
    grad_out: torch.Tensor,
    qkv: torch.Tensor,
    rel_bias: torch.Tensor,
    mask: Optional[torch.Tensor],
    num_heads: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward(grad_out, qkv, rel_bias, mask, num_heads, scale, window_size=(1, 1), shift=(0, 0), image_layout=False)


# The schemas are the C++ ones (csrc/swinir_ops.cpp): window_size (wh, ww) and shift (sh, sw) are int[2].
@torch.library.custom_op(
    "swinir_kernels::shifted_window_attention_triton",
    mutates_args=(),
    schema="(Tensor qkv, Tensor rel_bias, int num_heads, int[2] window_size, int[2] shift, float scale) -> Tensor",
)
def _shifted_window_attention(
    qkv: torch.Tensor, rel_bias: torch.Tensor, num_heads: int, window_size: list[int], shift: list[int], scale: float
) -> torch.Tensor:
    return _forward(qkv, rel_bias, None, num_heads, scale, window_size, shift, image_layout=True)


@torch.library.custom_op(
    "swinir_kernels::_shifted_window_attention_backward_triton",
    mutates_args=(),
    schema="(Tensor grad_out, Tensor qkv, Tensor rel_bias, int num_heads, int[2] window_size, int[2] shift,"
    " float scale) -> (Tensor, Tensor)",
)
def _shifted_window_attention_backward(
    grad_out: torch.Tensor,
    qkv: torch.Tensor,
    rel_bias: torch.Tensor,
    num_heads: int,
    window_size: list[int],
    shift: list[int],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward(grad_out, qkv, rel_bias, None, num_heads, scale, window_size, shift, image_layout=True)


register_fake_and_autograd(
    "swinir_kernels::window_attention_triton", "swinir_kernels::_window_attention_backward_triton", image_layout=False
)
register_fake_and_autograd(
    "swinir_kernels::shifted_window_attention_triton",
    "swinir_kernels::_shifted_window_attention_backward_triton",
    image_layout=True,
)


# The flash kernels (larger windows, wider heads) import this module's helpers, so they are imported
# last: whichever of the two modules is imported first, the other then finds what it needs.
from . import window_attention_flash as _flash  # noqa: E402

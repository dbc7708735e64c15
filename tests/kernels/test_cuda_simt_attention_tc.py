"""The tensor-core CUDA attention (csrc/cuda/window_attention_tc_kernel.cu) executed by the SIMT harness.

The harness's attention driver dispatches as the binding does: fp16, bf16 and fp32 with allow_tf32 run
the WMMA kernels (whose fragment element layout the harness draws at random per run), exact fp32 and
fp64 the scalar ones. Forward (out) and backward (grad_qkv, grad_rel_bias) are compared with
swinir_kernels.reference in float64 on the same rounded inputs: fp16/bf16 must stay within twice the
error of the reference computed in that dtype (plus a floor, as tests/kernels/test_window_attention.py asks of
every backend), TF32 within 2e-3 (10-bit mantissa operands), exact fp32 1e-5, fp64 1e-10.

The case table covers window and image layouts, ws 7 and 8, shift 0 and ws//2, head_dim 30, 10 and 64,
non-square grids, one window row and one window column, batch 2, several windows per item and several
bias-gradient groups, a window-layout mask repeating over the batch, and qkv pointers / channel counts
that select each global access width (16 bytes, 8 bytes, one element). Planted bugs in a copy of the
kernel file (prefetching the wrong window, padded keys in the softmax, an off-by-one in the last-block
ticket of the bias gradient, the backward's block barrier before its column pass removed) must make a
case fail.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from swinir_kernels import reference
from tests.support.simt import build as simt_build
from tests.kernels.test_cuda_simt import (  # noqa: F401
    build_cache,
    harness,
    next_schedule,
    raw_bytes,
    read_output,
    run_harness,
)
from tests.kernels.test_window_attention import CASE_IDS, CASES

LAYOUTS = ("window", "image")
NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}


def attention_case(executable, directory, dtype, layout, case, allow_tf32=False, qkv_offset=0, mask="shift",
                   order=None):
    """Runs the harness's attention command on random inputs; returns (out, grad_qkv, grad_bias), the same
    from the float64 reference on the rounded inputs, the same from the reference in `dtype`, and whether
    the tensor-core kernels ran. mask: "shift" (the official mask in the window layout when shift > 0) or
    "random" (window layout: a random additive mask for the windows of one image, reused per image).
    order: the harness's thread order (default: the session's rotation)."""
    B, rows, cols, ws, shift, C, num_heads = case  # ws, shift: ints (both axes) or (along H, along W) pairs
    (wh, ww), (sh, sw) = reference.pair(ws), reference.pair(shift)
    H, W, N = rows * wh, cols * ww, wh * ww
    generator = torch.Generator().manual_seed(zlib.crc32(repr((layout, case, qkv_offset, mask)).encode()))
    image_qkv = torch.randn(B, H, W, 3 * C, generator=generator, dtype=torch.float64).to(dtype)
    rel_bias = torch.randn(num_heads, N, N, generator=generator, dtype=torch.float64)
    scale = (C // num_heads) ** -0.5
    keys = dict(layout=layout, dtype=NAMES[dtype], channels=C, num_heads=num_heads, scale=repr(scale),
                qkv_offset=qkv_offset, allow_tf32=int(allow_tf32))
    mask_values = None
    if layout == "image":
        qkv = image_qkv
        keys.update(batch=B, height=H, width=W, window_h=wh, window_w=ww, shift_h=sh, shift_w=sw)
    else:
        qkv = reference.window_partition(image_qkv, ws, shift).contiguous()
        if mask == "random":
            mask_values = torch.randn(rows * cols, N, N, generator=generator, dtype=torch.float64) * 3
        elif sh or sw:
            mask_values = reference.shift_attention_mask(H, W, ws, shift, dtype=torch.float64)
        keys.update(num_windows=qkv.shape[0], tokens=N, mask_windows=0 if mask_values is None else mask_values.shape[0])
    grad_out = torch.randn(*qkv.shape[:-1], C, generator=generator, dtype=torch.float64).to(dtype)
    inputs = {"qkv": raw_bytes(qkv), "grad_out": raw_bytes(grad_out), "rel_bias": rel_bias.numpy()}
    if mask_values is not None:
        inputs["mask"] = mask_values.numpy()
    rotated_order, seed = next_schedule(seed_base=1000)
    run_harness(executable, "attention", directory, keys, inputs, order or rotated_order, seed)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    actual = (
        read_output(directory, "out", dtype, grad_out.shape),
        read_output(directory, "grad_qkv", dtype, qkv.shape),
        read_output(directory, "grad_bias", compute, rel_bias.shape),
    )
    tensor_cores = (directory / "tensor_cores.bin").read_bytes() == b"\x01"

    def reference_run(qkv_in, bias_in, mask_in, grad_in):
        qkv_in, bias_in = qkv_in.clone().requires_grad_(), bias_in.clone().requires_grad_()
        if layout == "image":
            out = reference.shifted_window_attention(qkv_in, bias_in, num_heads, ws, shift, scale)
        else:
            out = reference.window_attention(qkv_in, bias_in, mask_in, num_heads, scale)
        return (out.detach(), *torch.autograd.grad(out, (qkv_in, bias_in), grad_in))

    # The kernels see rel_bias and mask in the compute type.
    bias_used, mask_used = rel_bias.to(compute), None if mask_values is None else mask_values.to(compute)
    exact = reference_run(qkv.double(), bias_used.double(), None if mask_used is None else mask_used.double(),
                          grad_out.double())
    in_dtype = reference_run(qkv, bias_used.to(dtype), None if mask_used is None else mask_used.to(dtype), grad_out)
    return actual, exact, in_dtype, tensor_cores


def check(actual, exact, in_dtype, dtype, allow_tf32, tf32_tolerance=2e-3):
    names = ("out", "grad_qkv", "grad_rel_bias")
    for name, a, e, r in zip(names, actual, exact, in_dtype):
        assert torch.isfinite(a).all(), f"{name}: non-finite values (unwritten elements read back as NaN)"
        error = (a.double() - e).abs().max().item()
        if dtype in (torch.float16, torch.bfloat16):
            reference_error = (r.double() - e).abs().max().item()
            floor = 1e-3 if dtype == torch.float16 else 1e-2
            assert error <= 2 * reference_error + floor, f"{name}: error {error} vs the reference's {reference_error}"
        else:
            tolerance = {torch.float64: 1e-10, torch.float32: tf32_tolerance if allow_tf32 else 1e-5}[dtype]
            torch.testing.assert_close(a.double(), e, atol=tolerance, rtol=tolerance,
                                       msg=lambda m, name=name: f"{name}: {m}")


# Each case once, the dtypes and layouts rotating over the table (every dtype meets both layouts, shifted
# and unshifted windows), so that the harness's cost stays near 3 s per case.
TENSOR_CORE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
ROTATED = [(case, TENSOR_CORE_DTYPES[index % 3], LAYOUTS[(index + 1) % 2]) for index, case in enumerate(CASES)]


@pytest.mark.parametrize("case, dtype, layout", ROTATED,
                         ids=[f"{i}-{NAMES[d]}-{layout}" for i, (_, d, layout) in zip(CASE_IDS, ROTATED)])
def test_tensor_cores_match_reference(harness, tmp_path, case, dtype, layout):  # noqa: F811
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, layout, case, allow_tf32=True)
    assert tensor_cores
    check(actual, exact, in_dtype, dtype, allow_tf32=True)


@pytest.mark.parametrize("dtype, layout", [(torch.float32, "window"), (torch.float64, "image")],
                         ids=["fp32-exact-window", "fp64-image"])
def test_exact_dtypes_stay_on_the_scalar_kernel(harness, tmp_path, dtype, layout):  # noqa: F811
    case = CASES[3]
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, layout, case, allow_tf32=False)
    assert not tensor_cores
    check(actual, exact, in_dtype, dtype, allow_tf32=False)


# Global access widths: the chunk is 16 bytes when qkv, out, grad_out, grad_qkv and C * element size are
# 16-byte aligned, else 8, else one element. (dtype, case, qkv byte offset): C = 120 / 40 with 4 heads
# give 16-byte rows in fp16 (head slices of 60 / 20 bytes straddle chunks); offsets 8 and 2 (fp16), 4
# (fp32) and C = 60 in fp16 (120-byte rows) select the narrower paths.
ALIGNMENT_CASES = [
    (torch.float16, (2, 2, 1, 8, 4, 120, 4), 0),   # 16 bytes, hd 30
    (torch.bfloat16, (2, 1, 2, 7, 3, 40, 4), 0),   # 16 bytes, hd 10
    (torch.float16, (2, 2, 1, 8, 4, 120, 4), 8),   # 8 bytes
    (torch.float16, (1, 2, 2, 7, 3, 60, 2), 0),    # 8 bytes (rows of 360 bytes)
    (torch.float16, (1, 2, 2, 7, 3, 60, 2), 2),    # one element
    (torch.bfloat16, (1, 1, 2, 8, 0, 30, 3), 0),   # one element (rows of 180 bytes), hd 10
    (torch.float32, (1, 2, 2, 8, 4, 60, 2), 4),    # one element (TF32)
    (torch.float32, (1, 2, 2, 8, 4, 60, 2), 8),    # 8 bytes (TF32)
    (torch.float32, (1, 2, 1, 8, 4, 128, 2), 0),   # 16 bytes (TF32), hd 64: no head-dim padding
    (torch.float16, (1, 2, 1, 8, 0, 128, 2), 0),   # 16 bytes, hd 64, every slice chunk-aligned
]


@pytest.mark.parametrize("dtype, case, qkv_offset, layout", [(*c, LAYOUTS[i % 2]) for i, c in enumerate(ALIGNMENT_CASES)],
                         ids=[f"{NAMES[d]}-C{c[5]}-nh{c[6]}-ws{c[3]}-offset{o}-{LAYOUTS[i % 2]}"
                              for i, (d, c, o) in enumerate(ALIGNMENT_CASES)])
def test_tensor_cores_every_access_width(harness, tmp_path, dtype, case, qkv_offset, layout):  # noqa: F811
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, layout, case, allow_tf32=True,
                                                           qkv_offset=qkv_offset)
    assert tensor_cores
    check(actual, exact, in_dtype, dtype, allow_tf32=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "tf32"])
def test_tensor_cores_many_windows_and_groups(harness, tmp_path, dtype):  # noqa: F811
    """24 windows of 16 tokens: forward items of 8 windows, three backward groups of 8 windows per head
    whose bias-gradient partials the last block of each head adds; a random mask over 12 windows."""
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, "window", (2, 3, 4, 4, 0, 20, 2),
                                                           allow_tf32=True, mask="random")
    assert tensor_cores
    check(actual, exact, in_dtype, dtype, allow_tf32=True)


def flash_case_id(case, dtype, layout, allow_tf32):
    _, _, _, ws, shift, C, heads = case
    (wh, ww), (sh, sw) = reference.pair(ws), reference.pair(shift)
    tf32 = "-tf32" if allow_tf32 and dtype == torch.float32 else ""
    return f"ws{wh}x{ww}-shift{sh},{sw}-hd{C // heads}-{NAMES[dtype]}{tf32}-{layout}"


# Rectangular wh x ww windows and per-axis shifts (sh, sw), DAT-style, within the on-chip kernels' 64 tokens:
# an axis whose shift is 0 is not cut by the shift mask (reference.shift_attention_mask), so the last window
# column (sw = 0) or row (sh = 0) stays one region along it. (case, dtype, layout, allow_tf32).
RECTANGULAR_CASES = [
    ((1, 2, 3, (4, 8), (2, 0), 20, 2), torch.float16, "image", True),
    ((1, 2, 3, (4, 8), (0, 4), 20, 2), torch.bfloat16, "window", True),
    ((2, 3, 2, (8, 4), (4, 2), 24, 2), torch.float32, "image", True),
    ((1, 2, 3, (4, 8), (2, 4), 20, 2), torch.float32, "image", False),
    ((1, 3, 2, (8, 4), (0, 2), 12, 2), torch.float64, "image", False),
    ((1, 2, 2, (4, 8), (2, 0), 20, 2), torch.float32, "window", False),
]


@pytest.mark.parametrize("case, dtype, layout, allow_tf32", RECTANGULAR_CASES,
                         ids=[flash_case_id(*c) for c in RECTANGULAR_CASES])
def test_rectangular_windows_and_per_axis_shifts(harness, tmp_path, case, dtype, layout, allow_tf32):  # noqa: F811
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, layout, case, allow_tf32=allow_tf32)
    assert tensor_cores == (dtype in (torch.float16, torch.bfloat16) or (dtype == torch.float32 and allow_tf32))
    check(actual, exact, in_dtype, dtype, allow_tf32=allow_tf32)


# The flash kernels (csrc/cuda/window_attention_flash_kernel.cu): windows past the on-chip limits (N > 64
# tokens or head_dim > 64), the Swin family's: 16x16 (HAT), 8x32 with per-axis shifts (DAT), head_dim 122
# (DRCT), 32x32 (GRL: 1024 tokens, one window and head, head_dim 8 to bound the harness's time). Every
# dtype meets both layouts over the table; (case, dtype, layout, allow_tf32).
FLASH_CASES = [
    ((1, 1, 2, 16, 8, 60, 2), torch.float16, "image", True),
    ((1, 1, 2, 16, 8, 60, 2), torch.bfloat16, "window", True),
    ((1, 1, 2, 16, 8, 60, 2), torch.float32, "image", True),
    ((1, 1, 2, 16, 8, 60, 2), torch.float32, "window", False),
    ((1, 2, 1, (8, 32), (4, 16), 40, 2), torch.float16, "window", True),
    ((1, 2, 1, (8, 32), (4, 16), 40, 2), torch.float64, "image", False),
    ((1, 1, 2, 8, 4, 244, 2), torch.bfloat16, "image", True),
    ((1, 1, 2, 8, 4, 244, 2), torch.float32, "window", True),
    ((1, 2, 1, 7, 3, 77, 1), torch.float32, "image", False),
    ((1, 1, 1, 32, 16, 8, 1), torch.float16, "image", True),
    # 10 windows: the backward's bias-gradient groups of 4, 4 and 2 windows, summed in order.
    ((2, 5, 1, (4, 32), (2, 16), 16, 2), torch.float64, "image", False),
    ((2, 5, 1, (4, 32), (2, 16), 16, 2), torch.float16, "window", True),
]


@pytest.mark.parametrize("case, dtype, layout, allow_tf32", FLASH_CASES, ids=[flash_case_id(*c) for c in FLASH_CASES])
def test_flash_kernels_match_reference(harness, tmp_path, case, dtype, layout, allow_tf32):  # noqa: F811
    actual, exact, in_dtype, tensor_cores = attention_case(harness, tmp_path, dtype, layout, case, allow_tf32=allow_tf32)
    assert (tmp_path / "flash.bin").read_bytes() == b"\x01"
    assert tensor_cores == (dtype in (torch.float16, torch.bfloat16) or (dtype == torch.float32 and allow_tf32))
    # TF32 operands carry 2**-11 relative rounding; at head_dim 122 the bias gradient (|values| ~8) moves by
    # ~4e-3 (exact fp32 on the same case: 6e-6), so TF32 is held to 1e-2 there (the project's TF32
    # tolerance, swinir_kernels/tolerances.py, is 2e-2).
    check(actual, exact, in_dtype, dtype, allow_tf32=allow_tf32, tf32_tolerance=1e-2 if case[5] // case[6] > 64 else 2e-3)


TC_KERNEL = "csrc/cuda/window_attention_tc_kernel.cu"
# name -> (text of the kernel file, replacement)
PLANTED_BUGS = {
    # The prefetch reloads the current window instead of the next one.
    "prefetch-of-the-wrong-window": ("if (has_next) loader.issue(s.pixels(tables ^ 1));",
                                     "if (has_next) loader.issue(s.pixels(tables));"),
    # Padded keys (N = 49 < 64) enter the softmax.
    "padded-keys-unmasked": ("if (!row_valid || j >= n) continue;", "if (!row_valid || j >= 64) continue;"),
    # No block sees itself as its head's last: grad_bias is never written.
    "bias-gradient-ticket-off-by-one": ("1u) == groups - 1;", "1u) == groups;"),
    # The backward's column pass reads rows of P and dS that other warps may not have written yet. Every
    # warp passes the same sequence of WMMA collectives, so only the warp-major orders, which let a warp
    # run ahead to its next __syncthreads, can show it (the other orders resume warps in rounds).
    "backward-barrier-removed": ("__syncthreads();  // every row of P and dS is written", ""),
}
@pytest.mark.parametrize("bug", PLANTED_BUGS)
def test_planted_bug_is_caught(harness, request, tmp_path, bug):  # noqa: F811
    """The tensor-core kernel with one bug planted (in a copy; the checkout is untouched) must fail a
    case the real kernel passes (B2-grid2x3-ws7-shift3-hd30, fp16, window layout) in one of the two
    warp-major orders (each warp runs ahead to its next __syncthreads, first to last or last to first)."""
    text, replacement = PLANTED_BUGS[bug]
    source = (simt_build.ROOT / TC_KERNEL).read_text()
    assert source.count(text) == 1, f"{TC_KERNEL} changed: update the planted bug {bug!r}"
    executable = simt_build.build(build_cache(request), {TC_KERNEL: source.replace(text, replacement)})
    assert executable != harness
    with pytest.raises(AssertionError):
        for order in ("warp-major", "warp-major-reversed"):
            actual, exact, in_dtype, _ = attention_case(executable, tmp_path / order, torch.float16, "window", CASES[0],
                                                        order=order)
            check(actual, exact, in_dtype, torch.float16, allow_tf32=True)


FLASH_KERNEL = "csrc/cuda/window_attention_flash_kernel.cu"
# name -> (text of the flash kernel file, replacement, the FLASH_CASES entry that must then fail)
FLASH_PLANTED_BUGS = {
    # Each window overwrites the group's bias-gradient partial instead of adding to it (10 windows, groups of 4).
    "partial-overwritten": ("partial_row[j] = first_window ? grad_score : partial_row[j] + grad_score;",
                            "partial_row[j] = grad_score;", FLASH_CASES[-1]),
    # The online softmax forgets to rescale the output strip when the running max grows (4 key blocks).
    "output-not-rescaled": ("out_strip[row * l.out_stride + d] *= row_scale[row0 + row];", "", FLASH_CASES[0]),
    # dkv's column pass reads rows of P and dS that other warps may not have written yet (warp-major orders).
    "dkv-barrier-removed": ("__syncthreads();  // every row of P and dS is written", "", FLASH_CASES[0]),
}


@pytest.mark.parametrize("bug", FLASH_PLANTED_BUGS)
def test_flash_planted_bug_is_caught(harness, request, tmp_path, bug):  # noqa: F811
    """The flash kernel file with one bug planted (in a copy) must fail its case in a warp-major order."""
    text, replacement, (case, dtype, layout, allow_tf32) = FLASH_PLANTED_BUGS[bug]
    source = (simt_build.ROOT / FLASH_KERNEL).read_text()
    assert source.count(text) == 1, f"{FLASH_KERNEL} changed: update the planted bug {bug!r}"
    executable = simt_build.build(build_cache(request), {FLASH_KERNEL: source.replace(text, replacement)})
    assert executable != harness
    with pytest.raises(AssertionError):
        for order in ("warp-major", "warp-major-reversed"):
            actual, exact, in_dtype, _ = attention_case(executable, tmp_path / order, dtype, layout, case,
                                                        allow_tf32=allow_tf32, order=order)
            check(actual, exact, in_dtype, dtype, allow_tf32=allow_tf32)

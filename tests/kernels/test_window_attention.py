"""window_attention and shifted_window_attention of every backend against swinir_kernels.reference:
outputs and both gradients (qkv, rel_bias), dtypes, the bias gradient's determinism, mixed dtypes and
autocast, empty batches, torch.compile without recompiles, argument errors, and the Triton kernels' own
settings (bias-gradient program split, fp32 dot precision). opcheck of these ops is in tests/kernels/test_opcheck.py.

Sizes stay small (<= ~100 (window, head) programs per call) so the Triton interpreter can run them.
"""

import importlib
import re

import pytest
import torch
import torch._dynamo.testing

import swinir_kernels
from swinir_kernels import reference, tolerances

from tests.helpers import (
    HAS_C_EXTENSION,
    HAS_CUDA,
    TRITON_INTERPRET,
    backend_available,
    needs_cuda,
    run_python,
    skip_unless_runs,
)

BACKENDS = ["cpu", "triton", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])]
OPS = ("window_attention", "shifted_window_attention")

# (batch, window rows, window columns, window_size, shift, C, num_heads): head_dim 30 and 10, window
# 7 and 8, shift 0 and ws//2, a 2x3 grid, a single window row and a single window column, batch 2.
CASES = [
    (2, 2, 3, 7, 3, 60, 2),
    (2, 2, 3, 8, 0, 20, 2),
    (2, 2, 3, 8, 4, 60, 2),
    (2, 1, 3, 8, 4, 20, 2),
    (2, 1, 3, 7, 0, 60, 2),
    (2, 3, 1, 7, 3, 20, 2),
    (2, 3, 1, 8, 0, 60, 2),
]
CASE_IDS = [f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}" for b, r, c, ws, s, C, nh in CASES]
TOLERANCES = tolerances.TOLERANCES  # shared with the first-use check on users' devices


def device_for(backend: str) -> str:
    """Triton runs CUDA tensors on a GPU and CPU tensors under TRITON_INTERPRET=1 elsewhere."""
    return "cuda" if backend == "cuda" or (backend == "triton" and HAS_CUDA) else "cpu"


def make_inputs(case, dtype, device, layout, bias_dtype=None):
    """qkv (image (B, H, W, 3C) or window (B*nW, N, 3C) layout), rel_bias (nH, N, N), mask (nW, N, N) or None
    (the official shift mask in the window layout when shift > 0), grad_out; the kwargs of the op."""
    B, rows, cols, ws, shift, C, num_heads = case
    H, W, N = rows * ws, cols * ws, ws * ws
    image_qkv = torch.randn(B, H, W, 3 * C, dtype=torch.float64).to(device=device, dtype=dtype)
    rel_bias = torch.randn(num_heads, N, N, dtype=torch.float64).to(device=device, dtype=bias_dtype or dtype)
    if layout == "shifted_window_attention":
        qkv, mask = image_qkv, None
        kwargs = dict(num_heads=num_heads, window_size=ws, shift=shift)
    else:
        qkv = reference.window_partition(image_qkv, ws, shift).contiguous()
        mask = reference.shift_attention_mask(H, W, ws, shift, device=device) if shift else None
        kwargs = dict(num_heads=num_heads)
    grad_out = torch.randn(*qkv.shape[:-1], C, dtype=torch.float64).to(device=device, dtype=dtype)
    return qkv, rel_bias, mask, grad_out, kwargs


def call(op, qkv, rel_bias, mask, kwargs):
    if op == "window_attention":
        return swinir_kernels.window_attention(qkv, rel_bias, mask, **kwargs)
    return swinir_kernels.shifted_window_attention(qkv, rel_bias, **kwargs)


def interpreted_bfloat16(backend, tensor) -> bool:
    """bf16 on the Triton interpreter: the backend chooser refuses it (the bare interpreter computes bf16
    dots and casts wrongly), but the GPU-faithful mode (tests/support/triton_faithful.py) computes them as
    a GPU does, so the tests call the Triton op directly there."""
    return (backend == "triton" and TRITON_INTERPRET and tensor.dtype == torch.bfloat16 and tensor.device.type == "cpu"
            and swinir_kernels.triton.UNAVAILABLE is None)


def require(backend, op, qkv, **shape):
    """skip_unless_runs, except for bf16 on the faithful Triton interpreter (see interpreted_bfloat16)."""
    if not interpreted_bfloat16(backend, qkv):
        skip_unless_runs(backend, op, qkv, **shape)


def call_triton_directly(op, qkv, rel_bias, mask, kwargs):
    num_heads = kwargs["num_heads"]
    scale = (qkv.shape[-1] // 3 // num_heads) ** -0.5
    if op == "window_attention":
        return torch.ops.swinir_kernels.window_attention_triton(qkv, rel_bias, mask, num_heads, scale)
    return torch.ops.swinir_kernels.shifted_window_attention_triton(qkv, rel_bias, num_heads, kwargs["window_size"], kwargs["shift"], scale)


def forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs):
    """(out, grad_qkv, grad_rel_bias) computed by `backend`."""
    qkv = qkv.detach().requires_grad_()
    rel_bias = rel_bias.detach().requires_grad_()
    if interpreted_bfloat16(backend, qkv):
        out = call_triton_directly(op, qkv, rel_bias, mask, kwargs)
    else:
        with swinir_kernels.use_backend(backend):
            out = call(op, qkv, rel_bias, mask, kwargs)
    grad_qkv, grad_bias = torch.autograd.grad(out, (qkv, rel_bias), grad_out)
    return out.detach(), grad_qkv, grad_bias


def assert_all_close(actual, expected, **tol):
    for name, a, e in zip(("out", "grad_qkv", "grad_rel_bias"), actual, expected):
        assert a.dtype == e.dtype, name
        torch.testing.assert_close(a, e, **tol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference(backend, op, dtype, case):
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, dtype, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    actual = forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(actual, expected, **TOLERANCES[dtype])


# Shapes beyond SwinIR's that the kernels must still get right, too large for the Triton interpreter:
# windows of 4, 12 and 16 (N = 16, 144, 256), head_dim 64 (no padding), 24 and 1, and 18 windows
# (several CPU bias-gradient chunks).
WIDE_CASES = [
    (1, 2, 2, 4, 2, 128, 2),
    (1, 2, 1, 12, 6, 48, 3),
    (1, 1, 2, 16, 8, 24, 1),
    (1, 1, 2, 8, 4, 3, 3),
    (2, 3, 3, 8, 4, 20, 2),
]


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    "case", WIDE_CASES, ids=[f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}" for b, r, c, ws, s, C, nh in WIDE_CASES]
)
def test_other_window_sizes_and_head_dims(backend, op, dtype, case):
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, dtype, device_for(backend), op)
    B, rows, cols, ws, shift, C, num_heads = case
    skip_unless_runs(backend, op, qkv, tokens=ws * ws, head_dim=C // num_heads)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs), expected, **TOLERANCES[dtype])


# The Swin family's head_dims beyond 64 (issue 24): DRCT's dense layers 53, 77 and 122, HAT's 16x16
# windows (256 tokens), and the kernels' declared limit of 128 (every backend at and past its limits:
# tests/kernels/test_limits.py; the family's windows on every backend:
# tests/kernels/test_window_attention_properties.py).
FAMILY_HEAD_DIM_CASES = [
    (1, 1, 2, 16, 8, 122, 1),
    (1, 2, 1, 8, 4, 2 * 53, 2),
    (2, 1, 1, 8, 0, 77, 1),
    (1, 2, 2, 4, 2, 2 * 128, 2),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "case", FAMILY_HEAD_DIM_CASES,
    ids=[f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}" for b, r, c, ws, s, C, nh in FAMILY_HEAD_DIM_CASES],
)
def test_cpu_kernel_takes_the_familys_head_dims(op, dtype, case):
    if not HAS_C_EXTENSION:
        pytest.skip("swinir_kernels._C is not built")
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, dtype, "cpu", op)
    B, rows, cols, ws, shift, C, num_heads = case
    assert backend_available("cpu", op, qkv, tokens=ws * ws, head_dim=C // num_heads) is None
    actual = forward_backward("cpu", op, qkv, rel_bias, mask, grad_out, kwargs)
    if dtype == torch.bfloat16:
        assert_within_half_precision_error(actual, op, qkv, rel_bias, mask, grad_out, kwargs, dtype)
    else:
        expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
        assert_all_close(actual, expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("tokens, head_dim, reason", [(1025, 16, "at most 1024 tokens"), (64, 129, "head_dim at most 128")])
def test_cuda_backend_knows_its_attention_limits(op, tokens, head_dim, reason):
    """The CUDA kernels raise beyond 1024 tokens or head_dim 128; the chooser must say so, not call them
    (each backend at and past its limits: tests/kernels/test_limits.py)."""
    if not HAS_C_EXTENSION:
        pytest.skip("swinir_kernels._C is not built: the CUDA limits come from it")
    why_not = backend_available("cuda", op, torch.empty(0), tokens=tokens, head_dim=head_dim)
    assert why_not is not None and reason in why_not, why_not
    if tokens > 1024:  # the CPU kernel takes any window
        assert backend_available("cpu", op, torch.empty(0), tokens=tokens, head_dim=head_dim) is None


@pytest.mark.parametrize(
    "backend",
    ["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda]), pytest.param("triton", marks=needs_cuda)],
)
@pytest.mark.parametrize("op", OPS)
def test_more_than_65535_windows(backend, op):
    """66,560 windows of 2x2: CUDA's 65,535 limit on grid dims y/z must not cap the windows (too many
    programs for the Triton interpreter, so Triton runs this on a GPU only). fp64: in fp32 the bias
    gradient, a sum over 66,560 windows, differs from the reference's by its summation order (~3e-5)."""
    case = (1, 256, 260, 2, 1, 4, 2)
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float64, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs), expected, **TOLERANCES[torch.float64])


# --- The shift mask's value made observable (issue 28): with randn inputs the logits are near 1, and
# exp(-100) vanishes next to the row maximum as would any larger mask, so a wrong mask constant passed.
# Here q and k are scaled so the logits are around 8-10, and rel_bias adds +100 exactly where the
# last (corner) window's regions differ: there the bias cancels the official -100, so the masked pairs
# compete with the others, and any other mask value (-10, -1000, -inf) changes the output by O(1).

MASK_CASES = [(1, 2, 2, 8, 4, 60, 2), (2, 2, 3, 7, 3, 20, 2)]
MASK_CASE_IDS = [f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}" for b, r, c, ws, s, C, nh in MASK_CASES]


def mask_sensitive_inputs(case, dtype, device, op, logit_scale=3.0):
    """make_inputs' case with q, k scaled by `logit_scale` (logits ~ 9 for randn) and rel_bias + 100 where
    the corner window's shift regions differ (so that bias + mask = 0 there)."""
    B, rows, cols, ws, shift, C, num_heads = case
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float64, "cpu", op)
    qkv = qkv.clone()
    qkv[..., : 2 * C] *= logit_scale
    official = reference.shift_attention_mask(rows * ws, cols * ws, ws, shift, dtype=torch.float64)
    rel_bias = rel_bias - official[-1]  # + 100 where the corner window's regions differ
    to = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return to(qkv), to(rel_bias), to(mask), to(grad_out), kwargs


def test_mask_sensitive_inputs_expose_the_mask_value():
    """The inputs below make the mask value matter: the reference with any other constant in the window
    layout (-10, -1000, -inf) differs from the official -100 by more than 1 in the output."""
    case = MASK_CASES[0]
    B, rows, cols, ws, shift, C, num_heads = case
    qkv, rel_bias, mask, _, kwargs = mask_sensitive_inputs(case, torch.float64, "cpu", "window_attention")
    logits = torch.einsum("wid,wjd->wij", qkv[..., : C // num_heads], qkv[..., C : C + C // num_heads]) * (C // num_heads) ** -0.5
    assert 6 < logits.abs().max() and logits.std() > 4, "logits must be large (around 8-10)"
    expected = reference.window_attention(qkv, rel_bias, mask, num_heads)
    for value in (-10.0, -1000.0, float("-inf")):
        other = torch.where(mask < 0, torch.full_like(mask, value), mask)
        wrong = reference.window_attention(qkv, rel_bias, other, num_heads)
        assert (wrong - expected).abs().max() > 1.0, value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", MASK_CASES, ids=MASK_CASE_IDS)
def test_shift_mask_value_with_large_logits(backend, op, dtype, case):
    """Forward and both gradients with logits around 8-10 and a bias cancelling the mask exactly where
    the regions differ: only the official -100 gives the reference's values."""
    qkv, rel_bias, mask, grad_out, kwargs = mask_sensitive_inputs(case, dtype, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    actual = forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)
    # The logits carry ~100 (bias) + ~10: fp32 rounds them at 100 * 2**-24 ~ 6e-6, a relative change of the
    # probabilities that large gradients amplify, so fp32 gets 10x its usual tolerance (still 1e5 times
    # smaller than the change a wrong mask value makes).
    tol = TOLERANCES[dtype] if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    assert_all_close(actual, expected, **tol)


# --- Remainders for every grouping rule (issue 28): window counts that no grouping divides evenly.
#   CPU backward: chunks = clamp(windows // 8, 1, 64), chunk c owns windows [c*n/chunks, (c+1)*n/chunks);
#   Triton: forward programs of 4 (head_dim > 16) or 8 windows; backward programs of
#           cdiv(n, min(n, MAX_BIAS_PROGRAMS_PER_HEAD = 40)) windows per head;
#   CUDA scalar kernel: backward groups of kAttentionWindowsPerGroup = 16 windows;
#   CUDA tensor-core kernel: forward items of 16 windows, backward groups of ceil(n / ceil(n / 8)) windows.
# 17 windows: 2 CPU chunks (8 + 9), Triton forward 4 x 4 + 1, CUDA 16 + 1;
# 75 windows (batch 3): 9 CPU chunks (8 or 9), Triton forward 18 x 4 + 3 and backward 37 x 2 + 1, CUDA 4 x 16 + 11;
# 108 windows (batch 3 at 48 x 48, ws 8): 13 CPU chunks, Triton forward 13 x 8 + 4 (head_dim 10), CUDA 6 x 16 + 12.
REMAINDER_CASES = [
    (1, 1, 17, 8, 4, 20, 2),
    (3, 5, 5, 7, 3, 60, 2),
    (3, 6, 6, 8, 4, 20, 2),
]
REMAINDER_CASE_IDS = [f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}-windows{b * r * c}"
                      for b, r, c, ws, s, C, nh in REMAINDER_CASES]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", REMAINDER_CASES, ids=REMAINDER_CASE_IDS)
def test_window_counts_with_remainders(backend, op, case):
    """Forward and all gradients against the reference when no grouping of windows divides evenly (a
    dropped or doubled remainder window shows in grad_qkv of that window and in the bias gradient).
    fp64, so that the bias gradient's sum over up to 108 windows is compared at 1e-10 whatever its order."""
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float64, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs), expected, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("op", OPS)
def test_triton_bias_gradient_programs_with_a_remainder(op, monkeypatch):
    """At most 5 backward programs per head over 17 windows: 4 programs of 4 windows and one of 1 (fp32,
    whose running bias-gradient sum lives in registers, and fp64, in the program's partial)."""
    monkeypatch.setattr(triton_kernels(), "MAX_BIAS_PROGRAMS_PER_HEAD", 5)
    assert triton_kernels().backward_windows_per_program(17) == 4
    for dtype in (torch.float32, torch.float64):
        qkv, rel_bias, mask, grad_out, kwargs = make_inputs(REMAINDER_CASES[0], dtype, device_for("triton"), op)
        skip_unless_runs("triton", op, qkv)
        expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
        assert_all_close(forward_backward("triton", op, qkv, rel_bias, mask, grad_out, kwargs), expected, **TOLERANCES[dtype])


@pytest.mark.skipif(not HAS_C_EXTENSION, reason="swinir_kernels._C is not built")
@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_cpu_isa_builds_match_reference(capability):
    """The C++ kernel's arithmetic is compiled for the baseline ISA, for AVX2+FMA and for AVX-512; ATen's
    capability picks one (the widest the CPU has), so ATEN_CPU_CAPABILITY=default forces the baseline
    build (CPUs without AVX2) and =avx2 the AVX2 one (CPUs without AVX-512), which an AVX-512 machine
    would otherwise never run. Square and rectangular windows, 64 and 256 tokens (row blocks)."""
    if capability == "avx2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU has no AVX2 (ATen capability {torch.backends.cpu.get_cpu_capability()})")
    result = run_python(
        f"""
        import torch, swinir_kernels
        from swinir_kernels import reference
        assert torch.backends.cpu.get_cpu_capability() == "{capability.upper()}"
        torch.manual_seed(0)
        for ws, shift, C, heads in ((8, 4, 60, 2), (7, 3, 20, 2), ((8, 32), (4, 16), 90, 3), (16, 8, 122, 1)):
            (wh, ww) = reference.pair(ws)
            qkv = torch.randn(2, 2 * wh, 3 * ww, 3 * C, requires_grad=True)
            bias = torch.randn(heads, wh * ww, wh * ww, requires_grad=True)
            grad = torch.randn(2, 2 * wh, 3 * ww, C)
            outputs = []
            for backend in ("cpu", "reference"):
                with swinir_kernels.use_backend(backend):
                    out = swinir_kernels.shifted_window_attention(qkv, bias, num_heads=heads, window_size=ws, shift=shift)
                outputs.append((out, *torch.autograd.grad(out, (qkv, bias), grad)))
            for actual, expected in zip(*outputs):
                torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
        print("ok")
        """,
        ATEN_CPU_CAPABILITY=capability,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_window_layout_random_mask(backend, dtype):
    """Any additive mask (not only the shift mask's 0/-100 pattern, and in any float dtype), shared by windows w % nW."""
    case = (2, 2, 3, 7, 0, 20, 2)
    qkv, rel_bias, _, grad_out, kwargs = make_inputs(case, dtype, device_for(backend), "window_attention")
    skip_unless_runs(backend, "window_attention", qkv)
    mask = (torch.randn(6, 49, 49, device=qkv.device) * 3).to(torch.float16)  # any float dtype is read
    expected = forward_backward("reference", "window_attention", qkv, rel_bias, mask, grad_out, kwargs)
    actual = forward_backward(backend, "window_attention", qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(actual, expected, **TOLERANCES[dtype])


def max_error(values, exact):
    return max((v.double() - e).abs().max().item() for v, e in zip(values, exact))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=[CASE_IDS[0], CASE_IDS[3]])
def test_half_precision_error(backend, op, dtype, case):
    """fp16/bf16 error vs an fp64 reference on the same (rounded) inputs is at most twice the error of the
    reference computed in that dtype (plus a small floor for near-equal errors)."""
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, dtype, device_for(backend), op)
    require(backend, op, qkv)
    actual = forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)
    assert all(a.dtype == dtype for a in actual)
    assert_within_half_precision_error(actual, op, qkv, rel_bias, mask, grad_out, kwargs, dtype)


def assert_within_half_precision_error(actual, op, qkv, rel_bias, mask, grad_out, kwargs, dtype):
    """tolerances.py's fp16/bf16 rule: error vs an fp64 reference on the same (rounded) inputs at most twice
    the error of the reference computed in the inputs' dtypes, plus HALF_ERROR_FLOOR[dtype]."""
    wide = lambda t: None if t is None else t.double()  # noqa: E731
    exact = forward_backward("reference", op, wide(qkv), wide(rel_bias), wide(mask), wide(grad_out), kwargs)
    same_dtype_reference = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    floor = tolerances.HALF_ERROR_FLOOR[dtype]
    for index, name in enumerate(("out", "grad_qkv", "grad_rel_bias")):
        assert actual[index].dtype == same_dtype_reference[index].dtype, name
        error = max_error([actual[index]], [exact[index]])
        reference_error = max_error([same_dtype_reference[index]], [exact[index]])
        assert error <= 2 * reference_error + floor, f"{name}: error {error} vs reference's {reference_error}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_rule_rejects_five_times_the_reference_error(dtype):
    """The fp16/bf16 rule that these tests and the first-use check share (tolerances.compare): results
    with the same-dtype reference's own error pass; results 5x as far from the fp64 reference fail."""
    op = "shifted_window_attention"
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(CASES[0], dtype, "cpu", op)
    wide = lambda t: None if t is None else t.double()  # noqa: E731
    exact = forward_backward("reference", op, wide(qkv), wide(rel_bias), wide(mask), wide(grad_out), kwargs)
    same = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert tolerances.compare(same, same, exact, exact=False)[0]
    worse = [(e + 5 * (s.double() - e)).to(dtype) for s, e in zip(same, exact)]
    passed, _, why = tolerances.compare(worse, same, exact, exact=False)
    assert not passed and "vs the" in why, why


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_bias_gradient_is_deterministic(backend, op):
    """72 windows (9 of the CPU kernel's bias-gradient chunks): bit-identical bias gradients across runs
    and across thread counts."""
    case = (2, 6, 6, 7, 3, 20, 2)
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float32, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    threads = torch.get_num_threads()
    try:
        runs = []
        for num_threads in (2, 2, 1):
            torch.set_num_threads(num_threads)
            runs.append(forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)[2])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_non_contiguous_qkv(backend, op):
    case = CASES[2]
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float64, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    # The same values inside a wider tensor: a strided view with padding after each row's 3C channels.
    padded = torch.zeros(*qkv.shape[:-1], qkv.shape[-1] + 7, dtype=qkv.dtype, device=qkv.device)
    padded[..., : qkv.shape[-1]] = qkv
    strided_qkv = padded[..., : qkv.shape[-1]]
    assert not strided_qkv.is_contiguous()
    strided_bias = rel_bias.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided_bias.is_contiguous()
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    actual = forward_backward(backend, op, strided_qkv, strided_bias, mask, grad_out, kwargs)
    assert_all_close(actual, expected, **TOLERANCES[torch.float64])
    assert actual[1].is_contiguous()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_fp32_bias_with_half_qkv(backend, op, dtype):
    """rel_bias may stay fp32 (a parameter under autocast) while qkv is fp16/bf16: its gradient stays fp32."""
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(CASES[0], dtype, device_for(backend), op, bias_dtype=torch.float32)
    require(backend, op, qkv)
    actual = forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)
    assert tuple(a.dtype for a in actual) == (dtype, dtype, torch.float32)
    # Tied to the dtype's error (tolerances.py's rule), not one loose bound: the reference computed with
    # the same mixed dtypes sets the scale.
    assert_within_half_precision_error(actual, op, qkv, rel_bias, mask, grad_out, kwargs, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_empty_batch(backend, op):
    qkv, rel_bias, mask, _, kwargs = make_inputs(CASES[2], torch.float32, device_for(backend), op)
    skip_unless_runs(backend, op, qkv)
    qkv = qkv[:0].detach().requires_grad_()
    rel_bias = rel_bias.detach().requires_grad_()
    with swinir_kernels.use_backend(backend):
        out = call(op, qkv, rel_bias, mask, kwargs)
    assert out.shape == (*qkv.shape[:-1], qkv.shape[-1] // 3)
    grad_qkv, grad_bias = torch.autograd.grad(out.sum(), (qkv, rel_bias))
    assert grad_qkv.shape == qkv.shape and torch.equal(grad_bias, torch.zeros_like(rel_bias))


def test_autocast_block_runs_on_cpu():
    """Under CPU autocast the Linear yields bf16 qkv while rel_bias stays an fp32 parameter."""
    C, num_heads, ws = 20, 2, 8
    linear = torch.nn.Linear(C, 3 * C)
    rel_bias = torch.nn.Parameter(torch.randn(num_heads, ws * ws, ws * ws))
    x = torch.randn(2, 16, 24, C)
    with swinir_kernels.use_backend("cpu"), torch.autocast("cpu", dtype=torch.bfloat16):
        out = swinir_kernels.shifted_window_attention(linear(x), rel_bias, num_heads=num_heads, window_size=ws, shift=4)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert rel_bias.grad.dtype == torch.float32 and torch.isfinite(rel_bias.grad).all()
    with swinir_kernels.use_backend("reference"):
        expected = swinir_kernels.shifted_window_attention(linear(x), rel_bias, num_heads=num_heads, window_size=ws, shift=4)
    torch.testing.assert_close(out.float(), expected.detach(), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_block_matches_eager_without_recompiles(backend):
    """Linear qkv -> shifted_window_attention -> Linear proj, compiled with fullgraph=True: matches eager
    (forward and gradients) and compiles once for batches 1, 2, 3 and several image sizes (the batch is
    marked unbacked, so batch 1 is not specialised; H and W dynamic)."""
    C, num_heads, ws = 20, 2, 8
    device = device_for(backend)
    qkv_linear, proj = torch.nn.Linear(C, 3 * C).to(device), torch.nn.Linear(C, C).to(device)
    rel_bias = torch.nn.Parameter(torch.randn(num_heads, ws * ws, ws * ws, device=device))

    def block(x):
        qkv = qkv_linear(x)
        return proj(swinir_kernels.shifted_window_attention(qkv, rel_bias, num_heads=num_heads, window_size=ws, shift=4))

    skip_unless_runs(backend, "shifted_window_attention", rel_bias)
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(block, backend=counter, fullgraph=True)
    torch._dynamo.reset()
    with swinir_kernels.use_backend(backend):
        for batch, H, W in ((1, 16, 24), (2, 16, 24), (3, 24, 16), (2, 32, 40)):
            x = torch.randn(batch, H, W, C, device=device, requires_grad=True)
            torch._dynamo.decorators.mark_unbacked(x, 0)
            torch._dynamo.mark_dynamic(x, 1)
            torch._dynamo.mark_dynamic(x, 2)
            out = compiled(x)
            grads = torch.autograd.grad(out.square().sum(), (x, rel_bias))
            expected = block(x)
            expected_grads = torch.autograd.grad(expected.square().sum(), (x, rel_bias))
            torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
            for g, e in zip(grads, expected_grads):
                torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-5)
    assert counter.frame_count == 1


def good_image_inputs():
    return torch.randn(2, 16, 24, 60), torch.randn(2, 64, 64)


@pytest.mark.parametrize(
    "mutate, argument",
    [
        (lambda qkv, bias, kw: (qkv[0], bias, kw), "qkv"),
        (lambda qkv, bias, kw: (qkv[:, :12], bias, kw), "qkv.shape[1] (H)"),
        (lambda qkv, bias, kw: (qkv, bias, {**kw, "num_heads": 7}), "C = qkv.shape[-1] // 3"),
        (lambda qkv, bias, kw: (qkv, bias[:, :63], kw), "rel_bias"),
        (lambda qkv, bias, kw: (qkv, bias.to("meta"), kw), "rel_bias"),
        (lambda qkv, bias, kw: (qkv, bias, {**kw, "shift": 8}), "shift"),
    ],
    ids=["rank", "H-not-multiple", "C-vs-heads", "bias-shape", "bias-device", "shift-range"],
)
def test_shifted_errors_name_the_argument(mutate, argument):
    qkv, bias = good_image_inputs()
    qkv, bias, kwargs = mutate(qkv, bias, dict(num_heads=2, window_size=8, shift=4))
    with pytest.raises(ValueError, match=re.escape(argument)):
        swinir_kernels.shifted_window_attention(qkv, bias, **kwargs)


@pytest.mark.parametrize(
    "mask, argument",
    [(torch.zeros(6, 64, 63), "mask"), (torch.zeros(5, 64, 64), r"qkv.shape\[0\]"), (torch.zeros(6, 64, 64, device="meta"), "mask")],
    ids=["mask-shape", "mask-windows", "mask-device"],
)
def test_window_errors_name_the_argument(mask, argument):
    qkv, bias = torch.randn(12, 64, 60), torch.randn(2, 64, 64)
    with pytest.raises(ValueError, match=argument):
        swinir_kernels.window_attention(qkv, bias, mask, num_heads=2)


@pytest.mark.parametrize(
    "call_op, argument",
    [
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv[0], bias, 2, 8, 4, 0.1), "qkv"),
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv, bias, 2, 7, 3, 0.1), r"qkv.shape\[1\] \(H\)"),
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv.repeat(1, 1, 1, 13), bias, 2, 8, 4, 0.1), "head_dim"),  # 130 > 128
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv, bias[:1], 2, 8, 4, 0.1), "rel_bias"),
        (lambda ops, qkv, bias: ops.window_attention(qkv.reshape(12, 64, 60), bias, torch.zeros(5, 64, 64), 2, 0.1),
         r"qkv.shape\[0\]"),
        (lambda ops, qkv, bias: ops._shifted_window_attention_backward(qkv, qkv, bias, 2, 8, 4, 0.1), "grad_out"),
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv, bias, 2, 8, 8, 0.1), "shift"),
        (lambda ops, qkv, bias: ops.shifted_window_attention(qkv, bias, 2, 8, -1, 0.1), "shift"),
    ],
    ids=["rank", "H-not-multiple", "head-dim", "bias-shape", "mask-windows", "grad-out-shape", "shift-ws", "shift-negative"],
)
def test_cpp_op_errors_name_the_argument(call_op, argument):
    """Direct torch.ops calls skip the Python checks: the C++ kernel raises ValueError itself."""
    qkv, bias = good_image_inputs()
    skip_unless_runs("cpu", "shifted_window_attention", qkv)
    with pytest.raises(ValueError, match=argument):
        call_op(torch.ops.swinir_kernels, qkv, bias)


# --- Triton-specific: the bias gradient's program split and the fp32 dot precision.

def triton_kernels():
    pytest.importorskip("triton")
    # The module, not the op function of the same name that swinir_kernels.triton exposes.
    return importlib.import_module("swinir_kernels.triton.window_attention")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_triton_bias_gradient_with_several_windows_per_program(op, dtype, monkeypatch):
    """At most 5 programs per head over 12 windows (4 programs of 3 windows each): still the reference's
    gradient, and bitwise the same on a second run (fp64 keeps the running sum in the program's partial,
    fp32 in registers)."""
    monkeypatch.setattr(triton_kernels(), "MAX_BIAS_PROGRAMS_PER_HEAD", 5)
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(CASES[0], dtype, device_for("triton"), op)
    skip_unless_runs("triton", op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    first = forward_backward("triton", op, qkv, rel_bias, mask, grad_out, kwargs)
    second = forward_backward("triton", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(first, expected, **TOLERANCES[dtype])
    assert torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("num_heads", [1, 3, 6])
def test_triton_forward_head_groups(op, num_heads):
    """The forward computes pairs of heads per program when the head count is even (6: three pairs) and
    single heads otherwise (1, 3): every head of every window, as the reference (head_dim 10, 9 windows:
    groups of 8 and 1)."""
    assert triton_kernels().forward_heads_per_program(num_heads, torch.float32) == (2 if num_heads % 2 == 0 else 1)
    assert triton_kernels().forward_heads_per_program(num_heads, torch.float64) == 1
    case = (1, 1, 9, 8, 4, 10 * num_heads, num_heads)
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float32, device_for("triton"), op)
    skip_unless_runs("triton", op, qkv)
    expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    assert_all_close(forward_backward("triton", op, qkv, rel_bias, mask, grad_out, kwargs), expected, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", [CASES[2], CASES[0]], ids=[CASE_IDS[2], CASE_IDS[0]])
def test_triton_tf32_dots(monkeypatch, op, case):
    """fp32 through TF32 dots (on the CPU, the GPU-faithful interpreter rounds their operands to TF32),
    with a bound tied to TF32's precision instead of one loose bound (2e-2 against an observed 2.6e-3):
    TF32 keeps fp16's 10 mantissa bits, so the error against an fp64 reference must stay within twice the
    error of the reference computed in fp16 on the same inputs (which rounds every operation, not only
    the dot operands; observed: TF32's error is 0.4-0.6 of it, and a GPU that truncates the operands
    instead of rounding them may double that). It must also exceed the fp32 error, or TF32 was not used."""
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "tf32")
    qkv, rel_bias, mask, grad_out, kwargs = make_inputs(case, torch.float32, device_for("triton"), op)
    skip_unless_runs("triton", op, qkv)
    actual = forward_backward("triton", op, qkv, rel_bias, mask, grad_out, kwargs)
    cast = lambda t, dtype: None if t is None else t.to(dtype)  # noqa: E731
    inputs = lambda dtype: [cast(t, dtype) for t in (qkv, rel_bias, mask, grad_out)]  # noqa: E731
    exact = forward_backward("reference", op, *inputs(torch.float64), kwargs)
    fp16 = forward_backward("reference", op, *inputs(torch.float16), kwargs)
    fp32 = forward_backward("reference", op, *inputs(torch.float32), kwargs)
    for index, name in enumerate(("out", "grad_qkv", "grad_rel_bias")):
        assert actual[index].dtype == torch.float32, name
        error = max_error([actual[index]], [exact[index]])
        fp16_error = max_error([fp16[index]], [exact[index]])
        fp32_error = max_error([fp32[index]], [exact[index]])
        assert error <= 2 * fp16_error, f"{name}: TF32 error {error} vs the fp16 reference's {fp16_error}"
        assert error > 10 * fp32_error, f"{name}: TF32 error {error} as small as fp32's {fp32_error}: no TF32 dots?"


@pytest.mark.skipif(not (TRITON_INTERPRET and HAS_C_EXTENSION), reason="the CPU stand-in checks the C++ and interpreted Triton kernels")
@pytest.mark.parametrize("precision", ["ieee", "tf32"])
def test_first_use_check_under_each_fp32_precision(precision, tmp_path):
    """The first-use check (in a fresh process, on the test-only CPU stand-in that checks the C++ and the
    GPU-faithful interpreted Triton kernels) holds fp32 attention to the tolerance of the selected dot
    precision: with TF32 dots the correct Triton kernel (errors ~1e-3) passes too, with no warning
    (issue 28: the check called without the TF32 tolerance rejected it with a false warning)."""
    result = run_python(
        """
        import warnings, torch
        from tests.support import triton_faithful
        triton_faithful.activate()
        import swinir_kernels as sk
        torch.manual_seed(0)
        qkv, bias = torch.randn(2, 16, 24, 60), torch.randn(2, 64, 64)
        kwargs = dict(num_heads=2, window_size=8, shift=4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = sk.shifted_window_attention(qkv, bias, **kwargs)
        ours = [str(w.message) for w in caught if "swinir_kernels" in str(w.message)]
        assert not ours, ours
        explained = sk.explain_backend("shifted_window_attention", qkv, bias, **kwargs)
        assert "failed" not in explained, explained
        expected = sk.reference.shifted_window_attention(qkv, bias, 2, 8, 4)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)  # TF32 when triton was picked
        print("ok")
        """,
        timeout=300, SWINIR_KERNELS_TEST_STAND_IN="1", SWINIR_KERNELS_FP32_PRECISION=precision,
        SWINIR_KERNELS_CACHE=str(tmp_path / "cache"), TRITON_INTERPRET="1", PYTHONDONTWRITEBYTECODE="1",
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout[-2000:] + result.stderr[-4000:]


def test_triton_fp32_precision_setting(monkeypatch):
    """The one fp32-precision setting (the op description's fp32_precision) is what the Triton kernels use."""
    kernels = triton_kernels()
    fp32, fp64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "tf32")
    assert kernels._dot_precision(fp32) == "tf32"
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "ieee")
    assert kernels._dot_precision(fp32) == "ieee"
    assert kernels._dot_precision(fp64) == "ieee"
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "fast")
    with pytest.raises(ValueError, match="SWINIR_KERNELS_FP32_PRECISION: expected 'ieee' or 'tf32', got 'fast'"):
        kernels._dot_precision(fp32)


def test_triton_refuses_more_than_1024_tokens_per_window():
    qkv = torch.randn(1, 1025, 3 * 2, device=device_for("triton"))
    rel_bias = torch.randn(2, 1025, 1025, device=qkv.device)
    skip_unless_runs("triton", "window_attention", qkv)
    with pytest.raises(ValueError, match="tokens per window .*at most 1024, got 1025"):
        torch.ops.swinir_kernels.window_attention_triton(qkv, rel_bias, None, 2, 0.3)

"""Triton fused window attention (window and image layouts) against swinir_kernels.reference:
outputs and the gradients of qkv and rel_bias, determinism of the bias gradient, opcheck and
torch.compile.

CPU tensors run under TRITON_INTERPRET=1 (skipped otherwise; no bf16 there), CUDA tensors on a GPU.
The interpreter takes ~5-40 ms per program, so every case stays at a few tens of programs
(B=2 x 6 windows x 2 heads = 24) with tiny channel counts.
"""

import importlib
from dataclasses import dataclass

import pytest
import torch

import swinir_kernels
from swinir_kernels import reference
from conftest import devices, needs_cuda, skip_unless_runs

pytest.importorskip("triton")
kernels = importlib.import_module("swinir_kernels.triton.window_attention")


@dataclass(frozen=True)
class AttentionCase:
    window_size: int
    shift: int
    head_dim: int
    window_grid: tuple[int, int]  # windows per image along H and W
    batch: int = 2
    num_heads: int = 2

    @property
    def H(self) -> int:
        return self.window_grid[0] * self.window_size

    @property
    def W(self) -> int:
        return self.window_grid[1] * self.window_size

    @property
    def C(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def tokens(self) -> int:
        return self.window_size * self.window_size

    def __str__(self) -> str:
        rows, cols = self.window_grid
        return f"ws{self.window_size}-shift{self.shift}-hd{self.head_dim}-grid{rows}x{cols}-b{self.batch}-nh{self.num_heads}"


# Every window size, shift (0 and ws//2), head dim and window grid (non-square, one row, one column)
# appears with each of the others at least once.
ATTENTION_CASES = [
    AttentionCase(7, 0, 30, (2, 3)),
    AttentionCase(7, 3, 10, (2, 3)),
    AttentionCase(8, 4, 30, (2, 3)),
    AttentionCase(8, 0, 10, (2, 3)),
    AttentionCase(8, 4, 10, (1, 3)),
    AttentionCase(7, 3, 30, (1, 3)),
    AttentionCase(7, 3, 10, (3, 1)),
    AttentionCase(8, 4, 30, (3, 1)),
]

# Window layout: (case, mask kind); "shift" is the official shift mask of the case's image,
# "random" an arbitrary fp16 additive mask (the kernel reads any float dtype).
WINDOW_LAYOUT_CASES = [
    (ATTENTION_CASES[0], "none"),
    (ATTENTION_CASES[1], "shift"),
    (ATTENTION_CASES[2], "random"),
    (ATTENTION_CASES[3], "random"),
    (ATTENTION_CASES[4], "shift"),
    (ATTENTION_CASES[6], "none"),
]

TOLERANCES = {
    torch.float64: dict(atol=1e-6, rtol=1e-6),  # fp32 scalars (scale, log2 e) inside the kernel
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=1e-2, rtol=1e-2),
    torch.bfloat16: dict(atol=5e-2, rtol=5e-2),
}

DTYPES = [
    torch.float32,
    torch.float16,
    pytest.param(torch.bfloat16, marks=[needs_cuda, pytest.mark.cuda]),  # the interpreter computes bf16 wrongly
]


def make_inputs(case, layout, dtype, device, bias_dtype=None, mask_kind="none"):
    """(qkv, rel_bias, mask) leaves: qkv (B, H, W, 3C) for the image layout, (B*nW, N, 3C) for the window one."""
    qkv = torch.randn(case.batch, case.H, case.W, 3 * case.C)
    if layout == "window":
        qkv = reference.window_partition(qkv, case.window_size)
    rel_bias = torch.randn(case.num_heads, case.tokens, case.tokens)
    mask = None
    if mask_kind == "shift":
        mask = reference.shift_attention_mask(case.H, case.W, case.window_size, case.shift)
    elif mask_kind == "random":
        nW = case.window_grid[0] * case.window_grid[1]
        mask = (torch.randn(nW, case.tokens, case.tokens) * 3).to(torch.float16)
    qkv = qkv.to(device=device, dtype=dtype).requires_grad_()
    rel_bias = rel_bias.to(device=device, dtype=bias_dtype or dtype).requires_grad_()
    mask = None if mask is None else mask.to(device)
    return qkv, rel_bias, mask


def run_public(layout, case, qkv, rel_bias, mask):
    """`layout`'s public function: shifted_window_attention (image) or window_attention (window)."""
    if layout == "image":
        return swinir_kernels.shifted_window_attention(
            qkv, rel_bias, num_heads=case.num_heads, window_size=case.window_size, shift=case.shift
        )
    return swinir_kernels.window_attention(qkv, rel_bias, mask, num_heads=case.num_heads)


def run_reference(layout, case, qkv, rel_bias, mask):
    if layout == "image":
        return reference.shifted_window_attention(qkv, rel_bias, case.num_heads, case.window_size, case.shift)
    return reference.window_attention(qkv, rel_bias, mask, case.num_heads)


def backend_attention_and_grads(backend, layout, case, qkv, rel_bias, mask, grad_out):
    """Output and (grad_qkv, grad_rel_bias) of `backend`; skips when it cannot run here."""
    skip_unless_runs(backend, "shifted_window_attention" if layout == "image" else "window_attention", qkv)
    with swinir_kernels.use_backend(backend):
        out = run_public(layout, case, qkv, rel_bias, mask)
    grad_qkv, grad_bias = torch.autograd.grad(out, (qkv, rel_bias), grad_out.to(out.dtype))
    return out, grad_qkv, grad_bias


def reference_attention_and_grads(layout, case, qkv, rel_bias, mask, grad_out):
    """The oracle: the reference in fp64 on the same (rounded) input values."""
    qkv64 = qkv.detach().double().requires_grad_()
    bias64 = rel_bias.detach().double().requires_grad_()
    mask64 = None if mask is None else mask.double()
    out = run_reference(layout, case, qkv64, bias64, mask64)
    grad_qkv, grad_bias = torch.autograd.grad(out, (qkv64, bias64), grad_out.double())
    return out, grad_qkv, grad_bias


def assert_close_verbose(name, actual, expected, atol, rtol):
    """assert_close on fp64 copies, naming the tensor and showing the worst elements."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    error = (actual - expected).abs()
    bad = ~(error <= atol + rtol * expected.abs())
    if bad.any():
        worst = error.flatten().argsort(descending=True)[:5]
        rows = [f"  at {tuple(int(i) for i in torch.unravel_index(j, actual.shape))}: got {actual.flatten()[j]:.6g}, "
                f"expected {expected.flatten()[j]:.6g}" for j in worst]
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements differ beyond atol={atol}, rtol={rtol}; "
            f"max abs error {error.max():.3g}, NaN {int(actual.isnan().sum())}, inf {int(actual.isinf().sum())}\n"
            + "\n".join(rows)
        )


def check_against_reference(backend, layout, case, dtype, device, bias_dtype=None, mask_kind="none"):
    """Compares `backend`'s output and gradients with the fp64 reference; returns them."""
    qkv, rel_bias, mask = make_inputs(case, layout, dtype, device, bias_dtype, mask_kind)
    grad_out = torch.randn(*qkv.shape[:-1], case.C, device=device)
    got = backend_attention_and_grads(backend, layout, case, qkv, rel_bias, mask, grad_out)
    expected = reference_attention_and_grads(layout, case, qkv, rel_bias, mask, grad_out)
    assert got[0].dtype == qkv.dtype and got[1].dtype == qkv.dtype and got[2].dtype == rel_bias.dtype
    for name, actual, wanted in zip(("out", "grad_qkv", "grad_rel_bias"), got, expected):
        assert_close_verbose(name, actual, wanted, **TOLERANCES[dtype])
    return got


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", devices())
def test_shifted_window_attention_matches_reference(device, dtype, case):
    check_against_reference("triton", "image", case, dtype, device)


@pytest.mark.parametrize("case, mask_kind", WINDOW_LAYOUT_CASES, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", devices())
def test_window_attention_matches_reference(device, dtype, case, mask_kind):
    check_against_reference("triton", "window", case, dtype, device, mask_kind=mask_kind)


@pytest.mark.parametrize("layout", ["image", "window"])
@pytest.mark.parametrize("device", devices())
def test_float64(device, layout):
    check_against_reference("triton", layout, ATTENTION_CASES[1], torch.float64, device, mask_kind="shift")


@pytest.mark.parametrize("device", devices())
def test_half_qkv_with_fp32_bias(device):
    """Autocast's mix: the bias gradient comes back in the bias's dtype (fp32)."""
    check_against_reference("triton", "image", ATTENTION_CASES[2], torch.float16, device, bias_dtype=torch.float32)


@pytest.mark.parametrize("layout", ["image", "window"])
@pytest.mark.parametrize("device", devices())
def test_bias_gradient_is_deterministic_with_several_windows_per_program(device, layout, monkeypatch):
    """5 programs per head over 12 windows (3, 3, 2, 2, 2 windows each): still the reference's
    gradient, and bitwise the same on a second run."""
    monkeypatch.setattr(kernels, "MAX_BIAS_PROGRAMS_PER_HEAD", 5)
    case = ATTENTION_CASES[1]
    first = check_against_reference("triton", layout, case, torch.float32, device, mask_kind="shift")
    torch.manual_seed(0)
    second = check_against_reference("triton", layout, case, torch.float32, device, mask_kind="shift")
    assert torch.equal(first[2], second[2])
    assert torch.equal(first[1], second[1])


@needs_cuda
@pytest.mark.cuda
def test_tf32_dots_on_gpu(monkeypatch):
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "tf32")
    qkv, rel_bias, mask = make_inputs(ATTENTION_CASES[2], "image", torch.float32, "cuda")
    grad_out = torch.randn(*qkv.shape[:-1], ATTENTION_CASES[2].C, device="cuda")
    got = backend_attention_and_grads("triton", "image", ATTENTION_CASES[2], qkv, rel_bias, mask, grad_out)
    expected = reference_attention_and_grads("image", ATTENTION_CASES[2], qkv, rel_bias, mask, grad_out)
    for name, actual, wanted in zip(("out", "grad_qkv", "grad_rel_bias"), got, expected):
        assert_close_verbose(name, actual, wanted, atol=2e-2, rtol=2e-2)


def test_fp32_precision_setting(monkeypatch):
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "tf32")
    assert kernels._dot_precision(torch.float32) == "tf32"
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "ieee")
    assert kernels._dot_precision(torch.float32) == "ieee"
    assert kernels._dot_precision(torch.float64) == "ieee"
    monkeypatch.setenv("SWINIR_KERNELS_FP32_PRECISION", "fast")
    with pytest.raises(ValueError, match="SWINIR_KERNELS_FP32_PRECISION: expected 'ieee' or 'tf32', got 'fast'"):
        kernels._dot_precision(torch.float32)


# A small problem (2 windows, 1 head: 2 programs) for the registration checks, which run the op many times.
SMALL_CASE = AttentionCase(4, 2, 10, (1, 2), batch=1, num_heads=1)


@pytest.mark.parametrize("layout", ["image", "window"])
@pytest.mark.parametrize("device", devices())
def test_opcheck(device, layout):
    qkv, rel_bias, mask = make_inputs(SMALL_CASE, layout, torch.float32, device, mask_kind="shift")
    scale = SMALL_CASE.head_dim**-0.5
    if layout == "image":
        skip_unless_runs("triton", "shifted_window_attention", qkv)
        op = torch.ops.swinir_kernels.shifted_window_attention_triton
        args = (qkv, rel_bias, SMALL_CASE.num_heads, SMALL_CASE.window_size, SMALL_CASE.shift, scale)
    else:
        skip_unless_runs("triton", "window_attention", qkv)
        op = torch.ops.swinir_kernels.window_attention_triton
        args = (qkv, rel_bias, mask, SMALL_CASE.num_heads, scale)
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", devices())
def test_compile_fullgraph(device):
    case = SMALL_CASE
    qkv, rel_bias, _ = make_inputs(case, "image", torch.float32, device)
    skip_unless_runs("triton", "shifted_window_attention", qkv)

    def block(qkv, rel_bias):
        out = swinir_kernels.shifted_window_attention(
            qkv * 2.0, rel_bias, num_heads=case.num_heads, window_size=case.window_size, shift=case.shift
        )
        return out.square().sum()

    torch._dynamo.reset()
    with swinir_kernels.use_backend("triton"):
        compiled = torch.compile(block, fullgraph=True)(qkv, rel_bias)
        compiled_grads = torch.autograd.grad(compiled, (qkv, rel_bias))
        eager = block(qkv, rel_bias)
        eager_grads = torch.autograd.grad(eager, (qkv, rel_bias))
    assert_close_verbose("loss", compiled, eager, atol=1e-5, rtol=1e-5)
    for name, actual, wanted in zip(("grad_qkv", "grad_rel_bias"), compiled_grads, eager_grads):
        assert_close_verbose(name, actual, wanted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_empty_batch(device):
    case = ATTENTION_CASES[1]
    qkv = torch.zeros(0, case.H, case.W, 3 * case.C, device=device, requires_grad=True)
    rel_bias = torch.randn(case.num_heads, case.tokens, case.tokens, device=device, requires_grad=True)
    skip_unless_runs("triton", "shifted_window_attention", qkv)
    with swinir_kernels.use_backend("triton"):
        out = swinir_kernels.shifted_window_attention(
            qkv, rel_bias, num_heads=case.num_heads, window_size=case.window_size, shift=case.shift
        )
    assert out.shape == (0, case.H, case.W, case.C)
    grad_qkv, grad_bias = torch.autograd.grad(out.sum(), (qkv, rel_bias))
    assert grad_qkv.shape == qkv.shape and torch.equal(grad_bias, torch.zeros_like(rel_bias))


@pytest.mark.parametrize("device", devices())
def test_too_many_tokens_per_window_is_refused(device):
    qkv = torch.randn(2, 81, 3 * 20, device=device)
    rel_bias = torch.randn(2, 81, 81, device=device)
    skip_unless_runs("triton", "window_attention", qkv)
    with pytest.raises(ValueError, match="tokens per window .*at most 64, got 81"):
        torch.ops.swinir_kernels.window_attention_triton(qkv, rel_bias, None, 2, 0.3)

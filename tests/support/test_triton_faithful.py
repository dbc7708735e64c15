"""The Triton interpreter's GPU-faithful mode (tests/support/triton_faithful.py) is active in every
TRITON_INTERPRET=1 session, and does what compiled Triton does: fp32 float arguments, i32/i64 integer
arguments with 32-bit wrap-around, TF32 dots, bf16 dots of the values (not their bit patterns) and
casts to bf16 that round to nearest even."""

import numpy as np
import pytest
import torch

from tests.helpers import TRITON_INTERPRET

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

pytestmark = pytest.mark.skipif(not TRITON_INTERPRET, reason="the faithful mode serves the interpreter (TRITON_INTERPRET=1)")


@triton.jit
def _times_argument_kernel(x_ptr, out_ptr, value):
    tl.store(out_ptr, tl.load(x_ptr) * value)


@triton.jit
def _scaled_kernel(x_ptr, out_ptr, factor, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets) * factor)


@triton.jit
def _squared_kernel(out_ptr, value):
    tl.store(out_ptr, (value * value).to(tl.int64))


@triton.jit
def _dot_kernel(a_ptr, b_ptr, out_ptr, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.arange(0, BLOCK)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]
    tl.store(out_ptr + rows, tl.dot(tl.load(a_ptr + rows), tl.load(b_ptr + rows), input_precision=PRECISION))


@triton.jit
def _cast_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets).to(out_ptr.dtype.element_ty))


@triton.jit
def _scaled_cast_kernel(x_ptr, out_ptr, factor, BLOCK: tl.constexpr):
    """bf16 in, fp32 arithmetic, bf16 out (the pixel_shuffle epilogue's pattern)."""
    offsets = tl.arange(0, BLOCK)
    value = tl.load(x_ptr + offsets).to(tl.float32) * factor
    tl.store(out_ptr + offsets, value.to(out_ptr.dtype.element_ty))


def test_mode_is_active():
    from tests.support import triton_faithful

    assert triton_faithful.is_active()


def test_float_argument_is_fp32():
    """fp64 1.0 times the argument 0.1 is fp32(0.1), as from a compiled launch (the interpreter alone
    multiplies by the exact double)."""
    out = torch.zeros(1, dtype=torch.float64)
    _times_argument_kernel[(1,)](torch.ones(1, dtype=torch.float64), out, 0.1)
    assert out.item() == float(np.float32(0.1)) != 0.1


def test_float_argument_promotes_half_to_fp32():
    """fp16 * a float argument is computed in fp32 (the argument is an fp32 tensor, not a weak Python
    scalar that would keep the product in fp16)."""
    x = torch.full((16,), 1.0 + 2.0**-10, dtype=torch.float16)  # fp16(x) * 3 needs 12 mantissa bits
    out = torch.zeros(16, dtype=torch.float32)
    _scaled_kernel[(1,)](x, out, 3.0, BLOCK=16)
    assert torch.equal(out, x.float() * 3.0)


@pytest.mark.parametrize(
    "value, expected",
    [
        (2**30 + 5, -(2**31) + 25),  # an i32 argument: the product wraps at 32 bits, as on a GPU
        (2**31 + 5, (2**31 + 5) ** 2),  # an i64 argument (the interpreter alone holds it as uint32: wraps)
        (-(2**31), 0),
    ],
)
def test_integer_argument_width_and_wrap(value, expected):
    out = torch.zeros(1, dtype=torch.int64)
    _squared_kernel[(1,)](out, value)
    assert out.item() == expected


def test_tf32_dot_rounds_operands():
    """A TF32 dot of fp32 operands multiplies them at 10 mantissa bits; an IEEE dot exactly."""
    a = torch.randn(16, 16, dtype=torch.float32)
    b = torch.randn(16, 16, dtype=torch.float32)
    exact = (a.double() @ b.double()).float()
    # Round to nearest at 13 dropped bits (ties to even) in integer arithmetic, independently of the mode.
    bits = a.view(torch.int32).long(), b.view(torch.int32).long()
    tf32 = [((x + 0x0FFF + ((x >> 13) & 1)) & ~0x1FFF).to(torch.int32).view(torch.float32) for x in bits]
    expected_tf32 = (tf32[0].double() @ tf32[1].double()).float()
    for precision, expected in (("ieee", exact), ("tf32", expected_tf32)):
        out = torch.zeros(16, 16, dtype=torch.float32)
        _dot_kernel[(1,)](a, b, out, BLOCK=16, PRECISION=precision)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=precision)
    assert (expected_tf32 - exact).abs().max() > 1e-3  # the two differ by far more than the tolerance


def test_bfloat16_dot_multiplies_values():
    """A bf16 dot multiplies the bf16 values exactly and accumulates in fp32, as tensor cores do (the
    interpreter alone multiplies the uint16 bit patterns: errors of ~1e10). Also mixed into an fp32
    accumulator through the cast of an fp32 tile (the attention kernels' P @ V)."""
    a = torch.randn(16, 16).to(torch.bfloat16)
    b = torch.randn(16, 16).to(torch.bfloat16)
    out = torch.zeros(16, 16, dtype=torch.float32)
    _dot_kernel[(1,)](a, b, out, BLOCK=16, PRECISION="ieee")
    exact = a.double() @ b.double()  # products of 8-bit mantissas are exact in fp32: only the sum rounds
    torch.testing.assert_close(out.double(), exact, atol=1e-5, rtol=1e-6)


# fp32 values at the bf16 rounding boundaries of 1.0 (bf16 ulp 2**-7): ties go to the even neighbour.
_BF16_BOUNDARIES = [
    (1 + 2.0**-8, 1.0),  # a tie, down to the even 1.0 (truncation gives 1.0 too)
    (1 + 3 * 2.0**-8, 1 + 2 * 2.0**-7),  # a tie, up to the even neighbour (truncation: 1 + 2**-7)
    (1 + 2.0**-8 + 2.0**-20, 1 + 2.0**-7),  # above the tie: up (truncation: 1.0)
    (-(1 + 2.0**-8 + 2.0**-20), -(1 + 2.0**-7)),
    (1 + 2.0**-8 - 2.0**-20, 1.0),  # below the tie: down
    (3.3963e38, float("inf")),  # beyond bf16's largest finite value after rounding: overflows
]


@pytest.mark.parametrize("source_dtype", [torch.float32, torch.float64, torch.float16])
def test_cast_to_bfloat16_rounds_to_nearest_even(source_dtype):
    """fp32 / fp64 / fp16 -> bf16 rounds to nearest, ties to even, as cvt.rn.bf16 (the interpreter alone
    truncates fp32 and reinterprets fp64 / fp16 integer-wise); bf16 -> each float type is exact."""
    values = [(v, e) for v, e in _BF16_BOUNDARIES if source_dtype != torch.float16 or abs(v) < 60000]
    if source_dtype == torch.float16:  # fp16 holds 11 bits: the boundaries it can represent, and random values
        values = [(v, e) for v, e in values if torch.tensor(v, dtype=torch.float16).item() == v]
    x = torch.tensor([v for v, _ in values], dtype=torch.float64)
    x = torch.cat([x, torch.randn(64 - x.numel(), dtype=torch.float64) * 100]).to(source_dtype)
    out = torch.zeros(64, dtype=torch.bfloat16)
    _cast_kernel[(1,)](x, out, BLOCK=64)
    assert torch.equal(out, x.to(torch.bfloat16))  # torch rounds to nearest even in one step
    assert out[: len(values)].double().tolist() == [e for _, e in values]
    back = torch.zeros(64, dtype=source_dtype)
    _cast_kernel[(1,)](out, back, BLOCK=64)
    assert torch.equal(back, out.to(source_dtype))


def test_bfloat16_scaled_copy_rounds_once():
    """bf16 -> fp32 arithmetic -> bf16: within half an ulp of the exact product (a single rounding)."""
    x = torch.randn(64).to(torch.bfloat16)
    out = torch.zeros(64, dtype=torch.bfloat16)
    _scaled_cast_kernel[(1,)](x, out, 1.37, BLOCK=64)
    assert torch.equal(out, (x.float() * torch.tensor(1.37, dtype=torch.float32)).to(torch.bfloat16))

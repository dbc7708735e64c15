"""The Triton interpreter's GPU-faithful mode (tests/support/triton_faithful.py) is active in every
TRITON_INTERPRET=1 session, and does what compiled Triton does: fp32 float arguments, i32/i64 integer
arguments with 32-bit wrap-around, TF32 dots."""

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

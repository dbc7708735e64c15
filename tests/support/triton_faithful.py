"""A GPU-faithful mode for the Triton interpreter (TRITON_INTERPRET=1): where the interpreter and
compiled Triton compute differently, make the interpreter compute what the GPU computes, so that a
Triton test passing on the CPU means what it would mean on a GPU. tests/conftest.py activates it for
the whole session whenever TRITON_INTERPRET=1; tests/support/test_triton_faithful.py checks each item.

What compiled Triton does, and the interpreter (3.9) does not, handled here:

1. **Float arguments are fp32.** A launch types a Python ``float`` argument as ``fp32``; the
   interpreter passes the Python float itself, which Triton treats as a weakly typed scalar: exact
   float64 against an fp64 tensor (the GPU rounds it to fp32 first) and fp16 against an fp16 tensor
   (the GPU promotes the operation to fp32). Here: an fp32 scalar tensor, as on the GPU.
2. **Integer argument widths.** A launch types an ``int`` argument as ``i32`` when it fits in 32
   signed bits, else ``i64`` (``u64`` from 2**63). The interpreter gives values in [2**31, 2**32) uint32
   data under an i64 type. Here: i32 / i64 / u64 exactly as a launch types them. i32 arithmetic then
   wraps at 2**32 as on the GPU (numpy int32 arrays wrap), so 32-bit offset overflow shows on the CPU.
3. **TF32 dots.** ``tl.dot(..., input_precision="tf32")`` on fp32 operands multiplies 10-bit-mantissa
   operands on tensor cores; the interpreter multiplies the exact fp32 values. Here: fp32 operands of a
   TF32 dot are rounded to TF32 (to nearest; tensor cores may drop the bits instead, an error of the
   same size) before the fp32-accumulated product.
4. **bfloat16 dot operands.** The interpreter holds bf16 values as their uint16 bit patterns and
   ``tl.dot`` multiplies those integers (garbage, silently). A GPU multiplies the bf16 values exactly
   and accumulates in fp32. Here: bf16 operands are decoded to fp32 (exact) before the product.
5. **Casts to and from bfloat16.** The interpreter converts fp32 -> bf16 by dropping the low 16 bits
   (round toward zero) and fp64 / fp16 <-> bf16 by integer ``astype`` of the bit pattern (garbage); a GPU
   rounds to nearest, ties to even (``cvt.rn.bf16``) and converts values. Here: every cast between bf16
   and fp16 / fp32 / fp64 converts the value, rounding to nearest even (torch's conversions, which are
   cvt.rn's; NaN stays NaN).

Checked and equal in both (nothing to do): Python scalars and ``tl.constexpr`` values in kernel code
(the same frontend types both: weakly typed, exact in fp64 arithmetic); integer ``//`` and ``%``
(C semantics, truncation toward zero, in both); fp16 ``tl.dot`` (fp32 accumulation of exact
products in both); per-operation fp16 rounding of elementwise arithmetic (both round every fp16 op);
bf16 -> fp32 casts (exact in both).

Not emulated (stated so that tests keep tolerances for them): fp32 ``/`` and ``tl.exp2`` use
approximate PTX instructions (``div.full.f32``, ``ex2.approx``: ~2 ulp) on a GPU and exact numpy
operations here; reductions (``tl.sum``, ``tl.max``, dot accumulation) sum in another order;
elementwise arithmetic *on* bf16 values (``a + b`` of two bf16 tensors) stays wrong in the interpreter
(integer arithmetic on the bit patterns): the kernels compute in fp32 and only load, store, cast and
``tl.dot`` bf16, which items 4 and 5 make faithful, but the backend chooser still refuses bf16 there,
so tests call the Triton ops directly (``torch.ops.swinir_kernels.<op>_triton``) for bf16; integer
arguments equal to 1 and divisibility-by-16 hints are specializations that change no value.
"""

import numpy as np
import torch

# Integer argument types a launch gives (triton.runtime.jit's specialization: i32 if it fits, else i64,
# u64 from 2**63); the numpy dtype the interpreter must hold each in.
_INTEGER_ARGUMENT_TYPES = (
    (-(2**31), 2**31, "int32", np.int32),
    (-(2**63), 2**63, "int64", np.int64),
    (2**63, 2**64, "uint64", np.uint64),
)
_MARK = "_swinir_gpu_faithful"

def _interpreter():
    """The interpreter module, checked for the hooks this mode replaces: a Triton whose interpreter
    lacks them must fail loudly here, never run the tests unfaithfully."""
    import triton.runtime.interpreter as interpreter

    missing = [name for name in ("_implicit_cvt", "TensorHandle", "InterpreterBuilder", "_get_np_dtype")
               if not hasattr(interpreter, name)]
    missing += [name for name in ("create_dot", "cast_impl") if not hasattr(getattr(interpreter, "InterpreterBuilder", None), name)]
    if missing:
        import triton

        raise RuntimeError(
            f"tests/support/triton_faithful.py: the Triton {triton.__version__} interpreter has no {missing}; "
            "update the GPU-faithful mode for this Triton"
        )
    return interpreter


def _round_to_tf32(values: np.ndarray) -> np.ndarray:
    """fp32 values rounded to nearest (ties to even) at TF32's 10 mantissa bits; inf and nan kept."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    special = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    half_ulp_minus_one = np.uint32(0x0FFF) + ((bits >> np.uint32(13)) & np.uint32(1))
    rounded = (bits + half_ulp_minus_one) & np.uint32(0xFFFFE000)
    return np.where(special, bits, rounded).view(np.float32)


_FLOAT_NUMPY_TO_TORCH = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                         np.dtype(np.float64): torch.float64}


def _to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """fp16/fp32/fp64 values rounded to nearest even at bf16 (one rounding), as uint16 bit patterns."""
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    return tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).reshape(values.shape)


def _from_bfloat16_bits(bits: np.ndarray, np_dtype) -> np.ndarray:
    """uint16 bf16 bit patterns as values of `np_dtype` (exact for fp32 and fp64)."""
    tensor = torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16)
    return tensor.to(_FLOAT_NUMPY_TO_TORCH[np.dtype(np_dtype)]).numpy().reshape(bits.shape)


def _decode_bfloat16(bits: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns as exact fp32 values (the high half of an fp32)."""
    return (np.ascontiguousarray(bits).astype(np.uint32) << np.uint32(16)).view(np.float32)


def activate() -> None:
    """Installs the faithful argument conversion, TF32 and bf16 dots and bf16 casts into the interpreter (idempotent: the
    mark is on the interpreter module, which this file may be imported under two names beside)."""
    interpreter = _interpreter()
    if getattr(interpreter, _MARK, False):
        return
    import triton.language as tl
    from triton._C.libtriton import ir

    original_implicit_cvt = interpreter._implicit_cvt
    TensorHandle = interpreter.TensorHandle

    def scalar(value, dtype, np_dtype):
        return tl.tensor(TensorHandle(np.array([value], dtype=np_dtype), dtype), dtype)

    def faithful_implicit_cvt(arg):
        if isinstance(arg, float):
            return scalar(arg, tl.float32, np.float32)
        if isinstance(arg, int) and not isinstance(arg, bool):
            for low, high, name, np_dtype in _INTEGER_ARGUMENT_TYPES:
                if low <= arg < high:
                    return scalar(arg, getattr(tl, name), np_dtype)
        return original_implicit_cvt(arg)

    original_create_dot = interpreter.InterpreterBuilder.create_dot

    def faithful_create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if input_precision == ir.INPUT_PRECISION.TF32 and a.dtype == tl.float32 and b.dtype == tl.float32:
            a = TensorHandle(_round_to_tf32(a.data), a.dtype)
            b = TensorHandle(_round_to_tf32(b.data), b.dtype)
        if a.dtype == tl.bfloat16 and b.dtype == tl.bfloat16:
            a = TensorHandle(_decode_bfloat16(a.data), tl.float32)
            b = TensorHandle(_decode_bfloat16(b.data), tl.float32)
        return original_create_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    original_cast_impl = interpreter.InterpreterBuilder.cast_impl
    float_types = (tl.float16, tl.float32, tl.float64)

    def faithful_cast_impl(self, src, dst_type):
        src_type, dst_scalar = src.dtype.scalar, dst_type.scalar
        if src_type in float_types and dst_scalar == tl.bfloat16:
            return TensorHandle(_to_bfloat16_bits(src.data), tl.bfloat16)
        if src_type == tl.bfloat16 and dst_scalar in float_types:
            return TensorHandle(_from_bfloat16_bits(src.data, interpreter._get_np_dtype(dst_scalar)), dst_scalar)
        return original_cast_impl(self, src, dst_type)

    interpreter._implicit_cvt = faithful_implicit_cvt
    interpreter.InterpreterBuilder.create_dot = faithful_create_dot
    # create_fp_trunc / create_fp_ext are lambdas calling self.cast_impl, so they pick this up.
    interpreter.InterpreterBuilder.cast_impl = faithful_cast_impl
    setattr(interpreter, _MARK, True)


def is_active() -> bool:
    return getattr(_interpreter(), _MARK, False)

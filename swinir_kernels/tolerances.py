"""How close a kernel must be to :mod:`swinir_kernels.reference`: the one definition that the tests
and the first-use verification on a user's device (:mod:`swinir_kernels._verification`) both apply.

* Calls that only move bits (each op's ``exact`` in :mod:`swinir_kernels.registry`: window_partition,
  window_reverse, a pixel_shuffle without scale and bias): bit-exact.
* fp64 and fp32: ``|actual - expected| <= atol + rtol * |expected|`` against the reference computed
  in the same dtype, with the (atol, rtol) of :data:`TOLERANCES`; fp32 attention with TF32 dots
  (``SWINIR_KERNELS_FP32_PRECISION=tf32``) gets :data:`TF32_TOLERANCE` (10-bit mantissas).
* fp16 and bf16: the error against an fp64 reference computed on the same (rounded) inputs must be at
  most ``2 *`` the error of the reference computed in that dtype, plus :data:`HALF_ERROR_FLOOR` (so two
  near-equal roundings do not fail): the kernel may round differently, not worse.
"""

import torch

TOLERANCES = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}
TF32_TOLERANCE = dict(atol=2e-2, rtol=2e-2)
HALF_ERROR_FLOOR = {torch.float16: 1e-3, torch.bfloat16: 1e-2}


def tolerance(dtype: torch.dtype, fp32_precision: str = "ieee") -> dict:
    """(atol, rtol) of fp64/fp32 results; fp32 with TF32 dots gets the wider one."""
    if dtype == torch.float32 and fp32_precision == "tf32":
        return TF32_TOLERANCE
    return TOLERANCES[dtype]


def max_abs_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if actual.numel() == 0:
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def compare(actual, same_dtype_reference, exact_reference, *, exact: bool, fp32_precision: str = "ieee"):
    """Checks each pair of results (outputs and gradients). `same_dtype_reference`: the reference run in
    the inputs' dtype; `exact_reference`: run in fp64 on the same inputs (read for fp16/bf16 only).
    Returns (passed, largest absolute error against exact_reference, why it failed or '')."""
    worst = 0.0
    for index, (a, e, x) in enumerate(zip(actual, same_dtype_reference, exact_reference)):
        if a.shape != e.shape or a.dtype != e.dtype:
            return False, float("inf"), f"result {index}: {a.dtype} {tuple(a.shape)}, expected {e.dtype} {tuple(e.shape)}"
        worst = max(worst, max_abs_error(a, x))
        if exact:
            if not torch.equal(a, e):
                return False, worst, f"result {index} is not bit-exact (max error {max_abs_error(a, e):.3g})"
        elif a.dtype in HALF_ERROR_FLOOR:
            error, reference_error = max_abs_error(a, x), max_abs_error(e, x)
            if not error <= 2 * reference_error + HALF_ERROR_FLOOR[a.dtype]:
                return False, worst, f"result {index}: error {error:.3g} vs the {a.dtype} reference's {reference_error:.3g}"
        else:
            tol = tolerance(a.dtype, fp32_precision)
            close = torch.isclose(a, e, **tol, equal_nan=False)
            if not bool(close.all()):
                return False, worst, f"result {index}: max error {max_abs_error(a, e):.3g} beyond atol={tol['atol']}, rtol={tol['rtol']}"
    return True, worst, ""

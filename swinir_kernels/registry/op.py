"""What an op description declares (:class:`Op`), and what a backend declares it can run (:class:`Support`).

One :class:`Op` per public op, built in that op's description module (``registry/<op>.py``). The
chooser (:mod:`swinir_kernels._dispatch`), the first-use verification, ``selftest`` and the tests read
everything op-specific from it; none of them names an op.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from .. import _backend

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
KERNEL_BACKENDS = ("cuda", "triton", "cpu")  # the backends with kernels; "reference" runs everything


@dataclass(frozen=True)
class Support:
    """What one backend's kernels of an op take. None: no limit of that kind."""

    devices: tuple[str, ...]  # tensor device types ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] | None = None
    max_tokens: int | None = None  # attention: tokens per window
    max_head_dim: int | None = None  # attention: channels per head

    def refusal(self, backend: str, dtype: torch.dtype, tokens: int | None, head_dim: int | None) -> str | None:
        """Why these kernels cannot take a call of this dtype and these sizes, or None."""
        if self.dtypes is not None and dtype not in self.dtypes:
            names = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
            return f"the {backend} kernel takes {names}, got {str(dtype).removeprefix('torch.')}"
        if tokens is not None and self.max_tokens is not None and tokens > self.max_tokens:
            return f"the {backend} kernel takes at most {self.max_tokens} tokens per window, got {tokens}"
        if head_dim is not None and self.max_head_dim is not None and head_dim > self.max_head_dim:
            return f"the {backend} kernel takes head_dim at most {self.max_head_dim}, got {head_dim}"
        return None


@dataclass(frozen=True)
class Op:
    """One op, described once. Every callable takes the reference's positional arguments (`args`) of a
    call, which the public function builds with `prepare` after checking them."""

    name: str
    # The public function's checks: its arguments -> the reference's positional arguments; raises
    # TypeError/ValueError naming the argument, the expected and the actual value.
    prepare: Callable[..., tuple]
    reference: Callable  # swinir_kernels.reference's function: the specification
    # Indices of the arguments that get gradients (constants such as a mask excluded).
    differentiable: Callable[[tuple], tuple[int, ...]]
    # Whether the kernels must be bit-exact for this call (the op only moves bits), else dtype tolerances.
    exact: Callable[[tuple], bool]
    # The compiled kernel the call runs, as ((name, value), ...); static_only leaves out what depends on
    # (possibly symbolic) spatial sizes. See registry/specialization.py.
    key: Callable[..., tuple]
    # Arguments of the same specialization on a few windows or a small image: (args, seed) -> args.
    small_input: Callable[[tuple, int], tuple]
    # selftest's call: (LR image size, dtype, device) -> args of the op as SwinIR-M calls it.
    example: Callable[[int, torch.dtype, str], tuple]
    # Backend -> what its kernels declare they take; a backend absent here has no kernel of this op.
    backends: dict
    # {"tokens", "head_dim"} of the call where the op has such limits, else {}.
    sizes: Callable[[tuple], dict] = lambda args: {}
    # The fp32 dot precision the kernels use for this call ("ieee" or "tf32"): the tolerance follows it.
    fp32_precision: Callable[[tuple], str] = lambda args: "ieee"
    # The Triton interpreter computes bfloat16 arithmetic wrongly (silently); ops that only move bits
    # (integer views of the elements) are exact there for every dtype.
    moves_bits_only: bool = False

    def implementation(self, backend: str) -> Callable:
        """`backend`'s function of this op, taking the reference's positional arguments."""
        if backend == "reference":
            return self.reference
        if backend == "triton":
            return getattr(torch.ops.swinir_kernels, f"{self.name}_triton")
        return getattr(torch.ops.swinir_kernels, self.name)

    def cannot_run(
        self, backend: str, tensor: torch.Tensor, *, tokens: int | None = None, head_dim: int | None = None
    ) -> str | None:
        """None if `backend` can run this op on `tensor` (the call's first tensor) with these sizes
        (None: not known, not checked), else why not."""
        if backend == "reference":
            return None
        support = self.backends.get(backend)
        if support is None:
            return f"no {backend} kernel for {self.name}"
        # The kernels' declared limits first: they hold on every device, so the reason is the same one a
        # GPU would give.
        device_type = tensor.device.type
        why_not = support.refusal(backend, tensor.dtype, tokens, head_dim)
        if why_not is None:
            why_not = _backend.unavailable(backend, self.name, device_type)
        if why_not is not None:
            return why_not
        if device_type not in support.devices:
            return f"the {backend} backend runs {' or '.join(support.devices)} tensors, got a {device_type} tensor"
        if backend == "triton" and device_type == "cpu" and tensor.dtype == torch.bfloat16 and not self.moves_bits_only:
            return "the Triton interpreter computes bfloat16 wrongly (silently), so it is refused"
        return None

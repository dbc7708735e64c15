"""Triton backend: one module per op, each defining its kernels and a ``swinir_kernels::<op>_triton``
custom op (fake and autograd shared with the C++ ops through swinir_kernels/_registrations.py).

``torch.library.custom_op`` rather than ``triton_op``: under TRITON_INTERPRET=1 on CPU tensors (CI),
triton_op's fake path launches the kernel on meta tensors and breaks torch.compile and opcheck.

UNAVAILABLE is None when Triton imports, else the reason it cannot be used; OPS names the public ops
that have a Triton kernel, each exposed here as a function with the reference's positional signature;
BIT_COPY_OPS those of them that only move bits.
"""

try:
    import triton  # noqa: F401
except ImportError as error:
    UNAVAILABLE: str | None = f"triton is not installed ({error}); `pip install triton`"
else:
    UNAVAILABLE = None

OPS: frozenset = frozenset()
# Ops whose Triton kernels only move bits (integer views of the elements): exact for every dtype,
# bfloat16 included, even under the interpreter, which computes bfloat16 arithmetic wrongly.
BIT_COPY_OPS = frozenset({"window_partition", "window_reverse"})

if UNAVAILABLE is None:
    from .pixel_shuffle import pixel_shuffle  # noqa: E402
    from .window_attention import shifted_window_attention, window_attention  # noqa: E402
    from .window_partition import window_partition, window_reverse  # noqa: E402

    OPS = frozenset({"window_partition", "window_reverse", "pixel_shuffle", "window_attention", "shifted_window_attention"})

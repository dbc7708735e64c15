"""Triton backend: one module per op, each defining its kernels and a ``swinir_kernels::<op>_triton``
custom op with the reference's positional signature (fakes and autograd from the op's description in
swinir_kernels/registry/, shared with the C++ ops). What the kernels take is declared in the registry
from :mod:`swinir_kernels.triton.limits`, which imports no Triton.

``torch.library.custom_op`` rather than ``triton_op``: under TRITON_INTERPRET=1 on CPU tensors (CI),
triton_op's fake path launches the kernel on meta tensors and breaks torch.compile and opcheck.

UNAVAILABLE is None when Triton imports, else the reason it cannot be used. swinir_kernels imports
the kernel modules (:func:`register_ops`) once the registry they use is loaded.
"""

try:
    import triton  # noqa: F401
except ImportError as error:
    UNAVAILABLE: str | None = f"triton is not installed ({error}); `pip install triton`"
else:
    UNAVAILABLE = None



def register_ops() -> None:
    """Defines the ``swinir_kernels::<op>_triton`` operators (importing each kernel module)."""
    from . import pixel_shuffle, window_attention, window_partition  # noqa: F401

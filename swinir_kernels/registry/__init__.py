"""The op registry: every public op, described once (``registry/<op>.py``), by name.

An op description (:class:`~swinir_kernels.registry.op.Op`) holds the public function's checks, which
arguments get gradients, exact or within tolerances, the specialization key and small check input,
selftest's example call, and per backend what its kernels declare they take
(:class:`~swinir_kernels.registry.op.Support`). The chooser and the first-use verification
(:mod:`swinir_kernels._dispatch`), ``selftest``, the tolerances and the tests read it from here.

Adding an op: its kernels (``csrc/`` and/or ``swinir_kernels/triton/<op>.py``), its description here
(one module, and one line below), its tests (``tests/kernels/test_<op>.py``).
"""

from . import pixel_shuffle, window_attention, window_partition
from .op import KERNEL_BACKENDS, Op, Support

OPS: dict[str, Op] = {
    op.name: op
    for op in (
        window_partition.WINDOW_PARTITION,
        window_partition.WINDOW_REVERSE,
        pixel_shuffle.PIXEL_SHUFFLE,
        window_attention.WINDOW_ATTENTION,
        window_attention.SHIFTED_WINDOW_ATTENTION,
    )
}


def get(name: str) -> Op:
    """The description of the op named `name` (a public function's name)."""
    if name not in OPS:
        raise ValueError(f"op: expected one of {', '.join(OPS)}, got {name!r}")
    return OPS[name]


def register_c_extension_ops() -> None:
    """Fakes and autograd of the C++ operators declared in csrc/swinir_ops.cpp (once _C is loaded)."""
    for description in (window_partition, pixel_shuffle, window_attention):
        description.register_c_extension_ops()


__all__ = ["KERNEL_BACKENDS", "OPS", "Op", "Support", "get", "register_c_extension_ops"]

"""window_partition and window_reverse, described once: the public functions, their checks, fakes and
autograd (each op is the other's backward), specialization and what each backend takes.

Kernels: ``csrc/cpu/window_partition.cpp``, ``csrc/cuda/window_partition*.cu``,
``swinir_kernels/triton/window_partition.py``. Tests: ``tests/kernels/test_window_partition.py``.
Benchmark: ``bench/bench_window_partition.py``.
"""

import torch

from .. import _dispatch, reference
from . import checks as check
from . import specialization as spec
from .op import Op, Support


def _prepare_partition(x, window_size, shift=0) -> tuple:
    check.tensor("x", x, 4, "(B, H, W, C)")
    (wh, ww), shift = check.axis_pair("window_size", window_size, minimum=1), check.axis_pair("shift", shift)
    check.multiple_of("x.shape[1] (H)", x.shape[1], wh, "window_size[0]")
    check.multiple_of("x.shape[2] (W)", x.shape[2], ww, "window_size[1]")
    return (x, (wh, ww), shift)


def _prepare_reverse(windows, window_size, H, W, shift=0) -> tuple:
    check.tensor("windows", windows, 3, "(B*nW, wh*ww, C)")
    (wh, ww), shift = check.axis_pair("window_size", window_size, minimum=1), check.axis_pair("shift", shift)
    check.integer("H", H, minimum=1)
    check.integer("W", W, minimum=1)
    check.multiple_of("H", H, wh, "window_size[0]")
    check.multiple_of("W", W, ww, "window_size[1]")
    if windows.shape[1] != wh * ww:
        raise ValueError(f"windows.shape[1]: expected wh*ww={wh * ww}, got {windows.shape[1]}")
    per_image = (H // wh) * (W // ww)
    check.multiple_of("windows.shape[0]", windows.shape[0], per_image, "(H/wh)*(W/ww)")
    return (windows, (wh, ww), H, W, shift)


def _key(op: str, args: tuple, *, static_only: bool = False) -> tuple:
    first, (wh, ww), (sh, sw) = args[0], reference.pair(args[1]), reference.pair(args[-1])
    return (("op", op), ("dtype", spec.dtype_name(first)), ("channels", int(first.shape[-1])),
            ("window_size", spec.per_axis((wh, ww))), ("shift", spec.per_axis((sh % wh, sw % ww))),
            ("layout", spec.memory_format(first)))  # fmt: skip


def _small_partition(args: tuple, seed: int = 0) -> tuple:
    x, window_size, shift = args
    (wh, ww) = reference.pair(window_size)
    B, H, W, C = x.shape
    b, rows, cols = spec.grid_counts(B, H // wh, W // ww, (wh, ww))
    return (spec.like(x, (b, rows * wh, cols * ww, C), torch.Generator().manual_seed(seed)), (wh, ww), shift)


def _small_reverse(args: tuple, seed: int = 0) -> tuple:
    windows, window_size, H, W, shift = args
    (wh, ww) = reference.pair(window_size)
    per_image = (H // wh) * (W // ww)
    b, rows, cols = spec.grid_counts(windows.shape[0] // per_image, H // wh, W // ww, (wh, ww))
    small = spec.like(windows, (b * rows * cols, wh * ww, windows.shape[2]), torch.Generator().manual_seed(seed))
    return (small, (wh, ww), rows * wh, cols * ww, shift)


# SwinIR-M's shapes (180 channels, window 8, shift 4) for selftest.
def _example_partition(size: int, dtype: torch.dtype, device: str) -> tuple:
    return (spec.example_tensor((1, size, size, 180), dtype, device), (8, 8), (4, 4))


def _example_reverse(size: int, dtype: torch.dtype, device: str) -> tuple:
    return (spec.example_tensor(((size // 8) ** 2, 64, 180), dtype, device), (8, 8), size, size, (4, 4))


# Every kernel moves any dtype's bits; the Triton ones run CPU tensors under TRITON_INTERPRET=1.
_BACKENDS = {"cpu": Support(devices=("cpu",)), "cuda": Support(devices=("cuda",)), "triton": Support(devices=("cuda", "cpu"))}

WINDOW_PARTITION = Op(
    name="window_partition", prepare=_prepare_partition, reference=reference.window_partition,
    differentiable=lambda args: (0,), exact=lambda args: True,
    key=lambda args, static_only=False: _key("window_partition", args), small_input=_small_partition,
    example=_example_partition, backends=_BACKENDS, moves_bits_only=True,
)  # fmt: skip
WINDOW_REVERSE = Op(
    name="window_reverse", prepare=_prepare_reverse, reference=reference.window_reverse,
    differentiable=lambda args: (0,), exact=lambda args: True,
    key=lambda args, static_only=False: _key("window_reverse", args), small_input=_small_reverse,
    example=_example_reverse, backends=_BACKENDS, moves_bits_only=True,
)  # fmt: skip


def window_partition(x: torch.Tensor, window_size: int | tuple[int, int], shift: int | tuple[int, int] = 0) -> torch.Tensor:
    """Cyclic shift and window partition in one pass.

    Args:
        x (Tensor[B, H, W, C]): H a multiple of wh, W of ww; any dtype and strides.
        window_size (int or (wh, ww)): an int ws means ws x ws windows.
        shift (int or (sh, sw)): equals ``torch.roll(x, (-sh, -sw), (1, 2))`` before partitioning.

    Returns:
        Tensor[B*nW, wh*ww, C]: windows batch-major, then row-major over the (H/wh, W/ww) grid;
        tokens row-major inside a window. Differentiable (the backward is :func:`window_reverse`).
    """
    return _dispatch.run(WINDOW_PARTITION, _prepare_partition(x, window_size, shift))


def window_reverse(
    windows: torch.Tensor, window_size: int | tuple[int, int], H: int, W: int, shift: int | tuple[int, int] = 0
) -> torch.Tensor:
    """The exact inverse of :func:`window_partition`: window reverse, then roll by (+sh, +sw).

    Args:
        windows (Tensor[B*nW, wh*ww, C]): nW = (H/wh)*(W/ww).
        window_size (int or (wh, ww)), H (int), W (int), shift (int or (sh, sw)).

    Returns:
        Tensor[B, H, W, C].
    """
    return _dispatch.run(WINDOW_REVERSE, _prepare_reverse(windows, window_size, H, W, shift))


def register_fake_and_autograd(partition: str, reverse: str) -> None:
    """Fakes and autograd of a backend's pair of operators ``partition(x, window_size, shift)`` and
    ``reverse(windows, window_size, H, W, shift)`` (window_size and shift ``int[2]``): each is the
    other's backward, so a backend's forward gets the same backend's backward."""
    partition_op = getattr(torch.ops.swinir_kernels, partition.split("::")[1])
    reverse_op = getattr(torch.ops.swinir_kernels, reverse.split("::")[1])

    @torch.library.register_fake(partition)
    def _(x, window_size, shift):
        B, H, W, C = x.shape
        wh, ww = window_size
        return x.new_empty((B * (H // wh) * (W // ww), wh * ww, C))

    @torch.library.register_fake(reverse)
    def _(windows, window_size, H, W, shift):
        wh, ww = window_size
        return windows.new_empty((windows.shape[0] // ((H // wh) * (W // ww)), H, W, windows.shape[2]))

    def partition_setup(ctx, inputs, output):
        x, ctx.window_size, ctx.shift = inputs
        ctx.H, ctx.W = x.shape[1], x.shape[2]

    def partition_backward(ctx, grad):
        return reverse_op(grad, ctx.window_size, ctx.H, ctx.W, ctx.shift), None, None

    def reverse_setup(ctx, inputs, output):
        _, ctx.window_size, _, _, ctx.shift = inputs

    def reverse_backward(ctx, grad):
        return partition_op(grad, ctx.window_size, ctx.shift), None, None, None, None

    torch.library.register_autograd(partition, partition_backward, setup_context=partition_setup)
    torch.library.register_autograd(reverse, reverse_backward, setup_context=reverse_setup)


def register_c_extension_ops() -> None:
    register_fake_and_autograd("swinir_kernels::window_partition", "swinir_kernels::window_reverse")

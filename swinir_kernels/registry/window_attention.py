"""window_attention (window layout) and shifted_window_attention (image layout), described once: the
public functions, their checks, fakes and autograd, specialization, fp32 dot precision and what each
backend takes.

Kernels: ``csrc/cpu/window_attention.cpp``, ``csrc/cuda/window_attention*.cu``,
``swinir_kernels/triton/window_attention.py``; their limits: ``csrc/limits.h`` (exported by ``_C``) and
``swinir_kernels/triton/limits.py``. Tests: ``tests/kernels/test_window_attention.py``.
Benchmark: ``bench/bench_window_attention.py``.
"""

import os

import torch
import torch.nn.functional as F

from .. import _dispatch, reference
from ..triton import limits as triton_limits
from . import checks as check
from . import specialization as spec
from .op import FLOAT_DTYPES, Op, Support

FP32_PRECISION_ENV = "SWINIR_KERNELS_FP32_PRECISION"


def fp32_precision(tensor: torch.Tensor) -> str:
    """The dot precision of fp32 attention kernels: ``SWINIR_KERNELS_FP32_PRECISION`` (``ieee`` or
    ``tf32``) if set, else ``tf32`` on a GPU when ``torch.backends.cuda.matmul.allow_tf32`` is on, else
    ``ieee``. Read at each call: part of the kernels' specialization and of their tolerance."""
    choice = os.environ.get(FP32_PRECISION_ENV, "")
    if choice:
        if choice not in ("ieee", "tf32"):
            raise ValueError(f"{FP32_PRECISION_ENV}: expected 'ieee' or 'tf32', got {choice!r}")
        return choice
    return "tf32" if tensor.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _c_limit(name: str) -> int | None:
    """A limit of the C++/CUDA kernels as _C exports it (csrc/limits.h); None without _C, whose
    backends are then unavailable anyway."""
    try:
        from .. import _C
    except ImportError:
        return None
    return getattr(_C, name)


def _check_common(qkv, rel_bias, num_heads, scale, tokens) -> float:
    check.floating("qkv", qkv)
    check.attention_qkv(qkv, num_heads)
    check.attention_bias(rel_bias, qkv, num_heads, tokens)
    check.scale(scale)
    head_dim = qkv.shape[-1] // 3 // num_heads
    return head_dim**-0.5 if scale is None else float(scale)


def _prepare_window(qkv, rel_bias, mask=None, *, num_heads, scale=None) -> tuple:
    check.tensor("qkv", qkv, 3, "(B*nW, N, 3C)")
    scale = _check_common(qkv, rel_bias, num_heads, scale, qkv.shape[1])
    if mask is not None:
        check.tensor("mask", mask, 3, "(nW, N, N)")
        check.floating("mask", mask)
        check.same_device("mask", mask, "qkv", qkv)
        if mask.shape[1:] != (qkv.shape[1], qkv.shape[1]):
            raise ValueError(f"mask: expected shape (nW, {qkv.shape[1]}, {qkv.shape[1]}), got {tuple(mask.shape)}")
        check.multiple_of("qkv.shape[0] (B*nW)", qkv.shape[0], mask.shape[0], "mask.shape[0] (nW)")
        if mask.requires_grad and torch.is_grad_enabled():
            raise ValueError("mask: expected a constant mask (requires_grad=False); pass mask.detach()")
    return (qkv, rel_bias, mask, num_heads, scale)


def _window_and_shift(window_size, shift) -> tuple[tuple[int, int], tuple[int, int]]:
    (wh, ww), (sh, sw) = check.axis_pair("window_size", window_size, minimum=1), check.axis_pair("shift", shift, minimum=0)
    for axis, (extent, offset) in enumerate(((wh, sh), (ww, sw))):
        if offset >= extent:
            raise ValueError(f"shift[{axis}]: expected 0 <= shift[{axis}] < window_size[{axis}]={extent}, got {offset}")
    return (wh, ww), (sh, sw)


def _prepare_image(qkv, rel_bias, *, num_heads, window_size, shift, scale=None) -> tuple:
    check.tensor("qkv", qkv, 4, "(B, H, W, 3C)")
    (wh, ww), shift = _window_and_shift(window_size, shift)
    check.multiple_of("qkv.shape[1] (H)", qkv.shape[1], wh, "window_size[0]")
    check.multiple_of("qkv.shape[2] (W)", qkv.shape[2], ww, "window_size[1]")
    scale = _check_common(qkv, rel_bias, num_heads, scale, wh * ww)
    return (qkv, rel_bias, num_heads, (wh, ww), shift, scale)


def _padding(qkv: torch.Tensor, padded_size, window_size) -> tuple[int, int]:
    """Rows and columns of zeros that bring qkv's (H, W) to padded_size, checked."""
    check.tensor("qkv", qkv, 4, "(B, H, W, 3C)")
    (Hp, Wp), (wh, ww) = check.axis_pair("padded_size", padded_size, minimum=1), check.axis_pair("window_size", window_size, minimum=1)
    H, W = qkv.shape[1], qkv.shape[2]
    if Hp < H or Wp < W:
        raise ValueError(f"padded_size: expected at least qkv's (H, W)=({H}, {W}), got ({Hp}, {Wp})")
    check.multiple_of("padded_size[0]", Hp, wh, "window_size[0]")
    check.multiple_of("padded_size[1]", Wp, ww, "window_size[1]")
    return Hp - H, Wp - W


def _sizes_window(args: tuple) -> dict:
    qkv, num_heads = args[0], args[3]
    return {"tokens": int(qkv.shape[1]), "head_dim": int(qkv.shape[-1]) // 3 // num_heads}


def _sizes_image(args: tuple) -> dict:
    qkv, num_heads, (wh, ww) = args[0], args[2], reference.pair(args[3])
    return {"tokens": wh * ww, "head_dim": int(qkv.shape[-1]) // 3 // num_heads}


def _key(op: str, args: tuple, sizes: dict, window_size, mask_kind) -> tuple:
    qkv, rel_bias = args[0], args[1]
    num_heads = args[3] if op == "window_attention" else args[2]
    fields = [("op", op), ("dtype", spec.dtype_name(qkv)), ("bias_dtype", spec.dtype_name(rel_bias)),
              ("num_heads", num_heads), ("head_dim", sizes["head_dim"]), ("tokens", sizes["tokens"]),
              ("window_size", window_size), ("mask", mask_kind)]  # fmt: skip
    if qkv.dtype == torch.float32:
        fields.append(("fp32_precision", fp32_precision(qkv)))
    return tuple(fields)


def _key_window(args: tuple, static_only: bool = False) -> tuple:
    return _key("window_attention", args, _sizes_window(args), None, spec.dtype_name(args[2]))


def _key_image(args: tuple, static_only: bool = False) -> tuple:
    window, shift = reference.pair(args[3]), reference.pair(args[4])
    mask_kind = "shift" if any(shift) else None
    return _key("shifted_window_attention", args, _sizes_image(args), spec.per_axis(window), mask_kind)


def _small_window(args: tuple, seed: int = 0) -> tuple:
    """A few windows, a multiple of the mask's window count, whose counts keep Triton's integer classes."""
    generator = torch.Generator().manual_seed(seed)
    qkv, rel_bias, mask, num_heads, scale = args
    mask_windows = 1 if mask is None else mask.shape[0]
    small_mask_windows = spec.small_size(mask_windows)
    batch, _, _ = spec.grid_counts(qkv.shape[0] // mask_windows, 1, small_mask_windows, (1, 1))
    windows = batch * small_mask_windows
    small_mask = None if mask is None else spec.like(mask, (small_mask_windows, *mask.shape[1:]), generator, scale=3.0)
    small = spec.like(qkv, (windows, *qkv.shape[1:]), generator)
    return (small, spec.like(rel_bias, tuple(rel_bias.shape), generator), small_mask, num_heads, scale)


def _small_image(args: tuple, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    qkv, rel_bias, num_heads, window_size, shift, scale = args
    (wh, ww) = reference.pair(window_size)
    B, H, W, C3 = qkv.shape
    b, rows, cols = spec.grid_counts(B, H // wh, W // ww, (wh, ww))
    small = spec.like(qkv, (b, rows * wh, cols * ww, C3), generator)
    return (small, spec.like(rel_bias, tuple(rel_bias.shape), generator), num_heads, (wh, ww), shift, scale)


# selftest's calls: SwinIR-M (180 channels, 6 heads, window 8, shift 4).
_EMBED, _HEADS, _WINDOW, _SHIFT = 180, 6, 8, 4


def _example_window(size: int, dtype: torch.dtype, device: str) -> tuple:
    tokens = _WINDOW * _WINDOW
    qkv = spec.example_tensor(((size // _WINDOW) ** 2, tokens, 3 * _EMBED), dtype, device)
    bias = spec.example_tensor((_HEADS, tokens, tokens), dtype, device, seed=1)
    mask = reference.shift_attention_mask(size, size, _WINDOW, _SHIFT, device=device, dtype=dtype)
    return (qkv, bias, mask, _HEADS, (_EMBED // _HEADS) ** -0.5)


def _example_image(size: int, dtype: torch.dtype, device: str) -> tuple:
    tokens = _WINDOW * _WINDOW
    qkv = spec.example_tensor((1, size, size, 3 * _EMBED), dtype, device)
    bias = spec.example_tensor((_HEADS, tokens, tokens), dtype, device, seed=1)
    return (qkv, bias, _HEADS, (_WINDOW, _WINDOW), (_SHIFT, _SHIFT), (_EMBED // _HEADS) ** -0.5)


def _backends() -> dict:
    """What each backend's attention kernels take: the C++/CUDA limits from _C, the Triton ones from
    their module; the CPU kernel takes any number of tokens."""
    return {
        "cpu": Support(devices=("cpu",), dtypes=FLOAT_DTYPES, max_head_dim=_c_limit("CPU_ATTENTION_MAX_HEAD_DIM")),
        "cuda": Support(devices=("cuda",), dtypes=FLOAT_DTYPES, max_tokens=_c_limit("CUDA_ATTENTION_MAX_TOKENS"),
                        max_head_dim=_c_limit("CUDA_ATTENTION_MAX_HEAD_DIM")),
        "triton": Support(devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES, max_tokens=triton_limits.MAX_TOKENS,
                          max_head_dim=triton_limits.MAX_HEAD_DIM),
    }  # fmt: skip


def _attention_fp32_precision(args: tuple) -> str:
    return fp32_precision(args[0])


WINDOW_ATTENTION = Op(
    name="window_attention", prepare=_prepare_window, reference=reference.window_attention,
    differentiable=lambda args: (0, 1), exact=lambda args: False, key=_key_window, small_input=_small_window,
    example=_example_window, backends=_backends(), sizes=_sizes_window, fp32_precision=_attention_fp32_precision,
)  # fmt: skip
SHIFTED_WINDOW_ATTENTION = Op(
    name="shifted_window_attention", prepare=_prepare_image, reference=reference.shifted_window_attention,
    differentiable=lambda args: (0, 1), exact=lambda args: False, key=_key_image, small_input=_small_image,
    example=_example_image, backends=_backends(), sizes=_sizes_image, fp32_precision=_attention_fp32_precision,
)  # fmt: skip


def window_attention(
    qkv: torch.Tensor, rel_bias: torch.Tensor, mask: torch.Tensor | None = None, *, num_heads: int, scale: float | None = None
) -> torch.Tensor:
    """Window attention with a relative position bias and an optional additive mask (window layout).

    ``out = softmax(q*scale @ k^T + rel_bias[h] + mask[w % nW]) @ v`` per window w and head h, with
    softmax and accumulation in fp32.

    Args:
        qkv (Tensor[B*nW, N, 3C]): the output of the official ``WindowAttention.qkv`` Linear: channels
            [q | k | v], each split head-major into num_heads heads of head_dim = C/num_heads.
        rel_bias (Tensor[nH, N, N]): the gathered relative position bias (any float dtype; fp32 with
            fp16/bf16 qkv under autocast is fine).
        mask (Tensor[nW, N, N] or None): additive mask (official: 0 / -100), constant (no gradient).
        num_heads (int): nH.
        scale (float): defaults to head_dim**-0.5.

    Returns:
        Tensor[B*nW, N, C] in qkv's dtype: heads concatenated head-major, before ``proj``.
        Gradients flow to qkv and rel_bias. Sizes beyond a kernel's declared limits (tokens, head_dim)
        run on the next backend that takes them, the reference at worst.
    """
    return _dispatch.run(WINDOW_ATTENTION, _prepare_window(qkv, rel_bias, mask, num_heads=num_heads, scale=scale))


def shifted_window_attention(
    qkv: torch.Tensor,
    rel_bias: torch.Tensor,
    *,
    num_heads: int,
    window_size: int | tuple[int, int],
    shift: int | tuple[int, int],
    scale: float | None = None,
    padded_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Shifted-window attention in image layout, as one Swin block's attention (SwinIR, HAT, DRCT,
    ATD: square windows; DAT, RGT: rectangular windows with per-axis shifts).

    Equals ``window_reverse(window_attention(window_partition(qkv, window_size, shift), rel_bias,
    shift_mask), window_size, H, W, shift)``: with shift (sh, sw) != 0, tokens of one window that come
    from different regions of the rolled image get -100 added to their score, the regions cut at H-wh,
    H-sh along H and W-ww, W-sw along W (DAT's ``calculate_mask``, SwinIR's when square; an axis whose
    shift is 0 is not cut). Kernels do the shift, the partition and the mask by index arithmetic: no
    mask tensor and no partitioned copy is made.

    Args:
        qkv (Tensor[B, H, W, 3C]): qkv Linear output in image order; H a multiple of wh, W of ww
            (unless padded_size is given).
        rel_bias (Tensor[nH, wh*ww, wh*ww]).
        num_heads (int).
        window_size (int or (wh, ww)): an int ws means ws x ws windows.
        shift (int or (sh, sw)): 0 <= sh < wh, 0 <= sw < ww.
        scale (float): defaults to head_dim**-0.5.
        padded_size ((Hp, Wp) or None): DAT's handling of sizes that are not window multiples: qkv is
            zero-padded at the bottom and right to (Hp, Wp) (multiples of wh and ww), the padded tokens
            take part in every window's softmax as zero q, k and v (the shift and its mask are those of
            the padded image), and the output is cropped back to (H, W). DAT pads to a multiple of the
            larger of its two window extents, so both of a block's orientations see the same image.
            (SwinIR and HAT instead reflect-pad the image before the network: nothing to pass here.)

    Returns:
        Tensor[B, H, W, C] in qkv's dtype (a view of the padded result when padded). Gradients flow
        to qkv and rel_bias.
    """
    if padded_size is not None:
        pad_rows, pad_cols = _padding(qkv, padded_size, window_size)
        if pad_rows or pad_cols:
            H, W = qkv.shape[1], qkv.shape[2]
            padded = F.pad(qkv, (0, 0, 0, pad_cols, 0, pad_rows))
            out = shifted_window_attention(
                padded, rel_bias, num_heads=num_heads, window_size=window_size, shift=shift, scale=scale
            )
            return out[:, :H, :W]
    args = _prepare_image(qkv, rel_bias, num_heads=num_heads, window_size=window_size, shift=shift, scale=scale)
    return _dispatch.run(SHIFTED_WINDOW_ATTENTION, args)


def register_fake_and_autograd(forward: str, backward: str, image_layout: bool) -> None:
    """Fakes and autograd of a backend's attention operator and its backward operator
    ``(grad_out, <the forward's inputs>) -> (grad_qkv, grad_rel_bias)``: window layout
    ``(qkv, rel_bias, mask, num_heads, scale)`` or image layout ``(qkv, rel_bias, num_heads,
    window_size, shift, scale)`` (window_size (wh, ww) and shift (sh, sw) ``int[2]``). The backward
    recomputes from the saved qkv and rel_bias."""
    backward_op = getattr(torch.ops.swinir_kernels, backward.split("::")[1])

    def output_like(qkv):
        return qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))

    def gradients_like(qkv, rel_bias):
        return torch.empty_like(qkv, memory_format=torch.contiguous_format), torch.empty_like(rel_bias)

    if image_layout:

        @torch.library.register_fake(forward)
        def _(qkv, rel_bias, num_heads, window_size, shift, scale):
            return output_like(qkv)

        @torch.library.register_fake(backward)
        def _(grad_out, qkv, rel_bias, num_heads, window_size, shift, scale):
            return gradients_like(qkv, rel_bias)

    else:

        @torch.library.register_fake(forward)
        def _(qkv, rel_bias, mask, num_heads, scale):
            return output_like(qkv)

        @torch.library.register_fake(backward)
        def _(grad_out, qkv, rel_bias, mask, num_heads, scale):
            return gradients_like(qkv, rel_bias)

    def setup(ctx, inputs, output):
        qkv, rel_bias, *rest = inputs
        ctx.rest = rest  # mask (a constant) and the non-tensor arguments
        ctx.save_for_backward(qkv, rel_bias)

    def backward_fn(ctx, grad):
        qkv, rel_bias = ctx.saved_tensors
        grad_qkv, grad_bias = backward_op(grad.contiguous(), qkv, rel_bias, *ctx.rest)
        return (grad_qkv, grad_bias) + (None,) * len(ctx.rest)

    torch.library.register_autograd(forward, backward_fn, setup_context=setup)


def register_c_extension_ops() -> None:
    register_fake_and_autograd("swinir_kernels::window_attention", "swinir_kernels::_window_attention_backward", False)
    register_fake_and_autograd(
        "swinir_kernels::shifted_window_attention", "swinir_kernels::_shifted_window_attention_backward", True
    )

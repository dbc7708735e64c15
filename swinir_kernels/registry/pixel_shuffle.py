"""pixel_shuffle with its fused epilogue, described once: the public function, its checks, fakes and
autograd, specialization and what each backend takes.

Kernels: ``csrc/cpu/pixel_shuffle.cpp``, ``csrc/cuda/pixel_shuffle*.cu``,
``swinir_kernels/triton/pixel_shuffle.py``. Tests: ``tests/kernels/test_pixel_shuffle.py``.
Benchmark: ``bench/bench_pixel_shuffle.py``.
"""

import math

import torch

from .. import _dispatch, reference
from ..triton.limits import tile_width
from . import checks as check
from . import specialization as spec
from .op import FLOAT_DTYPES, Op, Support


def _check_epilogue(name, t, x, channels):
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of {channels} per-channel values or None, got {type(t).__name__}")
    check.floating(name, t)
    check.same_device(name, t, "x", x)
    if t.numel() not in (1, channels):
        raise ValueError(f"{name}: expected {channels} values (one per output channel) or 1, got shape {tuple(t.shape)}")


def _prepare(x, upscale_factor, *, scale=None, bias=None, out_size=None) -> tuple:
    check.tensor("x", x, 4, "(B, C*r*r, H, W)")
    check.floating("x", x)
    check.integer("upscale_factor", upscale_factor, minimum=1)
    check.multiple_of("x.shape[1]", x.shape[1], upscale_factor * upscale_factor, "upscale_factor**2")
    channels = x.shape[1] // (upscale_factor * upscale_factor)
    _check_epilogue("scale", scale, x, channels)
    _check_epilogue("bias", bias, x, channels)
    full_h, full_w = x.shape[2] * upscale_factor, x.shape[3] * upscale_factor
    out_h, out_w = (full_h, full_w) if out_size is None else out_size
    check.integer("out_size[0]", out_h, minimum=0)
    check.integer("out_size[1]", out_w, minimum=0)
    if out_h > full_h or out_w > full_w:
        raise ValueError(f"out_size: expected at most (H*r, W*r)=({full_h}, {full_w}), got ({out_h}, {out_w})")
    return (x, upscale_factor, scale, bias, out_h, out_w)


def _key(args: tuple, static_only: bool = False) -> tuple:
    """The tile width is a Triton constexpr: the output channels' count for channels_last, else the
    output width (a spatial size, left out of static keys)."""
    x, r, scale, bias, out_h, out_w = args
    layout = spec.memory_format(x)
    fields = [("op", "pixel_shuffle"), ("dtype", spec.dtype_name(x)), ("factor", r), ("memory_format", layout),
              ("scale", spec.dtype_name(scale)), ("bias", spec.dtype_name(bias))]  # fmt: skip
    if layout == "channels_last":
        fields.append(("tile_width", tile_width(x.shape[1] // (r * r))))
    elif not static_only:
        fields.append(("tile_width", tile_width(out_w)))
    return tuple(fields)


def _small_input(args: tuple, seed: int = 0) -> tuple:
    """A small image of the same specialization: sizes of the same integer class, the same tile widths
    (the backward's NCHW tile is the input's width), the same crop or none."""
    generator = torch.Generator().manual_seed(seed)
    x, r, scale, bias, out_h, out_w = args
    B, CRR, H, W = x.shape
    small_h = spec.small_size(H)
    small_w = spec.small_size(W, spec.bucket_floor(W))
    cropped_h, cropped_w = out_h < H * r, out_w < W * r
    small_out_h = spec.small_size(out_h) if cropped_h else small_h * r
    small_out_w = spec.small_size(out_w, spec.bucket_floor(out_w)) if cropped_w else small_w * r
    small_h = spec.small_size(H, math.ceil(small_out_h / r)) if small_out_h > small_h * r else small_h
    if small_out_w > small_w * r:
        small_w = spec.small_size(W, max(spec.bucket_floor(W), math.ceil(small_out_w / r)))
    if tile_width(small_w) != tile_width(W) or tile_width(small_out_w) != tile_width(out_w):
        small_w, small_out_w = W, out_w  # no smaller width keeps the tile widths: keep the real ones
    small_x = spec.like(x, (spec.small_size(B), CRR, small_h, small_w), generator)

    def per_channel(t):
        return None if t is None else spec.like(t, tuple(t.shape), generator, scale=0.5) + 1.0

    return (small_x, r, per_channel(scale), per_channel(bias), small_out_h, small_out_w)


def _example(size: int, dtype: torch.dtype, device: str) -> tuple:
    """SwinIR-M's x4 tail: 3 colour channels from 48, the 1/img_range scale and mean bias, cropped."""
    scale = spec.example_tensor((3,), dtype, device, scale=0.1, seed=1) + 1
    bias = spec.example_tensor((3,), dtype, device, scale=0.1, seed=2)
    return (spec.example_tensor((1, 48, size, size), dtype, device), 4, scale, bias, 4 * size - 2, 4 * size)


PIXEL_SHUFFLE = Op(
    name="pixel_shuffle", prepare=_prepare, reference=reference.pixel_shuffle,
    differentiable=lambda args: tuple(i for i in (0, 2, 3) if args[i] is not None),
    # Without scale and bias it only moves bits; the affine is computed in fp32 for half types.
    exact=lambda args: args[2] is None and args[3] is None,
    key=_key, small_input=_small_input, example=_example,
    backends={
        "cpu": Support(devices=("cpu",), dtypes=FLOAT_DTYPES),
        "cuda": Support(devices=("cuda",), dtypes=FLOAT_DTYPES),
        "triton": Support(devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES),
    },
)  # fmt: skip


def pixel_shuffle(
    x: torch.Tensor,
    upscale_factor: int,
    *,
    scale: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``F.pixel_shuffle`` with an optional fused epilogue: per-channel affine and crop in the same pass.

    ``out[b, c, oh, ow] = x[b, c*r*r + (oh % r)*r + ow % r, oh // r, ow // r] * scale[c] + bias[c]``
    for oh < out_h, ow < out_w. SwinIR's tail ``(shuffle(x) / img_range + mean)[..., :h*r, :w*r]`` is
    ``pixel_shuffle(x, r, scale=1/img_range, bias=mean, out_size=(h*r, w*r))``.

    Args:
        x (Tensor[B, C*r*r, H, W]): NCHW or channels_last; the output has the same memory format.
        upscale_factor (int): r.
        scale, bias (Tensor[C] or Tensor[1], optional): the affine, computed in fp32 for half types.
        out_size ((int, int), optional): (out_h, out_w) <= (H*r, W*r); default no crop.

    Returns:
        Tensor[B, C, out_h, out_w]. Gradients flow to x, scale and bias.
    """
    return _dispatch.run(PIXEL_SHUFFLE, _prepare(x, upscale_factor, scale=scale, bias=bias, out_size=out_size))


def shuffle_memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last only when the tensor is channels_last-contiguous and not also NCHW-contiguous
    (the same rule as csrc/cpu/pixel_shuffle.cpp), so ambiguous shapes stay NCHW."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _opmath(t: torch.Tensor) -> torch.Tensor:
    """fp32 for half types (sums accumulate in fp32), fp64 stays fp64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _per_channel_grad(per_channel: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """A (C,) gradient reduced to the parameter's shape: (C,)-like, or one value broadcast to all channels."""
    if shape.numel() == 1:
        per_channel = per_channel.sum()
    return per_channel.reshape(shape).to(dtype)


def register_fake_and_autograd(forward: str, backward: str) -> None:
    """Fakes and autograd of a backend's ``forward(x, r, scale, bias, out_h, out_w)`` and its
    ``backward(grad_out, r, scale, H, W) -> grad_x``. Fakes keep the input's memory format, as the
    kernels do, so ``torch.compile(fullgraph=True)`` keeps the op in the graph."""
    backward_op = getattr(torch.ops.swinir_kernels, backward.split("::")[1])

    @torch.library.register_fake(forward)
    def _(x, upscale_factor, scale, bias, out_h, out_w):
        shape = (x.shape[0], x.shape[1] // (upscale_factor * upscale_factor), out_h, out_w)
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=shuffle_memory_format(x))

    @torch.library.register_fake(backward)
    def _(grad_out, upscale_factor, scale, H, W):
        shape = (grad_out.shape[0], grad_out.shape[1] * upscale_factor * upscale_factor, H, W)
        return torch.empty(shape, dtype=grad_out.dtype, device=grad_out.device, memory_format=shuffle_memory_format(grad_out))

    def setup(ctx, inputs, output):
        x, ctx.upscale_factor, scale, bias, _, _ = inputs
        ctx.H, ctx.W = x.shape[2], x.shape[3]
        ctx.bias_like = None if bias is None else (bias.shape, bias.dtype)
        # x is kept only when the scale needs a gradient (the sum of grad * the unscaled output).
        keep_x = scale is not None and scale.requires_grad
        ctx.save_for_backward(x if keep_x else None, scale)

    def backward_fn(ctx, grad):
        x, scale = ctx.saved_tensors
        r = ctx.upscale_factor
        grad_x = backward_op(grad, r, scale, ctx.H, ctx.W) if ctx.needs_input_grad[0] else None
        grad_scale = grad_bias = None
        if ctx.needs_input_grad[2]:
            unscaled = torch.nn.functional.pixel_shuffle(x, r)[:, :, : grad.shape[2], : grad.shape[3]]
            per_channel = (_opmath(grad) * _opmath(unscaled)).sum((0, 2, 3))
            grad_scale = _per_channel_grad(per_channel, scale.shape, scale.dtype)
        if ctx.needs_input_grad[3]:
            grad_bias = _per_channel_grad(_opmath(grad).sum((0, 2, 3)), *ctx.bias_like)
        return grad_x, None, grad_scale, grad_bias, None, None

    torch.library.register_autograd(forward, backward_fn, setup_context=setup)


def register_c_extension_ops() -> None:
    register_fake_and_autograd("swinir_kernels::pixel_shuffle", "swinir_kernels::_pixel_shuffle_backward")

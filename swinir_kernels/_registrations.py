"""Fake (meta) kernels and autograd for the operators, shared by the C++ ops (``swinir_kernels::<op>``)
and the Triton custom ops (``swinir_kernels::<op>_triton``), which take the same arguments.

Fakes allocate what the real kernels return (contiguous, or channels_last where pixel_shuffle keeps
its input's format), so ``torch.compile(fullgraph=True)`` keeps the ops in the graph. Backward passes
call the same backend's ops, so a C++ forward gets a C++ backward and a Triton one a Triton backward.
"""

import torch


def shuffle_memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last only when the tensor is channels_last-contiguous and not also NCHW-contiguous
    (the same rule as csrc/cpu/pixel_shuffle.cpp), so ambiguous shapes stay NCHW."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def register_permutations(partition: str, reverse: str) -> None:
    """window_partition(x, ws, shift) and window_reverse(windows, ws, H, W, shift): each the other's backward."""
    partition_op = getattr(torch.ops.swinir_kernels, partition.split("::")[1])
    reverse_op = getattr(torch.ops.swinir_kernels, reverse.split("::")[1])

    @torch.library.register_fake(partition)
    def _(x, window_size, shift):
        B, H, W, C = x.shape
        return x.new_empty((B * (H // window_size) * (W // window_size), window_size * window_size, C))

    @torch.library.register_fake(reverse)
    def _(windows, window_size, H, W, shift):
        return windows.new_empty((windows.shape[0] // ((H // window_size) * (W // window_size)), H, W, windows.shape[2]))

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


def register_pixel_shuffle(forward: str, backward: str) -> None:
    """pixel_shuffle(x, r, scale, bias, out_h, out_w) and its backward op (grad_out, r, scale, H, W) -> grad_x."""
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


def _opmath(t: torch.Tensor) -> torch.Tensor:
    """fp32 for half types (sums accumulate in fp32), fp64 stays fp64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _per_channel_grad(per_channel: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """A (C,) gradient reduced to the parameter's shape: (C,)-like, or one value broadcast to all channels."""
    if shape.numel() == 1:
        per_channel = per_channel.sum()
    return per_channel.reshape(shape).to(dtype)


def register_attention(forward: str, backward: str, image_layout: bool) -> None:
    """window_attention(qkv, rel_bias, mask, num_heads, scale) (image_layout=False) or
    shifted_window_attention(qkv, rel_bias, num_heads, window_size, shift, scale) (True), with their
    backward ops (grad_out, <same inputs>) -> (grad_qkv, grad_rel_bias)."""
    backward_op = getattr(torch.ops.swinir_kernels, backward.split("::")[1])

    def output_like(qkv):
        return qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))

    if image_layout:

        @torch.library.register_fake(forward)
        def _(qkv, rel_bias, num_heads, window_size, shift, scale):
            return output_like(qkv)

        @torch.library.register_fake(backward)
        def _(grad_out, qkv, rel_bias, num_heads, window_size, shift, scale):
            return torch.empty_like(qkv, memory_format=torch.contiguous_format), torch.empty_like(rel_bias)

    else:

        @torch.library.register_fake(forward)
        def _(qkv, rel_bias, mask, num_heads, scale):
            return output_like(qkv)

        @torch.library.register_fake(backward)
        def _(grad_out, qkv, rel_bias, mask, num_heads, scale):
            return torch.empty_like(qkv, memory_format=torch.contiguous_format), torch.empty_like(rel_bias)

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
    """Fakes and autograd of the C++ ops declared in csrc/swinir_ops.cpp (called once _C is loaded)."""
    register_permutations("swinir_kernels::window_partition", "swinir_kernels::window_reverse")
    register_pixel_shuffle("swinir_kernels::pixel_shuffle", "swinir_kernels::_pixel_shuffle_backward")
    register_attention("swinir_kernels::window_attention", "swinir_kernels::_window_attention_backward", image_layout=False)
    register_attention(
        "swinir_kernels::shifted_window_attention", "swinir_kernels::_shifted_window_attention_backward", image_layout=True
    )

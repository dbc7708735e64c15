"""The public functional API. Each function checks its arguments, asks the backend chooser
(:mod:`swinir_kernels._backend`) which backend runs the call, and calls it. Every backend takes the
same positional arguments, so one table (`_run`) serves all ops:

* ``cpu`` / ``cuda``: ``torch.ops.swinir_kernels.<op>`` (C++ kernels, dispatched on the device);
* ``triton``: ``torch.ops.swinir_kernels.<op>_triton`` (Python custom ops around the Triton kernels);
* ``reference``: :mod:`swinir_kernels.reference`.
"""

import torch

from . import _backend, _validation as check, _verification, reference
from . import triton as triton_backend

__all__ = [
    "window_partition",
    "window_reverse",
    "window_attention",
    "shifted_window_attention",
    "pixel_shuffle",
    "explain_backend",
    "backends_used",
]


def implementation(backend: str, op: str):
    """The function of `backend` that computes `op` from the reference's positional arguments."""
    if backend == "reference":
        return getattr(reference, op)
    if backend == "triton":
        return getattr(triton_backend, op)
    return getattr(torch.ops.swinir_kernels, op)


# Set while explain_backend calls a public function: _run then returns its choice instead of running.
_explaining = False
# op -> "backend: reason" of the latest eager call (swinir bench reports it).
_last_used: dict[str, str] = {}


def _run(op: str, tensor: torch.Tensor, *args):
    choice = _backend.choose(op, tensor, args)
    if choice.unchecked and not _explaining:
        # First use of this kernel specialization on this device: check each candidate, then choose again.
        for backend, directions in choice.unchecked:
            _verification.verify(backend, op, args, directions, implementation(backend, op))
        choice = _backend.choose(op, tensor, args)
    if _explaining:
        return choice
    if not torch.compiler.is_compiling():
        _last_used[op] = f"{choice.backend}: {choice.reason}"
    return implementation(choice.backend, op)(*args)


def explain_backend(op: str, tensor: torch.Tensor, *args, **kwargs) -> str:
    """Which backend a call of `op` (a public function's name) would use under the current setting, and
    why. Pass the call's arguments (``explain_backend("shifted_window_attention", qkv, rel_bias,
    num_heads=6, window_size=8, shift=4)``) to get the answer for that call: on a GPU, ``auto`` chooses
    per kernel specialization and says whether (and when) it was verified on this device. With the
    first tensor only, it answers for the device, e.g. ``explain_backend("window_partition", x)`` ->
    ``"cpu: auto: C++ CPU kernel for a CPU tensor"``. Runs no kernel and no check. Raises RuntimeError,
    like the call itself, when an explicitly requested backend cannot run it."""
    global _explaining
    if op not in _backend.OPS:
        raise ValueError(f"op: expected one of {', '.join(_backend.OPS)}, got {op!r}")
    if args or kwargs:
        _explaining = True
        try:
            backend, reason, unchecked = globals()[op](tensor, *args, **kwargs)
        finally:
            _explaining = False
        if unchecked:
            names = ", ".join(backend for backend, _ in unchecked)
            return f"unchecked: auto: {names} not verified on this device for this specialization yet; the first call checks them"
    else:
        backend, reason, _ = _backend.choose(op, tensor)
    note = "" if _verification.cache_problem is None else f" ({_verification.cache_problem})"
    return f"{backend}: {reason}{note}"


def backends_used() -> dict[str, str]:
    """op -> "backend: reason" of the latest eager call of each op in this process."""
    return dict(_last_used)


def window_partition(x: torch.Tensor, window_size: int, shift: int = 0) -> torch.Tensor:
    """Cyclic shift and window partition in one pass.

    Args:
        x (Tensor[B, H, W, C]): H and W multiples of window_size; any dtype and strides.
        window_size (int): ws.
        shift (int): equals ``torch.roll(x, (-shift, -shift), (1, 2))`` before partitioning.

    Returns:
        Tensor[B*nW, ws*ws, C]: windows batch-major, then row-major over the (H/ws, W/ws) grid;
        tokens row-major inside a window. Differentiable (the backward is :func:`window_reverse`).
    """
    check.tensor("x", x, 4, "(B, H, W, C)")
    check.integer("window_size", window_size, minimum=1)
    check.integer("shift", shift)
    check.multiple_of("x.shape[1] (H)", x.shape[1], window_size, "window_size")
    check.multiple_of("x.shape[2] (W)", x.shape[2], window_size, "window_size")
    return _run("window_partition", x, x, window_size, shift)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int, shift: int = 0) -> torch.Tensor:
    """The exact inverse of :func:`window_partition`: window reverse, then roll by (+shift, +shift).

    Args:
        windows (Tensor[B*nW, ws*ws, C]): nW = (H/ws)*(W/ws).
        window_size (int), H (int), W (int), shift (int).

    Returns:
        Tensor[B, H, W, C].
    """
    check.tensor("windows", windows, 3, "(B*nW, ws*ws, C)")
    check.integer("window_size", window_size, minimum=1)
    check.integer("H", H, minimum=1)
    check.integer("W", W, minimum=1)
    check.integer("shift", shift)
    check.multiple_of("H", H, window_size, "window_size")
    check.multiple_of("W", W, window_size, "window_size")
    if windows.shape[1] != window_size * window_size:
        raise ValueError(f"windows.shape[1]: expected window_size**2={window_size * window_size}, got {windows.shape[1]}")
    per_image = (H // window_size) * (W // window_size)
    check.multiple_of("windows.shape[0]", windows.shape[0], per_image, "(H/ws)*(W/ws)")
    return _run("window_reverse", windows, windows, window_size, H, W, shift)


def _check_attention(qkv, rel_bias, num_heads, scale, tokens):
    check.floating("qkv", qkv)
    C, head_dim = check.attention_qkv(qkv, num_heads)
    check.attention_bias(rel_bias, qkv, num_heads, tokens)
    check.scale(scale)
    return head_dim**-0.5 if scale is None else float(scale)


def window_attention(
    qkv: torch.Tensor, rel_bias: torch.Tensor, mask: torch.Tensor | None = None, *, num_heads: int, scale: float | None = None
) -> torch.Tensor:
    """Window attention with a relative position bias and an optional additive mask (window layout).

    ``out = softmax(q*scale @ k^T + rel_bias[h] + mask[w % nW]) @ v`` per window w and head h, with
    softmax and accumulation in fp32.

    Args:
        qkv (Tensor[B*nW, N, 3C]): the output of the official ``WindowAttention.qkv`` Linear: channels
            [q | k | v], each split head-major into num_heads heads of head_dim = C/num_heads <= 64.
        rel_bias (Tensor[nH, N, N]): the gathered relative position bias (any float dtype; fp32 with
            fp16/bf16 qkv under autocast is fine).
        mask (Tensor[nW, N, N] or None): additive mask (official: 0 / -100), constant (no gradient).
        num_heads (int): nH.
        scale (float): defaults to head_dim**-0.5.

    Returns:
        Tensor[B*nW, N, C] in qkv's dtype: heads concatenated head-major, before ``proj``.
        Gradients flow to qkv and rel_bias.
    """
    check.tensor("qkv", qkv, 3, "(B*nW, N, 3C)")
    scale = _check_attention(qkv, rel_bias, num_heads, scale, qkv.shape[1])
    if mask is not None:
        check.tensor("mask", mask, 3, "(nW, N, N)")
        check.floating("mask", mask)
        check.same_device("mask", mask, "qkv", qkv)
        if mask.shape[1:] != (qkv.shape[1], qkv.shape[1]):
            raise ValueError(f"mask: expected shape (nW, {qkv.shape[1]}, {qkv.shape[1]}), got {tuple(mask.shape)}")
        check.multiple_of("qkv.shape[0] (B*nW)", qkv.shape[0], mask.shape[0], "mask.shape[0] (nW)")
        if mask.requires_grad and torch.is_grad_enabled():
            raise ValueError("mask: expected a constant mask (requires_grad=False); pass mask.detach()")
    return _run("window_attention", qkv, qkv, rel_bias, mask, num_heads, scale)


def shifted_window_attention(
    qkv: torch.Tensor, rel_bias: torch.Tensor, *, num_heads: int, window_size: int, shift: int, scale: float | None = None
) -> torch.Tensor:
    """Shifted-window attention in image layout, as one SwinIR ``SwinTransformerBlock`` attention.

    Equals ``window_reverse(window_attention(window_partition(qkv, ws, shift), rel_bias,
    official_shift_mask), ws, H, W, shift)``: with shift > 0, tokens of one window that come from
    different regions of the rolled image (the 3x3 regions cut at H-ws, H-shift and W-ws, W-shift) get
    -100 added to their score. Kernels do the shift, the partition and the mask by index arithmetic:
    no mask tensor and no partitioned copy is made.

    Args:
        qkv (Tensor[B, H, W, 3C]): qkv Linear output in image order; H, W multiples of window_size.
        rel_bias (Tensor[nH, ws*ws, ws*ws]).
        num_heads (int), window_size (int), shift (int): 0 <= shift < window_size.
        scale (float): defaults to head_dim**-0.5.

    Returns:
        Tensor[B, H, W, C] in qkv's dtype. Gradients flow to qkv and rel_bias.
    """
    check.tensor("qkv", qkv, 4, "(B, H, W, 3C)")
    check.integer("window_size", window_size, minimum=1)
    check.integer("shift", shift, minimum=0)
    if shift >= window_size:
        raise ValueError(f"shift: expected 0 <= shift < window_size={window_size}, got {shift}")
    check.multiple_of("qkv.shape[1] (H)", qkv.shape[1], window_size, "window_size")
    check.multiple_of("qkv.shape[2] (W)", qkv.shape[2], window_size, "window_size")
    scale = _check_attention(qkv, rel_bias, num_heads, scale, window_size * window_size)
    return _run("shifted_window_attention", qkv, qkv, rel_bias, num_heads, window_size, shift, scale)


def _check_epilogue(name, t, x, channels):
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of {channels} per-channel values or None, got {type(t).__name__}")
    check.floating(name, t)
    check.same_device(name, t, "x", x)
    if t.numel() not in (1, channels):
        raise ValueError(f"{name}: expected {channels} values (one per output channel) or 1, got shape {tuple(t.shape)}")


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
    return _run("pixel_shuffle", x, x, upscale_factor, scale, bias, out_h, out_w)

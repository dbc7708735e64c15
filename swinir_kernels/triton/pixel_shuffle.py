"""Triton pixel shuffle fused with SwinIR's tail epilogue (per-channel affine and crop), and its backward.

Forward: ``out[b, c, oh, ow] = x[b, c*r*r + (oh % r)*r + ow % r, oh // r, ow // r] * scale[c] + bias[c]``
for oh < out_h, ow < out_w; the affine in fp32 (fp64 for fp64 inputs), rounded once to x's dtype.
Backward: ``grad_x[b, k, ih, iw] = grad_out[b, k // r², ih*r + (k % r²) // r, iw*r + k % r] * scale[c]``,
zero where that output pixel was cropped away.

Both kernels gather: each program owns a (BLOCK_M, BLOCK_N) tile of the tensor it writes, so every
element is written once (no zero-fill pass for the crop). The tile's wide axis is the contiguous one
of the written tensor: channels for channels_last, columns for NCHW (`CHANNELS_LAST` constexpr). Inputs
may have any strides; outputs take the memory format chosen by
:func:`swinir_kernels.registry.pixel_shuffle.shuffle_memory_format`, as the fakes do.
"""

import torch
import triton
import triton.language as tl

from ..registry.pixel_shuffle import register_fake_and_autograd, shuffle_memory_format
from .window_partition import as_bits, on_device, tile_sizes


@triton.jit
def _tile_coordinates(pid, M, N, D1, D2, D3, CHANNELS_LAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Coordinates (i0, i1, i2, i3) of a (BLOCK_M, BLOCK_N) tile of a (D0, D1, D2, D3) NCHW-indexed tensor,
    walked as an (M, N) matrix: rows (i0, i2, i3) x channels i1 when CHANNELS_LAST, else rows
    (i0, i1, i2) x columns i3. Returns the coordinates and the in-bounds mask."""
    tiles_n = tl.cdiv(N, BLOCK_N)
    m = (pid // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]  # (BLOCK_M, 1)
    n = (pid % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]  # (1, BLOCK_N)
    if CHANNELS_LAST:
        i0 = m // (D2 * D3)
        i1 = n
        i2 = (m // D3) % D2
        i3 = m % D3
    else:
        i0 = m // (D1 * D2)
        i1 = (m // D2) % D1
        i2 = m % D2
        i3 = n
    return i0, i1, i2, i3, (m < M) & (n < N)


# register budget: 160 (bench/static_report.py checks it on sm_90, with no local memory)
@triton.jit
def _pixel_shuffle_fwd_kernel(
    x,
    out,
    scale,
    bias,
    M,
    N,
    C,
    out_h,
    out_w,
    x_sb,
    x_sc,
    x_sh,
    x_sw,
    o_sb,
    o_sc,
    o_sh,
    o_sw,
    R: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """x (B, C*R*R, H, W) -> out (B, C, out_h, out_w), tiles of out; scale/bias (C,) in the compute dtype."""
    pid = tl.program_id(0).to(tl.int64)
    b, c, oh, ow, ok = _tile_coordinates(pid, M, N, C, out_h, out_w, CHANNELS_LAST, BLOCK_M, BLOCK_N)
    source = b * x_sb + (c * (R * R) + (oh % R) * R + ow % R) * x_sc + (oh // R) * x_sh + (ow // R) * x_sw
    value = tl.load(x + source, mask=ok)
    if HAS_SCALE or HAS_BIAS:
        compute = scale.dtype.element_ty
        value = value.to(compute)
        if HAS_SCALE:
            value = value * tl.load(scale + c, mask=ok)
        if HAS_BIAS:
            value = value + tl.load(bias + c, mask=ok)
        value = value.to(out.dtype.element_ty)
    tl.store(out + b * o_sb + c * o_sc + oh * o_sh + ow * o_sw, value, mask=ok)


# register budget: 128 (bench/static_report.py checks it on sm_90, with no local memory)
@triton.jit
def _pixel_shuffle_bwd_kernel(
    grad_out,
    grad_x,
    scale,
    M,
    N,
    CRR,
    H,
    W,
    out_h,
    out_w,
    g_sb,
    g_sc,
    g_sh,
    g_sw,
    gx_sb,
    gx_sc,
    gx_sh,
    gx_sw,
    R: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """grad_out (B, C, out_h, out_w) -> grad_x (B, C*R*R, H, W), tiles of grad_x; zeros where cropped."""
    pid = tl.program_id(0).to(tl.int64)
    b, k, ih, iw, ok = _tile_coordinates(pid, M, N, CRR, H, W, CHANNELS_LAST, BLOCK_M, BLOCK_N)
    c = k // (R * R)
    oh = ih * R + (k % (R * R)) // R
    ow = iw * R + k % R
    kept = ok & (oh < out_h) & (ow < out_w)
    value = tl.load(grad_out + b * g_sb + c * g_sc + oh * g_sh + ow * g_sw, mask=kept, other=0)
    if HAS_SCALE:
        value = (value.to(scale.dtype.element_ty) * tl.load(scale + c, mask=kept)).to(grad_x.dtype.element_ty)
    tl.store(grad_x + b * gx_sb + k * gx_sc + ih * gx_sh + iw * gx_sw, value, mask=ok)


def _per_channel(name: str, t: torch.Tensor | None, channels: int, compute: torch.dtype, like: torch.Tensor) -> torch.Tensor:
    """A (channels,) contiguous vector in the compute dtype (a 1-value tensor is broadcast); a 1-element
    placeholder when absent, so the kernel's pointer still has the compute dtype."""
    if t is None:
        return torch.empty(1, dtype=compute, device=like.device)
    if t.numel() not in (1, channels):
        raise ValueError(f"{name}: expected {channels} values (one per output channel) or 1, got shape {tuple(t.shape)}")
    return t.to(compute).reshape(-1).expand(channels).contiguous()


def _launch(kernel, written: torch.Tensor, pointers: tuple, sizes: tuple, strides: tuple, **constexprs) -> None:
    """Launches `kernel(*pointers, M, N, *sizes, *strides)` over (M, N) tiles of `written` (NCHW-indexed),
    N its contiguous axis."""
    channels_last = shuffle_memory_format(written) == torch.channels_last
    D0, D1, D2, D3 = written.shape
    M, N = (D0 * D2 * D3, D1) if channels_last else (D0 * D1 * D2, D3)
    block_m, block_n = tile_sizes(N)
    grid = (triton.cdiv(M, block_m) * triton.cdiv(N, block_n),)
    with on_device(written):
        kernel[grid](
            *pointers, M, N, *sizes, *strides, CHANNELS_LAST=channels_last, BLOCK_M=block_m, BLOCK_N=block_n, **constexprs
        )


@torch.library.custom_op(
    "swinir_kernels::pixel_shuffle_triton",
    mutates_args=(),
    schema="(Tensor x, int upscale_factor, Tensor? scale, Tensor? bias, SymInt out_h, SymInt out_w) -> Tensor",
)
def pixel_shuffle(x, upscale_factor, scale, bias, out_h, out_w):
    """x (B, C*r*r, H, W), NCHW or channels_last -> (B, C, out_h, out_w) in x's memory format."""
    r = upscale_factor
    if x.dim() != 4 or r < 1 or x.shape[1] % (r * r):
        raise ValueError(f"x: expected (B, C*r*r, H, W) with upscale_factor r={r} >= 1, got shape {tuple(x.shape)}")
    B, C, H, W = x.shape[0], x.shape[1] // (r * r), x.shape[2], x.shape[3]
    if not (0 <= out_h <= H * r and 0 <= out_w <= W * r):
        raise ValueError(f"out_h, out_w: expected at most ({H * r}, {W * r}), got ({out_h}, {out_w})")
    out = torch.empty((B, C, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=shuffle_memory_format(x))
    if out.numel() == 0:
        return out
    affine = scale is not None or bias is not None
    compute = torch.promote_types(x.dtype, torch.float32)
    # A plain shuffle moves bits: integer views make it exact for every dtype under the interpreter too.
    src, dst = (x, out) if affine else (as_bits(x), as_bits(out))
    _launch(
        _pixel_shuffle_fwd_kernel,
        out,
        (src, dst, _per_channel("scale", scale, C, compute, x), _per_channel("bias", bias, C, compute, x)),
        sizes=(C, out_h, out_w),
        strides=(*x.stride(), *out.stride()),
        R=r,
        HAS_SCALE=scale is not None,
        HAS_BIAS=bias is not None,
    )
    return out


@torch.library.custom_op(
    "swinir_kernels::_pixel_shuffle_backward_triton",
    mutates_args=(),
    schema="(Tensor grad_out, int upscale_factor, Tensor? scale, SymInt H, SymInt W) -> Tensor",
)
def pixel_shuffle_backward(grad_out, upscale_factor, scale, H, W):
    """grad_out (B, C, out_h, out_w) -> grad_x (B, C*r*r, H, W) in grad_out's memory format."""
    r = upscale_factor
    if grad_out.dim() != 4:
        raise ValueError(f"grad_out: expected a 4-D tensor (B, C, out_h, out_w), got shape {tuple(grad_out.shape)}")
    B, C, out_h, out_w = grad_out.shape
    if out_h > H * r or out_w > W * r:
        raise ValueError(f"grad_out: spatial size {out_h}x{out_w} exceeds the shuffled input size {H * r}x{W * r}")
    grad_x = torch.empty(
        (B, C * r * r, H, W),
        dtype=grad_out.dtype,
        device=grad_out.device,
        memory_format=shuffle_memory_format(grad_out),
    )
    if grad_x.numel() == 0:
        return grad_x
    compute = torch.promote_types(grad_out.dtype, torch.float32)
    src, dst = (grad_out, grad_x) if scale is not None else (as_bits(grad_out), as_bits(grad_x))
    _launch(
        _pixel_shuffle_bwd_kernel,
        grad_x,
        (src, dst, _per_channel("scale", scale, C, compute, grad_out)),
        sizes=(C * r * r, H, W, out_h, out_w),
        strides=(*grad_out.stride(), *grad_x.stride()),
        R=r,
        HAS_SCALE=scale is not None,
    )
    return grad_x


register_fake_and_autograd("swinir_kernels::pixel_shuffle_triton", "swinir_kernels::_pixel_shuffle_backward_triton")

"""The specification: naive PyTorch with the official SwinIR semantics.

Every kernel of this package is tested against these functions, and they are the ``reference``
backend (used on devices or builds without a kernel). They are transcribed from the behaviour of
the official ``models/network_swinir.py`` (roll, ``window_partition``, ``window_reverse``,
``relative_position_index``, ``calculate_mask`` with -100, ``WindowAttention.forward``) and stay
plain, differentiable, ``torch.compile``-traceable PyTorch. Nothing here imports the rest of the package.

Shapes: B batch, H x W image, C channels, a window of wh x ww pixels (``window_size``: an int ws for a
square ws x ws window, or ``(wh, ww)``), N = wh*ww tokens per window, nW = (H/wh)*(W/ww) windows per
image, nH heads, hd = C/nH head dim. ``shift``: an int s (the same on both axes) or ``(sh, sw)``, the
cyclic shift along H and W (the Swin family: SwinIR and HAT shift by (ws/2, ws/2); DAT's and RGT's
rectangular windows 8x32 / 32x8 by (4, 16) / (16, 4)).
"""

import torch
import torch.nn.functional as F

__all__ = [
    "pair",
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "relative_position_bias",
    "shift_attention_mask",
    "window_attention",
    "shifted_window_attention",
    "pixel_shuffle",
]

MASK_VALUE = -100.0  # the official additive mask between tokens of different shift regions (not -inf)


def pair(value) -> tuple[int, int]:
    """(along H, along W) of a window size or shift given as an int (both axes) or a pair."""
    if isinstance(value, (tuple, list)):
        first, second = value
        return int(first), int(second)
    return int(value), int(value)


def window_partition(x: torch.Tensor, window_size, shift=0) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, wh*ww, C): ``torch.roll`` by (-sh, -sw) over (H, W), then cut into
    windows, batch-major then row-major over the window grid, tokens row-major in a window."""
    (wh, ww), (sh, sw) = pair(window_size), pair(shift)
    if sh or sw:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    B, H, W, C = x.shape
    x = x.reshape(B, H // wh, wh, W // ww, ww, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, window_size, H: int, W: int, shift=0) -> torch.Tensor:
    """(B*nW, wh*ww, C) -> (B, H, W, C): the exact inverse of :func:`window_partition`."""
    (wh, ww), (sh, sw) = pair(window_size), pair(shift)
    C = windows.shape[-1]
    x = windows.reshape(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)
    if sh or sw:
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
    return x


def relative_position_index(window_size, device=None) -> torch.Tensor:
    """(N, N) int64: for tokens i = (hi, wi), j = (hj, wj) of a wh x ww window,
    ``(hi - hj + wh - 1) * (2*ww - 1) + (wi - wj + ww - 1)``, an index into the (2wh-1)(2ww-1)-row
    bias table."""
    wh, ww = pair(window_size)
    coords = torch.stack(
        torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def relative_position_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gathers the dense bias: table ((2ws-1)^2, nH), index (N, N) -> (nH, N, N)."""
    N = index.shape[0]
    return table[index.reshape(-1)].reshape(N, N, -1).permute(2, 0, 1).contiguous()


def shift_attention_mask(H: int, W: int, window_size, shift, device=None, dtype=torch.float32) -> torch.Tensor:
    """(nW, N, N) additive mask of the shifted windows: the (H, W) grid is labelled with 9 regions by
    the slices [0:-wh], [-wh:-sh], [-sh:] along H and [0:-ww], [-ww:-sw], [-sw:] along W (DAT's
    ``calculate_mask``; SwinIR's with wh = ww, sh = sw); tokens of one window in different regions get
    -100, others 0. An axis without shift is not cut (its slices degenerate, as in the official code):
    all zeros when neither axis is shifted."""
    (wh, ww), (sh, sw) = pair(window_size), pair(shift)
    labels = torch.zeros((1, H, W, 1), device=device)
    h_slices = (slice(0, -wh), slice(-wh, -sh), slice(-sh, None))
    w_slices = (slice(0, -ww), slice(-ww, -sw), slice(-sw, None))
    region = 0
    for h in h_slices:
        for w in w_slices:
            labels[:, h, w, :] = region
            region += 1
    windows = window_partition(labels, (wh, ww)).squeeze(-1)  # (nW, N)
    differ = windows.unsqueeze(1) != windows.unsqueeze(2)
    return torch.zeros(differ.shape, device=device, dtype=dtype).masked_fill(differ, MASK_VALUE)


def window_attention(qkv, rel_bias, mask=None, num_heads: int = 1, scale: float | None = None) -> torch.Tensor:
    """Window layout, as ``WindowAttention.forward`` after its qkv Linear and before ``proj``.

    qkv (B*nW, N, 3C), channels [q | k | v], each head-major; rel_bias (nH, N, N); mask (nW, N, N) or
    None, window w uses mask[w % nW]. Returns (B*nW, N, C), heads concatenated head-major:
    ``softmax(q*scale @ k^T + rel_bias + mask) @ v``. Computed in qkv's dtype, as the official module.
    """
    Bw, N, C3 = qkv.shape
    C = C3 // 3
    head_dim = C // num_heads
    scale = head_dim**-0.5 if scale is None else scale
    q, k, v = qkv.reshape(Bw, N, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)  # each (B*nW, nH, N, hd)
    attn = (q * scale) @ k.transpose(-2, -1) + rel_bias.to(qkv.dtype).unsqueeze(0)
    if mask is not None:
        nW = mask.shape[0]
        attn = attn.view(Bw // nW, nW, num_heads, N, N) + mask.to(qkv.dtype).unsqueeze(1).unsqueeze(0)
        attn = attn.view(Bw, num_heads, N, N)
    attn = attn.softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(Bw, N, C)


def shifted_window_attention(qkv, rel_bias, num_heads: int, window_size, shift, scale: float | None = None):
    """Image layout: qkv (B, H, W, 3C) -> (B, H, W, C). roll(-sh, -sw) -> partition -> window attention
    with the official shift mask -> reverse -> roll(+sh, +sw)."""
    B, H, W, _ = qkv.shape
    shifted = any(pair(shift))
    mask = shift_attention_mask(H, W, window_size, shift, device=qkv.device) if shifted else None
    windows = window_attention(window_partition(qkv, window_size, shift), rel_bias, mask, num_heads, scale)
    return window_reverse(windows, window_size, H, W, shift)


def pixel_shuffle(x, upscale_factor: int, scale=None, bias=None, out_h: int | None = None, out_w: int | None = None):
    """(B, C*r*r, H, W) -> (B, C, out_h, out_w): ``F.pixel_shuffle`` cropped to (out_h, out_w), then
    ``y * scale[c] + bias[c]`` per output channel (computed in fp32 for half types, rounded once)."""
    y = F.pixel_shuffle(x, upscale_factor)
    y = y[:, :, : y.shape[2] if out_h is None else out_h, : y.shape[3] if out_w is None else out_w]
    if scale is None and bias is None:
        return y
    compute = torch.promote_types(x.dtype, torch.float32)
    y = y.to(compute)
    if scale is not None:
        y = y * scale.to(compute).reshape(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.to(compute).reshape(1, -1, 1, 1)
    return y.to(x.dtype)

"""Triton window_partition / window_reverse: cyclic shift and window (un)partition in one copy.

Both directions are one permutation kernel. Program p copies BLOCK_P consecutive tokens of the
window layout (B*nW, wh*ww, C) times all C channels (in BLOCK_C-wide chunks) to or from the image
layout (B, H, W, C); the shift is modular index arithmetic, so no rolled copy is made. The ops move
bits only, so floating tensors are viewed as same-width integers: exact for every dtype, including
bfloat16 under the Triton interpreter (which mishandles bfloat16 arithmetic, not integer copies).

Custom ops ``swinir_kernels::window_partition_triton`` and ``swinir_kernels::window_reverse_triton``
take the same arguments as the C++ schemas (``window_size`` (wh, ww) and ``shift`` (sh, sw) as
``int[2]``: one int means both axes); fakes and autograd come from
:func:`swinir_kernels.registry.window_partition.register_fake_and_autograd` (each op is the other's backward).
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

from ..registry.window_partition import register_fake_and_autograd
from .limits import tile_width

# Same-width integer types for bit-exact copies of any floating dtype.
_BITS_DTYPE = {2: torch.int16, 4: torch.int32, 8: torch.int64, 1: torch.int8}


def interpreting() -> bool:
    """True when Triton runs kernels with its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def on_device(t: torch.Tensor):
    """Makes t's GPU the current one for the launch (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def as_bits(t: torch.Tensor) -> torch.Tensor:
    """The same memory viewed as a same-width integer tensor (strides unchanged)."""
    return t if not t.is_floating_point() else t.view(_BITS_DTYPE[t.element_size()])


def tile_sizes(inner: int) -> tuple[int, int]:
    """(rows, inner width) of one program's tile: the inner width a power of two >= `inner` (at most
    MAX_TILE_WIDTH, wider extents loop), and rows so that a tile holds ~1K elements on a GPU (4 warps, 8 elements
    and their int64 offsets per thread: 100-128 registers on sm_90; 4K-element tiles spilled), or ~32K
    under the interpreter, where every program costs milliseconds of Python overhead."""
    width = tile_width(inner)
    elements = 32768 if interpreting() else 1024
    return max(1, elements // width), width


# register budget: 128 (bench/static_report.py checks it on sm_90, with no local memory)
@triton.jit
def _window_permute_kernel(
    src,
    dst,
    num_tokens,  # B*nW*wh*ww: tokens of the window layout (= pixels of the image)
    C,
    H,
    W,
    shift_h,  # the shift reduced to [0, H) and [0, W)
    shift_w,
    image_sb,  # image (B, H, W, C) strides, in elements
    image_sh,
    image_sw,
    image_sc,
    win_sw,  # window layout (B*nW, wh*ww, C) strides
    win_st,
    win_sc,
    WH: tl.constexpr,  # window extent along H and W
    WW: tl.constexpr,
    TO_WINDOWS: tl.constexpr,  # True: image -> windows (partition); False: windows -> image (reverse)
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """windows[w, t, c] <-> image[b, (wr*wh + t // ww + sh) mod H, (wc*ww + t % ww + sw) mod W, c]
    with w = (b*nH + wr)*nW + wc over the (nH, nW) = (H/wh, W/ww) window grid."""
    pid = tl.program_id(0).to(tl.int64)  # int64 offsets: B*H*W*C may exceed 2**31
    token = pid * BLOCK_P + tl.arange(0, BLOCK_P)  # (BLOCK_P,) window-layout token ids
    token_ok = token < num_tokens
    windows_per_row = W // WW
    window = token // (WH * WW)
    in_window = token % (WH * WW)
    grid_pos = window % ((H // WH) * windows_per_row)
    b = window // ((H // WH) * windows_per_row)
    h = (grid_pos // windows_per_row) * WH + in_window // WW + shift_h  # in [0, 2H)
    w = (grid_pos % windows_per_row) * WW + in_window % WW + shift_w
    h = tl.where(h >= H, h - H, h)
    w = tl.where(w >= W, w - W, w)
    image_row = b * image_sb + h * image_sh + w * image_sw  # (BLOCK_P,)
    window_row = window * win_sw + in_window * win_st
    for c0 in range(0, C, BLOCK_C):
        # int64 channels: the channel stride is an i32 argument while it fits, and for non-contiguous
        # input (NCHW permuted to NHWC: stride H*W) c * stride can pass 2**31, which i32 would wrap.
        c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        ok = token_ok[:, None] & (c < C)[None, :]
        image_offsets = image_row[:, None] + c[None, :] * image_sc  # (BLOCK_P, BLOCK_C)
        window_offsets = window_row[:, None] + c[None, :] * win_sc
        if TO_WINDOWS:
            tl.store(dst + window_offsets, tl.load(src + image_offsets, mask=ok), mask=ok)
        else:
            tl.store(dst + image_offsets, tl.load(src + window_offsets, mask=ok), mask=ok)


def _window_and_shift(window_size: list[int], shift: list[int]) -> tuple[int, int, int, int]:
    """(wh, ww, sh, sw) from the schema's int[2] arguments."""
    if len(window_size) != 2 or min(window_size) < 1:
        raise ValueError(f"window_size: expected an int or 2 ints (wh, ww) >= 1, got {list(window_size)}")
    if len(shift) != 2:
        raise ValueError(f"shift: expected an int or 2 ints (sh, sw), got {list(shift)}")
    return (*window_size, *shift)


def _check_grid(name: str, extent: int, window_extent: int, axis: int) -> None:
    if extent % window_extent:
        raise ValueError(f"{name}: expected a multiple of window_size[{axis}]={window_extent}, got {extent}")


def _permute(image: torch.Tensor, windows: torch.Tensor, wh: int, ww: int, sh: int, sw: int, to_windows: bool) -> None:
    """Copies image -> windows (to_windows) or windows -> image; both tensors already allocated."""
    B, H, W, C = image.shape
    num_tokens = windows.shape[0] * windows.shape[1]
    if image.numel() == 0:
        return
    block_p, block_c = tile_sizes(C)
    src, dst = (image, windows) if to_windows else (windows, image)
    grid = (triton.cdiv(num_tokens, block_p),)  # 1-D: no 65,535 limit on the number of windows
    with on_device(image):
        _window_permute_kernel[grid](
            as_bits(src),
            as_bits(dst),
            num_tokens,
            C,
            H,
            W,
            sh % H,  # Python's %: a negative shift rolls the other way
            sw % W,
            *image.stride(),
            *windows.stride(),
            WH=wh,
            WW=ww,
            TO_WINDOWS=to_windows,
            BLOCK_P=block_p,
            BLOCK_C=block_c,
        )


@torch.library.custom_op(
    "swinir_kernels::window_partition_triton",
    mutates_args=(),
    schema="(Tensor x, int[2] window_size, int[2] shift) -> Tensor",
)
def window_partition(x: torch.Tensor, window_size: list[int], shift: list[int]) -> torch.Tensor:
    """x (B, H, W, C), any strides -> contiguous (B*nW, wh*ww, C); see swinir_kernels.reference."""
    wh, ww, sh, sw = _window_and_shift(window_size, shift)
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D tensor (B, H, W, C), got shape {tuple(x.shape)}")
    B, H, W, C = x.shape
    _check_grid("x.shape[1] (H)", H, wh, 0)
    _check_grid("x.shape[2] (W)", W, ww, 1)
    windows = x.new_empty((B * (H // wh) * (W // ww), wh * ww, C))
    _permute(x, windows, wh, ww, sh, sw, to_windows=True)
    return windows


@torch.library.custom_op(
    "swinir_kernels::window_reverse_triton",
    mutates_args=(),
    schema="(Tensor windows, int[2] window_size, SymInt H, SymInt W, int[2] shift) -> Tensor",
)
def window_reverse(windows: torch.Tensor, window_size: list[int], H: int, W: int, shift: list[int]) -> torch.Tensor:
    """windows (B*nW, wh*ww, C), any strides -> contiguous (B, H, W, C); the inverse of window_partition."""
    wh, ww, sh, sw = _window_and_shift(window_size, shift)
    if windows.dim() != 3:
        raise ValueError(f"windows: expected a 3-D tensor (B*nW, wh*ww, C), got shape {tuple(windows.shape)}")
    _check_grid("H", H, wh, 0)
    _check_grid("W", W, ww, 1)
    if windows.shape[1] != wh * ww:
        raise ValueError(f"windows.shape[1]: expected wh*ww={wh * ww}, got {windows.shape[1]}")
    per_image = (H // wh) * (W // ww)
    if per_image == 0 or windows.shape[0] % per_image:
        raise ValueError(f"windows.shape[0]: expected a multiple of (H/wh)*(W/ww)={per_image}, got {windows.shape[0]}")
    image = windows.new_empty((windows.shape[0] // per_image, H, W, windows.shape[2]))
    _permute(image, windows, wh, ww, sh, sw, to_windows=False)
    return image


register_fake_and_autograd("swinir_kernels::window_partition_triton", "swinir_kernels::window_reverse_triton")

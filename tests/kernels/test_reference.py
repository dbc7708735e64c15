"""The specification itself (swinir_kernels/reference.py) for the Swin family's windows: rectangular
windows and per-axis shifts, as DAT and RGT use them, against independent transcriptions of their
published code (``calculate_mask`` and the relative position index), and the square SwinIR case as a
special case of it."""

import pytest
import torch

from swinir_kernels import reference

# (window, shift) of the family: SwinIR/HAT squares, DAT/RGT rectangles with per-axis shifts and their
# transposed branch, DAT-S, an axis without shift.
WINDOWS = [((8, 8), (4, 4)), ((7, 7), (3, 3)), ((16, 16), (8, 8)), ((8, 32), (4, 16)), ((32, 8), (16, 4)),
           ((8, 16), (4, 8)), ((8, 16), (0, 8)), ((4, 6), (3, 1))]  # fmt: skip
IDS = [f"ws{w[0]}x{w[1]}-shift{s[0]}x{s[1]}" for w, s in WINDOWS]


def dat_calculate_mask(H, W, split_size, shift_size):
    """DAT's / RGT's ``calculate_mask`` for one branch (window split_size, shift shift_size along (H, W)),
    transcribed independently: label 9 regions, partition, -100 between different labels."""
    img_mask = torch.zeros((1, H, W, 1))
    h_slices = (slice(0, -split_size[0]), slice(-split_size[0], -shift_size[0]), slice(-shift_size[0], None))
    w_slices = (slice(0, -split_size[1]), slice(-split_size[1], -shift_size[1]), slice(-shift_size[1], None))
    cnt = 0
    for h in h_slices:
        for w in w_slices:
            img_mask[:, h, w, :] = cnt
            cnt += 1
    wh, ww = split_size
    windows = img_mask.view(1, H // wh, wh, W // ww, ww, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww)
    attn_mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


def dat_relative_position_index(wh, ww):
    """The Swin / DAT relative position index of a wh x ww window, transcribed independently."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += wh - 1
    relative[:, :, 1] += ww - 1
    relative[:, :, 0] *= 2 * ww - 1
    return relative.sum(-1)


@pytest.mark.parametrize("window, shift", WINDOWS, ids=IDS)
def test_shift_mask_is_the_family_calculate_mask(window, shift):
    H, W = 2 * window[0], 3 * window[1]
    expected = dat_calculate_mask(H, W, window, shift)
    assert torch.equal(reference.shift_attention_mask(H, W, window, shift), expected)
    if window[0] == window[1] and shift[0] == shift[1]:  # SwinIR's square call, with ints
        assert torch.equal(reference.shift_attention_mask(H, W, window[0], shift[0]), expected)


@pytest.mark.parametrize("window, shift", WINDOWS, ids=IDS)
def test_partition_is_roll_then_rectangular_windows_and_reverse_inverts_it(window, shift):
    (wh, ww), (sh, sw) = window, shift
    B, H, W, C = 2, 2 * wh, 3 * ww, 3
    x = torch.arange(B * H * W * C, dtype=torch.float64).reshape(B, H, W, C)
    windows = reference.window_partition(x, window, shift)
    rolled = torch.roll(x, (-sh, -sw), (1, 2))
    assert windows.shape == (B * 2 * 3, wh * ww, C)
    # Window (b, i, j), token (r, c) is rolled[b, i*wh + r, j*ww + c].
    for b, i, j, r, c in [(0, 0, 0, 0, 0), (1, 1, 2, wh - 1, ww - 1), (0, 1, 0, wh // 2, ww - 1), (1, 0, 1, 1, 0)]:
        assert torch.equal(windows[b * 6 + i * 3 + j, r * ww + c], rolled[b, i * wh + r, j * ww + c])
    assert torch.equal(reference.window_reverse(windows, window, H, W, shift), x)


@pytest.mark.parametrize("window", [(7, 7), (8, 32), (32, 8), (8, 16), (3, 5)], ids=str)
def test_relative_position_index_of_rectangular_windows(window):
    assert torch.equal(reference.relative_position_index(window), dat_relative_position_index(*window))
    if window[0] == window[1]:
        assert torch.equal(reference.relative_position_index(window[0]), dat_relative_position_index(*window))


def test_shifted_window_attention_with_rectangular_windows_is_the_composition():
    """The image-layout reference equals partition -> window attention with the per-axis mask -> reverse."""
    torch.manual_seed(0)
    window, shift, heads = (4, 8), (2, 4), 2
    qkv = torch.randn(1, 8, 16, 3 * 8, dtype=torch.float64)
    bias = torch.randn(heads, 32, 32, dtype=torch.float64)
    mask = dat_calculate_mask(8, 16, window, shift).double()
    windows = reference.window_partition(qkv, window, shift)
    expected = reference.window_reverse(reference.window_attention(windows, bias, mask, heads, 0.5), window, 8, 16, shift)
    assert torch.equal(reference.shifted_window_attention(qkv, bias, heads, window, shift, 0.5), expected)

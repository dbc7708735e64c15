"""Seamless tiling: the tile plan, the blending weights, and tiled == untiled on tiny SwinIRs."""

import os

import numpy as np
import pytest
import torch
from tests.helpers import SHARED_TESTSETS

import swinir
from swinir import imageio, tiling


def tiny_swinir(depth: int, **kwargs) -> swinir.SwinIR:
    """A random-weight SwinIR small enough for CPU tests; ``depth`` Swin blocks bound its receptive field."""
    config = dict(upscale=2, in_chans=3, embed_dim=12, depths=[depth], num_heads=[2], window_size=8,
                  mlp_ratio=2.0, upsampler="pixelshuffle")
    config.update(kwargs)
    return swinir.SwinIR(**config).eval()


@pytest.mark.parametrize("height,width,tile,overlap,window", [
    (77, 50, 32, 16, 8), (50, 77, 24, 8, 8), (8, 200, 32, 16, 8), (200, 7, 16, 8, 8),
    (63, 63, 35, 20, 7), (33, 33, 64, 32, 8),
])  # fmt: skip
def test_plan_covers_aligned_and_overlaps(height, width, tile, overlap, window):
    tiles = tiling.plan_tiles(height, width, tile, overlap, window)
    covered = np.zeros((height, width), int)
    for t in tiles:
        assert t.top % window == 0 and t.left % window == 0, "tiles must start on the window grid"
        assert t.bottom - t.top <= tile and t.right - t.left <= tile
        covered[t.top:t.bottom, t.left:t.right] += 1
    assert covered.min() >= 1
    for axis_starts, length in ((sorted({(t.top, t.bottom) for t in tiles}), height),
                                (sorted({(t.left, t.right) for t in tiles}), width)):
        assert axis_starts[-1][1] == length, "the last tile ends flush with the border"
        for (_, end), (start, _) in zip(axis_starts, axis_starts[1:]):
            assert end - start >= overlap


def test_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="window size"):
        tiling.plan_tiles(64, 64, 4, 0, 8)
    with pytest.raises(ValueError, match="overlap"):
        tiling.plan_tiles(64, 64, 32, 32, 8)
    with pytest.raises(ValueError, match="margin"):
        tiling.tiled_forward(lambda x: x, torch.rand(1, 3, 40, 40), scale=1, window_size=8, tile=16, overlap=8,
                             margin=4)


@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("overlap,margin", [(16, None), (16, 0), (24, 11)])
def test_weights_form_a_partition_of_unity(scale, overlap, margin):
    """With a pointwise 'model' (nearest upscaling) any blend of exact tiles gives the exact image."""
    def nearest(x):
        return x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    image = torch.rand(1, 3, 61, 90)
    out = tiling.tiled_forward(nearest, image, scale=scale, window_size=8, tile=32, overlap=overlap, margin=margin,
                               batch=4)
    torch.testing.assert_close(out, nearest(image), atol=1e-6, rtol=0)


def _assert_tiled_matches_untiled(model, image, *, tile, overlap, margin, batch):
    with torch.inference_mode():
        whole = model(image).float()
        tiled = tiling.tiled_forward(model, image, scale=model.upscale, window_size=model.window_size, tile=tile,
                                     overlap=overlap, margin=margin, batch=batch)
    assert len(tiling.plan_tiles(*image.shape[-2:], tile, overlap, model.window_size)) > 1
    assert (tiled - whole).abs().max() < 1e-4
    difference = imageio.quantize(tiled.numpy(), 8).astype(int) - imageio.quantize(whole.numpy(), 8).astype(int)
    assert np.abs(difference).max() <= 1, "tiled output must be within 1 grey level of the untiled one"


def test_tiled_equals_untiled_one_block_default_margin():
    """One (unshifted) Swin block: receptive field ws-1 + the convs' 5 < the default margin 12 of overlap 32."""
    torch.manual_seed(1)
    model = tiny_swinir(1)
    image = torch.rand(1, 3, 75, 98)
    _assert_tiled_matches_untiled(model, image, tile=48, overlap=32, margin=None, batch=3)


@pytest.mark.parametrize("upsampler,scale,in_chans", [("pixelshuffle", 3, 3), ("", 1, 1), ("nearest+conv", 2, 3)])
def test_tiled_equals_untiled_shifted_windows(upsampler, scale, in_chans):
    """Two blocks (one shifted): receptive field about 2 windows; a 24-pixel margin covers it."""
    torch.manual_seed(2)
    model = tiny_swinir(2, upsampler=upsampler, upscale=scale, in_chans=in_chans)
    image = torch.rand(1, in_chans, 70, 57)
    _assert_tiled_matches_untiled(model, image, tile=64, overlap=56, margin=24, batch=4)


@pytest.mark.skipif(not os.path.isdir(SHARED_TESTSETS), reason="shared test images not present")
@pytest.mark.parametrize("relative,in_chans", [("Set5/LR_bicubic/X4/babyx4.png", 3), ("Set12/01.png", 1)])
def test_tiled_equals_untiled_on_real_images(relative, in_chans):
    path = os.path.join(SHARED_TESTSETS, relative)
    if not os.path.isfile(path):
        pytest.skip(f"{relative} not present")
    pixels = imageio.read_image(path).pixels[:, :, :in_chans]
    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    torch.manual_seed(3)
    model = tiny_swinir(1, in_chans=in_chans, upsampler="" if in_chans == 1 else "pixelshuffle",
                        upscale=1 if in_chans == 1 else 2)
    _assert_tiled_matches_untiled(model, image, tile=96, overlap=32, margin=None, batch=2)


def test_tile_for_memory_scales_with_budget():
    config = swinir.PRESETS["classical_sr_x4"].kwargs
    small, large = (tiling.tile_for_memory(config, gb * 2**30, 32) for gb in (1, 4))
    assert small % 8 == 0 and large % 8 == 0
    assert 1.8 < large / small < 2.2  # side grows with sqrt(budget)
    assert tiling.tile_for_memory(config, 2**30, 32, batch=4) < small
    with pytest.raises(ValueError, match="too small"):
        tiling.tile_for_memory(config, 2**20, 32)

"""Seamless tiling: the tile plan, the blending weights, and tiled == untiled on tiny SwinIRs."""

import os

import numpy as np
import pytest
import torch
from tests.helpers import SHARED_TESTSETS

import swinir
from swinir import imageio, tiling
from swinir_kernels.tolerances import tolerance


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


# --- the blend: a partition of unity, and the cross-fade it is meant to be ---------------------------

FP32_EPS = torch.finfo(torch.float32).eps
FP32 = tolerance(torch.float32)

# (height, width, tile, overlap, margin, window): exact strides, remainders (a last tile that overlaps
# its neighbour by more than `overlap`, or is shorter than the others), seams closer than the ramp
# (margin 0: ramp 16 > the 8-pixel step to the last tile), one tile along an axis.
BLEND_CASES = [
    (64, 64, 32, 16, None, 8), (50, 50, 32, 16, None, 8), (77, 50, 32, 16, 3, 8), (61, 90, 32, 16, 0, 8),
    (75, 98, 48, 32, 12, 8), (70, 57, 64, 56, 24, 8), (200, 7, 16, 8, 3, 8), (63, 63, 35, 20, 7, 7),
    (40, 41, 32, 16, 0, 8), (33, 100, 64, 24, 9, 8),
]  # fmt: skip


def raised_cosine(ramp: int) -> np.ndarray:
    """The fade-in of the module docstring, w(t) = (1 - cos(pi (t + 0.5) / ramp)) / 2, in float64."""
    return (1 - np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)) / 2


def expected_axis_weights(spans, length, margin, ramp, scale):
    """Each tile's HR weight along one axis, from the definition alone (numpy, float64): the later tile
    fades in over ramp * scale pixels starting margin * scale pixels into it and keeps the rest of the
    axis (f_0 = 1); the earlier tiles keep what no later tile has taken: w_i = f_i * prod_{j>i} (1 - f_j)."""
    fades = [np.ones(length * scale)]
    for start, _ in spans[1:]:
        fade = np.zeros(length * scale)
        begin = (start + margin) * scale
        fade[begin:begin + ramp * scale] = raised_cosine(ramp * scale)
        fade[begin + ramp * scale:] = 1.0
        fades.append(fade)
    weights = []
    for index, fade in enumerate(fades):
        weight = fade.copy()
        for later in fades[index + 1:]:
            weight *= 1 - later
        weights.append(weight)
    return weights


def expected_blend(tiles, height, width, margin, ramp, scale):
    """Tile -> its expected (h * scale, w * scale) weight, from expected_axis_weights."""
    rows = sorted({(t.top, t.bottom) for t in tiles})
    columns = sorted({(t.left, t.right) for t in tiles})
    row_weights = dict(zip(rows, expected_axis_weights(rows, height, margin, ramp, scale)))
    column_weights = dict(zip(columns, expected_axis_weights(columns, width, margin, ramp, scale)))
    blend = {}
    for t in tiles:
        full = np.outer(row_weights[(t.top, t.bottom)], column_weights[(t.left, t.right)])
        # a tile's weight is 0 outside the tile (the plan's overlaps leave room for margin + ramp)
        inside = full[t.top * scale:t.bottom * scale, t.left * scale:t.right * scale]
        assert np.isclose(inside.sum(), full.sum())
        blend[t] = inside
    return blend


@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("height,width,tile,overlap,margin,window", BLEND_CASES)
def test_blend_weights_sum_to_one_along_every_seam(height, width, tile, overlap, margin, window, scale):
    margin_used = tiling.default_margin(overlap) if margin is None else margin
    ramp = overlap - 2 * margin_used
    blend = tiling.blend_weights(height, width, tile, overlap, window, margin=margin, scale=scale)
    tiles = [t for t, _ in blend]
    assert tiles == tiling.plan_tiles(height, width, tile, overlap, window)
    total = torch.zeros(height * scale, width * scale, dtype=torch.float64)
    expected = expected_blend(tiles, height, width, margin_used, ramp, scale)
    for t, weight in blend:
        assert weight.dtype == torch.float32 and weight.shape == (t.shape[0] * scale, t.shape[1] * scale)
        assert weight.min() >= 0 and weight.max() <= 1
        # context only: weight 0 within the margin of every inner side
        border = margin_used * scale
        if border:
            if t.top > 0:
                assert not weight[:border].any()
            if t.bottom < height:
                assert not weight[-border:].any()
            if t.left > 0:
                assert not weight[:, :border].any()
            if t.right < width:
                assert not weight[:, -border:].any()
        np.testing.assert_allclose(weight.double().numpy(), expected[t], rtol=0, atol=4 * FP32_EPS)
        total[t.top * scale:t.bottom * scale, t.left * scale:t.right * scale] += weight.double()
    assert (total - 1).abs().max().item() <= 4 * FP32_EPS * len(blend), "the weights must sum to 1 everywhere"


def test_blend_weights_on_a_seam_are_the_raised_cosine_and_its_mirror():
    """One seam, written out: tile 0 is [0, 32), tile 1 [16, 48) (overlap 16, margin 6, ramp 4)."""
    (_, first), (_, second) = tiling.blend_weights(8, 48, 32, 16, 8, margin=6)
    w = raised_cosine(4)  # 0.146, 0.5, 0.854 ... (t + 0.5: no 0 or 1 inside the ramp)
    np.testing.assert_allclose(second[0].numpy(), np.r_[np.zeros(6), w, np.ones(22)], rtol=0, atol=FP32_EPS)
    np.testing.assert_allclose(first[0].numpy(), np.r_[np.ones(22), w[::-1], np.zeros(6)], rtol=0, atol=FP32_EPS)
    np.testing.assert_allclose(w + w[::-1], 1.0, rtol=0, atol=1e-15)


def _tile_mean_model(scale):
    """A model whose output depends on the whole tile (its mean), i.e. on where the tile is."""
    def model(x):
        nearest = x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        return nearest + 10 * x.mean(dim=(1, 2, 3), keepdim=True)
    return model


def _box_blur_model(scale, size):
    """A size x size box blur with zero padding, then nearest upscaling: a receptive field wider than
    the margin, and tile borders that see zeros where the whole image has pixels."""
    def model(x):
        kernel = torch.full((x.shape[1], 1, size, size), 1.0 / size**2, dtype=x.dtype)
        blurred = torch.nn.functional.conv2d(x, kernel, padding=size // 2, groups=x.shape[1])
        return blurred.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    return model


@pytest.mark.parametrize("model_kind", ["tile-mean", "box-blur"])
@pytest.mark.parametrize("height,width,tile,overlap,margin,window,scale", [
    (64, 64, 32, 16, None, 8, 2), (50, 77, 32, 16, 3, 8, 1), (61, 90, 32, 16, 0, 8, 3), (75, 98, 48, 32, 12, 8, 2),
])  # fmt: skip
def test_a_context_dependent_model_gets_the_expected_cross_fade(model_kind, height, width, tile, overlap, margin,
                                                               window, scale):
    """Where tiles disagree (the model sees more than the margin), the output is the cross-fade of the
    tiles' own outputs with the weights of the definition, computed here from scratch."""
    margin_used = tiling.default_margin(overlap) if margin is None else margin
    # the blur's radius: 4 pixels beyond the margin
    model = _tile_mean_model(scale) if model_kind == "tile-mean" else _box_blur_model(scale, 2 * margin_used + 9)
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, height, width, generator=generator)
    tiles = tiling.plan_tiles(height, width, tile, overlap, window)
    assert len(tiles) > 1
    weights = expected_blend(tiles, height, width, margin_used, overlap - 2 * margin_used, scale)
    expected = np.zeros((3, height * scale, width * scale))
    for t in tiles:
        out = model(image[..., t.top:t.bottom, t.left:t.right])[0].double().numpy()
        expected[:, t.top * scale:t.bottom * scale, t.left * scale:t.right * scale] += weights[t] * out
    actual = tiling.tiled_forward(model, image, scale=scale, window_size=window, tile=tile, overlap=overlap,
                                  margin=margin, batch=3)[0].double().numpy()
    # the tiles do disagree: otherwise any weights summing to 1 would pass
    untiled = model(image)[0].double().numpy()
    assert np.abs(expected - untiled).max() > 1e-2
    np.testing.assert_allclose(actual, expected, rtol=FP32["rtol"], atol=FP32["atol"] * np.abs(expected).max())


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

"""Seamless tiled inference: run a SwinIR on overlapping tiles and blend them into one output.

The official ``--tile`` loop averages overlapping tiles uniformly and keeps every tile's border
pixels, which are computed with less context than the rest, so seams show (SwinIR issues #69, #91).
Here, along each axis:

* tiles start on multiples of the window size, so every tile sees the same window grid (and the
  same shifted-window masks away from its edges) as the whole image does; tile sizes are multiples
  of the window size, except the last tile of a row/column, which ends flush with the image border
  and is padded by the model exactly as the whole image would be;
* consecutive tiles overlap by at least ``overlap`` LR pixels. Of that overlap, the outer ``margin``
  pixels of each tile are context only (weight 0: discarded), and the remaining
  ``ramp = overlap - 2 * margin`` pixels are cross-faded with a raised cosine
  ``w(t) = (1 - cos(pi (t + 0.5) / ramp)) / 2``, t = 0..ramp-1, whose mirror image in the
  neighbour adds up to exactly 1. Sides on the image border keep weight 1 up to the edge;
* the 2-D weight is the outer product of the two axes' weights; the output is
  ``sum(w * tile_out) / sum(w)`` at HR resolution (weights scaled by the upscale factor).

When the model's receptive field around a pixel fits inside the margin, the tiled output equals the
untiled one up to float rounding. Tiles of equal shape are batched through the model together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable

import torch


@dataclasses.dataclass(frozen=True)
class Tile:
    """An LR tile: rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left


def default_margin(overlap: int) -> int:
    """Context discarded at each inner tile side: 3/8 of the overlap (32 -> 12, leaving an 8-pixel ramp)."""
    return (3 * overlap) // 8


def _axis_starts(length: int, tile: int, stride: int, window_size: int) -> list[int]:
    """Tile starts along one axis: 0, stride, 2*stride, ..., and a last one aligned to the window grid
    that ends at ``length`` with a size in (tile - window_size, tile]."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    last = math.ceil((length - tile) / window_size) * window_size
    return [min(k * stride, last) for k in range(count)]


def check_tile_options(tile: int, overlap: int, window_size: int) -> tuple[int, int]:
    """(tile rounded down to a window multiple, stride) for these options; ValueError if they cannot work."""
    if tile < window_size:
        raise ValueError(f"tile must be >= the window size {window_size}, got {tile}")
    tile -= tile % window_size
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile={tile}) (the tile rounded down to a multiple of "
                         f"the window size), got {overlap}")
    stride = (tile - overlap) // window_size * window_size
    if stride == 0:
        raise ValueError(f"tile {tile} minus overlap {overlap} must be at least the window size {window_size}")
    return tile, stride


def plan_tiles(height: int, width: int, tile: int, overlap: int, window_size: int) -> list[Tile]:
    """Cover an LR image of height x width with tiles (see module docstring).

    tile: wanted tile side, rounded down to a multiple of window_size (>= window_size).
    overlap: minimum overlap between neighbouring tiles; the stride is tile - overlap rounded down to a
    multiple of window_size, so the actual overlap may be larger.
    """
    tile, stride = check_tile_options(tile, overlap, window_size)
    rows = _axis_starts(height, tile, stride, window_size)
    columns = _axis_starts(width, tile, stride, window_size)
    return [Tile(top, min(top + tile, height), left, min(left + tile, width)) for top in rows for left in columns]


def _axis_weight(start: int, stop: int, length: int, margin: int, ramp: int, scale: int) -> torch.Tensor:
    """HR weight of one tile along an axis: 0 over an inner side's margin, raised cosine over its ramp,
    1 inside; a side that touches the image border keeps weight 1 up to the edge."""
    size = (stop - start) * scale
    margin_hr, ramp_hr = margin * scale, ramp * scale
    fade_in = (1 - torch.cos(math.pi * (torch.arange(ramp_hr, dtype=torch.float32) + 0.5) / ramp_hr)) / 2
    weight = torch.ones(size, dtype=torch.float32)
    # plan_tiles makes every tile longer than overlap = 2 * margin + ramp, so these slices fit.
    if start > 0:
        weight[:margin_hr] = 0
        weight[margin_hr:margin_hr + ramp_hr] = fade_in
    if stop < length:
        weight[size - margin_hr - ramp_hr:size - margin_hr] *= fade_in.flip(0)
        weight[size - margin_hr:] = 0
    return weight


def tiled_forward(model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *, scale: int,
                  window_size: int, tile: int, overlap: int, margin: int | None = None, batch: int = 1,
                  progress: Callable[[Iterable], Iterable] | None = None) -> torch.Tensor:
    """Restore ``image`` (1, C, H, W) tile by tile; returns (1, C_out, H*scale, W*scale) float32 on the CPU.

    model: maps (B, C, h, w) on image's device/dtype to (B, C_out, h*scale, w*scale).
    margin: context discarded at inner tile sides (default :func:`default_margin`); needs
    2 * margin < overlap so that neighbouring tiles' kept parts meet.
    batch: how many equal-shape tiles go through the model at once.
    progress: optional wrapper over the iterable of tile batches (e.g. tqdm).
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, H, W), got {tuple(image.shape)}")
    margin = default_margin(overlap) if margin is None else margin
    ramp = overlap - 2 * margin
    if margin < 0 or ramp < 1:
        raise ValueError(f"tile margin must satisfy 0 <= 2*margin < overlap; got margin {margin}, overlap {overlap}")
    height, width = image.shape[-2:]
    tiles = plan_tiles(height, width, tile, overlap, window_size)
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for item in tiles:
        by_shape.setdefault(item.shape, []).append(item)
    batches = [group[i:i + batch] for group in by_shape.values() for i in range(0, len(group), batch)]

    output = None
    weight_sum = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
    for chunk in (progress(batches) if progress else batches):
        inputs = torch.cat([image[..., t.top:t.bottom, t.left:t.right] for t in chunk])
        results = model(inputs).float().cpu()
        if output is None:
            output = torch.zeros(1, results.shape[1], height * scale, width * scale)
        for t, result in zip(chunk, results):
            weight = torch.outer(_axis_weight(t.top, t.bottom, height, margin, ramp, scale),
                                 _axis_weight(t.left, t.right, width, margin, ramp, scale))
            rows = slice(t.top * scale, t.bottom * scale)
            columns = slice(t.left * scale, t.right * scale)
            output[0, :, rows, columns] += weight * result
            weight_sum[0, 0, rows, columns] += weight
    return output / weight_sum


def activation_bytes_per_pixel(config: dict, half: bool = False) -> float:
    """Rough peak activation bytes per LR input pixel of a SwinIR forward, for choosing tile sizes.

    Per pixel (token), with C = embed_dim, h = max(num_heads), ws = window_size, s = upscale:
    ~(6 + 2 * mlp_ratio) * C values live at the peak of a block (residual stream, LayerNorm output,
    qkv, attention output, MLP hidden before/after GELU), plus 2 * h * ws^2 for unfused attention
    scores and their softmax, plus for the 'pixelshuffle' / 'nearest+conv' tails 3 * 64 * s^2
    (the 64-channel feature maps at growing resolution). Residual stream and softmax stay fp32, so
    half precision saves about a quarter, not half. A 1.5x allowance covers allocator fragmentation
    and temporaries. classical_sr_x4 (C=180, h=6, ws=8, x4): ~34 kB/pixel, i.e. 176x176 LR tiles per GB.
    """
    channels = config["embed_dim"]
    heads = max(config["num_heads"])
    window = config["window_size"]
    scale = config["upscale"]
    values = (6 + 2 * config.get("mlp_ratio", 2.0)) * channels + 2 * heads * window * window
    if config.get("upsampler") in ("pixelshuffle", "nearest+conv"):
        values += 3 * 64 * scale * scale
    return 1.5 * values * (3.0 if half else 4.0)


def tile_for_memory(config: dict, budget_bytes: float, overlap: int, *, batch: int = 1, half: bool = False) -> int:
    """Largest tile side (multiple of window_size) whose ``batch`` tiles fit ``budget_bytes`` of activations.

    Raises ValueError when even the smallest useful tile (overlap + window_size) does not fit.
    """
    window = config["window_size"]
    side = int(math.sqrt(budget_bytes / (batch * activation_bytes_per_pixel(config, half))))
    side -= side % window
    smallest = (overlap // window + 1) * window
    if side < smallest:
        need = batch * smallest * smallest * activation_bytes_per_pixel(config, half) / 2**30
        raise ValueError(f"memory budget of {budget_bytes / 2**30:g} GB is too small for tiles with overlap "
                         f"{overlap}: about {need:.2f} GB needed (lower --tile-overlap or --batch)")
    return side

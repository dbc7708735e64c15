"""Seamless tiled inference: run a SwinIR on overlapping tiles and blend them into one output.

The official ``--tile`` loop averages overlapping tiles uniformly and keeps every tile's border
pixels, which are computed with less context than the rest, so seams show (SwinIR issues #69, #91).
Here, along each axis:

* tiles start on multiples of the window size, so every tile sees the same window grid (and the
  same shifted-window masks away from its edges) as the whole image does; tile sizes are multiples
  of the window size, except the last tile of a row/column, which ends flush with the image border
  and is padded by the model exactly as the whole image would be;
* consecutive tiles overlap by at least ``overlap`` LR pixels. Of that overlap, the outer ``margin``
  pixels of each tile are context only (weight 0: discarded), and the seam is a cross-fade over
  ``ramp = overlap - 2 * margin`` pixels starting ``margin`` pixels into the later tile: the later
  tile fades in with the raised cosine ``w(t) = (1 - cos(pi (t + 0.5) / ramp)) / 2``, t = 0..ramp-1,
  and the earlier one fades out with ``1 - w(t) = w(ramp - 1 - t)``. Sides on the image border keep
  weight 1 up to the edge. Where the last tile (aligned to the grid, flush with the border) overlaps
  its neighbour by more than ``overlap``, the seam still starts ``margin`` pixels into the later tile
  (which takes over as soon as it has ``margin`` pixels of context), so the earlier tile's weight
  ends at least ``margin`` pixels before its own end. Written as
  fade-ins f_i (f_0 = 1), tile i's weight is ``f_i * prod_{j > i} (1 - f_j)``: the weights of every
  axis sum to exactly 1 (up to float rounding), even where two seams come closer than ``ramp``;
* the 2-D weight is the outer product of the two axes' weights, so they sum to 1 everywhere too;
  the output is ``sum(w * tile_out)`` at HR resolution (weights scaled by the upscale factor).

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
    """Cover an LR image of height x width with tiles (see module docstring), row-major.

    tile: wanted tile side, rounded down to a multiple of window_size (>= window_size).
    overlap: minimum overlap between neighbouring tiles; the stride is tile - overlap rounded down to a
    multiple of window_size, so the actual overlap may be larger.
    """
    rows, columns = _axis_spans(height, width, tile, overlap, window_size)
    return [Tile(top, bottom, left, right) for top, bottom in rows for left, right in columns]


def _axis_spans(height: int, width: int, tile: int, overlap: int, window_size: int):
    """The tiles' [start, stop) along the rows and along the columns."""
    tile, stride = check_tile_options(tile, overlap, window_size)
    return tuple([(start, min(start + tile, length)) for start in _axis_starts(length, tile, stride, window_size)]
                 for length in (height, width))


def _axis_weights(spans: list[tuple[int, int]], length: int, margin: int, ramp: int, scale: int) -> list[torch.Tensor]:
    """HR weight of each tile along an axis (see the module docstring): fade-in f_i over
    [(start_i + margin) * scale, + ramp * scale) for i > 0, f_0 = 1; weight_i = f_i * prod_{j>i} (1 - f_j)."""
    ramp_hr = ramp * scale
    positions = torch.arange(length * scale, dtype=torch.float64)
    fades = [torch.ones(length * scale, dtype=torch.float64)]
    for start, _ in spans[1:]:
        t = positions - (start + margin) * scale
        raised_cosine = (1 - torch.cos(math.pi * (t + 0.5) / ramp_hr)) / 2
        fades.append(torch.where(t < 0, 0.0, torch.where(t >= ramp_hr, 1.0, raised_cosine)))
    weights = [None] * len(spans)
    later = torch.ones(length * scale, dtype=torch.float64)  # prod over the later tiles of (1 - f_j)
    for index in reversed(range(len(spans))):
        start, stop = spans[index]
        weight = fades[index] * later
        # plan_tiles makes neighbours overlap by >= overlap = 2 * margin + ramp: the later tile has faded
        # in completely `margin` pixels before this one ends
        assert not weight[:start * scale].any() and not weight[stop * scale:].any(), "a weight outside its tile"
        weights[index] = weight[start * scale:stop * scale].float()
        later = later * (1 - fades[index])
    return weights


def blend_weights(height: int, width: int, tile: int, overlap: int, window_size: int, *, margin: int | None = None,
                  scale: int = 1) -> list[tuple[Tile, torch.Tensor]]:
    """The tiles of :func:`plan_tiles` with their (h * scale, w * scale) float32 HR blending weights
    (see the module docstring): 0 within ``margin`` of inner sides, raised-cosine seams, summing to 1
    over the image. margin: default :func:`default_margin`; needs 0 <= 2 * margin < overlap."""
    margin = default_margin(overlap) if margin is None else margin
    ramp = overlap - 2 * margin
    if margin < 0 or ramp < 1:
        raise ValueError(f"tile margin must satisfy 0 <= 2*margin < overlap; got margin {margin}, overlap {overlap}")
    rows, columns = _axis_spans(height, width, tile, overlap, window_size)
    row_weights = _axis_weights(rows, height, margin, ramp, scale)
    column_weights = _axis_weights(columns, width, margin, ramp, scale)
    return [(Tile(top, bottom, left, right), torch.outer(row_weight, column_weight))
            for (top, bottom), row_weight in zip(rows, row_weights)
            for (left, right), column_weight in zip(columns, column_weights)]


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
    height, width = image.shape[-2:]
    weights = dict(blend_weights(height, width, tile, overlap, window_size, margin=margin, scale=scale))
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for item in weights:
        by_shape.setdefault(item.shape, []).append(item)
    batches = [group[i:i + batch] for group in by_shape.values() for i in range(0, len(group), batch)]

    output = None
    for chunk in (progress(batches) if progress else batches):
        inputs = torch.cat([image[..., t.top:t.bottom, t.left:t.right] for t in chunk])
        results = model(inputs).float().cpu()
        if output is None:
            output = torch.zeros(1, results.shape[1], height * scale, width * scale)
        for t, result in zip(chunk, results):
            rows = slice(t.top * scale, t.bottom * scale)
            columns = slice(t.left * scale, t.right * scale)
            output[0, :, rows, columns] += weights[t] * result
    return output


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

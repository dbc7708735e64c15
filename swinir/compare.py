"""Before/after pictures (``swinir eval --compare DIR``): per image, the same crop of the input
(upscaled nearest), bicubic, ours and the ground truth side by side, and below them a zoomed inset
of the place where ours is furthest from the ground truth; the PSNR of each (whole image, the border
cropped as ``swinir eval``) is in its label.

Drawn with Pillow (a core dependency: no matplotlib needed) so that every picture pixel is an image
pixel repeated (nearest-neighbour zoom); :func:`comparison` also returns where each panel and crop
lies, which the tests use to check that the crops come from the right places.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Layout", "largest_error_box", "crop_around", "comparison", "bicubic_upscale", "PANEL"]

PANEL = 192  # picture pixels per panel side (crops and insets are zoomed by an integer factor to about this)
GAP = 4
LABEL = 16
BACKGROUND = 255


@dataclasses.dataclass
class Layout:
    """Where things are: boxes are (top, left, height, width) in image pixels (``crop``, ``inset``) or
    in picture pixels (``panels``: the crop panels, ``insets``: the zoomed insets, one per column)."""

    crop: tuple[int, int, int, int]
    inset: tuple[int, int, int, int]
    crop_zoom: int
    inset_zoom: int
    labels: list[str]
    panels: list[tuple[int, int, int, int]]
    insets: list[tuple[int, int, int, int]]


def _aligned(value: int, step: int) -> int:
    return value - value % step


def largest_error_box(error: np.ndarray, size: int, border: int = 0, step: int = 1) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window (clipped to the image) with the largest summed
    ``error`` (an (H, W) map), searching inside ``border`` pixels from the edges (as the scores are
    computed) on a grid of ``step`` pixels (the SR scale, so that the input's pixels line up).
    Ties go to the top-most, then left-most window."""
    height, width = error.shape
    size_h, size_w = min(size, height), min(size, width)
    weights = np.asarray(error, dtype=np.float64).copy()
    if border and height > 2 * border and width > 2 * border:
        outside = np.ones_like(weights, dtype=bool)
        outside[border:height - border, border:width - border] = False
        weights[outside] = 0.0
    integral = np.zeros((height + 1, width + 1))
    integral[1:, 1:] = weights.cumsum(0).cumsum(1)
    tops = np.arange(0, height - size_h + 1, step)
    lefts = np.arange(0, width - size_w + 1, step)
    sums = (integral[tops[:, None] + size_h, lefts[None, :] + size_w] - integral[tops[:, None], lefts[None, :] + size_w]
            - integral[tops[:, None] + size_h, lefts[None, :]] + integral[tops[:, None], lefts[None, :]])
    row, column = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(tops[row]), int(lefts[column])


def crop_around(box: tuple[int, int, int, int], size: int, height: int, width: int, step: int = 1) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` window (clipped to the image, on the ``step`` grid) centred on ``box``."""
    top, left, box_h, box_w = box
    size_h, size_w = min(size, height), min(size, width)

    def place(start: int, box: int, size: int, limit: int) -> int:
        origin = _aligned(min(max(0, start + box // 2 - size // 2), limit - size), step)
        if origin + size < start + box and origin + step + size <= limit:  # rounding down cut the box off
            origin += step
        return origin

    return place(top, box_h, size_h, height), place(left, box_w, size_w, width), size_h, size_w


def bicubic_upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """(h, w, C) [0, 1] -> (h*scale, w*scale, C): Pillow bicubic, as the project's bicubic baselines."""
    from .degrade import resize_plane

    height, width = pixels.shape[0] * scale, pixels.shape[1] * scale
    planes = [resize_plane(pixels[..., c], height, width) for c in range(pixels.shape[2])]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def _to_rgb8(pixels: np.ndarray) -> np.ndarray:
    pixels = np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels[..., :3]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def comparison(truth: np.ndarray | None, ours: np.ndarray, *, lr: np.ndarray | None = None, scale: int = 1,
               border: int = 0, crop: int = 96, inset: int = 32, psnrs: dict | None = None,
               error_reference: np.ndarray | None = None, names: dict | None = None):
    """The picture (an (H, W, 3) uint8 array) and its :class:`Layout`.

    ``ours``: the restored image (H, W, C) in [0, 1]; ``truth``: the ground truth (cropped to ``ours``'
    size) or None; ``lr``: the input, (H/scale, W/scale, C), drawn upscaled nearest and, for scale > 1,
    bicubic-upscaled as the baseline. The inset is the ``inset``-pixel window where ours differs most
    from ``error_reference`` (default: the ground truth; without either, where ours differs most from
    the bicubic or input image); the crop is the ``crop``-pixel window centred on it. ``psnrs``: column
    key ('input', 'bicubic', 'ours') -> dB shown in the label; ``names`` overrides the column titles.
    """
    from PIL import Image, ImageDraw

    height, width = ours.shape[:2]
    columns: list[tuple[str, np.ndarray]] = []
    titles = {"input": "input (nearest)", "bicubic": "bicubic", "ours": "ours", "truth": "ground truth", **(names or {})}
    if lr is not None:
        nearest = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)[:height, :width]
        columns.append(("input", nearest))
        if scale > 1:
            columns.append(("bicubic", bicubic_upscale(lr, scale)[:height, :width]))
    columns.append(("ours", ours))
    if truth is not None:
        columns.append(("truth", truth[:height, :width]))
    reference = error_reference if error_reference is not None else truth
    if reference is None:
        reference = next((pixels for key, pixels in columns if key != "ours"), ours)
    error = np.square(np.asarray(ours, np.float64) - np.asarray(reference[:height, :width], np.float64))
    error = error.sum(axis=2) if error.ndim == 3 else error
    step = max(1, scale)
    inset_size = max(step, _aligned(min(inset, height, width), step))
    crop_size = max(inset_size, _aligned(min(crop, height, width), step))
    inset_top, inset_left = largest_error_box(error, inset_size, border, step)
    inset_box = (inset_top, inset_left, min(inset_size, height), min(inset_size, width))
    crop_box = crop_around(inset_box, crop_size, height, width, step)
    crop_zoom = max(1, PANEL // max(crop_box[2], crop_box[3]))
    inset_zoom = max(1, PANEL // max(inset_box[2], inset_box[3]))

    panel_h, panel_w = crop_box[2] * crop_zoom, crop_box[3] * crop_zoom
    zoom_h, zoom_w = inset_box[2] * inset_zoom, inset_box[3] * inset_zoom
    cell_w = max(panel_w, zoom_w)
    picture_w = len(columns) * cell_w + (len(columns) + 1) * GAP
    picture_h = LABEL + panel_h + GAP + zoom_h + 2 * GAP
    picture = Image.new("RGB", (picture_w, picture_h), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(picture)
    font = _font(11)
    labels, panels, insets = [], [], []
    for index, (key, pixels) in enumerate(columns):
        x = GAP + index * (cell_w + GAP)
        label = titles[key]
        if psnrs and psnrs.get(key) is not None:
            label += f"  {psnrs[key]:.2f} dB"
        labels.append(label)
        draw.text((x, 2), label, fill=(0, 0, 0), font=font)
        top, left, crop_h, crop_w = crop_box
        region = _to_rgb8(pixels[top:top + crop_h, left:left + crop_w])
        region = np.repeat(np.repeat(region, crop_zoom, axis=0), crop_zoom, axis=1)
        y = LABEL
        picture.paste(Image.fromarray(region), (x, y))
        panels.append((y, x, panel_h, panel_w))
        # the inset's place in the crop: a red frame just outside it
        frame_top = y + (inset_box[0] - top) * crop_zoom
        frame_left = x + (inset_box[1] - left) * crop_zoom
        draw.rectangle((frame_left - 1, frame_top - 1, frame_left + inset_box[3] * crop_zoom,
                        frame_top + inset_box[2] * crop_zoom), outline=(230, 30, 30))
        zoomed = _to_rgb8(pixels[inset_box[0]:inset_box[0] + inset_box[2], inset_box[1]:inset_box[1] + inset_box[3]])
        zoomed = np.repeat(np.repeat(zoomed, inset_zoom, axis=0), inset_zoom, axis=1)
        zoom_y = LABEL + panel_h + GAP
        picture.paste(Image.fromarray(zoomed), (x, zoom_y))
        insets.append((zoom_y, x, zoom_h, zoom_w))
    layout = Layout(crop_box, inset_box, crop_zoom, inset_zoom, labels, panels, insets)
    return np.asarray(picture), layout

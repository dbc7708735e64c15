"""Make low-quality inputs from clean images, as SwinIR's test script does, for ``swinir degrade``.

* ``bicubic_downscale``: crop to a multiple of the scale ("modcrop"), then Pillow's bicubic resize
  (Keys cubic a = -0.5, support widened by the scale factor, i.e. antialiased like MATLAB's imresize,
  but not bit-identical to it) done in float32 per channel.
* ``add_gaussian_noise``: x + N(0, (sigma/255)^2) drawn from ``numpy.random.RandomState(seed)`` with
  the (H, W[, 3]) shape and BGR channel order of the official script, so seed 0 reproduces its noise
  sample for a given image. The official script keeps the noisy image unclipped in float; a file
  cannot, so the caller quantises (8- or 16-bit) and clips.
* ``jpeg_compress``: encode with Pillow's libjpeg at ``quality`` (4:2:0 chroma for colour, as
  cv2.imencode) and decode again.
* ``to_gray``: the gray conversions the official script applies to colour inputs for its gray tasks.
* ``degrade``: one of the three, as ``swinir degrade --mode`` applies it (and the trainer, on the fly).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .metrics import to_y_channel

MODES = ("sr", "noise", "jpeg")
SR_SCALES = (2, 3, 4, 8)
NOISE_SIGMAS = (15, 25, 50)
JPEG_QUALITIES = (10, 20, 30, 40)


def modcrop(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Crop (H, W, ...) to H - H % scale, W - W % scale (top-left kept)."""
    height, width = pixels.shape[0] - pixels.shape[0] % scale, pixels.shape[1] - pixels.shape[1] % scale
    return pixels[:height, :width]


def resize_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of one float32 (H, W) plane to (height, width) with Pillow ('F' mode: no rounding)."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def bicubic_downscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) [0, 1] -> (H // scale, W // scale, C) after a modcrop; values clipped to [0, 1]."""
    if scale not in SR_SCALES:
        raise ValueError(f"scale must be one of {SR_SCALES}, got {scale}")
    cropped = modcrop(pixels, scale)
    height, width = cropped.shape[0] // scale, cropped.shape[1] // scale
    if height == 0 or width == 0:
        raise ValueError(f"image of {pixels.shape[0]}x{pixels.shape[1]} is smaller than the scale {scale}")
    planes = [resize_plane(cropped[..., c], height, width) for c in range(cropped.shape[2])]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def add_gaussian_noise(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """(H, W, C) [0, 1] + N(0, (sigma/255)^2) i.i.d.; unclipped float32 (see module docstring)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = np.random.RandomState(seed)
    if pixels.shape[2] == 1:
        noise = rng.normal(0.0, sigma / 255.0, pixels.shape[:2])[..., None]
    else:
        noise = rng.normal(0.0, sigma / 255.0, pixels.shape)[..., ::-1]  # drawn in BGR order like cv2
    return (pixels + noise).astype(np.float32)


def jpeg_compress(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Round (H, W, C) [0, 1] to 8 bits, JPEG-encode at ``quality`` (1..100), decode; returns [0, 1] float32."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    data = np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(data[..., 0] if data.shape[2] == 1 else data)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.asarray(decoded, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return array.astype(np.float32) / 255.0


def to_gray(pixels: np.ndarray, studio_luma: bool) -> np.ndarray:
    """(H, W, 3) [0, 1] -> (H, W, 1), rounded to 8 bits like the official script.

    studio_luma=True: BT.601 studio Y (16..235), as the gray JPEG task (``bgr2ycbcr(y_only=True)``);
    False: full-range 0.299 R + 0.587 G + 0.114 B, as ``cv2.imread(..., IMREAD_GRAYSCALE)`` for gray
    denoising.
    """
    if pixels.shape[2] == 1:
        return pixels
    if studio_luma:
        luma = to_y_channel(pixels * 255.0)[..., 0]
    else:
        luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32) * 255.0
    return (np.rint(luma) / 255.0).astype(np.float32)[..., None]


def degrade(pixels: np.ndarray, mode: str, *, scale: int = 4, sigma: float = 25.0, seed: int = 0, quality: int = 10,
            gray: bool = False, bit_depth: int = 8) -> tuple[np.ndarray, int]:
    """The low-quality pixels ``swinir degrade --mode MODE`` makes of (H, W, C) [0, 1] ``pixels``, and
    the bit depth of the file it writes: ``sr`` bicubic x ``scale``, ``noise`` Gaussian ``sigma`` (0..255
    scale) from RandomState(``seed``), ``jpeg`` at ``quality`` (always 8 bits). ``gray`` converts a
    colour image first (studio Y for jpeg, as the official gray JPEG task; 0.299/0.587/0.114 otherwise).
    ``bit_depth``: the file's bit depth for sr and noise. The trainer degrades its patches with this
    function, so training sees exactly the inputs the command writes."""
    if gray:
        pixels = to_gray(pixels, studio_luma=mode == "jpeg")
    if mode == "sr":
        return bicubic_downscale(pixels, scale), bit_depth
    if mode == "noise":
        return add_gaussian_noise(pixels, sigma, seed), bit_depth
    if mode == "jpeg":
        return jpeg_compress(pixels, quality), 8
    raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")

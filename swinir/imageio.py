"""Reading and writing images for the command line: PNG, JPEG, TIFF, BMP and WebP.

Pixels travel as float32 arrays of shape (H, W, C), C = 1 (gray) or 3 (RGB), with values in [0, 1];
an alpha channel travels separately as (H, W). ``bit_depth`` (8 or 16) records the source precision
so that a 16-bit input gives a 16-bit output.

8-bit images go through Pillow (every format, palettes, EXIF orientation). Pillow (as of 13) decodes
16-bit *colour* PNG and TIFF files to 8 bits and cannot encode them, so 16-bit PNG and TIFF files
(gray, gray+alpha, RGB, RGBA; interlaced or not) go through OpenCV (libpng, libtiff), the library
the SR field's own scripts use. Writes are atomic (:mod:`swinir.files`).
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import atomic_write_bytes

#: file suffix -> Pillow format name, for everything we read and write
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY_COLOUR_TYPES = (0, 4)  # IHDR colour type: gray, gray + alpha
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_PHOTOMETRIC = 262
_TIFF_GRAY_PHOTOMETRICS = (0, 1)  # white is zero, black is zero
_SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # what OpenCV reads and writes at 16 bits


ALREADY_EXISTS = "already exists (pass --overwrite to replace it, or --skip-existing to keep it)"


class ImageError(Exception):
    """An image could not be read or written; the message names the file and the reason."""


@dataclasses.dataclass
class LoadedImage:
    """An image as the model sees it.

    pixels: float32 (H, W, C), C in {1, 3}, values in [0, 1].
    alpha: float32 (H, W) in [0, 1], or None for opaque images.
    bit_depth: 8 or 16, the precision of the source file.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]


def is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in FORMATS


def read_image(path: str) -> LoadedImage:
    """Read ``path`` into a :class:`LoadedImage`; raises :class:`ImageError` for missing or corrupt files."""
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
        if head.startswith(_PNG_SIGNATURE) and len(head) == 26 and head[24] == 16:
            return _read_sixteen_bit(path, gray=head[25] in _PNG_GRAY_COLOUR_TYPES)
        with Image.open(path) as image:
            if image.format == "TIFF" and max(_as_tuple(image.tag_v2.get(_TIFF_BITS_PER_SAMPLE, 8))) > 8:
                return _read_sixteen_bit(path, gray=image.tag_v2.get(_TIFF_PHOTOMETRIC) in _TIFF_GRAY_PHOTOMETRICS)
            image.load()
            # Cameras store rotation in EXIF; users expect the picture the way viewers show it.
            image = ImageOps.exif_transpose(image)
            return _from_pillow(image)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: cannot read image ({error})") from None


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _read_sixteen_bit(path: str, gray: bool) -> LoadedImage:
    """A 16-bit PNG or TIFF through OpenCV. OpenCV returns BGR[A], and gray + alpha as BGRA with the gray
    value in all three colour channels, so ``gray`` (from the file's header) says which it was."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)  # not cv2.imread: it cannot open every path on every OS
    samples = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if samples is None:
        raise ImageError(f"{path}: cannot read image (OpenCV could not decode this 16-bit file)")
    if samples.dtype != np.uint16:
        raise ImageError(f"{path}: cannot read image (expected 16-bit samples, OpenCV gave {samples.dtype})")
    if samples.ndim == 2:
        samples = samples[..., None]
    channels = samples.shape[2]
    if channels not in (1, 3, 4):
        raise ImageError(f"{path}: cannot read image ({channels} channels; expected gray, RGB or RGBA)")
    colour = [0] if gray or channels == 1 else [2, 1, 0]
    values = samples.astype(np.float32) / 65535.0
    pixels = np.ascontiguousarray(values[..., colour])
    return LoadedImage(pixels, np.ascontiguousarray(values[..., 3]) if channels == 4 else None, 16)


def _from_pillow(image: Image.Image) -> LoadedImage:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        gray = np.asarray(image, dtype=np.uint16).astype(np.float32) / 65535.0
        return LoadedImage(gray[..., None], None, 16)
    if mode == "I":  # 32-bit integer container; Pillow uses it for 16-bit gray TIFF/PNG variants
        gray = np.asarray(image, dtype=np.int64)
        if gray.min() < 0 or gray.max() > 65535:
            raise ImageError(f"32-bit integer image with values outside 0..65535 (mode {mode})")
        return LoadedImage((gray.astype(np.float32) / 65535.0)[..., None], None, 16)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("PA", "La", "RGBa"):
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, F: shown as RGB by viewers
    array = np.asarray(image, dtype=np.uint8).astype(np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("LA", "RGBA"):
        return LoadedImage(np.ascontiguousarray(array[..., :-1]), np.ascontiguousarray(array[..., -1]), 8)
    return LoadedImage(array, None, 8)


def quantize(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] floats -> uint8 or uint16, clamped then rounded (as the official script: clamp, *255, round)."""
    top = 255 if bit_depth == 8 else 65535
    scaled = np.rint(np.clip(values, 0.0, 1.0) * top)
    return scaled.astype(np.uint8 if bit_depth == 8 else np.uint16)


def round_trip(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """The [0, 1] float32 pixels read back from a file of ``bit_depth`` that holds ``pixels`` (clipped, rounded)."""
    return quantize(pixels, bit_depth).astype(np.float32) / np.float32(255.0 if bit_depth == 8 else 65535.0)


def on_255_scale(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] pixels as the official script scores a file of ``bit_depth``: uint8 values for 8 bits, unrounded
    0..255 floats for 16 bits (``swinir eval`` and the trainer's validation both score through this)."""
    if bit_depth == 8:
        return quantize(pixels, 8)
    return pixels.astype(np.float64) * 255.0


def write_image(path: str, pixels: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int = 8,
                *, overwrite: bool = False, quality: int = 95) -> None:
    """Write (H, W, C) [0, 1] ``pixels`` (+ optional (H, W) ``alpha``) to ``path`` atomically.

    bit_depth 16 is available for PNG and TIFF; other formats are written at 8 bits.
    Raises :class:`ImageError` if ``path`` exists and ``overwrite`` is false, or cannot be written.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unsupported output format {suffix!r} (use one of {', '.join(sorted(FORMATS))})")
    if os.path.exists(path) and not overwrite:
        raise ImageError(f"{path}: {ALREADY_EXISTS}")
    channels = [pixels[..., c] for c in range(pixels.shape[2])]
    if alpha is not None:
        channels.append(alpha)
    stacked = np.stack(channels, axis=-1)
    fmt = FORMATS[suffix]
    if bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS:
        payload = _encode_sixteen_bit(quantize(stacked, 16), suffix)
    else:
        payload = _encode_pillow(stacked, fmt, quality)
    try:
        atomic_write_bytes(path, payload, overwrite=overwrite)
    except FileExistsError:
        raise ImageError(f"{path}: {ALREADY_EXISTS}") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot write ({error.strerror or error})") from None


def _encode_sixteen_bit(samples: np.ndarray, suffix: str) -> bytes:
    """uint16 (H, W, C), C in 1..4 (gray, gray+alpha, RGB, RGBA) -> PNG or TIFF bytes through OpenCV.
    OpenCV cannot write gray + alpha: that becomes RGBA with R = G = B (the same picture)."""
    import cv2

    channels = samples.shape[2]
    order = {1: [0], 2: [0, 0, 0, 1], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[channels]
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(samples[..., order]))
    if not ok:
        raise ImageError(f"OpenCV could not encode a 16-bit {suffix} image of shape {samples.shape}")
    return encoded.tobytes()


def _encode_pillow(stacked: np.ndarray, fmt: str, quality: int) -> bytes:
    data = quantize(stacked, 8)
    image = Image.fromarray(data[..., 0] if data.shape[2] == 1 else data, mode=None)
    if fmt == "JPEG" and image.mode in ("LA", "RGBA"):  # JPEG has no alpha channel
        image = image.convert(image.mode[:-1])
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":  # lossless, and keep the colour of fully transparent pixels
        options.update(lossless=True, exact=True)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()

"""Reading and writing images for the command line: PNG, JPEG, TIFF, BMP and WebP through Pillow.

Pixels travel as float32 arrays of shape (H, W, C), C = 1 (gray) or 3 (RGB), with values in [0, 1];
an alpha channel travels separately as (H, W). ``bit_depth`` (8 or 16) records the source precision
so that a 16-bit input gives a 16-bit output.

Pillow (as of 13) decodes 16-bit *colour* PNGs to 8 bits and cannot encode them at all, so every
16-bit PNG (gray, gray+alpha, RGB, RGBA) goes through the small codec in this module instead
(non-interlaced files; the ones Pillow, libpng defaults and this module write). Writes are atomic:
the image goes to a temporary file in the destination folder, then ``os.replace`` moves it into place,
so an interrupted run never leaves a truncated output behind.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tempfile
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
# PNG colour type -> (channels, has alpha)
_PNG_COLOUR_TYPES = {0: (1, False), 2: (3, False), 4: (2, True), 6: (4, True)}


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
        if head.startswith(_PNG_SIGNATURE) and head[24] == 16:
            return _read_png16(path)
        with Image.open(path) as image:
            image.load()
            # Cameras store rotation in EXIF; users expect the picture the way viewers show it.
            image = ImageOps.exif_transpose(image)
            return _from_pillow(image)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zlib.error, struct.error) as error:
        raise ImageError(f"{path}: cannot read image ({error})") from None


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


def write_image(path: str, pixels: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int = 8,
                *, overwrite: bool = False, quality: int = 95) -> None:
    """Write (H, W, C) [0, 1] ``pixels`` (+ optional (H, W) ``alpha``) to ``path`` atomically.

    bit_depth 16 is only available for PNG (and gray TIFF); other formats are written at 8 bits.
    Raises :class:`ImageError` if ``path`` exists and ``overwrite`` is false, or cannot be written.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unsupported output format {suffix!r} (use one of {', '.join(sorted(FORMATS))})")
    if os.path.exists(path) and not overwrite:
        raise ImageError(f"{path}: already exists (pass --overwrite to replace it)")
    channels = [pixels[..., c] for c in range(pixels.shape[2])]
    if alpha is not None:
        channels.append(alpha)
    stacked = np.stack(channels, axis=-1)
    fmt = FORMATS[suffix]
    if bit_depth == 16 and fmt == "PNG":
        payload = _encode_png16(quantize(stacked, 16))
    else:
        payload = _encode_pillow(stacked, bit_depth if fmt == "TIFF" else 8, fmt, quality)
    _atomic_write(path, payload)


def _encode_pillow(stacked: np.ndarray, bit_depth: int, fmt: str, quality: int) -> bytes:
    if bit_depth == 16 and stacked.shape[2] == 1:
        image = Image.fromarray(quantize(stacked[..., 0], 16))
    else:
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


def _atomic_write(path: str, payload: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as error:
        raise ImageError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.replace(temp_path, path)
    except OSError as error:
        raise ImageError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:  # also on KeyboardInterrupt: never leave the temporary file behind
        if os.path.exists(temp_path):
            os.unlink(temp_path)


def atomic_write_bytes(path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    _atomic_write(path, payload)


# ---------------------------------------------------------------------------------------------------
# 16-bit PNG codec (the part of PNG that Pillow lacks). PNG stores samples big-endian, each scanline
# prefixed with a filter byte; the filters predict a byte from the byte one *pixel* to the left (a),
# the byte above (b) and the byte above-left (c).


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _encode_png16(samples: np.ndarray) -> bytes:
    """uint16 (H, W, C) -> PNG bytes, C in 1..4 (gray, gray+alpha, RGB, RGBA); filter 'None' on every row."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
            + _png_chunk(b"IEND", b""))


def _read_png16(path: str) -> LoadedImage:
    with open(path, "rb") as handle:
        data = handle.read()
    position, header, idat = len(_PNG_SIGNATURE), None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if len(body) != length:
            raise ImageError(f"{path}: truncated PNG chunk {kind.decode(errors='replace')}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or not idat:
        raise ImageError(f"{path}: not a complete PNG file")
    width, height, _, colour_type, _, _, interlace = header
    if colour_type not in _PNG_COLOUR_TYPES:
        raise ImageError(f"{path}: unsupported 16-bit PNG colour type {colour_type}")
    if interlace:
        raise ImageError(f"{path}: interlaced 16-bit PNGs are not supported; re-save it without interlacing")
    channels, has_alpha = _PNG_COLOUR_TYPES[colour_type]
    bytes_per_pixel = 2 * channels
    stride = width * bytes_per_pixel
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size != height * (stride + 1):
        raise ImageError(f"{path}: PNG image data has {raw.size} bytes, expected {height * (stride + 1)}")
    raw = raw.reshape(height, stride + 1)
    rows = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        rows[y] = _unfilter_row(int(raw[y, 0]), raw[y, 1:], previous, bytes_per_pixel)
        previous = rows[y]
    samples = rows.view(">u2").reshape(height, width, channels).astype(np.float32) / 65535.0
    if has_alpha:
        return LoadedImage(np.ascontiguousarray(samples[..., :-1]), np.ascontiguousarray(samples[..., -1]), 16)
    return LoadedImage(samples, None, 16)


def _unfilter_row(kind: int, line: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 1:  # Sub: running sum (mod 256) per byte position within a pixel
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
    if kind == 2:  # Up
        return line + above
    if kind not in (3, 4):
        raise ImageError(f"invalid PNG filter type {kind}")
    # Average and Paeth depend on the byte just decoded to the left: sequential by nature.
    out = bytearray(len(line))
    line_list, above_list = line.tolist(), above.tolist()
    for i, value in enumerate(line_list):
        a = out[i - bpp] if i >= bpp else 0
        b = above_list[i]
        if kind == 3:
            out[i] = (value + ((a + b) >> 1)) & 0xFF
            continue
        c = above_list[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (value + predictor) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)

"""PSNR and SSIM exactly as SwinIR's ``utils/util_calculate_psnr_ssim.py`` computes them.

Inputs are (H, W, C) arrays on the 0..255 scale (uint8 as the official script, or floats), C = 1 or 3
in RGB order. ``border`` pixels are cropped from every side first (the official script uses
border = scale for classical and lightweight SR, 0 otherwise); then, for ``y_channel=True``, the image
is converted to BT.601 "studio" luma

    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255        (R, G, B on the 0..255 scale)

with the official script's float32 intermediate and no rounding. All statistics are float64.

    PSNR = 20 log10(255 / sqrt(MSE))                         (inf when MSE = 0)
    SSIM = mean over channels of mean over the valid region of
           (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

with local means from an 11x11 Gaussian window (sigma 1.5, normalised to sum 1), kept only where the
window fits entirely inside the image (the official ``[5:-5, 5:-5]`` crop of ``cv2.filter2D``), and
C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2.
"""

from __future__ import annotations

import math

import numpy as np

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
# BT.601 studio-range luma weights on 0..1 inputs, in the RGB order we store
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def _prepare(image: np.ndarray, border: int, y_channel: bool) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if 2 * border >= min(image.shape[:2]):
        raise ValueError(f"border {border} crops away all of a {image.shape[1]}x{image.shape[0]} image "
                         f"(at most {(min(image.shape[:2]) - 1) // 2} for this size)")
    if border:
        image = image[border:-border, border:-border]
    if y_channel and image.shape[2] == 3:
        image = to_y_channel(image)
    return image.astype(np.float64)


def to_y_channel(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB on 0..255 -> (H, W, 1) float32 studio-range luma on 0..255 (16..235), unrounded.

    Follows the official float32 path: x = img / 255 (float32), Y = (x*255 . w / 255 + 16) / 255 cast to
    float32, times 255.
    """
    unit = image.astype(np.float32) / 255.0
    # BGR order, as the official script sums (the float64 sum order decides the last float32 bit)
    luma = (np.dot(unit[..., ::-1] * np.float32(255.0), _Y_WEIGHTS[::-1]) / 255.0 + 16.0) / 255.0
    return (luma.astype(np.float32) * np.float32(255.0))[..., None]


def _check_pair(first: np.ndarray, second: np.ndarray) -> None:
    if np.shape(first) != np.shape(second):
        raise ValueError(f"images differ in shape: {np.shape(first)} vs {np.shape(second)}")


def psnr(first: np.ndarray, second: np.ndarray, border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB between two 0..255 images of equal shape (see module docstring)."""
    _check_pair(first, second)
    a, b = _prepare(first, border, y_channel), _prepare(second, border, y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return math.inf
    return float(20.0 * math.log10(255.0 / math.sqrt(mse)))


def gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """1-D Gaussian taps exp(-(i - (size-1)/2)^2 / (2 sigma^2)), normalised to sum 1 (cv2.getGaussianKernel)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter_valid(plane: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with outer(taps, taps), output only where the window fits."""
    size = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(plane, size, axis=0) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ taps


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    taps = gaussian_window()
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return float(ssim_map.mean())


def ssim(first: np.ndarray, second: np.ndarray, border: int = 0, y_channel: bool = False) -> float:
    """SSIM between two 0..255 images of equal shape (see module docstring); needs >= 11x11 after the crop."""
    _check_pair(first, second)
    a, b = _prepare(first, border, y_channel), _prepare(second, border, y_channel)
    if min(a.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after the border crop, "
                         f"got {a.shape[0]}x{a.shape[1]}")
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def restoration_scores(output: np.ndarray, truth: np.ndarray, border: int = 0) -> tuple[float, float, float, float]:
    """(PSNR, SSIM, PSNR_Y, SSIM_Y) of a restored image against its ground truth, both (H, W, C) on the
    0..255 scale, as ``swinir eval`` and the trainer's validation report them. The ground truth may be
    up to scale - 1 pixels larger (an SR input that was not a multiple of the scale): it is cropped to
    the output's size first, as the official script does."""
    truth = np.asarray(truth)[: np.shape(output)[0], : np.shape(output)[1]]
    return (psnr(output, truth, border), ssim(output, truth, border),
            psnr(output, truth, border, y_channel=True), ssim(output, truth, border, y_channel=True))

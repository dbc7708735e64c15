"""PSNR/SSIM against independent hand-written numpy versions of the official formulas."""

import math

import numpy as np
import pytest

from swinir import metrics


def _images(shape=(40, 52, 3), seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, shape).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 6, shape), 0, 255).round().astype(np.uint8)
    return clean, noisy


def _naive_ssim(a, b):
    """Direct 11x11 sum over the valid region (no separability, no striding tricks)."""
    offsets = np.arange(11) - 5
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    height, width = a.shape[0] - 10, a.shape[1] - 10

    def local(x):
        out = np.zeros((height, width))
        for i in range(11):
            for j in range(11):
                out += window[i, j] * x[i:i + height, j:j + width]
        return out

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = local(a), local(b)
    var_a, var_b, cov = local(a * a) - mu_a**2, local(b * b) - mu_b**2, local(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean()


@pytest.mark.parametrize("border", [0, 3])
def test_psnr_matches_hand_computation(border):
    clean, noisy = _images()
    crop = (slice(border, -border), slice(border, -border)) if border else (slice(None), slice(None))
    mse = np.mean((clean[crop].astype(np.float64) - noisy[crop].astype(np.float64)) ** 2)
    assert metrics.psnr(noisy, clean, border) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)


def test_psnr_y_uses_studio_luma_after_border_crop():
    clean, noisy = _images()

    def luma(x):
        x = x[4:-4, 4:-4].astype(np.float64) / 255
        return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]

    mse = np.mean((luma(clean) - luma(noisy)) ** 2)
    assert metrics.psnr(noisy, clean, 4, y_channel=True) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-4)
    y = metrics.to_y_channel(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    np.testing.assert_allclose(y[0, :, 0], [16, 235], atol=1e-3)


def test_identical_images():
    clean, _ = _images()
    assert metrics.psnr(clean, clean) == math.inf
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)


@pytest.mark.parametrize("border,y_channel", [(0, False), (2, False), (2, True)])
def test_ssim_matches_naive_window_sum(border, y_channel):
    clean, noisy = _images((37, 45, 3), seed=1)
    a, b = clean, noisy
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    if y_channel:
        expected = _naive_ssim(metrics.to_y_channel(b)[..., 0], metrics.to_y_channel(a)[..., 0])
    else:
        expected = np.mean([_naive_ssim(b[..., c], a[..., c]) for c in range(3)])
    assert metrics.ssim(noisy, clean, border, y_channel) == pytest.approx(expected, abs=1e-12)


def test_gray_and_errors():
    clean, noisy = _images((30, 30))
    assert metrics.psnr(noisy, clean, y_channel=True) == metrics.psnr(noisy, clean)
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(clean, clean[:-1])
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(clean, clean, border=10)

"""Degradations (bicubic, noise, JPEG) and the `swinir degrade` command."""

import os

import numpy as np
import pytest
from PIL import Image

from swinir import degrade, imageio
from swinir.cli import main


def _smooth_image(height=45, width=62, channels=3):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [(np.sin(x / (5 + c)) * np.cos(y / (7 - c)) + 1) / 2 for c in range(channels)]
    return np.stack(planes, axis=-1).astype(np.float32)


@pytest.mark.parametrize("scale", degrade.SR_SCALES)
def test_bicubic_downscale_shape_and_pillow_agreement(scale):
    hr = _smooth_image()
    lr = degrade.bicubic_downscale(hr, scale)
    assert lr.shape == (45 // scale, 62 // scale, 3)
    cropped = imageio.quantize(degrade.modcrop(hr, scale), 8)
    pillow = np.asarray(Image.fromarray(cropped).resize((lr.shape[1], lr.shape[0]), Image.Resampling.BICUBIC))
    difference = imageio.quantize(lr, 8).astype(int) - pillow.astype(int)
    assert np.abs(difference).max() <= 1  # float path vs Pillow's 8-bit fixed point
    constant = np.full((16, 16, 1), 0.25, np.float32)
    np.testing.assert_allclose(degrade.bicubic_downscale(constant, scale), 0.25, atol=1e-6)


def test_noise_is_seeded_and_follows_the_official_draw():
    clean = _smooth_image(32, 40)
    noisy = degrade.add_gaussian_noise(clean, 25, seed=0)
    expected = np.random.RandomState(0).normal(0, 25 / 255, (32, 40, 3))[..., ::-1]  # drawn in BGR order
    np.testing.assert_allclose(noisy - clean, expected, atol=1e-6)
    np.testing.assert_array_equal(noisy, degrade.add_gaussian_noise(clean, 25, seed=0))
    assert not np.array_equal(noisy, degrade.add_gaussian_noise(clean, 25, seed=1))
    gray = degrade.add_gaussian_noise(clean[..., :1], 50, seed=0)
    np.testing.assert_allclose(gray[..., 0] - clean[..., 0], np.random.RandomState(0).normal(0, 50 / 255, (32, 40)),
                               atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_roundtrip(channels):
    clean = _smooth_image(channels=channels)
    low, high = degrade.jpeg_compress(clean, 10), degrade.jpeg_compress(clean, 40)
    assert low.shape == clean.shape
    assert np.abs(low - clean).mean() > np.abs(high - clean).mean() > 0
    np.testing.assert_array_equal(low, degrade.jpeg_compress(clean, 10))
    with pytest.raises(ValueError, match="quality"):
        degrade.jpeg_compress(clean, 0)


def test_to_gray():
    rgb = np.array([[[0, 0, 0], [1, 1, 1]]], np.float32)
    np.testing.assert_allclose(degrade.to_gray(rgb, studio_luma=True)[0, :, 0] * 255, [16, 235])
    np.testing.assert_allclose(degrade.to_gray(rgb, studio_luma=False)[0, :, 0] * 255, [0, 255])


@pytest.fixture()
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    imageio.write_image(str(folder / "a.png"), _smooth_image(48, 64))
    imageio.write_image(str(folder / "b.png"), _smooth_image(35, 41, 1))
    return folder


@pytest.mark.parametrize("options,check", [
    (["--mode", "sr", "--scale", "4"], lambda name, img: img.pixels.shape[:2] == {"a": (12, 16), "b": (8, 10)}[name]),
    (["--mode", "noise", "--sigma", "15", "--bit-depth", "16"], lambda name, img: img.bit_depth == 16),
    (["--mode", "jpeg", "--quality", "20", "--gray"], lambda name, img: img.channels == 1),
])  # fmt: skip
def test_degrade_command(hr_folder, tmp_path, options, check):
    out = tmp_path / "lq"
    assert main(["degrade", str(hr_folder), str(out), "-q", *options]) == 0
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    for name in "ab":
        assert check(name, imageio.read_image(str(out / f"{name}.png")))
    # no overwrite without --overwrite
    assert main(["degrade", str(hr_folder), str(out), "-q", *options]) == 1
    assert main(["degrade", str(hr_folder), str(out), "-q", "--overwrite", *options]) == 0


def test_degrade_usage_errors(hr_folder, tmp_path, capsys):
    assert main(["degrade", str(hr_folder), str(tmp_path / "x"), "--mode", "sr", "--scale", "5"]) == 2
    assert main(["degrade", str(hr_folder), str(tmp_path / "x"), "--mode", "jpeg", "--quality", "0"]) == 2
    assert main(["degrade", str(tmp_path / "missing"), str(tmp_path / "x"), "--mode", "sr"]) == 1
    assert "swinir: error: " in capsys.readouterr().err

"""Degradations (bicubic, noise, JPEG) and the `swinir degrade` command."""

import importlib
import io
import os
import tomllib

import numpy as np
import pytest
from PIL import Image
from tests.helpers import ROOT

from swinir import degrade, imageio


def main(argv):
    """The `swinir` command's main, looked up where pyproject.toml's console script points (the command's
    module may move)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        module, _, name = tomllib.load(handle)["project"]["scripts"]["swinir"].partition(":")
    return getattr(importlib.import_module(module), name)(argv)


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


# The degradations from their definitions, on the 8-bit HR file read with Pillow (not with swinir's
# code): each returns (H, W, C) integer levels and the bit depth of the file the command must write.


def _hr_levels(path):
    levels = np.asarray(Image.open(path))
    return levels.reshape(levels.shape[0], levels.shape[1], -1)


def _expected_sr_x4(path):
    """modcrop to a multiple of 4, Pillow bicubic on float32 planes ('F'), clip, 8 bits."""
    hr = _hr_levels(path).astype(np.float32) / 255
    hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(hr[..., c]), mode="F").resize(
        (hr.shape[1] // 4, hr.shape[0] // 4), Image.Resampling.BICUBIC)) for c in range(hr.shape[2])]
    return np.rint(np.clip(np.stack(planes, -1), 0, 1) * np.float32(255)), 8


def _expected_noise(sigma, seed, bit_depth):
    """x + N(0, (sigma/255)^2) from RandomState(seed), drawn (H, W, 3) in BGR order (or (H, W) for
    gray) as the official script, kept as float32, then clipped and quantised to the file's depth."""
    def expected(path):
        hr = _hr_levels(path).astype(np.float32) / 255
        rng = np.random.RandomState(seed)
        noise = rng.normal(0, sigma / 255, hr.shape)[..., ::-1] if hr.shape[2] == 3 else \
            rng.normal(0, sigma / 255, hr.shape[:2])[..., None]
        top = np.float32(2**bit_depth - 1)
        return np.rint(np.clip((hr + noise).astype(np.float32), 0, 1) * top), bit_depth
    return expected


def _expected_gray_jpeg(quality):
    """Colour: BT.601 studio luma 16 + (65.481 R + 128.553 G + 24.966 B), rounded to 8 bits; then a
    Pillow JPEG at `quality`, decoded."""
    def expected(path):
        hr = _hr_levels(path).astype(np.float64)
        if hr.shape[2] == 3:
            hr = np.rint(16 + hr @ np.array([65.481, 128.553, 24.966]) / 255)[..., None]
        buffer = io.BytesIO()
        Image.fromarray(hr[..., 0].astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(buffer))[..., None].astype(np.float64), 8
    return expected


@pytest.mark.parametrize("options,expected", [
    (["--mode", "sr", "--scale", "4"], _expected_sr_x4),
    (["--mode", "noise", "--sigma", "15", "--bit-depth", "16"], _expected_noise(15, 0, 16)),
    (["--mode", "noise", "--sigma", "50", "--seed", "7"], _expected_noise(50, 7, 8)),
    (["--mode", "jpeg", "--quality", "20", "--gray"], _expected_gray_jpeg(20)),
])  # fmt: skip
def test_degrade_command(hr_folder, tmp_path, options, expected):
    out = tmp_path / "lq"
    assert main(["degrade", str(hr_folder), str(out), "-q", *options]) == 0
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    written = {}
    for name in "ab":
        image = imageio.read_image(str(out / f"{name}.png"))
        levels, bit_depth = expected(str(hr_folder / f"{name}.png"))
        assert image.bit_depth == bit_depth and image.pixels.shape == levels.shape, name
        actual = np.rint(image.pixels.astype(np.float64) * (2**bit_depth - 1))
        np.testing.assert_array_equal(actual, levels, err_msg=name)
        written[name] = (out / f"{name}.png").read_bytes()
    # no overwrite without --overwrite; the same options give the same files (the noise is seeded)
    assert main(["degrade", str(hr_folder), str(out), "-q", *options]) == 1
    assert main(["degrade", str(hr_folder), str(out), "-q", "--overwrite", *options]) == 0
    for name in "ab":
        assert (out / f"{name}.png").read_bytes() == written[name], name


def test_degrade_usage_errors(hr_folder, tmp_path, capsys):
    assert main(["degrade", str(hr_folder), str(tmp_path / "x"), "--mode", "sr", "--scale", "5"]) == 2
    assert main(["degrade", str(hr_folder), str(tmp_path / "x"), "--mode", "jpeg", "--quality", "0"]) == 2
    assert main(["degrade", str(tmp_path / "missing"), str(tmp_path / "x"), "--mode", "sr"]) == 1
    assert "swinir: error: " in capsys.readouterr().err

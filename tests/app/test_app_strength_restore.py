"""`swinir restore --tile-margin` and `--device`, run successfully with their effects asserted (issue 28).

The command's main is looked up where pyproject.toml's console script points, at call time: the
command's module may move."""

import importlib
import os
import tomllib

import numpy as np
import pytest
import torch
from tests.helpers import ROOT, randomize

import swinir
from swinir import imageio

# A tiny x2 SwinIR with one unshifted Swin block: a pixel's output depends on its 8x8 window (windows
# are aligned to the tile grid) widened by the convolutions, about 8 + 5 LR pixels in all.
CONFIG = dict(upscale=2, in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=8, mlp_ratio=2.0,
              upsampler="pixelshuffle", img_size=16, img_range=1.0)
# 16-bit files: one level is 1.5e-5, close to fp32's rounding of outputs near 1, so 1 level is the
# tolerance tied to the dtype (tiles and the whole image run in different batch shapes).
LEVELS = 65535


def main(argv):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        module, _, name = tomllib.load(handle)["project"]["scripts"]["swinir"].partition(":")
    return getattr(importlib.import_module(module), name)(argv)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = swinir.SwinIR(**CONFIG)
    randomize(model, seed=11)
    path = folder / "tiny_x2.pth"
    torch.save({"params": model.state_dict(), "config": {"img_range": 1.0}}, path)
    return str(path)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:72, 0:100].astype(np.float32)
    smooth = (np.sin(x / 6)[..., None] * np.cos(y / 9)[..., None] * np.array([1, 0.7, 0.4]) + 1) / 2
    pixels = np.clip(0.8 * smooth + 0.2 * rng.random((72, 100, 3)), 0, 1).astype(np.float32)
    path = tmp_path_factory.mktemp("input") / "in.png"
    imageio.write_image(str(path), pixels, None, 16)
    return str(path)


def _restore(image, checkpoint, out, *options):
    assert main(["restore", image, "-m", checkpoint, "-o", str(out), "-q", *options]) == 0
    restored = imageio.read_image(str(out / "in_SwinIR.png"))
    assert restored.bit_depth == 16 and restored.pixels.shape == (144, 200, 3)
    return np.rint(restored.pixels.astype(np.float64) * LEVELS)


def _in_process(image, checkpoint):
    """The checkpoint's model on the whole image, here, on the CPU, quantised as the command writes."""
    model = swinir.load(checkpoint)
    pixels = imageio.read_image(image).pixels
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        y = model(x)[0].float().numpy().transpose(1, 2, 0)
    return imageio.quantize(y, 16).astype(np.float64)


def test_tile_margin_covering_the_receptive_field_gives_the_untiled_output(image, checkpoint, tmp_path):
    untiled = _restore(image, checkpoint, tmp_path / "whole")
    np.testing.assert_allclose(untiled, _in_process(image, checkpoint), rtol=0, atol=1)
    tiled = _restore(image, checkpoint, tmp_path / "tiled", "--tile", "64", "--tile-overlap", "40",
                     "--tile-margin", "16")
    assert np.abs(tiled - untiled).max() <= 1, "margin 16 covers the receptive field: tiles must agree with the whole"
    # the option does something: with no margin, tile borders (zero-padded convs, cut windows) are kept
    no_margin = _restore(image, checkpoint, tmp_path / "no_margin", "--tile", "64", "--tile-overlap", "40",
                         "--tile-margin", "0")
    assert np.abs(no_margin - untiled).max() > 100


def test_device_cpu_runs_the_model_on_the_cpu(image, checkpoint, tmp_path, monkeypatch):
    """--device cpu wins over the default device: CUDA is reported available (as on a GPU machine), so
    without the option the command would pick cuda."""
    if not torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices = []
    forward = swinir.SwinIR.forward

    def recording_forward(self, x):
        devices.append((x.device.type, next(self.parameters()).device.type))
        return forward(self, x)

    monkeypatch.setattr(swinir.SwinIR, "forward", recording_forward)
    restored = _restore(image, checkpoint, tmp_path / "cpu", "--device", "cpu")
    assert devices and set(devices) == {("cpu", "cpu")}
    np.testing.assert_allclose(restored, _in_process(image, checkpoint), rtol=0, atol=1)
    devices.clear()
    tiled = _restore(image, checkpoint, tmp_path / "cpu_tiled", "--device", "cpu", "--tile", "64", "--tile-overlap",
                     "40", "--tile-margin", "16", "--batch", "2")
    assert len(devices) >= 2 and set(devices) == {("cpu", "cpu")}
    assert np.abs(tiled - restored).max() <= 1


def test_device_that_cannot_run_is_a_usage_error(image, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", image, "-m", checkpoint, "-o", str(out), "-q", "--device", "nosuchdevice"]) == 2
    error = capsys.readouterr().err
    assert "--device" in error and "Traceback" not in error
    assert not out.exists()

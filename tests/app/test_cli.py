"""`swinir restore` / `eval` / `bench` end to end, in-process through main() and through `python -m swinir`."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import swinir
from swinir import benchmark, imageio
from swinir.commands import main
from tests.helpers import ROOT

TINY = dict(embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=2.0)
# name -> SwinIR kwargs of a tiny model per task kind
KINDS = {
    "sr_x2": dict(upscale=2, in_chans=3, window_size=8, upsampler="pixelshuffle"),
    "lightweight_x3": dict(upscale=3, in_chans=3, window_size=8, upsampler="pixelshuffledirect"),
    "gray_dn": dict(upscale=1, in_chans=1, window_size=8, upsampler=""),
    "color_jpeg": dict(upscale=1, in_chans=3, window_size=7, img_range=255.0, upsampler=""),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny random-weight checkpoints saved as the official files are ({'params': state_dict})."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {}
    for name, kwargs in KINDS.items():
        model = swinir.SwinIR(**TINY, **kwargs)
        paths[name] = str(folder / f"{name}.pth")
        torch.save({"params": model.state_dict()}, paths[name])
    torch.save({"weights": torch.zeros(3)}, folder / "not_swinir.pth")
    (folder / "garbage.pth").write_bytes(b"not a checkpoint at all")
    paths["not_swinir"], paths["garbage"] = str(folder / "not_swinir.pth"), str(folder / "garbage.pth")
    return paths


def _random_image(path, height, width, channels=3, alpha=False, bit_depth=8, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.random((height, width, channels), dtype=np.float32)
    imageio.write_image(str(path), pixels, rng.random((height, width), dtype=np.float32) if alpha else None, bit_depth)
    return imageio.read_image(str(path))


def _expected(checkpoint, pixels):
    """What the model gives for these pixels, quantised to 8 bits (the pipeline's reference)."""
    model = swinir.load(checkpoint)
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None])[0]
    return out.permute(1, 2, 0).numpy()


def _run(*args):
    return main(["restore", *map(str, args), "-q"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_restore_each_task_kind(checkpoints, tmp_path, kind):
    scale, channels = KINDS[kind]["upscale"], KINDS[kind]["in_chans"]
    image = _random_image(tmp_path / "photo.png", 21, 30, channels)
    assert _run(tmp_path / "photo.png", "-m", checkpoints[kind], "-o", tmp_path / "out") == 0
    restored = imageio.read_image(str(tmp_path / "out" / "photo_SwinIR.png"))
    assert restored.pixels.shape == (21 * scale, 30 * scale, channels)
    expected = imageio.quantize(_expected(checkpoints[kind], image.pixels), 8).astype(int)
    assert np.abs(imageio.quantize(restored.pixels, 8).astype(int) - expected).max() <= 1


def test_tiled_matches_untiled_through_the_cli(checkpoints, tmp_path):
    _random_image(tmp_path / "big.png", 90, 75)
    assert _run(tmp_path / "big.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "whole") == 0
    assert _run(tmp_path / "big.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "tiled", "--tile", "40",
                "--tile-overlap", "32", "--batch", "3") == 0
    whole = imageio.quantize(imageio.read_image(str(tmp_path / "whole" / "big_SwinIR.png")).pixels, 8).astype(int)
    tiled = imageio.quantize(imageio.read_image(str(tmp_path / "tiled" / "big_SwinIR.png")).pixels, 8).astype(int)
    assert np.abs(whole - tiled).max() <= 1


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_close_to_fp32(checkpoints, tmp_path, dtype):
    image = _random_image(tmp_path / "a.png", 16, 16)
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "o", "--dtype", dtype) == 0
    restored = imageio.read_image(str(tmp_path / "o" / "a_SwinIR.png")).pixels
    error = np.abs(restored - np.clip(_expected(checkpoints["sr_x2"], image.pixels), 0, 1)).max()
    # The 8-bit PNG's rounding (half a level) plus a few roundings of the dtype (fp16 11-bit, bf16 8-bit
    # significands) on outputs of ~1: the bound follows the dtype instead of one loose 0.05.
    epsilon = {"fp16": 2.0**-11, "bf16": 2.0**-8}[dtype]
    assert error <= 0.5 / 255 + 4 * epsilon, error


def test_max_memory_picks_a_tile(checkpoints, tmp_path, capsys):
    _random_image(tmp_path / "a.png", 64, 64)
    assert main(["restore", str(tmp_path / "a.png"), "-m", checkpoints["sr_x2"], "-o", str(tmp_path / "o"),
                 "--max-memory", "0.015"]) == 0
    assert "--max-memory 0.015 GB: tile 48" in capsys.readouterr().err
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "p", "--max-memory", "1e-7") == 2
    assert "argument --max-memory: memory budget of 1e-07 GB is too small" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_sixteen_bit_in_sixteen_bit_out(checkpoints, tmp_path):
    image = _random_image(tmp_path / "deep.png", 16, 24, bit_depth=16)
    assert image.bit_depth == 16
    assert _run(tmp_path / "deep.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 0
    restored = imageio.read_image(str(tmp_path / "out" / "deep_SwinIR.png"))
    assert restored.bit_depth == 16
    np.testing.assert_allclose(restored.pixels, np.clip(_expected(checkpoints["sr_x2"], image.pixels), 0, 1),
                               atol=1e-4)


@pytest.mark.parametrize("kind", ["sr_x2", "gray_dn"])
def test_rgba_alpha_is_resized_or_passed_through(checkpoints, tmp_path, kind):
    image = _random_image(tmp_path / "logo.png", 16, 20, channels=3, alpha=True)
    assert _run(tmp_path / "logo.png", "-m", checkpoints[kind], "-o", tmp_path / "out") == 0
    restored = imageio.read_image(str(tmp_path / "out" / "logo_SwinIR.png"))
    assert restored.alpha is not None
    if KINDS[kind]["upscale"] == 1:
        np.testing.assert_array_equal(restored.alpha, image.alpha)
    else:
        assert restored.alpha.shape == (32, 40)
        assert abs(restored.alpha.mean() - image.alpha.mean()) < 0.02


def test_channel_conversions(checkpoints, tmp_path, capsys):
    rgb = _random_image(tmp_path / "rgb.png", 16, 16, channels=3)
    _random_image(tmp_path / "gray.png", 16, 16, channels=1)
    assert main(["restore", str(tmp_path / "rgb.png"), "-m", checkpoints["gray_dn"], "-o", str(tmp_path / "o")]) == 0
    assert "luminance" in capsys.readouterr().err
    luma = rgb.pixels @ np.array([[0.299], [0.587], [0.114]], np.float32)
    restored = imageio.read_image(str(tmp_path / "o" / "rgb_SwinIR.png"))
    assert restored.channels == 1
    assert np.abs(restored.pixels - np.clip(_expected(checkpoints["gray_dn"], luma), 0, 1)).max() <= 1 / 255 + 1e-6
    assert _run(tmp_path / "gray.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "o") == 0
    assert imageio.read_image(str(tmp_path / "o" / "gray_SwinIR.png")).channels == 3


def test_folder_batching_gives_the_same_images(checkpoints, tmp_path):
    for i in range(3):
        _random_image(tmp_path / "in" / f"{i}.png", 16, 24, seed=i)
    _random_image(tmp_path / "in" / "sub" / "deeper.png", 8, 8)
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "one") == 0
    assert sorted(os.listdir(tmp_path / "one")) == ["0_SwinIR.png", "1_SwinIR.png", "2_SwinIR.png"]
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "two", "--batch", "2", "-r") == 0
    assert os.path.isfile(tmp_path / "two" / "sub" / "deeper_SwinIR.png")
    for i in range(3):
        one = imageio.read_image(str(tmp_path / "one" / f"{i}_SwinIR.png")).pixels
        two = imageio.read_image(str(tmp_path / "two" / f"{i}_SwinIR.png")).pixels
        assert np.abs(one - two).max() <= 1 / 255 + 1e-6


def test_overwrite_protection(checkpoints, tmp_path, capsys):
    _random_image(tmp_path / "a.png", 12, 12)
    out = tmp_path / "out" / "a_SwinIR.png"
    out.parent.mkdir()
    out.write_bytes(b"keep me")
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 1
    assert out.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out", "--overwrite") == 0
    assert imageio.read_image(str(out)).pixels.shape == (24, 24, 3)
    assert [name for name in os.listdir(tmp_path / "out")] == ["a_SwinIR.png"]  # no temp files left


def _single_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("swinir: error: ") for line in lines), err
    assert "Traceback" not in err
    return err


def test_bad_files_in_a_folder_are_reported_and_the_rest_restored(checkpoints, tmp_path, capsys):
    _random_image(tmp_path / "in" / "good.png", 12, 12)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    code = _run(tmp_path / "in", tmp_path / "missing.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out")
    assert code == 1
    err = _single_error_line(capsys)
    assert "broken.jpg" in err and "missing.png" in err
    assert os.listdir(tmp_path / "out") == ["good_SwinIR.png"]


@pytest.mark.parametrize("checkpoint,message", [("not_swinir", "not a SwinIR checkpoint"),
                                                ("garbage", "a text file"),
                                                ("/nowhere/x.pth", "not found")])
def test_bad_checkpoints(checkpoints, tmp_path, capsys, checkpoint, message):
    _random_image(tmp_path / "a.png", 12, 12)
    path = checkpoints.get(checkpoint, checkpoint)
    assert _run(tmp_path / "a.png", "-m", path, "-o", tmp_path / "out") == 1
    assert message in _single_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_out_of_memory_suggests_tiling(checkpoints, tmp_path, capsys, monkeypatch):
    _random_image(tmp_path / "a.png", 12, 12)

    def exhausted(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(swinir.SwinIR, "forward", exhausted)
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 1
    err = _single_error_line(capsys)
    assert "out of memory" in err and "--tile" in err and "--max-memory" in err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def _usage_error(capsys, command):
    """The stderr of a usage error: the sub-command's usage, then one argparse-style error line."""
    err = capsys.readouterr().err
    assert err.startswith(f"usage: swinir {command} "), err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"swinir {command}: error: argument "), err
    return errors[0]


def test_output_location_is_checked_once_before_any_work(checkpoints, tmp_path, capsys):
    for name in ("a", "b"):
        _random_image(tmp_path / "in" / f"{name}.png", 12, 12)
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    for output in (tmp_path / "blocker", tmp_path / "blocker" / "sub"):
        assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", output) == 2
        assert "argument -o/--output" in _usage_error(capsys, "restore")
        assert main(["degrade", str(tmp_path / "in"), str(output), "--mode", "sr", "-q"]) == 2
        assert "argument OUT_DIR" in _usage_error(capsys, "degrade")
    assert (tmp_path / "blocker").read_text() == "a file where the output folder should go"


# An unwritable -o (simulated, so that it runs as root too): tests/app/test_newcomer.py.


def test_channel_mismatch_in_eval_and_usage_errors(tmp_path, capsys):
    _random_image(tmp_path / "hr" / "a.png", 16, 16, channels=3)
    _random_image(tmp_path / "sr" / "a_SwinIR.png", 16, 16, channels=1)
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr")]) == 1
    assert "channel mismatch" in _single_error_line(capsys)
    assert main(["restore", "x.png", "-o", "out"]) == 2  # -m missing
    assert main(["restore", "x.png", "-m", "m.pth", "-o", "out", "--dtype", "fp8"]) == 2
    assert main(["restore", "x.png", "-m", "m.pth", "-o", "out", "--device", "gpu:0"]) == 2


def test_eval_matches_hand_computed_psnr(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 30, 41, 3)).astype(np.uint8)
    restored = np.clip(truth[:, :28, :40] + rng.normal(0, 4, (2, 28, 40, 3)), 0, 255).round().astype(np.uint8)
    for i in range(2):  # HR not a multiple of the scale: eval crops it as the official script
        imageio.write_image(str(tmp_path / "hr" / f"im{i}.png"), truth[i] / 255.0)
        imageio.write_image(str(tmp_path / "sr" / f"im{i}_SwinIR.png"), restored[i] / 255.0)
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr"), "--scale", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "border 4" in lines[0]
    psnrs = []
    for i in range(2):
        a = truth[i, 4:24, 4:36].astype(np.float64)
        b = restored[i, 4:24, 4:36].astype(np.float64)
        psnrs.append(10 * math.log10(255**2 / np.mean((a - b) ** 2)))
        assert float(lines[1 + i].split()[1]) == pytest.approx(psnrs[-1], abs=1e-4)
    assert lines[3].startswith("average (2)")
    assert float(lines[3].split()[2]) == pytest.approx(np.mean(psnrs), abs=1e-4)


def test_bench_runs_both_paths():
    report = benchmark.run(size=(16, 16), repeats=1, overrides=dict(embed_dim=12, depths=[1], num_heads=[2]))
    assert [r.name for r in report.results] == ["ours", "reference"]
    ours, reference_path = report.results
    assert reference_path.max_abs_diff == 0  # the reference against itself
    # Ours (the C++ kernels, fp32) against the reference path: within fp32 rounding of outputs of ~1.
    assert 0 <= ours.max_abs_diff <= 1e-4, ours.max_abs_diff
    assert all(r.latency_s > 0 and r.megapixels_per_s > 0 for r in report.results)
    table = benchmark.format_report(report)
    assert "ours" in table and "reference" in table and "64x64" in table
    assert f"swinir-kernels {swinir.__version__}, torch {torch.__version__}" in table


def test_console_entry_point(checkpoints, tmp_path):
    """`python -m swinir` as a user runs it: exit codes and stderr."""
    _random_image(tmp_path / "in" / "a.png", 12, 16)
    (tmp_path / "in" / "b.png").write_bytes(b"corrupt")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "swinir", "restore", str(tmp_path / "in"), "-m", checkpoints["sr_x2"],
               "-o", str(tmp_path / "out"), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "swinir: error: " in result.stderr and "b.png" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path / "out") == ["a_SwinIR.png"]
    usage = subprocess.run([sys.executable, "-m", "swinir", "restore"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# --- image I/O (swinir.imageio) ------------------------------------------------------------------


def _png16_with_filters(samples):
    """A 16-bit PNG whose rows cycle through all five filter types (encoded here independently)."""
    height, width, channels = samples.shape
    bpp = 2 * channels
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8).astype(int)
    raw = bytearray()
    for y in range(height):
        kind, line = y % 5, rows[y]
        above = rows[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, int), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, int), above[:-bpp]])
        if kind == 4:
            p = left + above - upper_left
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left))
        else:
            predictor = [np.zeros_like(line), left, above, (left + above) // 2][kind]
        raw += bytes([kind]) + bytes(((line - predictor) % 256).astype(np.uint8))
    return _png16_file(samples.shape, bytes(raw), interlace=0)


def _png16_file(shape, raw: bytes, interlace: int) -> bytes:
    """A 16-bit PNG of (H, W, C) samples from its filtered scanlines ``raw``."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    height, width, channels = shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _adam7_png16(samples):
    """An interlaced 16-bit PNG: the seven Adam7 sub-images (x0, y0, dx, dy), rows unfiltered."""
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        part = samples[y0::dy, x0::dx]
        if part.size:
            raw += b"".join(b"\x00" + row.astype(">u2").tobytes() for row in part)
    return _png16_file(samples.shape, raw, interlace=1)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_decoder_handles_every_filter(tmp_path, channels):
    samples = np.random.default_rng(channels).integers(0, 65536, (11, 9, channels)).astype(np.uint16)
    for name, encode in (("filtered.png", _png16_with_filters), ("interlaced.png", _adam7_png16)):
        path = tmp_path / name
        path.write_bytes(encode(samples))
        image = imageio.read_image(str(path))
        stacked = image.pixels if image.alpha is None else np.concatenate([image.pixels, image.alpha[..., None]], -1)
        np.testing.assert_array_equal(imageio.quantize(stacked, 16), samples)
        assert image.bit_depth == 16 and (image.alpha is not None) == (channels in (2, 4))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels,alpha", [(1, False), (1, True), (3, False), (3, True)])
def test_sixteen_bit_png_and_tiff_round_trip(tmp_path, suffix, channels, alpha):
    from PIL import Image

    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 65536, (7, 10, channels)).astype(np.float32) / 65535
    transparency = rng.integers(0, 65536, (7, 10)).astype(np.float32) / 65535 if alpha else None
    path = str(tmp_path / f"deep{suffix}")
    imageio.write_image(path, pixels, transparency, bit_depth=16)
    image = imageio.read_image(path)
    # OpenCV cannot write gray + alpha: the same picture as RGBA with R = G = B
    expected = np.repeat(pixels, 3, axis=2) if channels == 1 and alpha else pixels
    assert image.bit_depth == 16 and image.pixels.shape == expected.shape
    np.testing.assert_array_equal(imageio.quantize(image.pixels, 16), imageio.quantize(expected, 16))
    if alpha:
        np.testing.assert_array_equal(imageio.quantize(image.alpha, 16), imageio.quantize(transparency, 16))
    if suffix == ".png":  # the file itself says 16 bits: the IHDR bit depth byte
        assert open(path, "rb").read(25)[24] == 16
    else:
        with Image.open(path) as written:  # Pillow reads the TIFF tags (it cannot decode 16-bit colour)
            assert set(np.atleast_1d(written.tag_v2[258])) == {16}


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".webp"])
@pytest.mark.parametrize("channels,alpha", [(1, False), (3, False), (3, True)])
def test_formats_roundtrip(tmp_path, suffix, channels, alpha):
    path = tmp_path / f"x{suffix}"
    written = _random_image(path, 10, 14, channels, alpha=alpha and suffix != ".jpg")
    gray_as_rgb = suffix == ".webp" and channels == 1  # WebP has no gray mode: stored as RGB
    assert written.channels == (3 if gray_as_rgb else channels) and written.bit_depth == 8
    # JPEG has no alpha; Pillow writes 32-bit BMPs but reads their fourth channel as padding
    assert (written.alpha is not None) == (alpha and suffix not in (".jpg", ".bmp"))
    if suffix != ".jpg":  # lossless formats give back the quantised pixels
        rng = np.random.default_rng(0)
        expected = imageio.quantize(rng.random((10, 14, channels), dtype=np.float32), 8) / 255
        np.testing.assert_allclose(written.pixels, np.broadcast_to(expected, written.pixels.shape), atol=1e-6)


def test_palette_and_gray16_tiff_inputs(tmp_path):
    from PIL import Image

    palette = Image.new("P", (6, 4))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    image = imageio.read_image(str(tmp_path / "p.png"))
    assert image.channels == 3 and image.alpha is not None
    Image.fromarray(np.full((5, 7), 40000, np.uint16)).save(tmp_path / "g.tif")
    deep = imageio.read_image(str(tmp_path / "g.tif"))
    assert deep.bit_depth == 16 and deep.pixels[0, 0, 0] == pytest.approx(40000 / 65535)


def test_backend_option(checkpoints, tmp_path):
    _random_image(tmp_path / "a.png", 12, 12)
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "o", "--backend", "reference") == 0


# --- options are checked once, before any work, as usage errors -----------------------------------


@pytest.mark.parametrize("argv,message", [
    (["restore", "IN", "-m", "M", "-o", "OUT", "--tile-margin", "20", "--tile", "64"], "argument --tile-margin"),
    (["restore", "IN", "-m", "M", "-o", "OUT", "--tile", "64", "--max-memory", "1"], "not allowed with"),
    (["restore", "IN", "-m", "M", "-o", "OUT", "--tile", "16", "--tile-overlap", "16"], "argument --tile-overlap"),
    (["restore", "IN", "-m", "M", "-o", "OUT", "--tile-overlap", "8"], "only used with --tile or --max-memory"),
    (["restore", "IN", "-m", "M", "-o", "OUT", "--overwrite", "--skip-existing"], "not allowed with"),
    (["degrade", "IN", "OUT", "--mode", "jpeg", "--quality", "0"], "expected an integer from 1 to 100"),
    (["degrade", "IN", "OUT", "--mode", "noise", "--scale", "4"], "--scale: only used with --mode sr"),
    (["degrade", "IN", "OUT", "--mode", "sr", "--quality", "10"], "--quality: only used with --mode jpeg"),
    (["degrade", "IN", "OUT", "--mode", "jpeg", "--seed", "-1"], "argument --seed"),
    (["eval", "HR", "SR", "--task", "classical_sr"], "pass --scale"),
    (["eval", "HR", "SR", "--border", "-1"], "argument --border"),
    (["bench", "--preset", "classical_sr_x5"], "did you mean classical_sr_x"),
], ids=lambda value: value[0] if isinstance(value, list) else None)
def test_usage_errors_name_the_option_with_the_sub_command_usage(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a in ("IN", "OUT", "HR", "SR") else a for a in argv]
    for folder in ("IN", "HR", "SR"):
        (tmp_path / folder).mkdir()
    _random_image(tmp_path / "IN" / "a.png", 8, 8)
    assert main(argv) == 2
    line = _usage_error(capsys, argv[0])
    assert message in line and len(line) < 300
    assert not (tmp_path / "OUT").exists()


def test_tile_below_the_window_is_one_usage_error(checkpoints, tmp_path, capsys):
    for name in ("a", "b"):
        _random_image(tmp_path / "in" / f"{name}.png", 20, 20)
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out", "--tile", "4",
                "--tile-overlap", "2") == 2
    assert "window size is 8" in _usage_error(capsys, "restore")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_unavailable_device_is_one_line(checkpoints, tmp_path, capsys, device):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    _random_image(tmp_path / "a.png", 12, 12)
    for argv in (["restore", str(tmp_path / "a.png"), "-m", checkpoints["sr_x2"], "-o", str(tmp_path / "o")],
                 ["bench", "--size", "8"]):
        assert main([*argv, "--device", device]) == 2
        line = _usage_error(capsys, argv[0])
        assert f"argument --device: {device}: " in line and "--device cpu" in line
    assert not (tmp_path / "o").exists()


def test_help_and_usage_errors_do_not_import_torch():
    code = """
        import json, sys, time
        start = time.perf_counter()
        from swinir.commands import main
        codes = [main(["--help"]), main(["restore", "--help"]),
                 main(["degrade", "a", "b", "--mode", "jpeg", "--quality", "0"])]
        print(json.dumps([codes, "torch" in sys.modules, time.perf_counter() - start]))
    """
    from tests.helpers import ROOT, run_python

    done = run_python(code)
    codes, imported, seconds = json.loads(done.stdout.splitlines()[-1])
    assert codes == [0, 0, 2] and not imported, done.stderr
    assert seconds < 1.0  # importing torch alone takes longer


# --- outputs: modes, resuming, pairing -----------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(checkpoints, tmp_path, umask):
    _random_image(tmp_path / "a.png", 12, 12)
    previous = os.umask(umask)
    try:
        assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 0
        assert main(["degrade", str(tmp_path / "a.png"), str(tmp_path / "lr"), "--mode", "sr", "--scale", "2",
                     "-q"]) == 0
    finally:
        os.umask(previous)
    for path in (tmp_path / "out" / "a_SwinIR.png", tmp_path / "lr" / "a.png"):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_skip_existing_resumes_an_interrupted_run(checkpoints, tmp_path, capsys):
    for i in range(3):
        _random_image(tmp_path / "in" / f"{i}.png", 12, 12, seed=i)
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 0
    os.remove(tmp_path / "out" / "1_SwinIR.png")
    (tmp_path / "out" / "2_SwinIR.png").write_bytes(b"finished before the interruption")
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.count("already exists") == 2 and "--skip-existing" in err
    assert _run(tmp_path / "in", "-m", checkpoints["sr_x2"], "-o", tmp_path / "out", "--skip-existing") == 0
    assert imageio.read_image(str(tmp_path / "out" / "1_SwinIR.png")).pixels.shape == (24, 24, 3)
    assert (tmp_path / "out" / "2_SwinIR.png").read_bytes() == b"finished before the interruption"
    # everything there: nothing to do, not even loading the model
    assert _run(tmp_path / "in", "-m", tmp_path / "gone.pth", "-o", tmp_path / "out", "--skip-existing") == 0
    assert capsys.readouterr().err == ""


def test_degrade_takes_a_file_and_never_replaces_its_inputs(tmp_path, capsys):
    _random_image(tmp_path / "in" / "a.png", 16, 16)
    _random_image(tmp_path / "in" / "a.jpg", 16, 16)
    before = (tmp_path / "in" / "a.png").read_bytes()
    assert main(["degrade", str(tmp_path / "in"), str(tmp_path / "in"), "--mode", "jpeg", "--overwrite", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("would replace the input") == 2  # a.png's own output and a.jpg's (a.png too)
    assert (tmp_path / "in" / "a.png").read_bytes() == before
    assert main(["degrade", str(tmp_path / "in" / "a.png"), str(tmp_path / "lr"), "--mode", "sr", "--scale", "2"]) == 0
    assert imageio.read_image(str(tmp_path / "lr" / "a.png")).pixels.shape == (8, 8, 3)


def test_eval_pairs_the_official_benchmark_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = {"baby": "babyx4_SwinIR.png", "bird": "birdx4.png", "butterfly": "butterfly_SwinIR.png"}
    for stem, restored in names.items():
        truth = rng.random((24, 24, 3), dtype=np.float32)
        imageio.write_image(str(tmp_path / "hr" / f"{stem}.png"), truth)
        imageio.write_image(str(tmp_path / "sr" / restored), truth)
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr"), "--scale", "4"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:4]
    assert [(row.split()[0], row.split()[-1]) for row in rows] == [(f"{k}.png", v) for k, v in names.items()]
    # two scales of the same image: ambiguous without --scale
    imageio.write_image(str(tmp_path / "sr" / "babyx2_SwinIR.png"), rng.random((24, 24, 3), dtype=np.float32))
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr")]) == 1
    assert "pass --scale" in _single_error_line(capsys)
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr"), "--scale", "4"]) == 0


def test_img_range_assumption_is_said_and_can_be_overridden(checkpoints, tmp_path, capsys):
    _random_image(tmp_path / "a.png", 12, 12, channels=1)
    assert main(["restore", str(tmp_path / "a.png"), "-m", checkpoints["gray_dn"], "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "does not store img_range; assumed 1 " in err and "pass --img-range" in err
    assert main(["restore", str(tmp_path / "a.png"), "-m", checkpoints["gray_dn"], "-o", str(tmp_path / "p"),
                 "--img-range", "255"]) == 0
    assert "assumed" not in capsys.readouterr().err
    assumed = imageio.read_image(str(tmp_path / "o" / "a_SwinIR.png")).pixels
    overridden = imageio.read_image(str(tmp_path / "p" / "a_SwinIR.png")).pixels
    assert np.abs(assumed - overridden).max() > 0.01


def test_backends_list_matches_the_package():
    import swinir_kernels
    from swinir.commands import arguments

    assert sorted(arguments.BACKENDS) == sorted(swinir_kernels.BACKENDS)


# --- bench report ---------------------------------------------------------------------------------


def _report_with(ours_ms, reference_ms, megapixels=0.00412):
    results = [benchmark.PathResult(name, name, [t / 1e3 for t in times], megapixels, None, 0.0)
               for name, times in (("ours", ours_ms), ("reference", reference_ms))]
    return benchmark.Report("classical_sr_x4", (8, 8), 4, "cpu", "fp32", len(ours_ms), 2, False, "n/a", "cpu",
                            results)


def test_bench_reports_spread_threads_and_warns_on_noise():
    quiet = benchmark.format_report(_report_with([100, 102, 101], [150, 152, 149]))
    assert "2 CPU thread(s)" in quiet and "100.0..102.0" in quiet and "warning" not in quiet
    assert "0.00412" in quiet and "0.0000" not in quiet
    assert "1.49x (median; 1.46x..1.52x over the runs)" in quiet
    noisy = benchmark.format_report(_report_with([100, 300, 120], [90, 330, 150]))
    assert "warning: the runs vary too much" in noisy


def test_bench_pins_the_thread_count():
    before = torch.get_num_threads()
    report = benchmark.run(size=(8, 8), repeats=2, threads=1, overrides=dict(embed_dim=12, depths=[1], num_heads=[2]))
    assert report.threads == 1 and torch.get_num_threads() == before
    assert len(report.results[0].latencies_s) == 2


def test_backend_that_cannot_run_here_is_a_usage_error(checkpoints, tmp_path, capsys):
    _random_image(tmp_path / "a.png", 12, 12)
    if torch.cuda.is_available():
        pytest.skip("the cuda backend may run here")
    assert _run(tmp_path / "a.png", "-m", checkpoints["sr_x2"], "-o", tmp_path / "o", "--backend", "cuda") == 2
    assert "argument --backend: backend 'cuda' cannot run" in _usage_error(capsys, "restore")


def test_unforeseen_failures_are_one_line(monkeypatch, capsys):
    def fail(**kwargs):
        raise RuntimeError("something nobody foresaw\nwith a second line")

    monkeypatch.setattr(benchmark, "run", fail)
    assert main(["bench"]) == 1
    assert "RuntimeError: something nobody foresaw (SWINIR_TRACEBACK=1" in _single_error_line(capsys)

    def exhausted(**kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(benchmark, "run", exhausted)
    assert main(["bench"]) == 1
    line = _single_error_line(capsys)
    assert "out of memory" in line and "pass a smaller --size" in line

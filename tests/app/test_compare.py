"""`swinir eval --compare DIR`: the before/after picture's crops come from the right places (a synthetic
image with a known defect), its labels carry the PSNRs `swinir eval` prints, and it needs no matplotlib."""

import os
import re

import numpy as np
from PIL import Image
from tests.helpers import run_python

from swinir import compare, degrade, imageio, metrics
from swinir.commands import main

HEIGHT, WIDTH, SCALE = 48, 64, 2
DEFECT = (30, 42, 4)  # top, left, side: where the "restored" image is wrong (multiples of the scale)


def _truth() -> np.ndarray:
    """A smooth colour ramp on the 8-bit grid (written and read back exactly)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pixels = np.stack([x / WIDTH, y / HEIGHT, 0.5 + 0.25 * np.sin(x / 7.0) * np.cos(y / 5.0)], axis=-1)
    return imageio.round_trip(pixels, 8)


def _with_defect(truth: np.ndarray, top: int, left: int, side: int, value: float = 1.0) -> np.ndarray:
    restored = truth.copy()
    restored[top:top + side, left:left + side] = value
    return restored


def _zoomed(pixels: np.ndarray, box, zoom: int) -> np.ndarray:
    top, left, height, width = box
    region = compare._to_rgb8(pixels[top:top + height, left:left + width])
    return np.repeat(np.repeat(region, zoom, 0), zoom, 1)


def _panel(picture: np.ndarray, box) -> np.ndarray:
    top, left, height, width = box
    return picture[top:top + height, left:left + width]


def test_largest_error_box_finds_the_defect_and_skips_the_border():
    error = np.zeros((40, 50))
    error[20:24, 30:34] = 1.0
    error[0:3, 0:10] = 5.0  # larger, but inside the 4-pixel border the scores ignore
    top, left = compare.largest_error_box(error, 8, border=4, step=2)
    assert top <= 20 and top + 8 >= 24 and left <= 30 and left + 8 >= 34
    assert top % 2 == 0 and left % 2 == 0
    assert compare.largest_error_box(error, 8) == (0, 0)  # without a border the big one wins


def test_the_crop_always_holds_the_inset_on_the_scale_grid():
    for step in (1, 2, 3, 4):
        for inset in range(step, 24, step):
            for crop in range(inset, 40, step):
                for start in range(0, 48 - inset + 1, step):
                    top, left, height, width = compare.crop_around((start, 0, inset, inset), crop, 48, 48, step)
                    assert top % step == 0 and 0 <= top <= start and start + inset <= top + height <= 48, \
                        (step, inset, crop, start, top)


def test_the_crops_and_the_inset_come_from_the_defect():
    truth = _truth()
    top, left, side = DEFECT
    ours = _with_defect(truth, top, left, side)
    lr = imageio.round_trip(degrade.bicubic_downscale(truth, SCALE), 8)
    picture, layout = compare.comparison(truth, ours, lr=lr, scale=SCALE, border=SCALE, crop=24, inset=8,
                                         psnrs={"ours": 30.0, "bicubic": 29.0, "input": 25.0})
    inset_top, inset_left, inset_h, inset_w = layout.inset
    assert (inset_h, inset_w) == (8, 8)
    assert inset_top <= top and inset_top + 8 >= top + side and inset_left <= left and inset_left + 8 >= left + side
    crop_top, crop_left, crop_h, crop_w = layout.crop
    assert (crop_h, crop_w) == (24, 24)
    assert crop_top <= inset_top and crop_top + 24 >= inset_top + 8 and crop_left <= inset_left and crop_left + 24 >= inset_left + 8
    # columns: input (nearest), bicubic, ours, ground truth; each panel holds exactly that image's crop
    assert [label.split("  ")[0] for label in layout.labels] == ["input (nearest)", "bicubic", "ours", "ground truth"]
    assert layout.labels[2].endswith("30.00 dB") and layout.labels[1].endswith("29.00 dB")
    nearest = np.repeat(np.repeat(lr, SCALE, 0), SCALE, 1)
    bicubic = compare.bicubic_upscale(lr, SCALE)
    for image, panel, inset in zip((nearest, bicubic, ours, truth), layout.panels, layout.insets):
        shown = _panel(picture, panel).copy()
        # the red frame is drawn just outside the inset: compare the inside only
        expected = _zoomed(image, layout.crop, layout.crop_zoom)
        inside = (slice((inset_top - crop_top) * layout.crop_zoom, (inset_top - crop_top + 8) * layout.crop_zoom),
                  slice((inset_left - crop_left) * layout.crop_zoom, (inset_left - crop_left + 8) * layout.crop_zoom))
        np.testing.assert_array_equal(shown[inside], expected[inside])
        np.testing.assert_array_equal(_panel(picture, inset), _zoomed(image, layout.inset, layout.inset_zoom))
    # the defect (white) is in ours' inset where it is in the image, and not in the ground truth's
    zoom = layout.inset_zoom
    row, column = (top - inset_top) * zoom, (left - inset_left) * zoom
    ours_inset, truth_inset = _panel(picture, layout.insets[2]), _panel(picture, layout.insets[3])
    assert (ours_inset[row:row + side * zoom, column:column + side * zoom] == 255).all()
    assert not (truth_inset[row:row + side * zoom, column:column + side * zoom] == 255).all()


def test_without_input_or_ground_truth_the_columns_shrink():
    truth = _truth()
    ours = _with_defect(truth, 10, 12, 4)
    picture, layout = compare.comparison(truth, ours, crop=32, inset=8)
    assert [label for label in layout.labels] == ["ours", "ground truth"]
    assert layout.inset[0] <= 10 < layout.inset[0] + 8 and layout.inset[1] <= 12 < layout.inset[1] + 8
    assert picture.shape[1] == 2 * max(32 * layout.crop_zoom, 8 * layout.inset_zoom) + 3 * compare.GAP


def _folders(tmp_path, defect=DEFECT):
    truth = _truth()
    hr, restored = tmp_path / "hr", tmp_path / "restored"
    imageio.write_image(str(hr / "ramp.png"), truth)
    imageio.write_image(str(restored / "ramp_SwinIR.png"), _with_defect(truth, *defect))
    return truth, str(hr), str(restored)


def test_eval_compare_writes_the_picture_with_the_psnrs_eval_prints(tmp_path, capsys):
    truth, hr, restored = _folders(tmp_path)
    out = tmp_path / "pictures"
    assert main(["eval", hr, restored, "--scale", str(SCALE), "--compare", str(out), "--crop", "24", "--inset", "8"]) == 0
    printed = capsys.readouterr().out
    ours_psnr = float(re.search(r"ramp\.png\s+([\d.]+)", printed).group(1))
    path = out / "ramp_compare.png"
    assert path.exists() and "wrote 1 comparison picture" in printed
    shown = np.asarray(Image.open(path).convert("RGB"))
    # the same picture the function draws from the same images (the input: `swinir degrade`'s bicubic)
    lr = imageio.round_trip(degrade.bicubic_downscale(truth, SCALE), 8)
    ours = imageio.read_image(os.path.join(restored, "ramp_SwinIR.png")).pixels
    input_psnr = metrics.psnr(imageio.quantize(np.repeat(np.repeat(lr, 2, 0), 2, 1), 8), imageio.quantize(truth, 8), SCALE)
    expected, layout = compare.comparison(truth, ours, lr=lr, scale=SCALE, border=SCALE, crop=24, inset=8,
                                          psnrs={"ours": ours_psnr, "input": input_psnr, "bicubic": 0.0})
    assert shown.shape == expected.shape
    # panels and insets identical (the labels' text aside)
    for box in layout.panels + layout.insets:
        np.testing.assert_array_equal(_panel(shown, box), _panel(expected, box))
    top, left, side = DEFECT
    assert layout.inset[0] <= top and layout.inset[1] <= left


def test_eval_compare_with_the_input_folder_and_bad_options(tmp_path, capsys):
    truth, hr, restored = _folders(tmp_path)
    lr_dir = tmp_path / "lr"
    assert main(["degrade", hr, str(lr_dir), "--mode", "sr", "--scale", "2", "-q"]) == 0
    os.rename(lr_dir / "ramp.png", lr_dir / "rampx2.png")  # the official LR sets' names are matched too
    assert main(["eval", hr, restored, "--scale", "2", "--lr", str(lr_dir), "--compare", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "ramp_compare.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["eval", hr, restored, "--lr", str(lr_dir)]) == 2  # --lr only makes sense with --compare
    assert "add --compare DIR" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["eval", hr, restored, "--compare", str(tmp_path / "afile")]) == 2


def test_eval_compare_needs_no_matplotlib(tmp_path):
    _, hr, restored = _folders(tmp_path)
    result = run_python(f"""
        import sys
        sys.modules["matplotlib"] = None  # import matplotlib -> ImportError
        from swinir.commands import main
        sys.exit(main(["eval", {hr!r}, {restored!r}, "--scale", "2", "--compare", {str(tmp_path / 'p')!r}]))
    """)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p" / "ramp_compare.png").exists()

"""``swinir eval``: PSNR/SSIM of restored images against their ground truth, as SwinIR's official script."""

from __future__ import annotations

import os
import re

from . import arguments
from .errors import CliError, UsageError, report
from .inputs import RESTORED_SUFFIX, images_in

HELP = "PSNR/SSIM of restored images against ground truth"
DESCRIPTION = ("PSNR/SSIM as SwinIR's official script: border crop, RGB and BT.601 Y channel. Restored files are "
               "matched by name: <name>_SwinIR.*, <name>.*, or <name>x<scale>[_SwinIR].* as in the official LR sets. "
               "--compare DIR also writes DIR/<name>_compare.png per image: the same crop of the input (upscaled "
               "nearest), bicubic, the restored image and the ground truth side by side, a zoomed inset where the "
               "restored image is furthest from the ground truth, and each one's PSNR in its label.")
COMPARE_SUFFIX = "_compare.png"
EVAL_TASKS = ("classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn", "gray_jpeg", "color_jpeg")
BORDER_TASKS = ("classical_sr", "lightweight_sr")  # the official script crops `scale` pixels for these


def add_arguments(evaluate) -> None:
    evaluate.add_argument("hr_dir", metavar="HR_DIR")
    evaluate.add_argument("restored_dir", metavar="RESTORED_DIR")
    evaluate.add_argument("--scale", type=arguments.positive_int, help="SR scale (default 1)")
    evaluate.add_argument("--task", choices=EVAL_TASKS,
                          help="sets the border as the official script: scale for classical/lightweight SR, else 0")
    evaluate.add_argument("--border", type=arguments.non_negative_int,
                          help="pixels cropped on each side (overrides --task)")
    pictures = evaluate.add_argument_group("before/after pictures")
    pictures.add_argument("--compare", metavar="DIR",
                          help="write DIR/<name>_compare.png per image (input, bicubic, restored, ground truth)")
    pictures.add_argument("--lr", metavar="LR_DIR",
                          help="the inputs (matched by name as the restored files; default: for --scale > 1, "
                               "the ground truth downscaled as `swinir degrade --mode sr` does)")
    pictures.add_argument("--crop", type=arguments.positive_int, default=96, metavar="PIXELS",
                          help="side of the crop shown, in output pixels (default 96)")
    pictures.add_argument("--inset", type=arguments.positive_int, default=32, metavar="PIXELS",
                          help="side of the zoomed inset, in output pixels (default 32)")


def check(args) -> None:
    if args.task in BORDER_TASKS and args.scale is None and args.border is None:
        raise UsageError(f"argument --scale: --task {args.task} crops a border of --scale pixels, as the official "
                         "script; pass --scale (or --border)")
    if args.lr and not args.compare:
        raise UsageError("argument --lr: the inputs are only drawn in the --compare pictures; add --compare DIR")
    for folder in (args.hr_dir, args.restored_dir, *([args.lr] if args.lr else [])):
        if not os.path.isdir(folder):
            raise CliError(f"{folder}: {'not a folder' if os.path.exists(folder) else 'no such folder'}")
    if args.compare:
        arguments.check_output_folder(args.compare, "--compare")


def pair_restored(hr_paths: list[str], restored_paths: list[str], scale: int | None):
    """(HR path, restored path or None, why not) per HR image, matched by name: ``<name>_SwinIR``,
    ``<name>``, then the official LR sets' ``<name>x<scale>`` with or without ``_SwinIR`` (any scale
    when --scale is not given, as long as only one scale is present)."""
    from .. import imageio

    preference = list(imageio.FORMATS)
    by_stem: dict[str, str] = {}
    for path in sorted(restored_paths, key=lambda p: preference.index(os.path.splitext(p)[1].lower())):
        by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], path)
    scale_pattern = r"\d+" if scale is None else str(scale)
    pairs = []
    for hr_path in hr_paths:
        stem = os.path.splitext(os.path.basename(hr_path))[0]
        exact = [by_stem[name] for name in (stem + RESTORED_SUFFIX, stem) if name in by_stem]
        pattern = re.compile(re.escape(stem) + rf"[xX]({scale_pattern})({re.escape(RESTORED_SUFFIX)})?")
        found = sorted((name for name in by_stem if pattern.fullmatch(name)),
                       key=lambda name: not name.endswith(RESTORED_SUFFIX))
        scales = {pattern.fullmatch(name).group(1) for name in found}
        if exact:
            pairs.append((hr_path, exact[0], None))
        elif len(scales) > 1:
            pairs.append((hr_path, None, f"several restored images match ({', '.join(by_stem[n] for n in found)}); "
                                         "pass --scale to choose"))
        elif found:
            pairs.append((hr_path, by_stem[found[0]], None))
        else:
            pairs.append((hr_path, None, f"no restored image {stem}{RESTORED_SUFFIX}.*, {stem}.* or "
                                         f"{stem}x{scale or '<scale>'}[{RESTORED_SUFFIX}].*"))
    return pairs


def compare(hr, restored, scale: int, border: int) -> tuple[float, float, float, float]:
    """PSNR, SSIM, PSNR_Y, SSIM_Y of two read images (:func:`swinir.metrics.restoration_scores`)."""
    from .. import imageio, metrics

    if hr.channels != restored.channels:
        raise CliError(f"channel mismatch: ground truth has {hr.channels}, restored has {restored.channels}")
    height, width = restored.height, restored.width
    if not (0 <= hr.height - height < max(scale, 1) and 0 <= hr.width - width < max(scale, 1)):
        raise CliError(f"size mismatch: restored {width}x{height}, ground truth {hr.width}x{hr.height}")
    return metrics.restoration_scores(imageio.on_255_scale(restored.pixels, restored.bit_depth),
                                      imageio.on_255_scale(hr.pixels, hr.bit_depth), border)


def run(args) -> int:
    import numpy as np

    from .. import imageio

    scale = args.scale or 1
    border = args.border
    if border is None:
        border = scale if args.task in (None, *BORDER_TASKS) and scale > 1 else 0
    hr_paths = images_in(args.hr_dir, recursive=False)
    if not hr_paths:
        raise CliError(f"{args.hr_dir}: no images found")
    pairs = pair_restored(hr_paths, images_in(args.restored_dir, recursive=False), args.scale)
    inputs = {}
    if args.compare and args.lr:
        inputs = {hr: lr for hr, lr, _ in pair_restored(hr_paths, images_in(args.lr, recursive=False), args.scale)}
    rows, failures, pictures = [], 0, 0
    for hr_path, restored_path, unmatched in pairs:
        if restored_path is None:
            report(f"{hr_path}: {unmatched} in {args.restored_dir}")
            failures += 1
            continue
        try:
            hr, restored = imageio.read_image(hr_path), imageio.read_image(restored_path)
            scores = compare(hr, restored, scale, border)
            rows.append((os.path.basename(hr_path), *scores, os.path.basename(restored_path)))
            if args.compare:
                if args.lr and inputs.get(hr_path) is None:
                    raise CliError(f"no input image for {os.path.basename(hr_path)} in {args.lr}")
                lr = imageio.read_image(inputs[hr_path]) if args.lr else None
                write_comparison(args, hr_path, hr, restored, lr, scale, border, scores[0])
                pictures += 1
        except (imageio.ImageError, CliError, ValueError) as error:
            report(f"{restored_path}: {error}" if not isinstance(error, imageio.ImageError) else str(error))
            failures += 1
    if rows:
        width = max(12, *(len(row[0]) for row in rows))
        print(f"{'image':<{width}} {'PSNR':>8} {'SSIM':>8} {'PSNR_Y':>8} {'SSIM_Y':>8}   restored file "
              f"(dB; border {border})")
        for row in rows:
            print(f"{row[0]:<{width}} {row[1]:8.4f} {row[2]:8.6f} {row[3]:8.4f} {row[4]:8.6f}   {row[5]}")
        means = [float(np.mean([row[i] for row in rows])) for i in range(1, 5)]
        label = f"average ({len(rows)})"
        print(f"{label:<{width}} {means[0]:8.4f} {means[1]:8.6f} {means[2]:8.4f} {means[3]:8.6f}")
    if args.compare and pictures:
        print(f"wrote {pictures} comparison picture{'s' if pictures != 1 else ''} to {args.compare}")
    return 1 if failures else 0


def write_comparison(args, hr_path: str, hr, restored, lr, scale: int, border: int, ours_psnr: float) -> str:
    """DIR/<name>_compare.png (:func:`swinir.compare.comparison`); the input and bicubic PSNRs are those
    of the images as 8-bit files, scored as ``swinir eval`` scores (the same border)."""
    import numpy as np

    from .. import compare as pictures, degrade, files, imageio, metrics

    height, width = restored.height, restored.width
    truth = hr.pixels[:height, :width]
    if lr is None and scale > 1:  # the input `swinir degrade --mode sr --scale s` writes
        lr_pixels = imageio.round_trip(degrade.bicubic_downscale(hr.pixels, scale), hr.bit_depth)
    elif lr is not None:
        if lr.channels != restored.channels:
            raise CliError(f"channel mismatch: input has {lr.channels}, restored has {restored.channels}")
        if not (0 <= lr.height * scale - height < scale and 0 <= lr.width * scale - width < scale):
            raise CliError(f"size mismatch: input {lr.width}x{lr.height} x{scale} is not the restored "
                           f"{width}x{height}; pass --scale")
        lr_pixels = lr.pixels
    else:
        lr_pixels = None
    truth_255 = imageio.on_255_scale(truth, hr.bit_depth)

    def psnr_of(pixels):
        return metrics.psnr(imageio.quantize(pixels[:height, :width], 8), truth_255, border)

    psnrs = {"ours": ours_psnr}
    if lr_pixels is not None:
        psnrs["input"] = psnr_of(np.repeat(np.repeat(lr_pixels, scale, 0), scale, 1))
        if scale > 1:
            psnrs["bicubic"] = psnr_of(pictures.bicubic_upscale(lr_pixels, scale))
    picture, _ = pictures.comparison(truth, restored.pixels, lr=lr_pixels, scale=scale, border=border,
                                     crop=args.crop, inset=args.inset, psnrs=psnrs)
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    path = os.path.join(args.compare, stem + COMPARE_SUFFIX)
    from PIL import Image

    try:
        files.atomic_write(path, lambda handle: Image.fromarray(picture).save(handle, format="PNG", optimize=True))
    except OSError as error:
        raise CliError(f"{path}: cannot write ({error.strerror or error})") from None
    return path

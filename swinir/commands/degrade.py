"""``swinir degrade``: make low-quality inputs from clean images (:func:`swinir.degrade.degrade`)."""

from __future__ import annotations

from . import arguments
from .errors import UsageError, note, report
from .inputs import collect_inputs, plan_outputs

HELP = "make low-quality inputs from clean images"
DESCRIPTION = ("Bicubic downscale, Gaussian noise or JPEG compression, as the official test script. Writes "
               "OUT_DIR/<name>.png.")
DEGRADE_DEFAULTS = {"sr": {"scale": 4}, "noise": {"sigma": 25.0, "seed": 0, "bit_depth": None}, "jpeg": {"quality": 10}}


def add_arguments(degrade) -> None:
    degrade.add_argument("hr_dir", metavar="HR", help="a folder of clean images, or one image")
    degrade.add_argument("out_dir", metavar="OUT_DIR")
    degrade.add_argument("--mode", choices=tuple(DEGRADE_DEFAULTS), required=True)
    degrade.add_argument("--scale", type=int, choices=(2, 3, 4, 8), help="--mode sr (default 4)")
    degrade.add_argument("--sigma", type=arguments.positive_float, help="--mode noise, on 0..255 (default 25)")
    degrade.add_argument("--seed", type=arguments.seed, help="--mode noise: RandomState seed per image (default 0)")
    degrade.add_argument("--quality", type=arguments.int_between(1, 100), metavar="Q",
                         help="--mode jpeg quality 1..100 (default 10)")
    degrade.add_argument("--gray", action="store_true",
                         help="convert colour images to gray first (studio Y for jpeg, 0.299/0.587/0.114 otherwise)")
    degrade.add_argument("--bit-depth", type=int, choices=(8, 16),
                         help="--mode noise output precision (default: the input's)")
    degrade.add_argument("-r", "--recursive", action="store_true")
    existing = degrade.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    degrade.add_argument("-q", "--quiet", action="store_true")


def check(args) -> None:
    for mode, defaults in DEGRADE_DEFAULTS.items():
        for name, default in defaults.items():
            if mode != args.mode and getattr(args, name) is not None:
                raise UsageError(f"argument --{name.replace('_', '-')}: only used with --mode {mode} "
                                 f"(got --mode {args.mode})")
            if getattr(args, name) is None:
                setattr(args, name, default)
    arguments.check_output_folder(args.out_dir, "OUT_DIR")


def run(args) -> int:
    from .. import degrade, imageio

    pairs, failures = collect_inputs([args.hr_dir], args.recursive, args.out_dir)
    jobs, refused = plan_outputs(pairs, args.out_dir, ".png", args)
    failures += refused
    for path, out_path in jobs:
        try:
            image = imageio.read_image(path)
            pixels, bit_depth = degrade.degrade(
                image.pixels, args.mode, scale=args.scale, sigma=args.sigma, seed=args.seed, quality=args.quality,
                gray=args.gray, bit_depth=args.bit_depth or image.bit_depth,
            )  # fmt: skip
            imageio.write_image(out_path, pixels, None, bit_depth, overwrite=args.overwrite)
        except (imageio.ImageError, ValueError) as error:
            report(f"{path}: {error}" if not isinstance(error, imageio.ImageError) else str(error))
            failures += 1
            continue
        note(f"{path} -> {out_path}", args.quiet)
    return 1 if failures else 0

"""The ``swinir`` command: restore, eval, degrade, bench, export.

Exit status: 0 when everything succeeded, 1 when something failed (each failure is one line
``swinir: error: ...`` on stderr; in a folder the other images are still processed), 2 for usage
errors (bad options).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

import numpy as np
import swinir_kernels

from . import imageio

RESTORED_SUFFIX = "_SwinIR"
DTYPES = ("fp32", "bf16", "fp16")


class CliError(Exception):
    """A failure reported as one ``swinir: error: ...`` line."""


def _report(message: str) -> None:
    print(f"swinir: error: {message}", file=sys.stderr)


def _first_line(error: BaseException) -> str:
    """An exception's message cut to one line (torch's can span many)."""
    return (str(error).strip().splitlines() or [""])[0][:200]


def _note(message: str, quiet: bool) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(f"swinir: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# Finding images


def _images_in(folder: str, recursive: bool, skip: str | None = None) -> list[str]:
    """Image files in ``folder`` (sorted; hidden files and the ``skip`` folder left out)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or os.path.realpath(os.path.join(root, d)) != skip))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and imageio.is_image_file(f)]
        if not recursive:
            break
    return found


def _collect_inputs(inputs: list[str], recursive: bool, out_dir: str) -> tuple[list[tuple[str, str]], int]:
    """(input path, output path relative to OUTDIR without suffix) pairs, and how many inputs were bad."""
    pairs, failures = [], 0
    skip = os.path.realpath(out_dir)
    for given in inputs:
        if os.path.isdir(given):
            files = _images_in(given, recursive, skip)
            if not files:
                _report(f"{given}: no images found ({', '.join(sorted(imageio.FORMATS))})")
                failures += 1
            pairs += [(path, os.path.splitext(os.path.relpath(path, given))[0]) for path in files]
        elif os.path.isfile(given):
            pairs.append((given, os.path.splitext(os.path.basename(given))[0]))
        else:
            _report(f"{given}: no such file or folder")
            failures += 1
    return pairs, failures


# ---------------------------------------------------------------------------------------------------
# restore


def _load_model(args):
    import swinir

    from . import hub

    overrides = {} if args.backend is None else {"backend": args.backend}
    try:
        path = hub.resolve(args.model, verify=swinir.load, progress=not args.quiet)
        return swinir.load(path, **overrides)
    except hub.HubError as error:
        raise CliError(str(error)) from None
    except ValueError as error:  # infer_config: not a SwinIR state dict
        raise CliError(f"{args.model}: {error}") from None
    except Exception as error:  # noqa: BLE001  (torch.load on garbage raises many kinds)
        raise CliError(f"{args.model}: cannot load checkpoint ({type(error).__name__}: {_first_line(error)})") from None


def _to_model_channels(image: imageio.LoadedImage, in_chans: int, path: str, quiet: bool) -> np.ndarray:
    """Gray image + RGB model: replicate; RGB image + gray model: BT.601 luminance (with a note)."""
    pixels = image.pixels
    if pixels.shape[2] == in_chans:
        return pixels
    if in_chans == 3:
        return np.repeat(pixels, 3, axis=2)
    _note(f"{path}: the model is grayscale; restoring the luminance 0.299 R + 0.587 G + 0.114 B of this colour image",
          quiet)
    return pixels @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)


def _autocast(device, dtype: str):
    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), torch.cuda.OutOfMemoryError) if t)
    if isinstance(error, oom_types):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


class _Restorer:
    """Runs one model over images (whole or tiled) and writes the results."""

    def __init__(self, model, args, device):
        from . import tiling

        self.model, self.args, self.device = model, args, device
        self.scale = model.upscale
        self.window_size = model.window_size
        self.tile = args.tile
        if self.tile is None and args.max_memory is not None:
            try:
                self.tile = tiling.tile_for_memory(model.config, args.max_memory * 2**30, args.tile_overlap,
                                                   batch=args.batch, half=args.dtype != "fp32")
            except ValueError as error:
                raise CliError(str(error)) from None
            _note(f"--max-memory {args.max_memory:g} GB: tile {self.tile} (estimate in swinir/tiling.py)", args.quiet)

    def run_model(self, batch):
        import torch

        with torch.inference_mode(), _autocast(self.device, self.args.dtype):
            return self.model(batch.to(self.device)).float().cpu()

    def restore_one(self, tensor):
        """(1, C, H, W) CPU float -> (1, C, H*s, W*s) CPU float32."""
        if self.tile is None or self.tile >= max(tensor.shape[-2:]):
            return self.run_model(tensor)
        from tqdm.auto import tqdm

        from . import tiling

        progress = None if self.args.quiet else (lambda items: tqdm(items, desc="tiles", leave=False, file=sys.stderr))
        return tiling.tiled_forward(self.run_model, tensor, scale=self.scale, window_size=self.window_size,
                                    tile=self.tile, overlap=self.args.tile_overlap, margin=self.args.tile_margin,
                                    batch=self.args.batch, progress=progress)

    def write(self, path: str, out_path: str, image: imageio.LoadedImage, restored: np.ndarray) -> None:
        from .degrade import resize_plane

        alpha = image.alpha
        if alpha is not None and self.scale != 1:
            alpha = np.clip(resize_plane(alpha, restored.shape[0], restored.shape[1]), 0.0, 1.0)
        imageio.write_image(out_path, restored, alpha, image.bit_depth, overwrite=self.args.overwrite)
        _note(f"{path} -> {out_path} ({image.width}x{image.height} -> {restored.shape[1]}x{restored.shape[0]})",
              self.args.quiet)


def _restore(args) -> int:
    import torch
    from tqdm.auto import tqdm

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pairs, failures = _collect_inputs(args.inputs, args.recursive, args.output)
    if not pairs:
        raise CliError("no input images")
    model = _load_model(args).to(device)
    if model.in_chans not in (1, 3):
        raise CliError(f"{args.model}: the model takes {model.in_chans} channels; images have 1 (gray) or 3 (RGB)")
    restorer = _Restorer(model, args, device)

    jobs, claimed = [], {}
    for path, stem in pairs:
        out_path = os.path.join(args.output, stem + RESTORED_SUFFIX + ".png")
        key = os.path.realpath(out_path)
        if key == os.path.realpath(path):
            _report(f"{path}: the output would replace the input; choose another OUTDIR")
            failures += 1
        elif key in claimed:
            _report(f"{path}: output {out_path} would also be written for {claimed[key]}; rename one of them")
            failures += 1
        elif os.path.exists(out_path) and not args.overwrite:
            _report(f"{out_path}: already exists (pass --overwrite to replace it)")
            failures += 1
        else:
            claimed[key] = path
            jobs.append((path, out_path))

    pending: list[tuple[str, str, imageio.LoadedImage, torch.Tensor]] = []

    def flush() -> int:
        """Restore the pending equal-size images in one batch; returns the number of failures."""
        if not pending:
            return 0
        batch = torch.cat([item[3] for item in pending])
        try:
            outputs = restorer.restore_one(batch) if len(pending) == 1 else restorer.run_model(batch)
            results = [(out_path, out.permute(1, 2, 0).numpy()) for (_, out_path, _, _), out in zip(pending, outputs)]
        except Exception as error:  # noqa: BLE001  (reported per image; the rest go on)
            if _is_out_of_memory(error):
                message = (f"out of memory on {device} for a {batch.shape[-1]}x{batch.shape[-2]} image; "
                           "use --tile 256 (or smaller) or --max-memory GB" + (", or --batch 1" if len(pending) > 1 else ""))
            else:
                message = f"restoration failed ({type(error).__name__}: {_first_line(error)})"
            for path, *_ in pending:
                _report(f"{path}: {message}")
            failed = len(pending)
            pending.clear()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return failed
        failed = 0
        for (path, _, image, _), (out_path, restored) in zip(pending, results):
            try:
                restorer.write(path, out_path, image, restored)
            except imageio.ImageError as error:
                _report(str(error))
                failed += 1
        pending.clear()
        return failed

    batch_images = args.batch > 1 and args.tile is None and args.max_memory is None
    for path, out_path in tqdm(jobs, desc="images", unit="img", disable=args.quiet or len(jobs) < 2, file=sys.stderr):
        try:
            image = imageio.read_image(path)
        except imageio.ImageError as error:
            _report(str(error))
            failures += 1
            continue
        pixels = _to_model_channels(image, model.in_chans, path, args.quiet)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        if pending and (pending[0][3].shape != tensor.shape or not batch_images):
            failures += flush()
        pending.append((path, out_path, image, tensor))
        if len(pending) >= (args.batch if batch_images else 1):
            failures += flush()
    failures += flush()
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------------
# eval


def _find_restored(folder: str, stem: str) -> str | None:
    for candidate in (stem + RESTORED_SUFFIX, stem):
        for suffix in imageio.FORMATS:
            path = os.path.join(folder, candidate + suffix)
            if os.path.isfile(path):
                return path
    return None


def _on_255_scale(image: imageio.LoadedImage) -> np.ndarray:
    """uint8 values for 8-bit files (as the official script), unrounded 0..255 floats for 16-bit files."""
    if image.bit_depth == 8:
        return imageio.quantize(image.pixels, 8)
    return image.pixels.astype(np.float64) * 255.0


def _eval(args) -> int:
    from . import metrics

    if not os.path.isdir(args.hr_dir):
        raise CliError(f"{args.hr_dir}: no such folder")
    if not os.path.isdir(args.restored_dir):
        raise CliError(f"{args.restored_dir}: no such folder")
    border = args.border
    if border is None:
        border = args.scale if args.task in (None, "classical_sr", "lightweight_sr") and args.scale > 1 else 0
    hr_paths = _images_in(args.hr_dir, recursive=False)
    if not hr_paths:
        raise CliError(f"{args.hr_dir}: no images found")
    rows, failures = [], 0
    for hr_path in hr_paths:
        stem = os.path.splitext(os.path.basename(hr_path))[0]
        restored_path = _find_restored(args.restored_dir, stem)
        if restored_path is None:
            _report(f"{hr_path}: no restored image {stem}{RESTORED_SUFFIX}.* or {stem}.* in {args.restored_dir}")
            failures += 1
            continue
        try:
            hr, restored = imageio.read_image(hr_path), imageio.read_image(restored_path)
            rows.append((stem, *_compare(hr, restored, args.scale, border, metrics)))
        except (imageio.ImageError, CliError, ValueError) as error:
            _report(f"{restored_path}: {error}" if not isinstance(error, imageio.ImageError) else str(error))
            failures += 1
    if rows:
        width = max(12, *(len(row[0]) for row in rows))
        print(f"{'image':<{width}} {'PSNR':>8} {'SSIM':>8} {'PSNR_Y':>8} {'SSIM_Y':>8}   (dB; border {border})")
        for row in rows:
            print(f"{row[0]:<{width}} {row[1]:8.4f} {row[2]:8.6f} {row[3]:8.4f} {row[4]:8.6f}")
        means = [float(np.mean([row[i] for row in rows])) for i in range(1, 5)]
        label = f"average ({len(rows)})"
        print(f"{label:<{width}} {means[0]:8.4f} {means[1]:8.6f} {means[2]:8.4f} {means[3]:8.6f}")
    return 1 if failures else 0


def _compare(hr: imageio.LoadedImage, restored: imageio.LoadedImage, scale: int, border: int, metrics):
    if hr.channels != restored.channels:
        raise CliError(f"channel mismatch: ground truth has {hr.channels}, restored has {restored.channels}")
    height, width = restored.height, restored.width
    if not (0 <= hr.height - height < max(scale, 1) and 0 <= hr.width - width < max(scale, 1)):
        raise CliError(f"size mismatch: restored {width}x{height}, ground truth {hr.width}x{hr.height}")
    truth = _on_255_scale(hr)[:height, :width]
    output = _on_255_scale(restored)
    return (metrics.psnr(output, truth, border), metrics.ssim(output, truth, border),
            metrics.psnr(output, truth, border, y_channel=True), metrics.ssim(output, truth, border, y_channel=True))


# ---------------------------------------------------------------------------------------------------
# degrade


def _degrade(args) -> int:
    from . import degrade

    if not os.path.isdir(args.hr_dir):
        raise CliError(f"{args.hr_dir}: no such folder")
    paths = _images_in(args.hr_dir, args.recursive, os.path.realpath(args.out_dir))
    if not paths:
        raise CliError(f"{args.hr_dir}: no images found")
    failures = 0
    for path in paths:
        out_path = os.path.join(args.out_dir, os.path.splitext(os.path.relpath(path, args.hr_dir))[0] + ".png")
        try:
            image = imageio.read_image(path)
            pixels, bit_depth = image.pixels, image.bit_depth
            if args.gray:
                pixels = degrade.to_gray(pixels, studio_luma=args.mode == "jpeg")
            if args.mode == "sr":
                pixels = degrade.bicubic_downscale(pixels, args.scale)
            elif args.mode == "noise":
                pixels = degrade.add_gaussian_noise(pixels, args.sigma, args.seed)
                bit_depth = args.bit_depth or bit_depth
            else:
                pixels, bit_depth = degrade.jpeg_compress(pixels, args.quality), 8
            imageio.write_image(out_path, pixels, None, bit_depth, overwrite=args.overwrite)
        except (imageio.ImageError, ValueError) as error:
            _report(f"{path}: {error}" if not isinstance(error, imageio.ImageError) else str(error))
            failures += 1
            continue
        _note(f"{path} -> {out_path}", args.quiet)
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------------
# bench


def _bench(args) -> int:
    from . import benchmark

    try:
        report = benchmark.run(preset=args.preset, size=args.size, device=args.device, dtype=args.dtype,
                               repeats=args.repeats)
    except ValueError as error:
        raise CliError(str(error)) from None
    print(benchmark.format_report(report))
    return 0


# ---------------------------------------------------------------------------------------------------
# argument parsing


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text}")
    return (values[0], values[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swinir", description="SwinIR image restoration on fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    restore = commands.add_parser("restore", help="restore images or folders with a SwinIR checkpoint",
                                  description="Restore images; the task (SR scale, denoise, JPEG) comes from the "
                                              "checkpoint. Writes OUTDIR/<name>_SwinIR.png.")
    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    restore.add_argument("-m", "--model", required=True, metavar="CHECKPOINT",
                         help="a .pth/.safetensors file, or a named checkpoint (e.g. classical_sr_x4) to download")
    restore.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    restore.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    restore.add_argument("--tile", type=_positive_int, metavar="T",
                         help="restore in T x T tiles (LR pixels, rounded down to a multiple of the window size)")
    restore.add_argument("--tile-overlap", type=_positive_int, default=32, metavar="O",
                         help="overlap between tiles (default 32): 3/8 of it on each side is context, the rest "
                              "is cross-faded")
    restore.add_argument("--tile-margin", type=int, metavar="M",
                         help="context pixels discarded at inner tile sides (default 3/8 of the overlap)")
    restore.add_argument("--max-memory", type=_positive_float, metavar="GB",
                         help="choose the tile size so that the model's activations fit in GB (an estimate)")
    restore.add_argument("--dtype", choices=DTYPES, default="fp32",
                         help="compute precision (bf16/fp16 via autocast; the residual stream stays fp32)")
    restore.add_argument("--backend", choices=swinir_kernels.BACKENDS,
                         help="swinir_kernels backend (default auto)")
    restore.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    restore.add_argument("--batch", type=_positive_int, default=1, metavar="N",
                         help="tiles of an image (or equal-size images, untiled) run N at a time")
    restore.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes, only errors")
    restore.set_defaults(handler=_restore)

    evaluate = commands.add_parser("eval", help="PSNR/SSIM of restored images against ground truth",
                                   description="PSNR/SSIM as SwinIR's official script: border crop, RGB and "
                                               "BT.601 Y channel. Restored files are matched as <name>_SwinIR.* "
                                               "or <name>.*.")
    evaluate.add_argument("hr_dir", metavar="HR_DIR")
    evaluate.add_argument("restored_dir", metavar="RESTORED_DIR")
    evaluate.add_argument("--scale", type=_positive_int, default=1, help="SR scale (default 1)")
    evaluate.add_argument("--task", choices=("classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn",
                                             "gray_jpeg", "color_jpeg"),
                          help="sets the border as the official script: scale for classical/lightweight SR, else 0")
    evaluate.add_argument("--border", type=int, help="pixels cropped on each side (overrides --task)")
    evaluate.set_defaults(handler=_eval)

    degrade = commands.add_parser("degrade", help="make low-quality inputs from clean images",
                                  description="Bicubic downscale, Gaussian noise or JPEG compression, as the "
                                              "official test script. Writes OUT_DIR/<name>.png.")
    degrade.add_argument("hr_dir", metavar="HR_DIR")
    degrade.add_argument("out_dir", metavar="OUT_DIR")
    degrade.add_argument("--mode", choices=("sr", "noise", "jpeg"), required=True)
    degrade.add_argument("--scale", type=int, choices=(2, 3, 4, 8), default=4, help="--mode sr (default 4)")
    degrade.add_argument("--sigma", type=_positive_float, default=25.0, help="--mode noise, on 0..255 (default 25)")
    degrade.add_argument("--seed", type=int, default=0, help="--mode noise: RandomState seed per image (default 0)")
    degrade.add_argument("--quality", type=int, choices=range(1, 101), default=10, metavar="Q",
                         help="--mode jpeg quality 1..100 (default 10)")
    degrade.add_argument("--gray", action="store_true",
                         help="convert colour images to gray first (studio Y for jpeg, 0.299/0.587/0.114 otherwise)")
    degrade.add_argument("--bit-depth", type=int, choices=(8, 16),
                         help="--mode noise output precision (default: the input's)")
    degrade.add_argument("-r", "--recursive", action="store_true")
    degrade.add_argument("--overwrite", action="store_true")
    degrade.add_argument("-q", "--quiet", action="store_true")
    degrade.set_defaults(handler=_degrade)

    bench = commands.add_parser("bench", help="ours vs the reference path: latency, throughput, memory, accuracy")
    bench.add_argument("--preset", default="classical_sr_x4", help="model preset (random weights)")
    bench.add_argument("--size", type=_size, metavar="N|HxW",
                       help="LR input size (default 32x32 on CPU, 256x256 on GPU)")
    bench.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    bench.add_argument("--dtype", choices=DTYPES, default="fp32")
    bench.add_argument("--repeats", type=_positive_int, help="timed runs per path (default 2 on CPU, 20 on GPU)")
    bench.set_defaults(handler=_bench)

    from .export import add_command as add_export_command

    add_export_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: usage error (2) or --help (0)
        return int(exit_request.code or 0)
    if getattr(args, "device", None):
        import torch

        try:
            torch.device(args.device)
        except RuntimeError as error:
            parser.print_usage(sys.stderr)
            _report(f"argument --device: {error}")
            return 2
    if getattr(args, "tile_margin", None) is not None and not 0 <= 2 * args.tile_margin < args.tile_overlap:
        parser.print_usage(sys.stderr)
        _report(f"argument --tile-margin: need 0 <= 2 * margin < overlap ({args.tile_overlap})")
        return 2
    try:
        return args.handler(args)
    except CliError as error:
        _report(str(error))
        return 1
    except KeyboardInterrupt:
        _report("interrupted")
        return 130

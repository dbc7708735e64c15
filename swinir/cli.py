"""The ``swinir`` command: restore, eval, degrade, bench, train, export.

Exit status: 0 when everything succeeded, 1 when something failed (each failure is one line
``swinir: error: ...`` on stderr; in a folder the other images are still processed), 2 for usage
errors (the sub-command's usage and one ``swinir COMMAND: error: ...`` line, as argparse prints them).
Every option is checked before any work starts.

Each sub-command is one ``_add_<name>`` function (its options, a ``check`` run before any work and a
``handler``) listed in :data:`SUB_COMMANDS`. Nothing heavy is imported at module level: ``--help`` and
usage errors never import torch.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import warnings

# argparse only: the trainer itself is imported when `train` runs
from .export_cli import add_export_command
from .train_cli import add_train_command

RESTORED_SUFFIX = "_SwinIR"
DTYPES = ("fp32", "bf16", "fp16")
# swinir_kernels.BACKENDS (a test checks they agree); spelled out so that --help needs no torch import
BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")
EVAL_TASKS = ("classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn", "gray_jpeg", "color_jpeg")
BORDER_TASKS = ("classical_sr", "lightweight_sr")  # the official script crops `scale` pixels for these
DEFAULT_TILE_OVERLAP = 32
DEGRADE_DEFAULTS = {"sr": {"scale": 4}, "noise": {"sigma": 25.0, "seed": 0, "bit_depth": None}, "jpeg": {"quality": 10}}


class CliError(Exception):
    """A failure reported as one ``swinir: error: ...`` line (exit status 1)."""


class UsageError(Exception):
    """A bad option or combination of options: the sub-command's usage and one line (exit status 2)."""


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
# Checks shared by the sub-commands


def _device_problem(spec: str) -> str | None:
    """Why torch device ``spec`` cannot be used here, or None."""
    import torch

    try:
        device = torch.device(spec)
    except RuntimeError as error:
        return f"{spec!r} is not a torch device ({_first_line(error)})"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return f"{spec}: this torch ({torch.__version__}) is a build without CUDA; use --device cpu"
        count = torch.cuda.device_count()
        if count == 0:
            return f"{spec}: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu"
        if device.index is not None and device.index >= count:
            return f"{spec}: there {'is' if count == 1 else 'are'} only {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        return None
    if device.type == "mps":
        built = torch.backends.mps.is_built()
        if not torch.backends.mps.is_available():
            why = "MPS (Apple GPU) is not available on this machine" if built else "this torch is a build without MPS"
            return f"{spec}: {why}; use --device cpu"
        return None
    try:
        torch.empty(0, device=device)
    except Exception as error:  # noqa: BLE001  (each device type fails its own way)
        return f"{spec}: not usable here ({_first_line(error)}); use --device cpu"
    return None


def _did_you_mean(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_output_folder(folder: str, option: str) -> None:
    """Before any work: ``folder`` is, or can become, a writable folder."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"argument {option}: {folder} exists and is not a folder")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"argument {option}: cannot create {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CliError(f"{folder}: cannot write there (no write permission on {existing})")


def _images_in(folder: str, recursive: bool, skip: str | None = None) -> list[str]:
    """Image files in ``folder`` (sorted; hidden files and the ``skip`` folder left out)."""
    from . import imageio

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
    from . import imageio

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


def _plan_outputs(pairs: list[tuple[str, str]], out_dir: str, suffix: str, args) -> tuple[list[tuple[str, str]], int]:
    """(input, output) jobs and the number of refused ones: an output may not replace its input, be
    claimed twice or replace an existing file (unless --overwrite; --skip-existing leaves it quietly)."""
    from . import imageio

    jobs, claimed, failures, skipped = [], {}, 0, 0
    inputs = {os.path.realpath(path): path for path, _ in pairs}
    for path, stem in pairs:
        out_path = os.path.join(out_dir, stem + suffix)
        key = os.path.realpath(out_path)
        if key in inputs:
            replaced = "the input" if inputs[key] == path else f"the input {inputs[key]}"
            _report(f"{path}: the output {out_path} would replace {replaced}; choose another output folder")
            failures += 1
        elif key in claimed:
            _report(f"{path}: output {out_path} would also be written for {claimed[key]}; rename one of them")
            failures += 1
        elif os.path.exists(out_path) and not args.overwrite:
            if args.skip_existing:
                skipped += 1
            else:
                _report(f"{out_path}: {imageio.ALREADY_EXISTS}")
                failures += 1
        else:
            claimed[key] = path
            jobs.append((path, out_path))
    if skipped:
        _note(f"--skip-existing: {skipped} output(s) already exist, {len(jobs)} to do", args.quiet)
    return jobs, failures


# ---------------------------------------------------------------------------------------------------
# restore


def _check_restore(args) -> None:
    if args.tile is None and args.max_memory is None:
        for option, value in (("--tile-overlap", args.tile_overlap), ("--tile-margin", args.tile_margin)):
            if value is not None:
                raise UsageError(f"argument {option}: only used with --tile or --max-memory")
    if args.tile_overlap is None:
        args.tile_overlap = DEFAULT_TILE_OVERLAP
    if args.tile_margin is not None and not 0 <= 2 * args.tile_margin < args.tile_overlap:
        raise UsageError(f"argument --tile-margin: need 0 <= 2 * margin < overlap ({args.tile_overlap}), "
                         f"got {args.tile_margin}")
    if args.tile is not None and args.tile_overlap >= args.tile:
        raise UsageError(f"argument --tile-overlap: must be smaller than --tile {args.tile}, got {args.tile_overlap}")
    if args.backend is not None:
        _check_backend(args.backend, args.device)
    _check_output_folder(args.output, "-o/--output")


def _check_backend(backend: str, device: str | None) -> None:
    """A backend asked for by name must run on the device (else every image would fail the same way)."""
    import torch

    import swinir_kernels

    probe = torch.zeros(1, 64, 96, device=torch.device(device) if device else _default_device())
    with swinir_kernels.use_backend(backend):
        try:
            swinir_kernels.explain_backend("shifted_window_attention", probe)
        except RuntimeError as error:
            raise UsageError(f"argument --backend: {_first_line(error)}") from None


def _load_model(args):
    import swinir

    from . import checkpoint, hub

    overrides = {name: value for name, value in (("backend", args.backend), ("img_range", args.img_range))
                 if value is not None}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", checkpoint.AssumptionWarning)
            model = swinir.load(args.model, progress=not args.quiet, **overrides)
    except (hub.HubError, checkpoint.CheckpointError) as error:
        raise CliError(str(error)) from None
    except Exception as error:  # noqa: BLE001  (anything else: one line, never a traceback)
        raise CliError(f"{args.model}: cannot load checkpoint ({type(error).__name__}: {_first_line(error)})") from None
    for warning in caught:
        if issubclass(warning.category, checkpoint.AssumptionWarning):
            _note(str(warning.message).replace("pass img_range= to swinir.load (--img-range on the command line)",
                                               "pass --img-range"), args.quiet)
    return model


def _to_model_channels(image, in_chans: int, path: str, quiet: bool):
    """Gray image + RGB model: replicate; RGB image + gray model: BT.601 luminance (with a note)."""
    import numpy as np

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
        if args.max_memory is not None:
            try:
                self.tile = tiling.tile_for_memory(model.config, args.max_memory * 2**30, args.tile_overlap,
                                                   batch=args.batch, half=args.dtype != "fp32")
            except ValueError as error:
                raise UsageError(f"argument --max-memory: {error}") from None
            _note(f"--max-memory {args.max_memory:g} GB: tile {self.tile} (estimate in swinir/tiling.py)", args.quiet)
        if self.tile is not None:
            try:
                tiling.check_tile_options(self.tile, args.tile_overlap, self.window_size)
            except ValueError as error:
                raise UsageError(f"argument --tile: {error} (the model's window size is {self.window_size})") from None

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

    def write(self, path: str, out_path: str, image, restored) -> None:
        import numpy as np

        from . import imageio
        from .degrade import resize_plane

        alpha = image.alpha
        if alpha is not None and self.scale != 1:
            alpha = np.clip(resize_plane(alpha, restored.shape[0], restored.shape[1]), 0.0, 1.0)
        imageio.write_image(out_path, restored, alpha, image.bit_depth, overwrite=self.args.overwrite)
        _note(f"{path} -> {out_path} ({image.width}x{image.height} -> {restored.shape[1]}x{restored.shape[0]})",
              self.args.quiet)


def _restore(args) -> int:
    """Under torchrun each rank restores its share of the images; the exit status covers every rank."""
    from . import distributed

    context = distributed.setup(args.device)
    args.quiet = args.quiet or not context.is_main  # one progress bar: rank 0's
    try:
        return 1 if distributed.total(context, [_restore_share(args, context)])[0] else 0
    finally:
        distributed.teardown(context)


def _restore_share(args, context) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from . import distributed, imageio

    pairs, failures = _collect_inputs(args.inputs, args.recursive, args.output)
    if not pairs:  # every input was reported
        return 1
    # split by output file: no two ranks ever write one file
    pairs = distributed.shard(pairs, lambda pair: os.path.realpath(os.path.join(args.output, pair[1])), context)
    jobs, refused = _plan_outputs(pairs, args.output, RESTORED_SUFFIX + ".png", args)
    failures += refused
    if not jobs:
        return 1 if failures else 0
    device = context.device
    model = _load_model(args).to(device)
    if model.in_chans not in (1, 3):
        raise CliError(f"{args.model}: the model takes {model.in_chans} channels; images have 1 (gray) or 3 (RGB)")
    restorer = _Restorer(model, args, device)

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

    batch_images = args.batch > 1 and restorer.tile is None
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


def _add_restore(commands) -> None:
    restore = commands.add_parser("restore", help="restore images or folders with a SwinIR checkpoint",
                                  description="Restore images; the task (SR scale, denoise, JPEG) comes from the "
                                              "checkpoint. Writes OUTDIR/<name>_SwinIR.png.")
    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    from .presets import PRESETS  # plain data, no torch

    restore.add_argument("-m", "--model", required=True, metavar="CHECKPOINT",
                         help="a .pth/.safetensors file, or a named checkpoint to download once: an official file "
                              f"name or one of {', '.join(PRESETS)}")
    restore.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    restore.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    sizing = restore.add_mutually_exclusive_group()
    sizing.add_argument("--tile", type=_positive_int, metavar="T",
                        help="restore in T x T tiles (LR pixels, rounded down to a multiple of the window size)")
    sizing.add_argument("--max-memory", type=_positive_float, metavar="GB",
                        help="choose the tile size so that the model's activations fit in GB (an estimate)")
    restore.add_argument("--tile-overlap", type=_positive_int, metavar="O",
                         help=f"overlap between tiles (default {DEFAULT_TILE_OVERLAP}): 3/8 of it on each side is "
                              "context, the rest is cross-faded")
    restore.add_argument("--tile-margin", type=_non_negative_int, metavar="M",
                         help="context pixels discarded at inner tile sides (default 3/8 of the overlap)")
    restore.add_argument("--dtype", choices=DTYPES, default="fp32",
                         help="compute precision (bf16/fp16 via autocast; the residual stream stays fp32)")
    restore.add_argument("--backend", choices=BACKENDS, help="swinir_kernels backend (default auto)")
    restore.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    restore.add_argument("--img-range", type=_positive_float, metavar="R",
                         help="the model's input range (1 or 255), for checkpoints that do not tell (default: "
                              "255 for window 7, the released JPEG models; 1 otherwise)")
    restore.add_argument("--batch", type=_positive_int, default=1, metavar="N",
                         help="tiles of an image (or equal-size images, untiled) run N at a time")
    existing = restore.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="leave existing outputs alone and restore only the missing ones (resume a run)")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes, only errors")
    restore.set_defaults(handler=_restore, check=_check_restore)


# ---------------------------------------------------------------------------------------------------
# eval


def _check_eval(args) -> None:
    if args.task in BORDER_TASKS and args.scale is None and args.border is None:
        raise UsageError(f"argument --scale: --task {args.task} crops a border of --scale pixels, as the official "
                         "script; pass --scale (or --border)")
    for folder in (args.hr_dir, args.restored_dir):
        if not os.path.isdir(folder):
            raise CliError(f"{folder}: {'not a folder' if os.path.exists(folder) else 'no such folder'}")


def _pair_restored(hr_paths: list[str], restored_paths: list[str], scale: int | None):
    """(HR path, restored path or None, why not) per HR image, matched by name: ``<name>_SwinIR``,
    ``<name>``, then the official LR sets' ``<name>x<scale>`` with or without ``_SwinIR`` (any scale
    when --scale is not given, as long as only one scale is present)."""
    from . import imageio

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


def _on_255_scale(image):
    """uint8 values for 8-bit files (as the official script), unrounded 0..255 floats for 16-bit files."""
    import numpy as np

    from . import imageio

    if image.bit_depth == 8:
        return imageio.quantize(image.pixels, 8)
    return image.pixels.astype(np.float64) * 255.0


def _eval(args) -> int:
    import numpy as np

    from . import imageio, metrics

    scale = args.scale or 1
    border = args.border
    if border is None:
        border = scale if args.task in (None, *BORDER_TASKS) and scale > 1 else 0
    hr_paths = _images_in(args.hr_dir, recursive=False)
    if not hr_paths:
        raise CliError(f"{args.hr_dir}: no images found")
    pairs = _pair_restored(hr_paths, _images_in(args.restored_dir, recursive=False), args.scale)
    rows, failures = [], 0
    for hr_path, restored_path, unmatched in pairs:
        if restored_path is None:
            _report(f"{hr_path}: {unmatched} in {args.restored_dir}")
            failures += 1
            continue
        try:
            hr, restored = imageio.read_image(hr_path), imageio.read_image(restored_path)
            rows.append((os.path.basename(hr_path), *_compare(hr, restored, scale, border, metrics),
                         os.path.basename(restored_path)))
        except (imageio.ImageError, CliError, ValueError) as error:
            _report(f"{restored_path}: {error}" if not isinstance(error, imageio.ImageError) else str(error))
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
    return 1 if failures else 0


def _compare(hr, restored, scale: int, border: int, metrics):
    if hr.channels != restored.channels:
        raise CliError(f"channel mismatch: ground truth has {hr.channels}, restored has {restored.channels}")
    height, width = restored.height, restored.width
    if not (0 <= hr.height - height < max(scale, 1) and 0 <= hr.width - width < max(scale, 1)):
        raise CliError(f"size mismatch: restored {width}x{height}, ground truth {hr.width}x{hr.height}")
    truth = _on_255_scale(hr)[:height, :width]
    output = _on_255_scale(restored)
    return (metrics.psnr(output, truth, border), metrics.ssim(output, truth, border),
            metrics.psnr(output, truth, border, y_channel=True), metrics.ssim(output, truth, border, y_channel=True))


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="PSNR/SSIM of restored images against ground truth",
                                   description="PSNR/SSIM as SwinIR's official script: border crop, RGB and "
                                               "BT.601 Y channel. Restored files are matched by name: "
                                               "<name>_SwinIR.*, <name>.*, or <name>x<scale>[_SwinIR].* as in "
                                               "the official LR sets.")
    evaluate.add_argument("hr_dir", metavar="HR_DIR")
    evaluate.add_argument("restored_dir", metavar="RESTORED_DIR")
    evaluate.add_argument("--scale", type=_positive_int, help="SR scale (default 1)")
    evaluate.add_argument("--task", choices=EVAL_TASKS,
                          help="sets the border as the official script: scale for classical/lightweight SR, else 0")
    evaluate.add_argument("--border", type=_non_negative_int, help="pixels cropped on each side (overrides --task)")
    evaluate.set_defaults(handler=_eval, check=_check_eval)


# ---------------------------------------------------------------------------------------------------
# degrade


def _check_degrade(args) -> None:
    for mode, defaults in DEGRADE_DEFAULTS.items():
        for name, default in defaults.items():
            if mode != args.mode and getattr(args, name) is not None:
                raise UsageError(f"argument --{name.replace('_', '-')}: only used with --mode {mode} "
                                 f"(got --mode {args.mode})")
            if getattr(args, name) is None:
                setattr(args, name, default)
    _check_output_folder(args.out_dir, "OUT_DIR")


def _degrade(args) -> int:
    from . import degrade, imageio

    pairs, failures = _collect_inputs([args.hr_dir], args.recursive, args.out_dir)
    jobs, refused = _plan_outputs(pairs, args.out_dir, ".png", args)
    failures += refused
    for path, out_path in jobs:
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


def _add_degrade(commands) -> None:
    degrade = commands.add_parser("degrade", help="make low-quality inputs from clean images",
                                  description="Bicubic downscale, Gaussian noise or JPEG compression, as the "
                                              "official test script. Writes OUT_DIR/<name>.png.")
    degrade.add_argument("hr_dir", metavar="HR", help="a folder of clean images, or one image")
    degrade.add_argument("out_dir", metavar="OUT_DIR")
    degrade.add_argument("--mode", choices=tuple(DEGRADE_DEFAULTS), required=True)
    degrade.add_argument("--scale", type=int, choices=(2, 3, 4, 8), help="--mode sr (default 4)")
    degrade.add_argument("--sigma", type=_positive_float, help="--mode noise, on 0..255 (default 25)")
    degrade.add_argument("--seed", type=_seed, help="--mode noise: RandomState seed per image (default 0)")
    degrade.add_argument("--quality", type=_int_between(1, 100), metavar="Q",
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
    degrade.set_defaults(handler=_degrade, check=_check_degrade)


# ---------------------------------------------------------------------------------------------------
# bench


def _check_bench(args) -> None:
    from .presets import PRESETS

    if args.preset not in PRESETS:
        raise UsageError(f"argument --preset: unknown preset {args.preset!r}{_did_you_mean(args.preset, PRESETS)}; "
                         "`swinir bench --help` lists them")


def _bench(args) -> int:
    from . import benchmark

    try:
        report = benchmark.run(preset=args.preset, size=args.size, device=args.device, dtype=args.dtype,
                               repeats=args.repeats, threads=args.threads)
    except Exception as error:  # noqa: BLE001  (memory is the failure to explain; the rest: one line)
        if _is_out_of_memory(error):
            raise CliError(f"out of memory on {args.device or _default_device()}; pass a smaller --size") from None
        raise
    print(benchmark.format_report(report))
    return 0


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="ours vs the reference path: latency, throughput, memory, accuracy")
    from .presets import PRESETS  # plain data, no torch

    bench.add_argument("--preset", default="classical_sr_x4", metavar="NAME",
                       help=f"model preset, random weights (default classical_sr_x4; one of {', '.join(PRESETS)})")
    bench.add_argument("--size", type=_size, metavar="N|HxW",
                       help="LR input size (default 32x32 on CPU, 256x256 on GPU)")
    bench.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    bench.add_argument("--dtype", choices=DTYPES, default="fp32")
    bench.add_argument("--repeats", type=_positive_int, help="timed runs per path (default 3 on CPU, 20 on GPU)")
    bench.add_argument("--threads", type=_positive_int, metavar="N",
                       help="CPU threads, pinned for both paths (default: torch's current count)")
    bench.set_defaults(handler=_bench, check=_check_bench)


# ---------------------------------------------------------------------------------------------------
# argument parsing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _int_between(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


_seed = _int_between(0, 2**32 - 1)  # numpy.random.RandomState's range


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
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


#: one function per sub-command: adds its parser with ``handler`` (runs it) and ``check`` (validates
#: options before any work, raising UsageError) defaults
SUB_COMMANDS = [_add_restore, _add_eval, _add_degrade, _add_bench, add_train_command, add_export_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swinir", description="SwinIR image restoration on fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUB_COMMANDS:
        add(commands)
    for command_parser in commands.choices.values():
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: usage error (2) or --help (0)
        return int(exit_request.code or 0)
    try:
        if getattr(args, "device", None):
            problem = _device_problem(args.device)
            if problem is not None:
                raise UsageError(f"argument --device: {problem}")
        args.check(args)
        return args.handler(args)
    except UsageError as error:
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except CliError as error:
        _report(str(error))
        return 1
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except Exception as error:  # a failure nobody foresaw: still one line (SWINIR_TRACEBACK=1 shows it all)
        if os.environ.get("SWINIR_TRACEBACK") == "1":
            raise
        _report(f"{type(error).__name__}: {_first_line(error)} (SWINIR_TRACEBACK=1 shows where)")
        return 1

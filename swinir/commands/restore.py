"""``swinir restore``: restore images or folders with a SwinIR checkpoint (whole or tiled; under torchrun
each process restores its share)."""

from __future__ import annotations

import os
import sys

from ..precision import autocast
from . import arguments
from .errors import CliError, UsageError, first_line, is_out_of_memory, note, report
from .inputs import RESTORED_SUFFIX, collect_inputs, plan_outputs
from .loading import check_backend, load_model

HELP = "restore images or folders with a SwinIR checkpoint"
DESCRIPTION = ("Restore images; the task (SR scale, denoise, JPEG) comes from the checkpoint. Writes "
               "OUTDIR/<name>_SwinIR.png. OUTDIR may not be an input folder (the restored images would mix "
               "with the originals, and a rerun would restore them again).")
DEFAULT_TILE_OVERLAP = 32


def add_arguments(restore) -> None:
    from ..presets import PRESETS  # plain data, no torch

    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    restore.add_argument("-m", "--model", required=True, metavar="CHECKPOINT",
                         help="a .pth/.safetensors file, or a named checkpoint to download once: an official file "
                              f"name or one of {', '.join(PRESETS)}")
    restore.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                         help="where <name>_SwinIR.png go; not an input folder (a sub-folder of one is skipped "
                              "by -r)")
    restore.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    sizing = restore.add_mutually_exclusive_group()
    sizing.add_argument("--tile", type=arguments.positive_int, metavar="T",
                        help="restore in T x T tiles (LR pixels; at least the model's window size, rounded down "
                             "to a multiple of it)")
    sizing.add_argument("--max-memory", type=arguments.positive_float, metavar="GB",
                        help="choose the tile size so that the model's activations fit in GB (an estimate)")
    restore.add_argument("--tile-overlap", type=arguments.non_negative_int, metavar="O",
                         help=f"overlap between tiles, at least 1 (default {DEFAULT_TILE_OVERLAP}): 3/8 of it on "
                              "each side is context, the rest is cross-faded")
    restore.add_argument("--tile-margin", type=arguments.non_negative_int, metavar="M",
                         help="context pixels discarded at inner tile sides (default 3/8 of the overlap)")
    restore.add_argument("--dtype", choices=arguments.DTYPES, default="fp32",
                         help="compute precision (bf16/fp16 via autocast; the residual stream stays fp32)")
    restore.add_argument("--backend", choices=arguments.BACKENDS, help="swinir_kernels backend (default auto)")
    restore.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    restore.add_argument("--img-range", type=arguments.img_range, metavar="R",
                         help="the model's input range, 1 or 255, for checkpoints that do not tell (default: "
                              "255 for window 7, the released JPEG models; 1 otherwise)")
    restore.add_argument("--batch", type=arguments.positive_int, default=1, metavar="N",
                         help="tiles of an image (or equal-size images, untiled) run N at a time")
    existing = restore.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="leave existing outputs alone and restore only the missing ones (resume a run)")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes, only errors")


def check(args) -> None:
    """Everything that needs no model, before any work (the tile sizes against the model's window are
    checked once it is loaded, by :class:`Restorer`)."""
    args.tile_overlap_given = args.tile_overlap is not None
    if args.tile is None and args.max_memory is None:
        for option, value in (("--tile-overlap", args.tile_overlap), ("--tile-margin", args.tile_margin)):
            if value is not None:
                raise UsageError(f"argument {option}: only used with --tile or --max-memory")
    if args.tile_overlap is None:
        args.tile_overlap = DEFAULT_TILE_OVERLAP
    if args.tile_overlap == 0:
        raise UsageError("argument --tile-overlap: expected at least 1, got 0: tiles are cross-faded over their "
                         "overlap, so with none every tile border would show as a seam (default "
                         f"{DEFAULT_TILE_OVERLAP})")
    if args.tile_margin is not None and not 0 <= 2 * args.tile_margin < args.tile_overlap:
        raise UsageError(f"argument --tile-margin: need 0 <= 2 * margin < overlap ({args.tile_overlap}), "
                         f"got {args.tile_margin}")
    if args.tile is not None and args.tile_overlap_given and args.tile_overlap >= args.tile:
        raise UsageError(f"argument --tile-overlap: must be smaller than --tile {args.tile}, got {args.tile_overlap}")
    if args.backend is not None:
        check_backend(args.backend, args.device)
    _check_not_an_input_folder(args)
    arguments.check_output_folder(args.output, "-o/--output")


def _check_not_an_input_folder(args) -> None:
    """Restoring into an input folder mixes the outputs with the originals, and the next run of the same
    command would restore its own outputs again: refused."""
    output = os.path.realpath(args.output)
    for given in args.inputs:
        if os.path.isdir(given) and os.path.realpath(given) == output:
            raise UsageError(f"argument -o/--output: {args.output} is the input folder {given}; the restored images "
                             "would mix with the originals (and a rerun would restore them again): choose another "
                             "folder")


def tile_problem(tile: int, overlap: int, window: int, overlap_given: bool) -> str | None:
    """Why these tile options cannot work with a model of this window size, or None; in the order a user
    should fix them: the tile against the window, then the overlap against the tile as rounded down."""
    if tile < window:
        return (f"argument --tile: must be at least the window size, got {tile} (the model's window size is "
                f"{window}; tiles are rounded down to multiples of it)")
    rounded = tile - tile % window
    tile_text = f"--tile {tile}" + (f" rounds down to {rounded} (tiles are multiples of the window size {window})"
                                    if rounded != tile else "")
    overlap_text = f"--tile-overlap {overlap}" + ("" if overlap_given else " (the default)")
    if overlap >= rounded:
        return (f"argument --tile-overlap: {overlap_text} must be smaller than the tile: {tile_text}; pass a larger "
                "--tile or a smaller --tile-overlap")
    if rounded - overlap < window:
        larger = -(-(overlap + window) // window) * window
        smaller = f", or --tile-overlap {rounded - window} or less" if rounded - window >= 1 else ""
        return (f"argument --tile-overlap: {tile_text}, and a tile minus {overlap_text} leaves {rounded - overlap} "
                f"pixels, less than the window size {window} by which tiles advance: pass --tile {larger} or "
                f"more{smaller}")
    return None


class Restorer:
    """Runs one model over images (whole or tiled) and writes the results."""

    def __init__(self, model, args, device):
        from .. import tiling

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
            note(f"--max-memory {args.max_memory:g} GB: tile {self.tile} (estimate in swinir/tiling.py)", args.quiet)
        if self.tile is not None:
            problem = tile_problem(self.tile, args.tile_overlap, self.window_size,
                                   getattr(args, "tile_overlap_given", True))
            if problem is not None:
                raise UsageError(problem)
            try:
                tiling.check_tile_options(self.tile, args.tile_overlap, self.window_size)
            except ValueError as error:
                raise UsageError(f"argument --tile: {error} (the model's window size is {self.window_size})") from None
            if self.tile % self.window_size and args.max_memory is None:
                note(f"--tile {self.tile}: tiles of {self.tile - self.tile % self.window_size} (rounded down to a "
                     f"multiple of the window size {self.window_size})", args.quiet)

    def run_model(self, batch):
        import torch

        with torch.inference_mode(), autocast(self.device, self.args.dtype):
            return self.model(batch.to(self.device)).float().cpu()

    def restore_one(self, tensor):
        """(1, C, H, W) CPU float -> (1, C, H*s, W*s) CPU float32."""
        if self.tile is None or self.tile >= max(tensor.shape[-2:]):
            return self.run_model(tensor)
        from tqdm.auto import tqdm

        from .. import tiling

        progress = None if self.args.quiet else (lambda items: tqdm(items, desc="tiles", leave=False, file=sys.stderr))
        return tiling.tiled_forward(self.run_model, tensor, scale=self.scale, window_size=self.window_size,
                                    tile=self.tile, overlap=self.args.tile_overlap, margin=self.args.tile_margin,
                                    batch=self.args.batch, progress=progress)

    def write(self, path: str, out_path: str, image, restored) -> None:
        import numpy as np

        from .. import imageio
        from ..degrade import resize_plane

        alpha = image.alpha
        if alpha is not None and self.scale != 1:
            alpha = np.clip(resize_plane(alpha, restored.shape[0], restored.shape[1]), 0.0, 1.0)
        imageio.write_image(out_path, restored, alpha, image.bit_depth, overwrite=self.args.overwrite)
        note(f"{path} -> {out_path} ({image.width}x{image.height} -> {restored.shape[1]}x{restored.shape[0]})",
             self.args.quiet)


def to_model_channels(image, in_chans: int, path: str, quiet: bool):
    """Gray image + RGB model: replicate; RGB image + gray model: BT.601 luminance (with a note)."""
    import numpy as np

    pixels = image.pixels
    if pixels.shape[2] == in_chans:
        return pixels
    if in_chans == 3:
        return np.repeat(pixels, 3, axis=2)
    note(f"{path}: the model is grayscale; restoring the luminance 0.299 R + 0.587 G + 0.114 B of this colour image",
         quiet)
    return pixels @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)


def run(args) -> int:
    """Under torchrun each rank restores its share of the images; the exit status covers every rank."""
    from .. import distributed

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

    from .. import distributed, imageio

    pairs, failures = collect_inputs(args.inputs, args.recursive, args.output)
    if not pairs:  # every input was reported
        return 1
    # split by output file: no two ranks ever write one file
    pairs = distributed.shard(pairs, lambda pair: os.path.realpath(os.path.join(args.output, pair[1])), context)
    jobs, refused = plan_outputs(pairs, args.output, RESTORED_SUFFIX + ".png", args)
    failures += refused
    if not jobs:
        return 1 if failures else 0
    device = context.device
    model = load_model(args).to(device)
    if model.in_chans not in (1, 3):
        raise CliError(f"{args.model}: the model takes {model.in_chans} channels; images have 1 (gray) or 3 (RGB)")
    restorer = Restorer(model, args, device)

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
            if is_out_of_memory(error):
                message = (f"out of memory on {device} for a {batch.shape[-1]}x{batch.shape[-2]} image; "
                           "use --tile 256 (or smaller) or --max-memory GB" + (", or --batch 1" if len(pending) > 1 else ""))
            else:
                message = f"restoration failed ({type(error).__name__}: {first_line(error)})"
            for path, *_ in pending:
                report(f"{path}: {message}")
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
                report(str(error))
                failed += 1
        pending.clear()
        return failed

    batch_images = args.batch > 1 and restorer.tile is None
    for path, out_path in tqdm(jobs, desc="images", unit="img", disable=args.quiet or len(jobs) < 2, file=sys.stderr):
        try:
            image = imageio.read_image(path)
        except imageio.ImageError as error:
            report(str(error))
            failures += 1
            continue
        pixels = to_model_channels(image, model.in_chans, path, args.quiet)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        if pending and (pending[0][3].shape != tensor.shape or not batch_images):
            failures += flush()
        pending.append((path, out_path, image, tensor))
        if len(pending) >= (args.batch if batch_images else 1):
            failures += flush()
    failures += flush()
    return 1 if failures else 0

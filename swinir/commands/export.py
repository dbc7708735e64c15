"""``swinir export``: a checkpoint as an ONNX graph (the exporter is :mod:`swinir.export`, imported only
when the command runs, so that ``swinir --help`` does not import torch)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings

from ..export_formats import DEFAULT_OPSET, DTYPE_NAMES, ONNX_OPSETS
from . import arguments
from .errors import CliError, UsageError, cannot_write, note
from .loading import check_model_path, load_model

HELP = "write a checkpoint as an ONNX graph (dynamic batch, height and width)"
DESCRIPTION = ("Write a SwinIR checkpoint as an ONNX graph of standard operators for ONNX Runtime, TensorRT, "
               "NCNN...: input 'input' (batch, C, height, width) in [0, 1], output 'output' (batch, C, "
               "height*scale, width*scale); padding, shift mask and crop are computed in the graph.")
VERIFY_REPEATS = 7  # timed runs per path and size for --verify (median; the spread is printed)


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="CHECKPOINT", help="a .pth/.safetensors file, or a named checkpoint")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.onnx")
    parser.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32", help="weights, input and output (default fp32)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    parser.add_argument("--static", type=arguments.size, metavar="HxW", help="fix the input to 1 x C x H x W instead")
    parser.add_argument("--verify", action="store_true",
                        help="run the graph with ONNX Runtime (CPU) at three sizes against PyTorch: error and time "
                             f"(median of {VERIFY_REPEATS} alternating runs, with their range)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no notes, only errors")
    # backend and img_range: the options loading.load_model reads
    parser.set_defaults(backend=None, img_range=None)


def check(args) -> None:
    """Usage errors and the destination, found before the model is loaded."""
    if not args.output.endswith(".onnx"):
        raise UsageError(f"argument -o/--output: expected a .onnx file name, got {args.output!r}")
    if args.opset not in ONNX_OPSETS:
        raise UsageError(f"argument --opset: expected {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1}, got {args.opset}")
    if os.path.isdir(args.output):
        raise UsageError(f"argument -o/--output: {args.output} is a folder; name the .onnx file to write")
    if os.path.exists(args.output) and not args.overwrite:
        raise CliError(f"{args.output}: already exists (pass --overwrite to replace it)")
    check_model_path(args.model)
    folder = os.path.dirname(os.path.abspath(args.output))
    from .. import files

    try:
        files.check_writable_folder(folder)
    except NotADirectoryError as error:
        raise UsageError(f"argument -o/--output: cannot create {args.output}: {error.filename} is a file") from None
    except OSError as error:
        raise CliError(cannot_write(args.output, error)) from None


@contextlib.contextmanager
def _quiet_dependencies():
    """The exporter's dependencies talk: torch.onnx logs "torchvision is not installed. Skipping
    torchvision::nms" and the like, and torch and onnxscript warn about their own deprecations
    (FutureWarning). None of it is about the user's model or anything they can act on: silenced in the
    command only (the library leaves warnings and logging alone). Our notes and errors still show."""
    import torch  # noqa: F401  (its import configures these loggers; set their levels after it)

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                                                    "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|onnx|onnxscript|onnxruntime)(\.|$)")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def run(args) -> int:
    from .. import benchmark
    from ..export import ExportError, check_onnx, export_onnx

    with _quiet_dependencies():
        model = load_model(args)
        start = time.perf_counter()
        try:
            export_onnx(model, args.output, dtype=args.dtype, opset=args.opset, size=args.static,
                        overwrite=args.overwrite)
        except OSError as error:
            if isinstance(error, FileExistsError):
                raise CliError(f"{args.output}: already exists (pass --overwrite to replace it)") from None
            raise CliError(cannot_write(args.output, error)) from None
        except ExportError as error:
            raise CliError(str(error)) from None
        shape = "1 x {} x {} x {}".format(model.in_chans, *args.static) if args.static else "dynamic batch, height, width"
        note(f"{args.output}: {os.path.getsize(args.output) / 2**20:.1f} MiB, opset {args.opset}, {args.dtype}, "
             f"{shape} ({time.perf_counter() - start:.0f} s)", args.quiet)  # fmt: skip
        if not args.verify:
            return 0
        window = model.window_size
        sizes = [args.static] if args.static else [(2 * window + 3, 3 * window + 1), (window, window),
                                                   (3 * window - 1, window + 5)]
        try:
            rows = check_onnx(args.output, model, sizes, repeats=VERIFY_REPEATS)
        except ExportError as error:
            raise CliError(str(error)) from None
    for line in verify_lines(rows, benchmark):
        print(line)
    return 0


def verify_lines(rows: list[dict], benchmark) -> list[str]:
    """The --verify report: per size the error and both medians with their range, then a warning per size
    whose ratio the spread makes meaningless (:func:`swinir.benchmark.spread_note`, as ``swinir bench``)."""
    lines, notes = [], []
    for row in rows:
        (height, width), (onnx_low, onnx_high), (torch_low, torch_high) = row["size"], row["onnx_ms_range"], row["torch_ms_range"]
        ratio, low, high = row["ratio_range"]
        lines.append(f"{height}x{width}: max abs error {row['max_abs_error']:.2e}, ONNX Runtime {row['onnx_ms']:.1f} ms "
                     f"({onnx_low:.1f}..{onnx_high:.1f}), PyTorch (ours) {row['torch_ms']:.1f} ms "
                     f"({torch_low:.1f}..{torch_high:.1f}) per image, ratio {ratio:.2f}x "
                     f"({low:.2f}x..{high:.2f}x; median and range of {row['repeats']} alternating runs)")
        note_line = benchmark.spread_note(low, high, row["repeats"], what=f"the {height}x{width} ratio",
                                          remedy="more runs")
        if note_line and note_line not in notes:
            notes.append(note_line)
    return lines + notes

"""``swinir export``: the sub-command's options and handler (the exporter is :mod:`swinir.export`,
imported only when the command runs, so that ``swinir --help`` does not import torch)."""

from __future__ import annotations

import argparse
import os
import time

# ONNX opsets the torch.onnx exporter writes that ONNX Runtime runs, and the element types offered (bf16
# is not: ONNX Runtime's CPU provider lacks most bf16 kernels).
ONNX_OPSETS = range(18, 24)
DEFAULT_OPSET = 20
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16"}


def add_export_command(commands) -> None:
    """Registers ``swinir export`` on the sub-command parsers of :func:`swinir.cli.build_parser`."""
    from .cli import _size

    parser = commands.add_parser(
        "export", help="write a checkpoint as an ONNX graph (dynamic batch, height and width)",
        description="Write a SwinIR checkpoint as an ONNX graph of standard operators for ONNX Runtime, TensorRT, "
                    "NCNN...: input 'input' (batch, C, height, width) in [0, 1], output 'output' (batch, C, "
                    "height*scale, width*scale); padding, shift mask and crop are computed in the graph.",
    )  # fmt: skip
    parser.add_argument("model", metavar="CHECKPOINT", help="a .pth/.safetensors file, or a named checkpoint")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.onnx")
    parser.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32", help="weights, input and output (default fp32)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    parser.add_argument("--static", type=_size, metavar="HxW", help="fix the input to 1 x C x H x W instead")
    parser.add_argument("--verify", action="store_true",
                        help="run the graph with ONNX Runtime (CPU) at three sizes against PyTorch: error and time")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no notes, only errors")
    # backend and img_range: the restore options cli._load_model reads
    parser.set_defaults(handler=_run_command, check=_check_options, backend=None, img_range=None)


def _check_options(args: argparse.Namespace) -> None:
    """Usage errors, found before the model is loaded (exit 2)."""
    from .cli import UsageError

    if not args.output.endswith(".onnx"):
        raise UsageError(f"argument -o/--output: expected a .onnx file name, got {args.output!r}")
    if args.opset not in ONNX_OPSETS:
        raise UsageError(f"argument --opset: expected {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1}, got {args.opset}")


def _run_command(args: argparse.Namespace) -> int:
    from .cli import CliError, _load_model, _note
    from .export import ExportError, check_onnx, export_onnx

    if os.path.exists(args.output) and not args.overwrite:
        raise CliError(f"{args.output}: already exists (pass --overwrite to replace it)")
    model = _load_model(args)
    start = time.perf_counter()
    try:
        export_onnx(model, args.output, dtype=args.dtype, opset=args.opset, size=args.static, overwrite=args.overwrite)
    except (ExportError, FileExistsError, OSError) as error:
        raise CliError(str(error)) from None
    shape = "1 x {} x {} x {}".format(model.in_chans, *args.static) if args.static else "dynamic batch, height, width"
    _note(f"{args.output}: {os.path.getsize(args.output) / 2**20:.1f} MiB, opset {args.opset}, {args.dtype}, "
          f"{shape} ({time.perf_counter() - start:.0f} s)", args.quiet)  # fmt: skip
    if args.verify:
        window = model.window_size
        sizes = [args.static] if args.static else [(2 * window + 3, 3 * window + 1), (window, window), (3 * window - 1, window + 5)]
        try:
            rows = check_onnx(args.output, model, sizes, repeats=3)
        except ExportError as error:
            raise CliError(str(error)) from None
        for row in rows:
            print("{}x{}: max abs error {:.2e}, ONNX Runtime {:.1f} ms, PyTorch (ours) {:.1f} ms per image".format(
                *row["size"], row["max_abs_error"], row["onnx_ms"], row["torch_ms"]))  # fmt: skip
    return 0

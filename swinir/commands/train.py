"""``swinir train``: fine-tune or train a SwinIR (the trainer is :mod:`swinir.train`, imported only when
the command runs, so that ``swinir --help`` stays fast)."""

from __future__ import annotations

import argparse
import ast
import sys

from . import arguments
from .errors import UsageError, first_line

HELP = "fine-tune or train a SwinIR (one process or torchrun)"
DESCRIPTION = """\
Fine-tune a SwinIR checkpoint (--init) or train one from scratch (--preset, --arch) on a folder of
clean images, degraded on the fly exactly as `swinir degrade` makes them (bicubic for SR models,
--noise or --jpeg for x1 models), or on paired folders (--hr with --lr). Adam, lr 2e-4 halved at
50/80/90/95% of --steps, L1 (SR) or Charbonnier (denoise/JPEG) loss, EMA weights saved as params_ema.
Checkpoints: OUTDIR/step_NNNNNNNN.pth (the last --keep), OUTDIR/model.pth at the end; --resume
continues exactly. Validation scores go to OUTDIR/val.csv, their plot with the training loss to
OUTDIR/val.svg (--no-plot: none). OUTDIR is checked with a real write before the first step. Under
`torchrun --nproc-per-node N -m swinir train ...` each process takes a slice of every --batch (the
same model as one process)."""
FORMATTER = argparse.RawDescriptionHelpFormatter


def _range(kind: type, name: str):
    """'25' -> (25, 25); '15-50' -> (15, 50)."""

    def parse(text: str):
        low, _, high = text.partition("-")
        try:
            values = (kind(low), kind(high or low))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name} or LOW-HIGH, got {text!r}") from None
        return values

    return parse


def _arch_item(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE a Python literal (64, 2.0, [6,6], 'pixelshuffle') or a bare word."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. embed_dim=60 depths=[6,6]), got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_arguments(parser) -> None:
    positive_int = arguments.positive_int
    model = parser.add_argument_group("model")
    model.add_argument("--init", metavar="CHECKPOINT", help="fine-tune this .pth/.safetensors file or named checkpoint")
    model.add_argument("--preset", metavar="NAME", help="train a preset's architecture from random weights")
    model.add_argument("--arch", nargs="+", type=_arch_item, default=[], metavar="KEY=VALUE",
                       help="SwinIR constructor arguments (alone: from scratch; with --init/--preset: overrides), "
                            "e.g. upscale=2 embed_dim=60 depths=[6,6,6,6] num_heads=[6,6,6,6] drop_path_rate=0")
    data = parser.add_argument_group("data")
    data.add_argument("--hr", required=True, metavar="DIR", help="folder of clean (ground-truth) images")
    data.add_argument("--lr", metavar="DIR", help="paired low-quality images (same names, or <name>x<scale>)")
    data.add_argument("--noise", type=_range(float, "SIGMA"), metavar="SIGMA[-SIGMA]",
                      help="x1 models: Gaussian noise of this sigma (0..255), or uniform in the range")
    data.add_argument("--jpeg", type=_range(int, "QUALITY"), metavar="Q[-Q]",
                      help="x1 models: JPEG of this quality, or uniform in the range")
    data.add_argument("--patch", type=positive_int, metavar="P", help="LR patch size (default: the model's img_size)")
    data.add_argument("--batch", type=positive_int, default=32, help="global batch (all processes; default 32)")
    data.add_argument("--workers", type=int, default=2, help="data loading processes per training process (default 2)")
    run_group = parser.add_argument_group("optimisation")
    run_group.add_argument("--steps", type=positive_int, default=500_000, help="total steps (default 500000)")
    run_group.add_argument("--learning-rate", type=float, default=2e-4, metavar="LR", help="initial Adam rate (default 2e-4)")
    run_group.add_argument("--ema-decay", type=float, default=0.999, help="decay of the weights' EMA (default 0.999)")
    run_group.add_argument("--seed", type=int, default=0, help="seeds the weights (from scratch) and every sample (default 0)")
    run_group.add_argument("--dtype", choices=arguments.DTYPES, default="fp32",
                           help="autocast precision (fp16 with a GradScaler; the residual stream stays fp32)")
    run_group.add_argument("--grad-checkpoint", action="store_true",
                           help="recompute each Swin block in the backward instead of storing its activations")
    run_group.add_argument("--device", help="torch device (default: cuda if available, else cpu; torchrun: cuda:LOCAL_RANK)")
    files = parser.add_argument_group("validation and checkpoints")
    files.add_argument("--out", required=True, metavar="OUTDIR", help="checkpoints, model.pth and val.csv go here")
    files.add_argument("--val", metavar="DIR", help="validation ground truth (degraded as training; the hardest level)")
    files.add_argument("--val-lr", metavar="DIR", help="validation LR images (with --lr)")
    files.add_argument("--val-every", type=positive_int, default=5000, metavar="N")
    files.add_argument("--save-every", type=positive_int, default=5000, metavar="N")
    files.add_argument("--keep", type=positive_int, default=3, metavar="K", help="checkpoints kept (default 3)")
    files.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                       help="continue a run exactly (default: the newest checkpoint in OUTDIR); same options")
    files.add_argument("--until", type=positive_int, metavar="STEP",
                       help="stop after this step (a checkpoint is written); --resume continues")
    files.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="torchrun: a process waiting longer than this for another one stops with an error")
    files.add_argument("--no-plot", dest="plot", action="store_false",
                       help="do not draw OUTDIR/val.svg (validation PSNR/SSIM and training loss against step, "
                            "redrawn at each validation; needs matplotlib: pip install swinir-kernels[plot])")
    files.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def check(args: argparse.Namespace) -> None:
    """Before any work: options out of range, or that cannot go together, are usage errors (exit 2)."""
    from ..train import TrainError, check_options

    args.options = _options(args)
    try:
        check_options(args.options)
    except TrainError as error:
        raise UsageError(str(error)) from None


def _options(args: argparse.Namespace):
    from ..train import TrainOptions

    return TrainOptions(
        out=args.out, hr=args.hr, lr=args.lr, init=args.init, preset=args.preset, arch=dict(args.arch),
        noise=args.noise, jpeg=args.jpeg, patch=args.patch, batch=args.batch, steps=args.steps,
        learning_rate=args.learning_rate, ema_decay=args.ema_decay, seed=args.seed, dtype=args.dtype,
        grad_checkpoint=args.grad_checkpoint, val=args.val, val_lr=args.val_lr, val_every=args.val_every,
        save_every=args.save_every, keep=args.keep, resume=args.resume, until=args.until, workers=args.workers,
        device=args.device, dist_timeout=args.dist_timeout, quiet=args.quiet, plot=args.plot,
    )


def run(args: argparse.Namespace) -> int:
    """0 when the run finished (or reached --until), 1 with one ``swinir: error:`` line."""
    from .. import distributed
    from ..train import Trainer, TrainError

    options = args.options  # made by check
    context = None
    try:
        context = distributed.setup(options.device, options.dist_timeout)
        result = Trainer(options, context).run()
    except TrainError as error:
        if context is None or context.is_main:  # every rank meets the same error; say it once
            print(f"swinir: error: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if context is None or not context.distributed:
            raise
        # a collective failed or timed out: another process died or hangs
        print(f"swinir: error: rank {context.rank}: the distributed run failed ({type(error).__name__}: "
              f"{first_line(error)}); another process has probably stopped (see its message); resume with --resume",
              file=sys.stderr)
        return 1
    finally:
        if context is not None:
            distributed.teardown(context)
    if not args.quiet and context.is_main:
        written = result.model or result.checkpoint
        print(f"swinir: trained to step {result.step}; wrote {written}", file=sys.stderr)
    return 0

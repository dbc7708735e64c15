"""``swinir bench``: our kernels next to the plain-PyTorch reference path (:mod:`swinir.benchmark`)."""

from __future__ import annotations

from . import arguments
from .errors import CliError, UsageError, is_out_of_memory

HELP = "ours vs the reference path: latency, throughput, memory, accuracy"
DESCRIPTION = None


def add_arguments(bench) -> None:
    from ..presets import PRESETS  # plain data, no torch

    bench.add_argument("--preset", default="classical_sr_x4", metavar="NAME",
                       help=f"model preset, random weights (default classical_sr_x4; one of {', '.join(PRESETS)})")
    bench.add_argument("--size", type=arguments.size, metavar="N|HxW",
                       help="LR input size (default 32x32 on CPU, 256x256 on GPU)")
    bench.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    bench.add_argument("--dtype", choices=arguments.DTYPES, default="fp32")
    bench.add_argument("--repeats", type=arguments.positive_int, help="timed runs per path (default 3 on CPU, 20 on GPU)")
    bench.add_argument("--threads", type=arguments.positive_int, metavar="N",
                       help="CPU threads, pinned for both paths (default: torch's current count)")


def check(args) -> None:
    from ..presets import PRESETS

    if args.preset not in PRESETS:
        raise UsageError(f"argument --preset: unknown preset {args.preset!r}"
                         f"{arguments.did_you_mean(args.preset, PRESETS)}; `swinir bench --help` lists them")


def run(args) -> int:
    from .. import benchmark

    try:
        report = benchmark.run(preset=args.preset, size=args.size, device=args.device, dtype=args.dtype,
                               repeats=args.repeats, threads=args.threads)
    except Exception as error:  # noqa: BLE001  (memory is the failure to explain; the rest: one line)
        if is_out_of_memory(error):
            raise CliError(f"out of memory on {args.device or arguments.default_device()}; pass a smaller --size") from None
        raise
    print(benchmark.format_report(report))
    return 0

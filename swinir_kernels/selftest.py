"""``python -m swinir_kernels.selftest [--device DEV] [--quick]``: every op x backend x dtype checked on a
device, in one table.

Each row runs the first-use check that ``auto`` runs (:func:`swinir_kernels._verification.check`: a
small input of the specialization of a SwinIR-M call, forward and backward, against the reference
under :mod:`swinir_kernels.tolerances`) and then times the op, forward and forward + backward, against
the reference at the SwinIR-M shape itself (64x64 LR image, 180 channels, 6 heads, window 8, shift 4),
by the timing rules of :mod:`swinir_kernels.timing` (alternating runs, the median with its range, a
warning when the range makes the ratio meaningless). ``--quick`` checks only (no timing, a 32x32 call).
On a GPU the passing and failing checks are also recorded in the verification cache, so ``auto`` in
later processes reuses them.

``--device cpu`` checks the C++ backend and, under ``TRITON_INTERPRET=1``, Triton on CPU tensors; the
interpreter computes bfloat16 arithmetic wrongly, so those rows are skipped with that reason, and its
Triton rows are checked on a 24x24 call (a one-window check input) and not timed: the interpreter
runs each program in Python.
Exit status 1 when any check fails.
"""

import argparse
import statistics
import sys
import time

import torch

from . import __version__, _backend, _verification, registry, timing

TIMING_REPEATS = 11

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _time(op, args, backend, with_backward, device) -> tuple[float, float, float, float]:
    """(ours ms, reference ms, lowest and highest speed-up over the runs): medians of alternating runs."""
    runs = {name: (lambda f=f: _verification._run(f, op, args, with_backward))
            for name, f in (("ours", op.implementation(backend)), ("reference", op.reference))}  # fmt: skip
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    times, _ = timing.time_alternating(runs, TIMING_REPEATS, synchronize=synchronize)
    _, low, high = timing.ratio_range(times["reference"], times["ours"])
    return (statistics.median(times["ours"]) * 1e3, statistics.median(times["reference"]) * 1e3, low, high)


def rows(device: str, quick: bool):
    """Yields one dict per op x backend x dtype."""
    torch_device = torch.device(device)
    backends = _backend.GPU_BACKENDS if torch_device.type == "cuda" else ("cpu", "triton")
    size = 32 if quick else 64
    for dtype in DTYPES:
        for op in registry.OPS.values():
            full_call = op.example(size, dtype, device)
            for backend in backends:
                row = dict(op=op.name, backend=backend, dtype=str(dtype).removeprefix("torch."))
                interpreted = backend == "triton" and torch_device.type == "cpu"
                args = op.example(24, dtype, device) if interpreted else full_call
                why_not = op.cannot_run(backend, args[0], **op.sizes(args))
                if why_not is not None:
                    yield {**row, "result": "skipped", "note": why_not}
                    continue
                if torch_device.type == "cuda":
                    record = _verification.verify(op, backend, args, _verification.DIRECTIONS, op.key(args))
                else:
                    record = _verification.check(op, backend, args, True, timed=not interpreted)
                row.update(result="pass" if record.passed else "FAIL", max_error=record.max_error, check_ms=record.check_ms,
                           note=record.detail)
                if not record.passed:
                    yield row
                    continue
                if interpreted:
                    row.update(timed="not timed (interpreter)")
                elif quick:
                    row.update(timed="not timed (--quick)")
                else:
                    timings = {direction: _time(op, args, backend, direction == "backward", torch_device)
                               for direction in ("forward", "backward")}  # fmt: skip
                    row.update(timings, timed=f"{size}x{size}")
                    noisy = [timing.spread_note(low, high, TIMING_REPEATS, f"the {direction} speed-up", "nothing else running")
                             for direction, (_, _, low, high) in timings.items()]  # fmt: skip
                    noisy = [note for note in noisy if note]
                    if noisy:
                        row["note"] = noisy[0]
                yield row


def _speed(timed) -> str:
    if timed is None:
        return ""
    ours, theirs, low, high = timed
    return f"{ours:.3g} / {theirs:.3g} ({theirs / ours:.2f}x, {low:.2f}x..{high:.2f}x)" if ours > 0 else ""


def format_row(row: dict) -> str:
    error = f"{row['max_error']:.2g}" if "max_error" in row else ""
    return (f"| {row['op']} | {row['backend']} | {row['dtype']} | {row['result']} | {error} | "
            f"{_speed(row.get('forward'))} | {_speed(row.get('backward'))} | {row.get('timed', '')} | {row.get('note', '')} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swinir_kernels.selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:1, cpu")
    parser.add_argument("--quick", action="store_true", help="checks only, no timing (a 32x32 LR image's call)")
    options = parser.parse_args(argv)
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device: {options.device} is not available (torch.cuda.is_available() is False)")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    versions = _verification.versions(_verification.device_name(device)) if device.type == "cuda" else f"torch {torch.__version__}"
    print(f"swinir_kernels {__version__} selftest on {options.device} ({name}); {versions}")
    print("check: a small input of the SwinIR-M call's specialization, forward + backward, vs the reference "
          "(swinir_kernels.tolerances)")
    if not options.quick:
        print(f"times: ms ours / reference (speed-up, its range over the runs), median of {TIMING_REPEATS} alternating "
              "runs after a warm-up")
    print()
    print("| op | backend | dtype | check | max error | forward ms | fwd+bwd ms | timed at | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for row in rows(options.device, options.quick):
        failed += row["result"] == "FAIL"
        print(format_row(row), flush=True)
    print(f"\n{failed} failed; {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

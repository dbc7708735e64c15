"""``python -m swinir_kernels.selftest [--device DEV] [--quick]``: every op x backend x dtype checked on a
device, in one table.

Each row runs the first-use check that ``auto`` runs (:func:`swinir_kernels._verification.check`: a
small input of the specialization of a SwinIR-M call, forward and backward, against the reference
under :mod:`swinir_kernels.tolerances`) and then times the op, forward and forward + backward, against
the reference at the SwinIR-M shape itself (64x64 LR image, 180 channels, 6 heads, window 8, shift 4;
32x32 with --quick). On a GPU the passing and failing checks are also recorded in the verification
cache, so ``auto`` in later processes reuses them.

``--device cpu`` checks the C++ backend and, under ``TRITON_INTERPRET=1``, Triton on CPU tensors; the
interpreter computes bfloat16 arithmetic wrongly, so those rows are skipped with that reason, and its
Triton rows are checked on a 24x24 call (a one-window check input) and not timed: the interpreter
runs each program in Python.
Exit status 1 when any check fails.
"""

import argparse
import sys
import time

import torch

from . import _backend, _verification, ops, reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
EMBED, HEADS, WINDOW, SHIFT = 180, 6, 8, 4  # SwinIR-M


def swinir_m_calls(size: int, dtype: torch.dtype, device: str) -> dict[str, tuple]:
    """op -> the reference's positional arguments of one SwinIR-M call on a size x size LR image."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, generator=generator) * scale).to(dtype=dtype, device=device)

    tokens = WINDOW * WINDOW
    return {
        "window_partition": (randn(1, size, size, EMBED), WINDOW, SHIFT),
        "window_reverse": (randn((size // WINDOW) ** 2, tokens, EMBED), WINDOW, size, size, SHIFT),
        "window_attention": (randn((size // WINDOW) ** 2, tokens, 3 * EMBED), randn(HEADS, tokens, tokens),
                             reference.shift_attention_mask(size, size, WINDOW, SHIFT, device=device, dtype=dtype),
                             HEADS, (EMBED // HEADS) ** -0.5),
        "shifted_window_attention": (randn(1, size, size, 3 * EMBED), randn(HEADS, tokens, tokens), HEADS, WINDOW, SHIFT,
                                     (EMBED // HEADS) ** -0.5),
        # The x4 tail: 3 colour channels from 48, with the 1/img_range scale and mean bias, cropped.
        "pixel_shuffle": (randn(1, 48, size, size), 4, randn(3, scale=0.1) + 1, randn(3, scale=0.1), 4 * size - 2, 4 * size),
    }  # fmt: skip


def _time(function, op, args, with_backward, device) -> float:
    run = lambda: _verification._run(function, op, args, with_backward)  # noqa: E731
    run()  # warm-up: compiles outside the timing
    return _verification._time_ms(run, device)


def rows(device: str, quick: bool):
    """Yields one dict per op x backend x dtype."""
    torch_device = torch.device(device)
    backends = _backend.GPU_BACKENDS if torch_device.type == "cuda" else ("cpu", "triton")
    size = 32 if quick else 64
    for dtype in DTYPES:
        calls = swinir_m_calls(size, dtype, device)
        interpreter_calls = swinir_m_calls(24, dtype, device)
        for op, full_call in calls.items():
            for backend in backends:
                row = dict(op=op, backend=backend, dtype=str(dtype).removeprefix("torch."))
                interpreted = backend == "triton" and torch_device.type == "cpu"
                args = interpreter_calls[op] if interpreted else full_call
                why_not = _backend._cannot_run(backend, op, args[0])
                if why_not is not None:
                    yield {**row, "result": "skipped", "note": why_not}
                    continue
                function = ops.implementation(backend, op)
                if torch_device.type == "cuda":
                    record = _verification.verify(backend, op, args, _verification.DIRECTIONS, function)
                else:
                    record = _verification.check(backend, op, args, True, function, timed=not interpreted)
                row.update(result="pass" if record.passed else "FAIL", max_error=record.max_error, check_ms=record.check_ms,
                           note=record.detail)
                if not record.passed:
                    yield row
                    continue
                if interpreted:
                    row.update(timed="not timed (interpreter)")
                else:
                    timings = {
                        direction: tuple(_time(f, op, args, direction == "backward", torch_device)
                                         for f in (function, getattr(reference, op)))
                        for direction in ("forward", "backward")
                    }
                    row.update(timings, timed=f"{size}x{size}")
                yield row


def _speed(pair) -> str:
    if pair is None:
        return ""
    ours, theirs = pair
    return f"{ours:.3g} / {theirs:.3g} ({theirs / ours:.2f}x)" if ours > 0 else ""


def format_row(row: dict) -> str:
    error = f"{row['max_error']:.2g}" if "max_error" in row else ""
    return (f"| {row['op']} | {row['backend']} | {row['dtype']} | {row['result']} | {error} | "
            f"{_speed(row.get('forward'))} | {_speed(row.get('backward'))} | {row.get('timed', '')} | {row.get('note', '')} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swinir_kernels.selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:1, cpu")
    parser.add_argument("--quick", action="store_true", help="time at a 32x32 LR image instead of 64x64")
    options = parser.parse_args(argv)
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device: {options.device} is not available (torch.cuda.is_available() is False)")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    versions = _verification.versions(_verification.device_name(device)) if device.type == "cuda" else f"torch {torch.__version__}"
    print(f"swinir_kernels selftest on {options.device} ({name}); {versions}")
    print("check: a small input of the SwinIR-M call's specialization, forward + backward, vs the reference "
          "(swinir_kernels.tolerances)")
    print("times: ms ours / reference (speed-up), best of 3 after a warm-up\n")
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

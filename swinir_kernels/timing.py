"""The timing rules of everything that prints a time (``swinir bench``, ``swinir export --verify``,
``python -m swinir_kernels.selftest``): paths timed in alternation after warm-up, the median reported
with its range over the runs, and a warning when that range makes a ratio meaningless."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

# Speed-up range (best case / worst case over the runs) above which the ratio is reported as noise:
# beyond 1.5 the median ratio is uncertain by more than about +-20%.
SPREAD_WARNING = 1.5


def time_alternating(runs: dict[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
                     synchronize: Callable[[], None] | None = None) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Times every callable of ``runs`` ``repeats`` times, in alternation (a, b, a, b, ...) after
    ``warmup`` untimed calls of each, so that a change in the machine's load hits every path alike.
    ``synchronize`` runs before and after each timed call (a GPU's queue). Returns (seconds of each
    run, per name; the last result of each)."""
    synchronize = synchronize or (lambda: None)
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(max(1, repeats)):
        for name, run in runs.items():
            synchronize()
            start = time.perf_counter()
            results[name] = run()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times, results


def ratio_range(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """(median ratio, lowest, highest) of ``numerator`` times over ``denominator`` times across the runs
    (lowest: fastest numerator over slowest denominator)."""
    return (statistics.median(numerator) / statistics.median(denominator), min(numerator) / max(denominator),
            max(numerator) / min(denominator))


def spread_note(low: float, high: float, repeats: int, what: str = "this speed-up",
                remedy: str = "more --repeats") -> str | None:
    """A line for the report when a ratio's range over the runs makes it meaningless (wider than a factor
    :data:`SPREAD_WARNING`) or was not measured (one run), else None."""
    if repeats == 1:
        return "note: one run per path, so no spread was measured; pass --repeats 5 or more"
    if high / low > SPREAD_WARNING:
        return (f"warning: the runs vary too much for {what} to mean anything ({low:.2f}x..{high:.2f}x); "
                f"the machine is busy or the runs are too few: rerun on a quiet machine, with {remedy}")
    return None

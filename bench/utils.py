"""Timing and CSV helpers shared by the benchmarks in bench/.

Rows go to bench/results/<device>.csv (appended) with the project's columns; ``gb_s`` is the bytes
the fused kernel must move (a model stated by each benchmark) divided by the median time, so providers
are compared against the same byte count, not against the bytes they actually move.
"""

import csv
import datetime
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

COLUMNS = (
    "op",
    "provider",
    "mode",
    "dtype",
    "shape",
    "median_ms",
    "gb_s",
    "speedup_vs_reference",
    "peak_mb",
    "device",
    "torch",
    "commit",
    "date",
)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cpu_model() -> str:
    """The first 'model name' of /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown-cpu"


def device_name(device: str) -> str:
    """A file-friendly name of what runs the benchmark: ``cpu-<threads>core-<cpu model>`` (the thread
    count torch uses) or the GPU's name, e.g. ``nvidia-h100-80gb-hbm3``."""
    if device == "cpu":
        label = f"cpu-{torch.get_num_threads()}core-{cpu_model()}"
    else:
        label = torch.cuda.get_device_name(device)
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def synchronize(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize(device)


def median_ms(fns: dict[str, Callable[[], object]], device: str, warmup: int = 1, repeats: int = 5) -> dict[str, float]:
    """Median wall time (ms) of each fn() after `warmup` calls. The fns are timed round-robin (one call
    of each per round), so load from other processes on a shared machine hits every provider alike.
    On CUDA each call is bracketed by synchronisations."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(fn: Callable[[], object], device: str) -> float | None:
    """Peak CUDA memory allocated during one fn() call beyond what was allocated before it, in MiB;
    None on CPU (not measured there)."""
    if device == "cpu":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row(op: str, provider: str, mode: str, dtype: torch.dtype, shape: str, ms: float, bytes_moved: int,
        reference_ms: float | None, peak_mb: float | None, device: str) -> dict:
    """One CSV row; gb_s = bytes_moved / time, speedup = reference_ms / ms."""
    return {
        "op": op,
        "provider": provider,
        "mode": mode,
        "dtype": str(dtype).removeprefix("torch."),
        "shape": shape,
        "median_ms": f"{ms:.3f}",
        "gb_s": f"{bytes_moved / (ms * 1e-3) / 1e9:.3g}",
        "speedup_vs_reference": "" if reference_ms is None else f"{reference_ms / ms:.2f}",
        "peak_mb": "" if peak_mb is None else f"{peak_mb:.1f}",
        "device": device_name(device),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def append_csv(rows: list[dict], device: str) -> str:
    """Appends `rows` to bench/results/<device_name(device)>.csv (header written once); returns the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{device_name(device)}.csv")
    new_file = not os.path.exists(path)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
    return path


def print_table(rows: list[dict]) -> None:
    columns = ("op", "provider", "mode", "dtype", "shape", "median_ms", "gb_s", "speedup_vs_reference", "peak_mb")
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(r[c].ljust(w) for c, w in zip(columns, widths)))

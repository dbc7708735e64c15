"""Minimal timing and CSV helpers for the permutation benchmarks (window partition, pixel shuffle).

Self-contained on purpose (bench/utils.py is written concurrently); the CSV columns are the project's:
op, provider, mode, dtype, shape, median_ms, gb_s, speedup_vs_reference, peak_mb, device, torch, commit, date.
Rows are appended to bench/results/<device>.csv. Bandwidth is bytes read + written / median time; the
``copy`` provider (a plain ``dst.copy_(src)`` of the same bytes, measured in the same run) is the ceiling.
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

COLUMNS = [
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
]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_name(device: str) -> str:
    """'cpu', or the GPU's name as a file-friendly slug (e.g. 'nvidia-h100-80gb-hbm3')."""
    if device == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def median_ms(fns: dict[str, Callable[[], object]], device: str, min_seconds: float = 0.5) -> dict[str, float]:
    """Median wall time in ms of each fn(). CUDA: triton's do_bench (CUDA events, L2 flush) per fn.
    CPU: the fns are called round-robin (>= 9 rounds and >= min_seconds, after one warm-up round), so
    load from other processes on a shared machine hits every provider alike."""
    if device != "cpu":
        import triton.testing

        return {name: float(triton.testing.do_bench(fn, quantiles=[0.5, 0.2, 0.8])[0]) for name, fn in fns.items()}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while len(times[next(iter(fns))]) < 9 or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(samples) * 1e3 for name, samples in times.items()}


def peak_mb(fn: Callable[[], object], device: str) -> float | None:
    """Peak allocated GPU memory of one fn() call above what was allocated before (None on CPU)."""
    if device == "cpu":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


class Table:
    """Rows of the CSV, one per provider of each (op, mode, dtype, shape) case."""

    def __init__(self, device: str):
        self.device = device
        self.rows: list[dict] = []

    def compare(self, op: str, mode: str, dtype: torch.dtype, shape, nbytes: int, providers: dict) -> None:
        """Times `providers` ({name: fn}, measured together); speedup_vs_reference is relative to the
        provider named ``reference`` (eager PyTorch) when present."""
        medians = median_ms(providers, self.device)
        for provider, fn in providers.items():
            ms = medians[provider]
            peak = peak_mb(fn, self.device)
            row = {
                "op": op,
                "provider": provider,
                "mode": mode,
                "dtype": str(dtype).replace("torch.", ""),
                "shape": "x".join(map(str, shape)),
                "median_ms": f"{ms:.4f}",
                "gb_s": f"{nbytes / ms / 1e6:.2f}",
                "speedup_vs_reference": f"{medians['reference'] / ms:.2f}" if "reference" in medians else "",
                "peak_mb": "" if peak is None else f"{peak:.1f}",
                "device": self._device_column(),
                "torch": torch.__version__,
                "commit": _commit(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            self.rows.append(row)
            print(
                f"{op:18} {mode:8} {provider:10} {row['dtype']:8} {row['shape']:18} {row['median_ms']:>9} ms "
                f"{row['gb_s']:>8} GB/s  x{row['speedup_vs_reference'] or '-':>5}",
                flush=True,
            )

    def _device_column(self) -> str:
        """The GPU's name, or 'cpu-<n>threads' (CPU timings depend on the thread count)."""
        if self.device == "cpu":
            return f"cpu-{torch.get_num_threads()}threads"
        return device_name(self.device)

    def append_csv(self) -> str:
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, f"{device_name(self.device)}.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(self.rows)
        return path


def kernel_providers(op: str, device: str) -> list[str]:
    """Our backends that can run `op` on `device` here ('cpu' on CPU; 'cuda'/'triton' on a GPU)."""
    from swinir_kernels import _backend

    candidates = ["cpu"] if device == "cpu" else ["cuda", "triton"]
    probe = torch.empty(1, device=device)
    return [b for b in candidates if _backend._cannot_run(b, op, probe) is None]

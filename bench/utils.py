"""Timing, memory, CSV and table helpers shared by every benchmark in bench/.

Rows go to <results>/<device>.csv (appended, header written once) with the project's columns (COLUMNS);
<device> is device_name(): the GPU's name, or ``cpu-<threads>core-<cpu model>`` on CPU. ``gb_s`` is the
bytes the fused kernel must move (a model stated by each benchmark) divided by the median time, so
providers are compared against the same byte count, not against the bytes they actually move.

Environment:
    SWINIR_BENCH_RESULTS_DIR   folder the CSV files go to (created if missing); default bench/results.
"""

import argparse
import ctypes
import csv
import datetime
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable

# torch.compile's default pool of compile workers keeps busy processes around after the baselines
# compile, which on a 2-core machine slowed whatever was timed next by up to 3x. Compile in-process.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402

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
DEFAULT_RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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


# median_ms options for short memory-bound ops (permutations, pixel shuffle): many rounds on CPU,
# do_bench on a GPU where launch overhead would otherwise dominate.
MEMORY_BOUND_TIMING = {"repeats": 9, "min_seconds": 0.5, "gpu_do_bench": True}


def memory_bound_args(description: str) -> argparse.Namespace:
    """The command line of the memory-bound benchmarks (--device, --threads, --no-compile, --no-csv);
    also applies --threads (torch.set_num_threads) and keep_freed_memory_mapped()."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--no-csv", action="store_true", help="print only, do not append to bench/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory_mapped()
    return args


def keep_freed_memory_mapped() -> bool:
    """glibc: raise the heap trim threshold (1 GiB) and the mmap threshold (to its 32 MiB maximum) so
    memory freed between timed calls stays mapped. Without this, in some call sequences every call's
    output landed on freshly faulted pages and the rows measured page faults, not kernels (window_reverse
    of 1x128x128x180 fp32: 2.8 ms for ours and 10 ms for eager, against 0.67 ms and 1.7 ms with it).
    Applies to every provider alike; returns False where it does not apply (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        set_option = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(set_option(m_trim_threshold, 2**30)) and bool(set_option(m_mmap_threshold, 32 * 2**20))


def synchronize(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize(device)


def median_ms(
    fns: dict[str, Callable[[], object]],
    device: str,
    warmup: int = 5,
    repeats: int = 10,
    min_seconds: float = 0.0,
    gpu_do_bench: bool = False,
) -> dict[str, float]:
    """Median wall time (ms) of each fn() after `warmup` calls of each (eager PyTorch on CPU needs a
    few calls before its allocations settle: its first calls run up to 2x slower). The fns are timed round-robin
    (one call of each per round, at least `repeats` rounds and at least `min_seconds` in all), so load
    from other processes on a shared machine hits every provider alike. On CUDA each call is bracketed
    by synchronisations, or, with `gpu_do_bench`, each fn is timed alone by triton's do_bench (CUDA
    events, L2 flushed between calls: closer to the kernel time of short memory-bound ops)."""
    if gpu_do_bench and device != "cpu":
        import triton.testing

        return {name: float(triton.testing.do_bench(fn, quantiles=[0.5, 0.2, 0.8])[0]) for name, fn in fns.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    first = next(iter(fns))
    start_all = time.perf_counter()
    while len(times[first]) < repeats or time.perf_counter() - start_all < min_seconds:
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def peak_memory_mb(fn: Callable[[], object], device: str) -> float | None:
    """Peak CUDA memory allocated during one fn() call beyond what was allocated before it, in MiB;
    None on CPU: the resident set there misses the allocations that reuse memory glibc keeps, so an
    op-sized call reads as 0 (whole models: peak_rss_growth_mb)."""
    if device == "cpu":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def peak_rss_growth_mb(fn: Callable[[], object]) -> float | None:
    """The growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over
    its resident size before one fn() call, in MiB: a CPU memory figure for calls whose allocations
    are large (a whole model's forward); None where /proc does not offer it."""
    try:
        _reset_peak_rss()
        before = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - before) / 1024
    except OSError:
        return None


def git_commit() -> str:
    """The checkout's short commit, with "-dirty" when tracked files other than the recorded results
    (which every run appends to) differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__))
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results")
        return git("rev-parse", "--short=7", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row(op: str, provider: str, mode: str, dtype: torch.dtype | str, shape: str, ms: float,
        bytes_moved: int | None, reference_ms: float | None, peak_mb: float | None, device: str) -> dict:
    """One CSV row; gb_s = bytes_moved / time (empty when None), speedup = reference_ms / ms."""
    return {
        "op": op,
        "provider": provider,
        "mode": mode,
        "dtype": str(dtype).removeprefix("torch."),
        "shape": shape,
        "median_ms": f"{ms:.4f}",
        "gb_s": "" if bytes_moved is None else f"{bytes_moved / (ms * 1e-3) / 1e9:.4g}",
        "speedup_vs_reference": "" if reference_ms is None else f"{reference_ms / ms:.2f}",
        "peak_mb": "" if peak_mb is None else f"{peak_mb:.1f}",
        "device": device_name(device),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def compare_providers(op: str, mode: str, dtype: torch.dtype, shape: str, bytes_moved: int | None,
                      fns: dict[str, Callable[[], object]], device: str, **timing) -> list[dict]:
    """Times `fns` ({provider: fn}, together, see median_ms(**timing)) and returns one row per
    provider, with the speedup relative to the provider named ``reference`` when there is one and
    each fn's peak memory."""
    times = median_ms(fns, device, **timing)
    reference_ms = times.get("reference")
    return [
        row(op, name, mode, dtype, shape, times[name], bytes_moved, reference_ms, peak_memory_mb(fn, device), device)
        for name, fn in fns.items()
    ]


def results_path(device: str) -> str:
    """<results>/<device_name(device)>.csv; <results> is $SWINIR_BENCH_RESULTS_DIR or bench/results."""
    results_dir = os.environ.get("SWINIR_BENCH_RESULTS_DIR") or DEFAULT_RESULTS_DIR
    return os.path.join(results_dir, f"{device_name(device)}.csv")


def append_csv(rows: list[dict], device: str) -> str:
    """Appends `rows` to results_path(device) (header written once); returns the path."""
    path = results_path(device)
    os.makedirs(os.path.dirname(path), exist_ok=True)
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


def print_rows(rows: list[dict]) -> None:
    """One progress line per row, printed as soon as a case is measured."""
    for r in rows:
        print(
            f"{r['op']:18} {r['mode']:8} {r['provider']:10} {r['dtype']:8} {r['shape']:18} {r['median_ms']:>9} ms "
            f"{r['gb_s']:>8} GB/s  x{r['speedup_vs_reference'] or '-':>5}",
            flush=True,
        )


def kernel_providers(op: str, device: str) -> list[str]:
    """Our backends that can run `op` on `device` here ('cpu' on CPU; 'cuda'/'triton' on a GPU)."""
    from swinir_kernels import _backend

    candidates = ["cpu"] if device == "cpu" else ["cuda", "triton"]
    probe = torch.empty(1, device=device)
    return [b for b in candidates if _backend._cannot_run(b, op, probe) is None]

"""What the benchmarks in bench/ need beyond pytest-benchmark (which times, repeats, computes the
statistics, saves runs and compares them): the device's name, CPU thread pinning, a clock that
waits for the GPU, the byte/FLOP roofline of known GPUs, peak memory of one call, the commit, the
project's CSV rows, and the median of a few calls for the whole-model scripts (bench_swinir.py,
bench_training.py), which stay scripts: each of their rows builds (or compiles) a whole model.

Rows go to <results>/<device>.csv (appended, header written once) with the project's columns
(COLUMNS); <device> is device_name(): the GPU's name, or ``cpu-<threads>core-<cpu model>`` on a CPU.
``gb_s`` is the bytes the *fused* op must move (a model stated by each benchmark) divided by the
median time, so every provider is measured against the same byte count, not the bytes it moves.

Environment:
    SWINIR_BENCH_RESULTS_DIR   folder the CSV files go to (created if missing); default bench/results.
"""

import csv
import ctypes
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable

# torch.compile's default pool of compile workers keeps busy processes around after the baselines
# compile, which on a 2-core machine slowed whatever was timed next by up to 3x. Compile in-process.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

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
DEFAULT_RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
OURS = ("cuda", "triton", "cpu")  # our backends, in the order the tables show them

# Known GPUs: (name pattern, label, HBM GB/s, dense fp16/bf16 tensor TFLOP/s, TF32 TFLOP/s, fp32 FMA
# TFLOP/s). NVIDIA datasheet figures (../shared/docs/kernel-physics.md); a roofline fraction against
# them is an upper bound on how good a row is (measured copy ceilings are ~10% lower).
KNOWN_GPUS = (
    (r"h200", "H200 SXM", 4800.0, 989.0, 494.7, 66.9),
    (r"h100.*pcie", "H100 PCIe", 2000.0, 756.0, 378.0, 51.2),
    (r"h100", "H100 SXM", 3350.0, 989.0, 494.7, 66.9),
)


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


def pin_cpu_threads(threads: int) -> list[int]:
    """Runs torch (and the OpenMP kernels of _C, which share torch's pool) on `threads` threads and
    pins the process to the first `threads` CPUs it may use, so the OS does not move the threads
    between cores mid-run; returns the CPUs pinned to (all allowed ones where affinity is not
    supported)."""
    if threads < 1:
        raise ValueError(f"threads: expected a positive count, got {threads}")
    torch.set_num_threads(threads)
    if not hasattr(os, "sched_setaffinity"):
        return []
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:threads]
    os.sched_setaffinity(0, chosen)
    return chosen


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


def cuda_synchronized_clock() -> float:
    """time.perf_counter() once all queued CUDA work has finished: pytest-benchmark's timer on a GPU.
    pytest-benchmark reads the timer once before and once after a round of calibrated back-to-back
    calls, so a round is bracketed by two synchronisations and the kernels inside it queue without
    waiting; the one synchronisation latency per round is spread over its calls."""
    torch.cuda.synchronize()
    return time.perf_counter()


def gpu_roofline(device: str) -> tuple | None:
    """The KNOWN_GPUS entry (label, GB/s, fp16 TF/s, tf32 TF/s, fp32 TF/s) of `device`, or None."""
    if device == "cpu":
        return None
    name = torch.cuda.get_device_name(device).lower()
    for pattern, *entry in KNOWN_GPUS:
        if re.search(pattern, name):
            return tuple(entry)
    return None


def roofline_fraction(device: str, dtype: torch.dtype, seconds: float, bytes_moved: int, flops: int,
                      fp32_on_tensor_cores: bool) -> float | None:
    """Roofline time / measured time on a known GPU: the roofline time is the larger of bytes / HBM
    bandwidth and FLOPs / peak FLOP rate of the dtype's arithmetic (fp16/bf16 tensor cores; fp32 on
    TF32 tensor cores when `fp32_on_tensor_cores`, else on FMA units). None off a known GPU."""
    known = gpu_roofline(device)
    if known is None:
        return None
    _, bandwidth, half_tflops, tf32_tflops, fp32_tflops = known
    if dtype in (torch.float16, torch.bfloat16):
        tflops = half_tflops
    else:
        tflops = tf32_tflops if fp32_on_tensor_cores else fp32_tflops
    best = max(bytes_moved / (bandwidth * 1e9), flops / (tflops * 1e12))
    return best / seconds


def l2_bytes(device: str) -> int | None:
    """The GPU's L2 size, or None on a CPU."""
    if device == "cpu":
        return None
    return torch.cuda.get_device_properties(device).L2_cache_size


def peak_memory_mb(fn: Callable[[], object], device: str) -> float | None:
    """Peak CUDA memory allocated during one fn() call beyond what was allocated before it, in MiB;
    None on CPU: the resident set there misses the allocations that reuse memory glibc keeps, so an
    op-sized call reads as 0 (whole models: peak_rss_growth_mb)."""
    if device == "cpu":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_rss_growth_mb(fn: Callable[[], object]) -> float | None:
    """The growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over
    its resident size before one fn() call, in MiB: a CPU memory figure for calls whose allocations
    are large (a whole model's forward); None where /proc does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        before = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - before) / 1024
    except OSError:
        return None


def git_commit() -> str:
    """The commit the code was built from: the checkout's short commit, with "-dirty" when tracked files
    other than the recorded results differ from it; in a tree without .git (a copied or installed tree)
    the commit setup.py recorded at build time (swinir_kernels/_build_info.py); else "unknown"."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__))
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results")
        return git("rev-parse", "--short=7", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        from swinir_kernels import _build_info
    except ImportError:
        return "unknown"
    return _build_info.COMMIT


def results_path(device_label: str) -> str:
    """<results>/<device_label>.csv; <results> is $SWINIR_BENCH_RESULTS_DIR or bench/results."""
    results_dir = os.environ.get("SWINIR_BENCH_RESULTS_DIR") or DEFAULT_RESULTS_DIR
    return os.path.join(results_dir, f"{device_label}.csv")


def append_csv(rows: list[dict], device_label: str) -> str:
    """Appends `rows` (dicts with COLUMNS) to results_path(device_label), header written once; returns
    the path."""
    path = results_path(device_label)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    new_file = not os.path.exists(path)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
    return path


def median_call_ms(fn: Callable[[], object], device: str, repeats: int, warmup: int) -> float:
    """Median wall time of `repeats` calls of fn, in ms, after `warmup` untimed calls (compiles and
    first-use checks happen there); the GPU is synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = cuda_synchronized_clock() if device.startswith("cuda") else time.perf_counter()
        fn()
        end = cuda_synchronized_clock() if device.startswith("cuda") else time.perf_counter()
        times.append((end - start) * 1e3)
    return statistics.median(times)


def model_row(op: str, provider: str, mode: str, dtype: str, shape: str, ms: float, reference_ms: float | None,
              peak_mb: float | None, device_label: str, commit: str) -> dict:
    """One CSV row (COLUMNS) of a whole-model script."""
    return {
        "op": op, "provider": provider, "mode": mode, "dtype": dtype, "shape": shape, "median_ms": f"{ms:.4f}",
        "gb_s": "", "speedup_vs_reference": "" if reference_ms is None else f"{reference_ms / ms:.2f}",
        "peak_mb": "" if peak_mb is None else f"{peak_mb:.1f}", "device": device_label, "torch": torch.__version__,
        "commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def skip_unless_ours_can_run(backend: str, op: str, device: str, dtype: torch.dtype, smoke: bool) -> None:
    """pytest.skip with the backend chooser's reason when our `backend` cannot run `op` here. Under
    the Triton interpreter (CPU) Triton runs in the smoke run only: the interpreter is no benchmark."""
    import pytest

    from swinir_kernels import registry

    why_not = registry.get(op).cannot_run(backend, torch.empty(1, device=device, dtype=dtype))
    if why_not is None and backend == "triton" and device == "cpu" and not smoke:
        why_not = "the Triton interpreter is not a benchmark (the smoke run still runs it)"
    if why_not is not None:
        pytest.skip(f"{backend}: {why_not}")

"""``swinir bench``: one SwinIR preset with random weights, our kernels (backend 'auto') next to the
pure-PyTorch reference path (backend 'reference'), on the same weights and input.

The two paths are timed in alternation (reference, ours, reference, ours, ...) after warm-up, with
the CPU thread count pinned for both, so that a machine's load drifts over both alike. Reported per
path: median latency of ``repeats`` forwards with the fastest and slowest run, output megapixels per
second (H*s x W*s / median latency), peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
growth of the process's peak resident set size, reset through ``/proc/self/clear_refs`` where Linux
allows it), and the largest absolute output difference from the reference path.

The speed-up is reported with its range over the runs (slowest reference / fastest ours and the
reverse). When that range spans more than a factor :data:`SPREAD_WARNING`, the machine was too noisy
for the ratio to mean anything and the report says so.

:func:`time_alternating`, :func:`ratio_range` and :func:`spread_note` (from :mod:`swinir_kernels.timing`)
are the timing rules of every command that prints a time (``swinir export --verify`` too).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import statistics

import torch
# The timing rules of everything that prints a time (this report, `swinir export --verify`, the kernels'
# selftest): one definition, in swinir_kernels.timing; SPREAD_WARNING is the range beyond which a
# ratio is reported as noise.
from swinir_kernels.timing import SPREAD_WARNING, ratio_range, spread_note, time_alternating  # noqa: F401

from . import __version__
from .precision import autocast

CPU_DEFAULT_SIZE = (32, 32)
GPU_DEFAULT_SIZE = (256, 256)


@dataclasses.dataclass
class PathResult:
    name: str
    backend: str
    latencies_s: list[float]
    megapixels_per_s: float
    peak_memory_bytes: int | None
    max_abs_diff: float

    @property
    def latency_s(self) -> float:
        """Median latency."""
        return statistics.median(self.latencies_s)


@dataclasses.dataclass
class Report:
    preset: str
    size: tuple[int, int]
    scale: int
    device: str
    dtype: str
    repeats: int
    threads: int
    default_size: bool
    memory_kind: str
    auto_backend: str
    results: list[PathResult]


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Give freed heap pages back to the OS (glibc), then reset the peak RSS to the current RSS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


class _PeakMemory:
    """Peak memory of the code inside ``with``: CUDA allocator peak, or CPU peak-RSS growth."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak: int | None = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.can_reset = _reset_peak_rss()
            self.start = _rss_bytes("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.can_reset and self.start is not None:
            peak = _rss_bytes("VmHWM")
            self.peak = None if peak is None else max(0, peak - self.start)


def _forward(model, x, device, dtype):
    with torch.inference_mode(), autocast(device, dtype):
        return model(x)


def _peak_memory(model, x, device, dtype) -> int | None:
    """Peak memory of one more, untimed, forward (resetting the CPU's peak RSS returns freed pages to
    the OS, whose faults would otherwise be timed)."""
    with _PeakMemory(device) as memory:
        _forward(model, x, device, dtype)
    return memory.peak


def speedup_range(ours: PathResult, reference: PathResult) -> tuple[float, float, float]:
    """(median ratio, worst case, best case) of reference latency over ours across the runs."""
    return ratio_range(reference.latencies_s, ours.latencies_s)


def run(preset: str = "classical_sr_x4", size: tuple[int, int] | None = None, device: str | None = None,
        dtype: str = "fp32", repeats: int | None = None, overrides: dict | None = None,
        threads: int | None = None) -> Report:
    """Benchmark ``preset`` (random weights, seed 0) on a random (1, in_chans, *size) input;
    ``overrides`` replace preset constructor kwargs (e.g. a smaller embed_dim); ``threads`` pins
    ``torch.set_num_threads`` for the run (default: the current count), restored afterwards."""
    import swinir
    import swinir_kernels

    if preset not in swinir.PRESETS:
        raise ValueError(f"unknown preset {preset!r} (known: {', '.join(sorted(swinir.PRESETS))})")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    default_size = size is None
    size = size or (GPU_DEFAULT_SIZE if on_gpu else CPU_DEFAULT_SIZE)
    repeats = repeats or (20 if on_gpu else 3)
    warmup = 3 if on_gpu else 1
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads

    torch.manual_seed(0)
    overrides = overrides or {}
    ours = swinir.build(preset, **overrides, backend="auto").eval().to(device)
    reference = swinir.build(preset, **overrides, backend="reference").eval().to(device)
    reference.load_state_dict(ours.state_dict())
    models = {"reference": reference, "ours": ours}
    x = torch.rand(1, ours.in_chans, *size, device=device)
    output_pixels = size[0] * size[1] * ours.upscale**2

    torch.set_num_threads(threads)
    try:
        runs = {name: (lambda model=model: _forward(model, x, device, dtype)) for name, model in models.items()}
        synchronize = (lambda: torch.cuda.synchronize(device)) if on_gpu else None
        latencies, outputs = time_alternating(runs, repeats, warmup=warmup, synchronize=synchronize)
        peaks = {name: _peak_memory(model, x, device, dtype) for name, model in models.items()}
    finally:
        torch.set_num_threads(previous_threads)
    # The backend of each op in ours' latest calls (auto chooses per op, and on a GPU per checked kernel).
    used = swinir_kernels.backends_used()
    auto_backend = ", ".join(f"{op} on {used[op].split(':')[0]}" for op in sorted(used)) or "no op called"
    reference_output = outputs["reference"].float()
    results = []
    for name, backend in (("ours", "auto"), ("reference", "reference")):
        median = statistics.median(latencies[name])
        results.append(PathResult(name, backend, latencies[name], output_pixels / median / 1e6, peaks[name],
                                  float((outputs[name].float() - reference_output).abs().max())))
    memory_kind = "CUDA max_memory_allocated" if on_gpu else (
        "peak RSS growth" if _reset_peak_rss() else "unavailable (cannot reset peak RSS here)")
    return Report(preset, size, ours.upscale, str(device), dtype, repeats, threads, default_size, memory_kind,
                  auto_backend, results)


def _significant(value: float) -> str:
    """Three significant digits without exponent (0.0412, 3.58, 1234)."""
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def format_report(report: Report) -> str:
    """A plain-text table of ``report``, the speed-up with its range, and a warning when it is noise."""
    height, width = report.size
    lines = [
        f"SwinIR benchmark: preset {report.preset} (random weights), input 1x{height}x{width} -> "
        f"{height * report.scale}x{width * report.scale}, {report.dtype}, {report.device}, "
        f"{report.threads} CPU thread(s), median of {report.repeats} alternating runs per path"
        + (" (pass --size for another input size)" if report.default_size else ""),
        f"swinir-kernels {__version__}, torch {torch.__version__}",
    ]
    if report.default_size and report.device == "cpu":
        lines.append(f"note: small default input {width}x{height} on CPU so that the run takes about a minute")
    lines.append(f"ours = backend 'auto' ({report.auto_backend}); reference = backend 'reference'")
    lines.append(f"memory: {report.memory_kind}")
    header = (f"{'path':<10} {'backend':<10} {'median ms':>10} {'min..max ms':>17} {'MP/s':>7} {'peak MiB':>9} "
              f"{'max |diff|':>11}")
    lines += [header, "-" * len(header)]
    for result in report.results:
        memory = "n/a" if result.peak_memory_bytes is None else f"{result.peak_memory_bytes / 2**20:.1f}"
        spread = f"{min(result.latencies_s) * 1e3:.1f}..{max(result.latencies_s) * 1e3:.1f}"
        lines.append(f"{result.name:<10} {result.backend:<10} {result.latency_s * 1e3:10.1f} {spread:>17} "
                     f"{_significant(result.megapixels_per_s):>7} {memory:>9} {result.max_abs_diff:11.3g}")
    ours, reference = report.results
    ratio, worst, best = speedup_range(ours, reference)
    lines.append(f"speed-up ours vs reference: {ratio:.2f}x (median; {worst:.2f}x..{best:.2f}x over the runs)")
    note = spread_note(worst, best, report.repeats)
    if note:
        lines.append(note)
    return "\n".join(lines)

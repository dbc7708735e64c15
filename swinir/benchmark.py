"""``swinir bench``: one SwinIR preset with random weights, our kernels (backend 'auto') next to the
pure-PyTorch reference path (backend 'reference'), on the same weights and input.

Reported per path: median latency of ``repeats`` timed forwards (after warm-up), output megapixels
per second (H*s x W*s / latency), peak memory (CUDA: ``torch.cuda.max_memory_allocated`` during the
timed runs; CPU: growth of the process's peak resident set size, reset through
``/proc/self/clear_refs`` where Linux allows it), and the largest absolute output difference from
the reference path.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import statistics
import time

import torch

CPU_DEFAULT_SIZE = (32, 32)
GPU_DEFAULT_SIZE = (256, 256)


@dataclasses.dataclass
class PathResult:
    name: str
    backend: str
    latency_s: float
    megapixels_per_s: float
    peak_memory_bytes: int | None
    max_abs_diff: float


@dataclasses.dataclass
class Report:
    preset: str
    size: tuple[int, int]
    scale: int
    device: str
    dtype: str
    repeats: int
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


def _autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def _time_path(model, x, device, dtype, warmup, repeats):
    def forward():
        with torch.inference_mode(), _autocast(device, dtype):
            return model(x)

    for _ in range(warmup):
        output = forward()
    latencies = []
    with _PeakMemory(device) as memory:
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            output = forward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            latencies.append(time.perf_counter() - start)
    return output.float(), statistics.median(latencies), memory.peak


def run(preset: str = "classical_sr_x4", size: tuple[int, int] | None = None, device: str | None = None,
        dtype: str = "fp32", repeats: int | None = None, overrides: dict | None = None) -> Report:
    """Benchmark ``preset`` (random weights, seed 0) on a random (1, in_chans, *size) input;
    ``overrides`` replace preset constructor kwargs (e.g. a smaller embed_dim)."""
    import swinir
    import swinir_kernels

    if preset not in swinir.PRESETS:
        raise ValueError(f"unknown preset {preset!r} (known: {', '.join(sorted(swinir.PRESETS))})")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    default_size = size is None
    size = size or (GPU_DEFAULT_SIZE if on_gpu else CPU_DEFAULT_SIZE)
    repeats = repeats or (20 if on_gpu else 2)
    warmup = 3 if on_gpu else 1

    torch.manual_seed(0)
    overrides = overrides or {}
    ours = swinir.build(preset, **overrides, backend="auto").eval().to(device)
    reference = swinir.build(preset, **overrides, backend="reference").eval().to(device)
    reference.load_state_dict(ours.state_dict())
    x = torch.rand(1, ours.in_chans, *size, device=device)
    output_pixels = size[0] * size[1] * ours.upscale**2

    measured = {}
    for name, model in (("reference", reference), ("ours", ours)):
        measured[name] = _time_path(model, x, device, dtype, warmup, repeats)
    # The backend of each op in ours' latest calls (auto chooses per op, and on a GPU per checked kernel).
    used = swinir_kernels.backends_used()
    auto_backend = ", ".join(f"{op} on {used[op].split(':')[0]}" for op in sorted(used)) or "no op called"
    reference_output = measured["reference"][0]
    results = []
    for name, backend in (("ours", "auto"), ("reference", "reference")):
        output, latency, peak = measured[name]
        results.append(PathResult(name, backend, latency, output_pixels / latency / 1e6, peak,
                                  float((output - reference_output).abs().max())))
    memory_kind = "CUDA max_memory_allocated" if on_gpu else (
        "peak RSS growth" if _reset_peak_rss() else "unavailable (cannot reset peak RSS here)")
    return Report(preset, size, ours.upscale, str(device), dtype, repeats, default_size, memory_kind,
                  auto_backend, results)


def format_report(report: Report) -> str:
    """A plain-text table of ``report``."""
    height, width = report.size
    lines = [
        f"SwinIR benchmark: preset {report.preset} (random weights), input 1x{height}x{width} -> "
        f"{height * report.scale}x{width * report.scale}, {report.dtype}, {report.device}, "
        f"median of {report.repeats} runs" + (" (pass --size for another input size)" if report.default_size else ""),
    ]
    if report.default_size and report.device == "cpu":
        lines.append(f"note: small default input {width}x{height} on CPU so that the run takes about a minute")
    lines.append(f"ours = backend 'auto' ({report.auto_backend}); reference = backend 'reference'")
    lines.append(f"memory: {report.memory_kind}")
    header = f"{'path':<10} {'backend':<10} {'latency ms':>11} {'MP/s':>9} {'peak MiB':>9} {'max |diff|':>11}"
    lines += [header, "-" * len(header)]
    for result in report.results:
        memory = "n/a" if result.peak_memory_bytes is None else f"{result.peak_memory_bytes / 2**20:.1f}"
        lines.append(f"{result.name:<10} {result.backend:<10} {result.latency_s * 1e3:11.1f} "
                     f"{result.megapixels_per_s:9.4f} {memory:>9} {result.max_abs_diff:11.3g}")
    ours, reference = report.results
    lines.append(f"speed-up ours vs reference: {reference.latency_s / ours.latency_s:.2f}x")
    return "\n".join(lines)


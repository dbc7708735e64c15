"""pytest-benchmark set-up of the op benchmarks (bench/bench_<op>.py).

    python -m pytest bench/ --benchmark-only             # time every provider (GPU if there is one)
    python -m pytest bench/ --benchmark-disable -q       # every benchmark once, tiny shapes: a test

Collected: the op benchmark modules in OP_BENCHMARKS (not bench_swinir.py, profile_swinir.py or
other scripts in bench/). Each module defines ``parameters(settings)`` (name -> list of
pytest.param) for its test arguments and calls the ``measure`` fixture once per test. One
pytest-benchmark group is one op x mode x dtype x shape; its rows are the providers.

Timing:
* GPU: the timer is utils.cuda_synchronized_clock (synchronise, then perf_counter) unless
  --benchmark-timer is given, and a round lasts at least --benchmark-min-time, which defaults to
  1 ms here: pytest-benchmark calibrates the calls per round to reach it, so one synchronisation
  latency (~10 us) is < 1% of a round even for a 5-us kernel. The L2 cache is *not* flushed between
  calls; each row records ``l2_resident`` (the fused op's bytes fit in L2) so such rows can be
  read as L2, not HBM, bandwidth. The GPU shapes are chosen to exceed the 50-60 MB L2 of H100/H200.
* CPU: torch's threads (and _C's OpenMP threads, the same pool) are set to --bench-threads (default
  2) and the process is pinned to that many CPUs; both are printed in the header. Freed memory stays
  mapped (utils.keep_freed_memory_mapped) so rows time kernels, not page faults.
* Every provider is called once before timing, outside it: torch.compile compiles, Triton compiles,
  the kernels' first-use checks run, and the output is compared with the float64 reference. Peak
  memory is measured on one more untimed call.
"""

import os
import sys
from dataclasses import dataclass

import pytest
import torch
from bench import utils

OP_BENCHMARKS = ("bench_window_attention.py", "bench_window_partition.py", "bench_pixel_shuffle.py")
DEFAULT_GPU_MIN_TIME = 1e-3  # seconds per round on a GPU, see the module docstring
DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclass(frozen=True)
class Settings:
    device: str  # "cpu" or "cuda"
    smoke: bool  # --benchmark-disable: every benchmark runs once, on tiny shapes
    dtypes: tuple[str, ...] | None  # --bench-dtypes, None for each module's default

    def compile(self, fn):
        """torch.compile of `fn` for a baseline: Inductor (dynamic=False, fresh caches) when timing;
        in the smoke run the "eager" backend, which checks that dynamo traces the chain without the
        ~10 s Inductor compile per graph, which would not fit the CI budget."""
        torch._dynamo.reset()
        return torch.compile(fn, dynamic=False, backend="eager" if self.smoke else "inductor")


def pytest_addoption(parser):
    group = parser.getgroup("swinir benchmarks")
    group.addoption("--bench-device", choices=("cpu", "cuda"), default=None,
                    help="device to benchmark (default: cuda when available, else cpu)")
    group.addoption("--bench-threads", type=int, default=2, help="CPU threads (pinned), default 2")
    group.addoption("--bench-dtypes", default=None,
                    help="comma-separated dtypes (float32,bfloat16,float16) instead of each op's defaults")


def _settings(config) -> Settings:
    device = config.getoption("bench_device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = config.getoption("bench_dtypes")
    dtypes = tuple(dtypes.split(",")) if dtypes else None
    for name in dtypes or ():
        if name not in DTYPES:
            raise pytest.UsageError(f"--bench-dtypes: expected names from {','.join(DTYPES)}, got {name!r}")
    return Settings(device, bool(config.getoption("benchmark_disable")), dtypes)


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own pytest_configure reads the timer option
def pytest_configure(config):
    settings = _settings(config)
    config._swinir_bench = settings
    utils.keep_freed_memory_mapped()
    if settings.device == "cpu":
        config._swinir_pinned = utils.pin_cpu_threads(config.getoption("bench_threads"))
        return
    if config.getoption("benchmark_timer") == "time.perf_counter":
        config.option.benchmark_timer = "utils.cuda_synchronized_clock"
    if config.getoption("benchmark_min_time") == 0.000005:  # pytest-benchmark's default: not set by the user
        config.option.benchmark_min_time = DEFAULT_GPU_MIN_TIME


def pytest_report_header(config):
    settings = config._swinir_bench
    if settings.device == "cuda" and not torch.cuda.is_available():
        return ["swinir benchmarks: --bench-device cuda without a GPU: collection only (e.g. --collect-only counts)"]
    lines = [f"swinir benchmarks: device {settings.device} ({utils.device_name(settings.device)}), "
             f"{'smoke run: tiny shapes, once each' if settings.smoke else 'timed run'}, commit {utils.git_commit()}"]
    if settings.device == "cpu":
        lines.append(f"CPU threads: {torch.get_num_threads()} (torch.set_num_threads), pinned to CPUs "
                     f"{config._swinir_pinned or 'n/a (no sched_setaffinity)'}")
    else:
        lines.append(f"GPU timer: {config.getoption('benchmark_timer')}, rounds >= "
                     f"{config.getoption('benchmark_min_time') * 1e3:g} ms; L2 not flushed; "
                     f"roofline of {utils.gpu_roofline(settings.device) or 'no known GPU'}")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the CSV rows need besides the statistics: device label, torch, commit, CPU threads."""
    device = config._swinir_bench.device
    machine_info["swinir"] = {
        "device": utils.device_name(device),
        "torch": torch.__version__,
        "commit": utils.git_commit(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device != "cpu" else None,
    }


def pytest_collect_file(file_path, parent):
    # Only the op benchmarks: bench_swinir.py and the other scripts in bench/ are not pytest modules.
    # A file named on the command line is collected by pytest itself (the default python_files rule
    # does not apply to it), so collecting it here too would run it twice.
    if file_path.name in OP_BENCHMARKS and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc):
    parameters = getattr(metafunc.module, "parameters", None)
    if parameters is None:
        return
    for name, values in parameters(metafunc.config._swinir_bench).items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values)


@pytest.fixture
def settings(request) -> Settings:
    return request.config._swinir_bench


@pytest.fixture
def measure(benchmark, settings):
    """measure(call, op=, provider=, mode=, dtype=, shape=, bytes_moved=, flops=0, fp32_on_tensor_cores=False):
    times call() with pytest-benchmark after one untimed call (and one more for peak memory), in the
    group op x mode x dtype x shape, and stores the row's figures in its extra_info: the fused op's
    bytes and FLOPs, achieved GB/s (bytes / median), the roofline fraction on a known GPU, peak memory
    (CUDA only) and whether the bytes fit in L2."""

    def run(call, *, op, provider, mode, dtype, shape, bytes_moved, flops=0, fp32_on_tensor_cores=False):
        call()  # compiles and first-use checks, outside the timed region
        peak_mb = utils.peak_memory_mb(call, settings.device)
        l2 = utils.l2_bytes(settings.device)
        benchmark.group = f"{op} {mode} {str(dtype).removeprefix('torch.')} {shape}"
        info = benchmark.extra_info
        info.update(op=op, provider=provider, mode=mode, dtype=str(dtype).removeprefix("torch."), shape=shape,
                    bytes=bytes_moved, flops=flops, peak_mb=peak_mb, l2_resident=None if l2 is None else bytes_moved <= l2)
        benchmark(call)
        if benchmark.stats is None:  # --benchmark-disable: called once, nothing timed
            return
        median = benchmark.stats.stats.median
        info["gb_s"] = bytes_moved / median / 1e9
        info["roofline_fraction"] = utils.roofline_fraction(settings.device, dtype, median, bytes_moved, flops,
                                                            fp32_on_tensor_cores)

    return run


"""Benchmark of window_partition / window_reverse with the cyclic shift fused (ws 8, shift 4).

Providers: cuda, triton, cpu (ours, each asked for by name); reference (eager: roll + view + permute
+ contiguous); reference-compiled (torch.compile of it); copy (dst.copy_(src) of the same bytes: the
bandwidth ceiling). Bytes moved = read + write of the tensor = 2 * numel * element size for every
provider, so GB/s compares them directly. Each op is the other's backward, so forward only.

    python -m pytest bench/bench_window_partition.py --benchmark-only
"""

import pytest
import torch
from bench.utils import skip_unless_ours_can_run

import swinir_kernels
from swinir_kernels import reference

WINDOW_SIZE, SHIFT = 8, 4
# (B, H, W, C): classical SwinIR (C=180) inference at 256x256 LR and a training batch of 64x64 patches;
# on a CPU smaller, so that the table takes about a minute on 2 threads.
SHAPES = {"cuda": [(1, 256, 256, 180), (32, 64, 64, 180)], "cpu": [(1, 128, 128, 180), (8, 64, 64, 60)]}
SMOKE_SHAPES = [(2, 16, 24, 6)]
DTYPES = {"cuda": ("float32", "float16"), "cpu": ("float32",)}  # bf16 moves the same bits as fp16
PROVIDERS = {
    "cuda": ("cuda", "triton", "reference", "reference-compiled", "copy"),
    "cpu": ("cpu", "triton", "reference", "reference-compiled", "copy"),
}


def parameters(settings) -> dict:
    shapes = SMOKE_SHAPES if settings.smoke else SHAPES[settings.device]
    dtypes = settings.dtypes or (("float32",) if settings.smoke else DTYPES[settings.device])
    return {
        "shape": [pytest.param(shape, id="x".join(map(str, shape))) for shape in shapes],
        "dtype": [pytest.param(getattr(torch, name), id=name) for name in dtypes],
        "provider": list(PROVIDERS[settings.device]),
    }


def run(measure, settings, op, provider, shape, dtype, source, call):
    """Times `call(fn)` for the provider's fn (swinir_kernels.<op> or reference.<op>) on `source`."""
    eager = getattr(reference, op)
    if provider == "copy":
        target = torch.empty_like(source)
        timed = lambda: target.copy_(source)  # noqa: E731
    else:
        if provider in ("cuda", "triton", "cpu"):
            skip_unless_ours_can_run(provider, op, settings.device, dtype, settings.smoke)
            ours = getattr(swinir_kernels, op)

            def fn(*args):
                with swinir_kernels.use_backend(provider):
                    return ours(*args)
        else:
            fn = eager if provider == "reference" else settings.compile(eager)
        assert torch.equal(call(fn), call(eager)), f"{provider} {op} differs from the reference"
        timed = lambda: call(fn)  # noqa: E731
    measure(timed, op=op, provider=provider, mode="forward", dtype=dtype, shape="x".join(map(str, shape)),
            bytes_moved=2 * source.numel() * source.element_size())


def test_window_partition(measure, settings, provider, shape, dtype):
    x = torch.randn(shape, device=settings.device, dtype=dtype)
    run(measure, settings, "window_partition", provider, shape, dtype, x, lambda fn: fn(x, WINDOW_SIZE, SHIFT))


def test_window_reverse(measure, settings, provider, shape, dtype):
    B, H, W, C = shape
    windows = reference.window_partition(torch.randn(shape, device=settings.device, dtype=dtype), WINDOW_SIZE, SHIFT)
    run(measure, settings, "window_reverse", provider, shape, dtype, windows,
        lambda fn: fn(windows, WINDOW_SIZE, H, W, SHIFT))

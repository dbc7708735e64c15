"""Benchmark window_partition / window_reverse (cyclic shift fused) against eager PyTorch, its
torch.compile, and a plain copy of the same bytes (the bandwidth ceiling).

Bytes moved = read + write of the tensor = 2 * numel * element size, for every provider, so GB/s is
comparable across them. Providers: copy (dst.copy_(src)), reference (eager: roll + view + permute +
contiguous), compile (torch.compile of the eager code), then ours: cpu on CPU; cuda/triton on a GPU.

    python bench/bench_window_partition.py                  # CPU table, 2 threads
    python bench/bench_window_partition.py --device cuda    # SwinIR shapes on the GPU
"""

import torch

import swinir_kernels as sk
from swinir_kernels import reference

try:
    import utils
except ImportError:  # run as a module: python -m bench.bench_window_partition
    from bench import utils

# (B, H, W, C): classical SwinIR (C=180) inference at 256x256 LR and a training batch of 64x64 patches.
GPU_SHAPES = [(1, 256, 256, 180), (32, 64, 64, 180)]
GPU_DTYPES = [torch.float32, torch.float16]
# Smaller on CPU so the whole table takes < 1 min on 2 threads.
CPU_SHAPES = [(1, 128, 128, 180), (8, 64, 64, 60)]
CPU_DTYPES = [torch.float32]
WINDOW_SIZE, SHIFT = 8, 4


def run_case(rows: list[dict], device: str, dtype: torch.dtype, shape, compile_baseline: bool) -> None:
    B, H, W, C = shape
    ws = WINDOW_SIZE
    x = torch.randn(shape, device=device, dtype=dtype)
    windows = reference.window_partition(x, ws, SHIFT)
    nbytes = 2 * x.numel() * x.element_size()
    cases = {
        "window_partition": (x, lambda f: f(x, ws, SHIFT)),
        "window_reverse": (windows, lambda f: f(windows, ws, H, W, SHIFT)),
    }
    for op, (first, call) in cases.items():
        eager = getattr(reference, op)
        copy_target = torch.empty_like(first)
        providers = {"copy": lambda: copy_target.copy_(first), "reference": lambda: call(eager)}
        if compile_baseline:
            torch._dynamo.reset()
            compiled = torch.compile(eager, dynamic=False)
            providers["compile"] = lambda: call(compiled)
        for backend in utils.kernel_providers(op, device):
            ours = getattr(sk, op)
            with sk.use_backend(backend):
                assert torch.equal(call(ours), call(eager)), f"{backend} {op} differs from the reference"
            providers[backend] = lambda backend=backend: _with_backend(backend, call, ours)
        case_rows = utils.compare_providers(
            op, "forward", dtype, "x".join(map(str, shape)), nbytes, providers, device, **utils.MEMORY_BOUND_TIMING
        )
        utils.print_rows(case_rows)
        rows += case_rows


def _with_backend(backend, call, op):
    with sk.use_backend(backend):
        return call(op)


def main() -> None:
    args = utils.memory_bound_args(__doc__)
    on_gpu = args.device == "cuda"
    rows: list[dict] = []
    for dtype in GPU_DTYPES if on_gpu else CPU_DTYPES:
        for shape in GPU_SHAPES if on_gpu else CPU_SHAPES:
            run_case(rows, args.device, dtype, shape, compile_baseline=not args.no_compile)
    if not args.no_csv:
        print("appended to", utils.append_csv(rows, args.device))


if __name__ == "__main__":
    main()

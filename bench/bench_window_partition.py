"""Benchmark window_partition / window_reverse (cyclic shift fused) against eager PyTorch, its
torch.compile, and a plain copy of the same bytes (the bandwidth ceiling).

Bytes moved = read + write of the tensor = 2 * numel * element size, for every provider, so GB/s is
comparable across them. Providers: copy (dst.copy_(src)), reference (eager: roll + view + permute +
contiguous), compile (torch.compile of the eager code), then ours: cpu on CPU; cuda/triton on a GPU.

    python bench/bench_window_partition.py                  # CPU table, 2 threads
    python bench/bench_window_partition.py --device cuda    # SwinIR shapes on the GPU
"""

import argparse

import torch

import swinir_kernels as sk
from swinir_kernels import reference

try:
    from _perm_utils import Table, kernel_providers
except ImportError:  # run as a module: python -m bench.bench_window_partition
    from bench._perm_utils import Table, kernel_providers

# (B, H, W, C): classical SwinIR (C=180) inference at 256x256 LR and a training batch of 64x64 patches.
GPU_SHAPES = [(1, 256, 256, 180), (32, 64, 64, 180)]
GPU_DTYPES = [torch.float32, torch.float16]
# Smaller on CPU so the whole table takes < 1 min on 2 threads.
CPU_SHAPES = [(1, 128, 128, 180), (8, 64, 64, 60)]
CPU_DTYPES = [torch.float32]
WINDOW_SIZE, SHIFT = 8, 4


def run_case(table: Table, device: str, dtype: torch.dtype, shape, compile_baseline: bool) -> None:
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
        for backend in kernel_providers(op, device):
            ours = getattr(sk, op)
            with sk.use_backend(backend):
                assert torch.equal(call(ours), call(eager)), f"{backend} {op} differs from the reference"
            providers[backend] = lambda backend=backend: _with_backend(backend, call, ours)
        table.compare(op, "forward", dtype, shape, nbytes, providers)


def _with_backend(backend, call, op):
    with sk.use_backend(backend):
        return call(op)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--no-csv", action="store_true", help="print only, do not append to bench/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    on_gpu = args.device == "cuda"
    table = Table(args.device)
    for dtype in GPU_DTYPES if on_gpu else CPU_DTYPES:
        for shape in GPU_SHAPES if on_gpu else CPU_SHAPES:
            run_case(table, args.device, dtype, shape, compile_baseline=not args.no_compile)
    if not args.no_csv:
        print("appended to", table.append_csv())


if __name__ == "__main__":
    main()

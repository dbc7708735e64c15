"""Profile one SwinIR forward with torch.profiler and group the time by op class.

    python -m bench.profile_swinir --preset classical_sr_x4 --size 256 --dtype bf16   # on a GPU
    python -m bench.profile_swinir --size 32 --dtype fp32 --providers cpu reference   # CPU, no compile

For each provider, an explicit backend (never 'auto', whose choice changes as backends get verified):
ours (cuda and triton on a GPU, cpu on a CPU), the reference path (backend 'reference') and
torch.compile of it ('reference-compiled'), prints the time per class (GEMMs, convs, attention,
LayerNorm, GELU, copies, elementwise, other) and the number of kernel launches (GPU) or operator
calls (CPU), and appends the rows to <results-dir>/profile_<device>.csv.
"""

import argparse
import csv
import datetime
import os
import re
import sys

import torch
from torch.profiler import ProfilerActivity, profile
import swinir

try:
    from bench.bench_swinir import PROVIDERS, available_providers
    from bench.utils import git_commit
except ImportError:  # run as a module: python -m bench.profile_swinir
    from bench.bench_swinir import PROVIDERS, available_providers
    from bench.utils import git_commit

# Ordered: the first pattern that matches a kernel/op name gives its class.
OP_CLASSES = [
    ("attention", r"swinir_kernels|window_attention|softmax|_attention"),
    ("gemm", r"gemm|matmul|addmm|\bmm\b|bmm|linear|cutlass|xmma|sm\d+_"),
    ("conv", r"conv|cudnn|winograd|implicit_convolve"),
    ("layernorm", r"layer_norm|layernorm"),
    ("gelu", r"gelu"),
    ("copies", r"copy|contiguous|roll|permute|clone|cat|index|gather|pixel_shuffle|reflection_pad|pad|elementwise_kernel_with_index"),
    ("elementwise", r"add|mul|div|sub|fill|leaky|elementwise|vectorized"),
]


def op_class(name: str) -> str:
    lowered = name.lower()
    for label, pattern in OP_CLASSES:
        if re.search(pattern, lowered):
            return label
    return "other"


def profile_forward(model, x, dtype, device):
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), autocast:
        model(x)  # warm-up (compiles Triton kernels, fills caches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
    totals: dict[str, list[float]] = {}
    for event in prof.key_averages():
        if device.type == "cuda":
            # Device kernels only: their self device time, one launch per call.
            if event.device_type != torch.autograd.DeviceType.CUDA or event.self_device_time_total <= 0:
                continue
            time_us = event.self_device_time_total
        else:
            if not event.key.startswith(("aten::", "swinir_kernels::")) or event.self_cpu_time_total <= 0:
                continue
            time_us = event.self_cpu_time_total
        row = totals.setdefault(op_class(event.key), [0.0, 0])
        row[0] += time_us / 1000.0
        row[1] += event.count
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="classical_sr_x4")
    parser.add_argument("--size", type=int, default=None, help="LR input side (default 256 on GPU, 32 on CPU)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--results-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS,
                        help="backends to profile (default: every one that can run here)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size = args.size or (256 if device.type == "cuda" else 32)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    weights = swinir.build(args.preset).state_dict()
    x = torch.rand(1, swinir.PRESETS[args.preset].kwargs["in_chans"], size, size, device=device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    commit = git_commit()
    rows = []
    for path in available_providers(device.type, args.providers):
        backend = "reference" if path.startswith("reference") else path
        model = swinir.build(args.preset, backend=backend).to(device).eval()
        model.load_state_dict(weights)
        if path == "reference-compiled":
            model = torch.compile(model)
        totals = profile_forward(model, x, dtype, device)
        total_ms = sum(t for t, _ in totals.values())
        launches = sum(n for _, n in totals.values())
        print(f"\n{path} ({args.preset}, {size}x{size}, {args.dtype}, {device_name}): {total_ms:.2f} ms, {launches} launches/calls")
        for label, (ms, count) in sorted(totals.items(), key=lambda item: -item[1][0]):
            print(f"  {label:12s} {ms:9.3f} ms {100 * ms / max(total_ms, 1e-9):5.1f}%  {count:6d}")
            rows.append([args.preset, path, args.dtype, f"{size}x{size}", label, f"{ms:.4f}", count, device_name,
                         torch.__version__, commit, datetime.date.today().isoformat()])
    os.makedirs(args.results_dir, exist_ok=True)
    out = os.path.join(args.results_dir, f"profile_{re.sub(r'[^A-Za-z0-9]+', '-', device_name).strip('-')}.csv")
    new = not os.path.exists(out)
    with open(out, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["preset", "path", "dtype", "shape", "op_class", "ms", "launches", "device", "torch", "commit", "date"])
        writer.writerows(rows)
    print(f"\nrows appended to {out}")


if __name__ == "__main__":
    main()

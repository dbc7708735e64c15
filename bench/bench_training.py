"""One training step (forward + L1 loss + backward + Adam step, the `swinir train` recipe) of our model
on the fused ops next to the same model on the plain-PyTorch reference path (backend 'reference'):
same random weights, same batch, one run, median step time and peak memory.

Cases: classical SR x2 (SwinIR-M) and lightweight SR x2 (SwinIR-S), full-size presets, random weights.
The GPU default is the target case of the training issue, a batch of 32 LR patches of 64x64 (target:
ours >= 2x faster with <= 1/2 the peak memory of the reference). On the CPU a step of that size takes
minutes, so the CPU default is batch 2 x 32x32 (``--batch``/``--size`` change both).

Peak memory: CUDA ``max_memory_allocated`` growth over one step; on the CPU the growth of the
process's peak resident set over one step (bench/utils.py), which misses memory glibc reuses, so read
CPU memory rows as lower bounds. Rows go to bench/results/<device>.csv (op ``train_step_<preset>``,
mode ``fwd+bwd+adam``; gb_s empty).

    python -m bench.bench_training                                   # CPU rows
    python -m bench.bench_training --device cuda --dtype bfloat16 --ours-backend triton
    python -m bench.bench_training --device cuda --ours-backend cuda --grad-checkpoint
"""

import argparse
import contextlib
import os
import sys

import torch
import swinir
from swinir.losses import l1_loss

try:
    from bench.utils import append_csv, device_name, git_commit, median_call_ms, model_row, peak_memory_mb, peak_rss_growth_mb
except ImportError:  # run as a module: python -m bench.bench_training
    from bench.utils import (append_csv, device_name, git_commit, median_call_ms, model_row, peak_memory_mb,
                             peak_rss_growth_mb)

CASES = ("classical_sr_x2", "lightweight_sr_x2")


def make_step(model, x, y, dtype: torch.dtype):
    """A closure running one training step of ``model`` on (x, y) with Adam (betas 0.9/0.99, lr 2e-4)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    def autocast():
        return torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

    def step():
        with autocast():
            loss = l1_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="autocast dtype (weights and the residual stream stay fp32)")
    parser.add_argument("--batch", type=int, help="patches per step (default 32 on GPU, 2 on CPU)")
    parser.add_argument("--size", type=int, help="LR patch side (default 64 on GPU, 32 on CPU)")
    parser.add_argument("--ours-backend", default="auto",
                        help="swinir_kernels backend of our model (auto picks the C++ kernels on the CPU; on a GPU "
                             "pass triton or cuda until a GPU backend is verified and joins auto)")
    parser.add_argument("--grad-checkpoint", action="store_true", help="activation checkpointing in both models")
    parser.add_argument("--repeats", type=int, help="timed steps per provider (default 3 on CPU, 10 on GPU)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args(argv)

    cpu = args.device == "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, size = args.batch or (2 if cpu else 32), args.size or (32 if cpu else 64)
    repeats = args.repeats or (3 if cpu else 10)
    dtype = getattr(torch, args.dtype)
    commit, device_label = git_commit(), device_name(args.device)
    rows = []
    for preset in args.cases:
        scale = swinir.PRESETS[preset].scale
        torch.manual_seed(0)
        x = torch.rand(batch, 3, size, size, device=args.device)
        y = torch.rand(batch, 3, size * scale, size * scale, device=args.device)
        weights, results = None, {}
        for provider, backend in ((f"swinir[{args.ours_backend}]", args.ours_backend), ("reference", "reference")):
            model = swinir.build(preset, backend=backend, use_checkpoint=args.grad_checkpoint).to(args.device).train()
            weights = weights or {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(weights)
            step = make_step(model, x, y, dtype)
            ms = median_call_ms(step, args.device, repeats, warmup=1 if cpu else 3)
            peak = peak_rss_growth_mb(step) if cpu else peak_memory_mb(step, args.device)
            results[provider] = (ms, peak)
            del model, step
            if not cpu:
                torch.cuda.empty_cache()
        reference_ms, reference_peak = results["reference"]
        for provider, (ms, peak) in results.items():
            shape = f"{batch}x3x{size}x{size}"
            rows.append(model_row(f"train_step_{preset}", provider, "fwd+bwd+adam", args.dtype, shape, ms, reference_ms,
                                  peak, device_label, commit))
            memory = f"peak {peak:.0f} MB" + (f" ({peak / reference_peak:.2f} of reference)" if peak and reference_peak else "") \
                if peak is not None else "peak -"
            print(f"{preset:18s} {provider:16s} {shape} {args.dtype}: {ms:9.1f} ms/step  "
                  f"x{reference_ms / ms:.2f} vs reference  {memory}", flush=True)
    if not args.no_save and rows:
        print(f"appended {len(rows)} rows to {append_csv(rows, device_label)}")
    return rows


if __name__ == "__main__":
    main()

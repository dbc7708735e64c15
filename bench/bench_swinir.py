"""End-to-end SwinIR forward, one row per explicit backend: the same random weights and input through
the model built with each of our backends (cuda, triton on a GPU; cpu on a CPU), the plain-PyTorch
reference path (backend 'reference') and torch.compile of that reference model. Never 'auto': what
it picks changes as backends get verified, and a row must say what it timed.

Cases: classical SR x4 and lightweight SR x4 at 256x256, colour denoising at 512x512 (full-size
presets, random weights). ``--quick`` (the default on CPU) shrinks the inputs to 32/32/64 so a CPU run
takes a few minutes; ``--size`` sets one size for all cases.

Per row: median forward latency over ``--repeats`` runs after a warm-up (on a GPU each run is
bracketed by synchronisations: a whole forward is milliseconds, so their microseconds do not count);
peak memory of one forward (CUDA ``max_memory_allocated``, CPU the growth of the peak resident set).
Rows are appended to bench/results/<device>.csv with the project's columns (gb_s is left empty: a
model has no single byte count).

This stays a script rather than a pytest-benchmark module: each row builds (and for
reference-compiled, compiles: minutes on a GPU for a full-size model) a whole model, so a run is a
handful of long calls that gpu_check.sh sizes per dtype, and users have ``swinir bench`` for the
same comparison on their own sizes.

    python -m bench.bench_swinir --quick --providers cpu reference    # CPU, a few minutes (compiling adds more)
    python -m bench.bench_swinir --device cuda --dtype bfloat16 --providers cuda triton reference
"""

import argparse
import functools
import os
import sys

import torch
import swinir
from swinir_kernels import registry

try:
    from bench.utils import (OURS, append_csv, device_name, git_commit, median_call_ms, model_row, peak_memory_mb,
                       peak_rss_growth_mb)
except ImportError:  # run as a module: python -m bench.bench_swinir
    from bench.utils import (OURS, append_csv, device_name, git_commit, median_call_ms, model_row, peak_memory_mb,
                             peak_rss_growth_mb)

CASES = (("classical_sr_x4", 256, 32), ("lightweight_sr_x4", 256, 32), ("color_dn_25", 512, 64))  # preset, size, quick size
PROVIDERS = (*OURS, "reference", "reference-compiled")


def available_providers(device: str, requested) -> list[str]:
    """The requested providers that can run on `device` (ours: when the backend chooser says so for the
    attention; the others always), printing why each other one is left out."""
    probe = torch.empty(1, device=device)
    chosen = []
    for provider in requested:
        why_not = registry.get("shifted_window_attention").cannot_run(provider, probe) if provider in OURS else None
        if provider == "triton" and device == "cpu" and why_not is None:
            why_not = "the Triton interpreter is not a benchmark"
        if why_not is None:
            chosen.append(provider)
        else:
            print(f"skipping {provider}: {why_not}")
    return chosen


def build(preset: str, provider: str, weights, device: str, dtype: torch.dtype):
    backend = "reference" if provider.startswith("reference") else provider
    model = swinir.build(preset, backend=backend).eval().to(device, dtype)
    model.load_state_dict(weights)
    return torch.compile(model) if provider == "reference-compiled" else model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--quick", action="store_true", help="small inputs (default on CPU)")
    parser.add_argument("--size", type=int, help="one input size (pixels per side) for all cases")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--cases", nargs="*", default=[c[0] for c in CASES], help="presets to run")
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS,
                        help="backends to time (default: every one that can run here)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args(argv)

    cpu = args.device == "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick or cpu
    repeats = args.repeats or (3 if cpu else 20)
    dtype = getattr(torch, args.dtype)
    providers = available_providers(args.device, args.providers)
    commit, device_label = git_commit(), device_name(args.device)
    rows = []
    for preset, size, quick_size in CASES:
        if preset not in args.cases:
            continue
        side = args.size or (quick_size if quick else size)
        torch.manual_seed(0)
        weights = swinir.build(preset).state_dict()
        x = torch.rand(1, swinir.PRESETS[preset].kwargs["in_chans"], side, side, device=args.device, dtype=dtype)
        results = {}
        with torch.no_grad():
            for provider in providers:
                forward = functools.partial(build(preset, provider, weights, args.device, dtype), x)
                ms = median_call_ms(forward, args.device, repeats, warmup=1 if cpu else 3)
                peak = peak_rss_growth_mb(forward) if cpu else peak_memory_mb(forward, args.device)
                results[provider] = (ms, peak)
                del forward
        reference_ms = results.get("reference", (None,))[0]
        for provider, (ms, peak) in results.items():
            rows.append(model_row(f"swinir_{preset}", provider, "forward", args.dtype, "x".join(map(str, x.shape)), ms,
                                  reference_ms, peak, device_label, commit))
            speedup = rows[-1]["speedup_vs_reference"]
            print(f"{preset:20s} {provider:18s} {side}x{side} {args.dtype}: {ms:9.2f} ms  "
                  f"x{speedup or '-'} vs reference  peak {rows[-1]['peak_mb'] or '-'} MB", flush=True)
    if not args.no_save and rows:
        print(f"appended {len(rows)} rows to {append_csv(rows, device_label)}")
    return rows


if __name__ == "__main__":
    main()

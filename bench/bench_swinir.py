"""End-to-end SwinIR forward: our model on the fused ops (backend 'auto') next to the same model on
the plain-PyTorch reference path (backend 'reference'), same random weights and input, one run.

Cases: classical SR x4 and lightweight SR x4 at 256x256, colour denoising at 512x512 (full-size
presets, random weights). ``--quick`` (the default on CPU) shrinks the inputs to 32/32/64 so a CPU run
takes a few minutes; ``--size`` sets one size for all cases.

Per row: median forward latency over ``--repeats`` runs after a warm-up; peak memory of one forward
(bench/utils.py: CUDA ``max_memory_allocated``, CPU the growth of the peak resident set). Rows are appended to
bench/results/<device>.csv with the project's columns (gb_s is left empty: an end-to-end model has no
single byte count).

    python bench/bench_swinir.py --quick
    python bench/bench_swinir.py --device cuda --dtype bfloat16
"""

import argparse
import os
import sys

import torch

# Run from a checkout without installing: import the packages next to bench/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import swinir  # noqa: E402

try:
    from utils import append_csv, median_ms, peak_memory_mb, peak_rss_growth_mb, row
except ImportError:  # run as a module: python -m bench.bench_swinir
    from bench.utils import append_csv, median_ms, peak_memory_mb, peak_rss_growth_mb, row

CASES = (("classical_sr_x4", 256, 32), ("lightweight_sr_x4", 256, 32), ("color_dn_25", 512, 64))  # preset, size, quick size
PROVIDERS = (("swinir", "auto"), ("reference", "reference"))  # provider name, SwinIR backend


def measure(model, x, repeats: int, warmup: int) -> tuple[float, float | None]:
    """(median ms, peak MB of one call) of ``model(x)`` under no_grad, warm-up excluded."""
    device = str(x.device)
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        ms = median_ms({"model": lambda: model(x)}, device, warmup=0, repeats=repeats)["model"]
        if x.device.type == "cpu":
            return ms, peak_rss_growth_mb(lambda: model(x))
        return ms, peak_memory_mb(lambda: model(x), device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--quick", action="store_true", help="small inputs (default on CPU)")
    parser.add_argument("--size", type=int, help="one input size (pixels per side) for all cases")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--cases", nargs="*", default=[c[0] for c in CASES], help="presets to run")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args(argv)

    cpu = args.device == "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick or cpu
    repeats = args.repeats or (3 if cpu else 20)
    dtype = getattr(torch, args.dtype)
    rows = []
    for preset, size, quick_size in CASES:
        if preset not in args.cases:
            continue
        side = args.size or (quick_size if quick else size)
        torch.manual_seed(0)
        in_chans = swinir.PRESETS[preset].kwargs["in_chans"]
        x = torch.rand(1, in_chans, side, side, device=args.device, dtype=dtype)
        weights = None
        results = {}
        for provider, backend in PROVIDERS:
            model = swinir.build(preset, backend=backend).eval().to(args.device, dtype)
            if weights is None:
                weights = model.state_dict()
            model.load_state_dict(weights)
            results[provider] = measure(model, x, repeats, warmup=1 if cpu else 3)
            del model
        reference_ms = results["reference"][0]
        for provider, (ms, peak_mb) in results.items():
            shape = f"1x{in_chans}x{side}x{side}"
            rows.append(row(f"swinir_{preset}", provider, "forward", args.dtype, shape, ms, None, reference_ms,
                            peak_mb, args.device))  # fmt: skip
            print(f"{preset:20s} {provider:10s} {side}x{side} {args.dtype}: {ms:9.2f} ms  "
                  f"x{reference_ms / ms:.2f} vs reference  peak {rows[-1]['peak_mb'] or '-'} MB", flush=True)
    if not args.no_save and rows:
        print(f"appended {len(rows)} rows to {append_csv(rows, args.device)}")
    return rows


if __name__ == "__main__":
    main()

"""Opt-in tuning of the Triton attention kernels' launch configurations on a GPU: times every candidate
(warps x stages) of the forward and the backward kernel at one shape and writes the fastest per kernel
specialization into a JSON table (merged into an existing one). Nothing reads the table unless
SWINIR_KERNELS_TRITON_CONFIGS names it (see swinir_kernels/triton/launch_configs.py).

    python -m swinir_kernels.triton.tune configs.json --batch 1 --height 256 --width 256 \\
        --channels 180 --heads 6 --window-size 8 --shift 4 --dtype bfloat16
    SWINIR_KERNELS_TRITON_CONFIGS=configs.json python my_training.py
"""

import argparse
import json
import os

import torch

from . import launch_configs
from .window_attention import _shifted_window_attention, _shifted_window_attention_backward

CANDIDATES = [{"num_warps": warps, "num_stages": stages} for warps in (2, 4, 8) for stages in (1, 2)]


def _time_candidates(kernel: str, call) -> dict:
    """{table key: fastest config} for the specializations `call` launches of `kernel`."""
    import triton.testing

    best: dict[str, tuple[float, dict]] = {}
    for config in CANDIDATES:
        launch_configs._forced[kernel] = config
        launch_configs._forced_keys.pop(kernel, None)
        try:
            milliseconds = triton.testing.do_bench(call)
        except Exception as error:  # a candidate that does not compile (e.g. out of shared memory) loses
            print(f"{kernel} {config}: {type(error).__name__}: {error}")
            continue
        finally:
            launch_configs._forced.pop(kernel, None)
        print(f"{kernel} {config}: {milliseconds * 1e3:.1f} us")
        for key in launch_configs._forced_keys.get(kernel, ()):
            if key not in best or milliseconds < best[key][0]:
                best[key] = (milliseconds, config)
    return {key: config for key, (_, config) in best.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="JSON file to write (entries are merged into an existing file)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--channels", type=int, default=180)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--window-size", type=int, default=8)
    parser.add_argument("--shift", type=int, default=4)
    parser.add_argument("--dtype", default="bfloat16", choices=["float16", "bfloat16", "float32", "float64"])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("tuning times kernels on a GPU; no CUDA device is available")
    dtype = getattr(torch, args.dtype)
    qkv = torch.randn(args.batch, args.height, args.width, 3 * args.channels, device="cuda", dtype=dtype)
    bias = torch.randn(args.heads, args.window_size**2, args.window_size**2, device="cuda", dtype=dtype)
    grad_out = torch.randn(*qkv.shape[:-1], args.channels, device="cuda", dtype=dtype)
    scale = (args.channels // args.heads) ** -0.5
    geometry = (args.heads, args.window_size, args.shift, scale)
    table = {}
    if os.path.exists(args.table):
        with open(args.table) as file:
            table = json.load(file)
    table.update(_time_candidates("_window_attention_fwd_kernel", lambda: _shifted_window_attention(qkv, bias, *geometry)))
    table.update(
        _time_candidates(
            "_window_attention_bwd_kernel", lambda: _shifted_window_attention_backward(grad_out, qkv, bias, *geometry)
        )
    )
    with open(args.table + ".tmp", "w") as file:
        json.dump(table, file, indent=1, sort_keys=True)
    os.replace(args.table + ".tmp", args.table)
    print(f"wrote {len(table)} entries to {args.table}")


if __name__ == "__main__":
    main()

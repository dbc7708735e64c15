"""A small SwinIR trained, then fine-tuned, with `swinir train` on the CPU, its validation PSNR on
held-out Set5 (x2, bicubic inputs as `swinir degrade` makes them) recorded as it rises.

Phase "scratch": a lightweight-style x2 model (embed 30, 2 groups of 2 blocks, 3 heads, window 8)
from random weights on the 18 McMaster images (500x500, colour), patches 32 (LR), batch 8.
Phase "finetune": `--init` the first phase's model.pth, a lower learning rate, the same data.
Both validate the EMA weights on Set5 (never trained on) every ``--val-every`` steps. The bicubic
x2 baseline of the same pipeline is in every row. Rows (one per validation) are appended to
bench/results/train-finetune-<device>.csv with the exact commands, the commit and the date.

    python -m bench.bench_training_finetune                   # ~20 minutes on 2 busy CPU cores
"""

import argparse
import csv
import datetime
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from swinir import degrade, imageio, metrics

try:
    from bench.utils import DEFAULT_RESULTS_DIR, device_name, git_commit
except ImportError:  # run as a module: python -m bench.bench_training_finetune
    from bench.utils import DEFAULT_RESULTS_DIR, device_name, git_commit

ARCH = ["upscale=2", "upsampler=pixelshuffledirect", "embed_dim=30", "depths=[2,2]", "num_heads=[3,3]",
        "window_size=8", "img_size=32", "mlp_ratio=2.0", "drop_path_rate=0"]
COLUMNS = ("phase", "step", "psnr", "ssim", "psnr_y", "ssim_y", "bicubic_psnr", "bicubic_psnr_y", "minutes",
           "command", "device", "torch", "commit", "date")


def bicubic_baseline(val: str) -> tuple[float, float]:
    """Mean PSNR / PSNR_Y (border 2) of Pillow-bicubic x2 upscaling of `swinir degrade --scale 2` inputs."""
    psnrs, psnrs_y = [], []
    for path in sorted(glob.glob(os.path.join(val, "*.png"))):
        hr = imageio.read_image(path).pixels
        lr = imageio.quantize(degrade.bicubic_downscale(hr, 2), 8).astype(np.float32) / 255.0
        height, width = lr.shape[0] * 2, lr.shape[1] * 2
        up = np.stack([degrade.resize_plane(lr[..., c], height, width) for c in range(lr.shape[2])], axis=-1)
        output, truth = imageio.quantize(up, 8), imageio.quantize(hr, 8)[:height, :width]
        psnrs.append(metrics.psnr(output, truth, 2))
        psnrs_y.append(metrics.psnr(output, truth, 2, y_channel=True))
    return float(np.mean(psnrs)), float(np.mean(psnrs_y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testsets", help="the shared test images (default: $SWINIR_TESTSETS or ../shared/data/testsets)",
                        default=os.environ.get("SWINIR_TESTSETS", os.path.join(ROOT, "..", "shared", "data", "testsets")))
    parser.add_argument("--steps", type=int, nargs=2, default=(800, 400), metavar=("SCRATCH", "FINETUNE"))
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)

    train_images = sorted(glob.glob(os.path.join(args.testsets, "McMaster", "*.tif")))
    val = os.path.join(args.testsets, "Set5", "HR")
    if not train_images or not os.path.isdir(val):
        sys.exit(f"bench_training_finetune: needs {args.testsets}/McMaster and Set5/HR (set --testsets)")
    out = args.out or tempfile.mkdtemp(prefix="swinir-finetune-")
    hr = os.path.join(out, "hr")
    os.makedirs(hr, exist_ok=True)
    for path in train_images:  # the training folder: links, the shared images stay where they are
        link = os.path.join(hr, os.path.basename(path))
        if not os.path.exists(link):
            os.symlink(os.path.abspath(path), link)
    common = ["--hr", hr, "--val", val, "--patch", "32", "--batch", "8", "--ema-decay", "0.99", "--val-every",
              str(args.val_every), "--save-every", "200", "--workers", "1"]
    phases = [
        ("scratch", ["--arch", *ARCH, "--steps", str(args.steps[0]), "--learning-rate", "5e-4"]),
        ("finetune", ["--init", os.path.join(out, "scratch", "model.pth"), "--arch", "drop_path_rate=0",
                      "--steps", str(args.steps[1]), "--learning-rate", "2e-4"]),
    ]
    bicubic = bicubic_baseline(val)
    print(f"bicubic x2 on Set5: PSNR {bicubic[0]:.3f} dB, PSNR_Y {bicubic[1]:.3f} dB")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    results = os.path.join(os.environ.get("SWINIR_BENCH_RESULTS_DIR", DEFAULT_RESULTS_DIR),
                           f"train-finetune-{device_name('cpu')}.csv")
    stamp = dict(device=device_name("cpu"), torch=torch.__version__, commit=git_commit(),
                 date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"))
    for phase, options in phases:
        command = [sys.executable, "-m", "swinir", "train", *common, *options, "--out", os.path.join(out, phase), "-q"]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        minutes = (time.perf_counter() - start) / 60
        shown = "OMP_NUM_THREADS=1 swinir train " + " ".join(command[4:]).replace(out, "RUN")
        with open(os.path.join(out, phase, "val.csv")) as handle:
            rows = [dict(row, phase=phase, bicubic_psnr=f"{bicubic[0]:.4f}", bicubic_psnr_y=f"{bicubic[1]:.4f}",
                         minutes=f"{minutes:.1f}", command=shown, **stamp) for row in csv.DictReader(handle)]
        for row in rows:
            print(f"{phase:8s} step {row['step']:>4}: PSNR {float(row['psnr']):.3f} dB, PSNR_Y {float(row['psnr_y']):.3f} dB")
        new = not os.path.exists(results)
        os.makedirs(os.path.dirname(results), exist_ok=True)
        with open(results, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
    print(f"appended the rows to {results}")


if __name__ == "__main__":
    main()

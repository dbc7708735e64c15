"""Training helpers: losses, and a small runnable example.

    python -m swinir.training --preset lightweight_sr_x2 --steps 300

trains a small model of the preset's kind on random patches of the Set5 HR images (bicubic
downscaled with Pillow) and prints the loss as it falls.
"""

import argparse
import glob
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .presets import PRESETS, build

__all__ = ["charbonnier_loss", "l1_loss", "PatchDataset", "train"]

# The project's shared test images (next to the checkout); $SWINIR_TESTSETS points elsewhere.
TESTSETS = os.environ.get("SWINIR_TESTSETS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "testsets"))
DEFAULT_IMAGES = os.path.join(TESTSETS, "Set5", "HR")
SMALL = dict(embed_dim=24, depths=[2, 2], num_heads=[2, 2], window_size=8, img_size=32)


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)), the loss of SwinIR's denoising / JPEG models (eps 1e-3)."""
    diff = pred.float() - target.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |pred - target|, the loss of the SR models."""
    return F.l1_loss(pred.float(), target.float())


class PatchDataset:
    """Random (low-quality, high-quality) patch pairs cut from a folder of images.

    scale > 1: HQ patch of size patch*scale, LQ = its bicubic (Pillow, antialiased) downscale;
    scale == 1: LQ = HQ + Gaussian noise of sigma/255 (denoising). Images are float in [0, 1], CHW.
    """

    def __init__(self, folder: str, scale: int, patch: int, in_chans: int = 3, sigma: float = 25.0, seed: int = 0):
        paths = sorted(glob.glob(os.path.join(folder, "*.png")))
        if not paths:
            raise FileNotFoundError(f"folder: no .png images in {folder!r}")
        mode = "RGB" if in_chans == 3 else "L"
        self.images = [Image.open(path).convert(mode) for path in paths]
        self.scale, self.patch, self.sigma = scale, patch, sigma
        self.rng = random.Random(seed)

    @staticmethod
    def _tensor(image: Image.Image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        lq, hq = [], []
        size = self.patch * self.scale
        for _ in range(batch):
            image = self.rng.choice(self.images)
            left = self.rng.randrange(image.width - size + 1)
            top = self.rng.randrange(image.height - size + 1)
            crop = image.crop((left, top, left + size, top + size))
            hq.append(self._tensor(crop))
            if self.scale > 1:
                lq.append(self._tensor(crop.resize((self.patch, self.patch), Image.BICUBIC)))
            else:
                lq.append(hq[-1] + torch.randn_like(hq[-1]) * (self.sigma / 255.0))
        return torch.stack(lq), torch.stack(hq)


def train(model, data: PatchDataset, steps: int, batch: int = 4, lr: float = 2e-3, loss_fn=l1_loss, log_every: int = 25):
    """Adam on (model(lq), hq); returns the list of per-step losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    model.train()
    losses = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        lq, hq = data.sample(batch)
        loss = loss_fn(model(lq), hq)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == 1):
            recent = losses[-log_every:]
            print(f"step {step:5d}  loss {sum(recent) / len(recent):.5f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="lightweight_sr_x2", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=32, help="LQ patch size")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="folder of HR .png images")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest for this small model on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    preset = PRESETS[args.preset]
    model = build(args.preset, **SMALL, img_range=1.0)
    data = PatchDataset(args.images, preset.scale, args.patch, preset.kwargs["in_chans"], sigma=preset.level or 25)
    loss_fn = l1_loss if preset.scale > 1 else charbonnier_loss
    print(f"{args.preset}: small model {sum(p.numel() for p in model.parameters()):,} params, {SMALL}")
    losses = train(model, data, args.steps, args.batch, args.lr, loss_fn, args.log_every)
    window = max(1, min(25, len(losses) // 4))
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"loss {first:.5f} -> {last:.5f} (mean of the first / last {window} steps)")
    return losses


if __name__ == "__main__":
    main()

"""Validation: the numbers ``swinir degrade`` + ``swinir restore`` + ``swinir eval`` give for the EMA
weights (the same degradation, the same quantisation of the written file, the same scores)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import distributed, imageio, metrics
from .data import Degradation, chw, degrade_like_cli, list_images, model_channels, paired_lr
from .options import TrainError, TrainOptions

__all__ = ["ValImage", "load_validation", "scores", "score_images", "SCORE_NAMES"]

SCORE_NAMES = ("psnr", "ssim", "psnr_y", "ssim_y")


@dataclasses.dataclass
class ValImage:
    lq: torch.Tensor  # (1, C, h, w)
    truth: np.ndarray  # (H, W, C) on the 0..255 scale, as `swinir eval` reads the ground truth
    bit_depth: int  # of the restored file `swinir restore` would write


def load_validation(options: TrainOptions, degradation: Degradation, in_chans: int) -> list[ValImage]:
    hr_paths = list_images(options.val, "--val")
    lr_paths = paired_lr(hr_paths, options.val_lr, degradation.scale) if options.val_lr else None
    if degradation.kind == "paired" and lr_paths is None:
        raise TrainError("--val-lr: needed with --lr (the validation LR images to pair with --val)")
    studio = degradation.kind == "jpeg"
    images = []
    for index, path in enumerate(hr_paths):
        try:
            hr = imageio.read_image(path)
            truth = model_channels(hr, in_chans, studio)
            if lr_paths is not None:
                lr = imageio.read_image(lr_paths[index])
                lq, bit_depth = model_channels(lr, in_chans, studio), lr.bit_depth
            else:
                level = degradation.validation_level
                lq, bit_depth = degrade_like_cli(truth, degradation, level, 0, hr.bit_depth), hr.bit_depth
                bit_depth = 8 if degradation.kind == "jpeg" else bit_depth
        except (imageio.ImageError, ValueError) as error:
            raise TrainError(f"--val {path}: {error}") from None
        images.append(ValImage(chw(lq)[None], imageio.on_255_scale(truth, hr.bit_depth), bit_depth))
    return images


def scores(restored: np.ndarray, image: ValImage, border: int) -> list[float]:
    """PSNR, SSIM, PSNR_Y, SSIM_Y of a (H, W, C) float32 output, written and read back as `swinir restore`
    and `swinir eval` do (quantised to the file's bit depth, ground truth cropped to the output)."""
    output = imageio.on_255_scale(imageio.round_trip(restored, image.bit_depth), image.bit_depth)
    return list(metrics.restoration_scores(output, image.truth, border))


def score_images(model, images: list[ValImage], context: distributed.Context, scale: int) -> dict:
    """The mean scores of ``model`` over ``images``, each process scoring its share (all processes get
    the means). The border is cropped as ``swinir eval --task classical_sr --scale s``; 0 for x1 models."""
    border = scale if scale > 1 else 0
    sums = [0.0] * (len(SCORE_NAMES) + 1)
    with torch.inference_mode():
        for image in images[context.rank::context.world_size]:
            restored = model(image.lq.to(context.device)).float().cpu()[0].permute(1, 2, 0).numpy()
            for i, value in enumerate(scores(restored, image, border)):
                sums[i] += value
            sums[-1] += 1
    sums = distributed.total(context, sums)
    return {name: sums[i] / sums[-1] for i, name in enumerate(SCORE_NAMES)}

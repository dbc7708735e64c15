"""The losses of the SwinIR paper: L1 for super-resolution, Charbonnier for denoising and JPEG."""

import torch
import torch.nn.functional as F

__all__ = ["charbonnier_loss", "l1_loss"]


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)), in fp32; the paper's denoising / JPEG loss (eps 1e-3)."""
    diff = pred.float() - target.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |pred - target|, in fp32; the loss of the SR models."""
    return F.l1_loss(pred.float(), target.float())

"""Training: losses, and a short run of the example trainer on real Set5 patches."""

import os

import pytest
import torch
from test_model import shared_testsets

import swinir
from swinir import training


def test_charbonnier_loss():
    pred, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(swinir.charbonnier_loss(pred, target), torch.tensor((0.25 + 1e-6) ** 0.5))
    assert swinir.charbonnier_loss(target, target, eps=1e-3).item() == pytest.approx(1e-3)
    pred.requires_grad_(True)
    swinir.charbonnier_loss(pred, target).backward()
    assert torch.all(pred.grad < 0)


def test_a_short_training_run_lowers_the_loss():
    folder = os.path.join(shared_testsets(), "Set5", "HR")
    if not os.path.isdir(folder):
        pytest.skip(f"no Set5 images under {folder} (set SWINIR_TESTSETS)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # op overhead dominates this tiny model; more threads only add sync cost
    try:
        losses = _train_30_steps(folder)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def _train_30_steps(folder):
    torch.manual_seed(0)
    model = swinir.build("lightweight_sr_x2", **training.SMALL)
    data = training.PatchDataset(folder, scale=2, patch=16)
    losses = training.train(model, data, steps=30, batch=4, lr=2e-3, log_every=0)
    assert all(p.grad is not None for p in model.parameters())
    return losses

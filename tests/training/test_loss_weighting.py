"""The training objective's noise-level weighting."""

import math

import pytest
import torch

from pnp_stable.training.config import TrainConfig
from pnp_stable.training.loop import denoising_loss


def test_uniform_weighting_is_the_batch_mse():
    output, clean = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    sigma = torch.tensor([0.02, 0.1, 0.19])
    loss = denoising_loss(output, clean, sigma, "uniform", (0.02, 0.2))
    assert torch.allclose(loss, ((output - clean) ** 2).mean())


def test_inverse_sigma_weights_each_patch_by_c_over_sigma():
    lo, hi = 5 / 255, 50 / 255
    clean = torch.zeros(2, 1, 4, 4)
    output = torch.ones(2, 1, 4, 4)  # per-patch MSE 1
    sigma = torch.tensor([lo, hi])
    c = (hi - lo) / math.log(hi / lo)
    expected = (c / lo + c / hi) / 2
    assert denoising_loss(output, clean, sigma, "inverse_sigma", (lo, hi)).item() == pytest.approx(expected)
    # the weights average 1 over sigma uniform in the range: same loss scale as plain MSE
    grid = torch.linspace(lo, hi, 100001)
    assert (c / grid).mean().item() == pytest.approx(1.0, rel=1e-4)
    # a patch at low noise pulls harder than the same error at high noise
    low_only = denoising_loss(output[:1], clean[:1], sigma[:1], "inverse_sigma", (lo, hi))
    high_only = denoising_loss(output[1:], clean[1:], sigma[1:], "inverse_sigma", (lo, hi))
    assert low_only.item() == pytest.approx(10 * high_only.item())


def test_inverse_sigma_at_a_fixed_sigma_is_plain_mse():
    output, clean = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    sigma = torch.full((2,), 0.1)
    weighted = denoising_loss(output, clean, sigma, "inverse_sigma", (0.1, 0.1))
    assert torch.allclose(weighted, ((output - clean) ** 2).mean())


def test_config_rejects_unknown_weighting_and_zero_sigma_min():
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(train_dirs=["x"], run_dir="r", loss_weighting="l1")
    with pytest.raises(ValueError, match="sigma_min > 0"):
        TrainConfig(train_dirs=["x"], run_dir="r", loss_weighting="inverse_sigma", sigma_min=0.0)


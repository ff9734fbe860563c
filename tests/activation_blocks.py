"""Certified blocks around a learned activation, shared by the activation tests (splines, group
shrinkage): the same block, the same certificate check, the same negative-control step, the same save/load
round trip."""

from __future__ import annotations

import torch
from torch import nn

from pnp_stable.denoisers import load, save_denoiser
from pnp_stable.layers import ConvMap, GradientFlowBlock
from pnp_stable.verification import empirical_averagedness_violation, empirical_lipschitz

from certificate_search import TOL


def block_with_activation(activation: nn.Module, scale: float = 1.5) -> GradientFlowBlock:
    """A float64 Euler block from 2 state channels into ``activation.channels`` potential channels,
    with weights scaled so that the adaptive rule needs several sub-steps, and random biases."""
    torch.manual_seed(0)
    linear = ConvMap(2, activation.channels, 3, power_size=8)
    with torch.no_grad():
        linear.weight.mul_(scale)
    block = GradientFlowBlock(linear, activation=activation, time=1.0).double().eval()
    with torch.no_grad():
        block.bias.normal_(0, 0.3)
    return block


def assert_block_keeps_its_certificate(block: GradientFlowBlock, shapes, search: dict) -> None:
    """The block's certificate (Lipschitz <= 1, averaged) survives random and adversarial search."""
    assert block.substeps() > 1
    cert = block.certificate()
    assert cert.averagedness is not None and cert.lipschitz <= 1
    for shape in shapes:
        lip = empirical_lipschitz(block, shape, **search)
        assert 0.5 < lip <= cert.lipschitz + TOL
        assert empirical_averagedness_violation(block, cert.averagedness, shape, **search) <= TOL


def single_admissible_step(block: GradientFlowBlock) -> GradientFlowBlock:
    """Pin the block to one step at the admissible size for a monotone 1-Lipschitz activation,
    ``h nu = 1.9``: an activation outside that class then shows as an expansive block."""
    block.fixed_substeps.fill_(1)
    block.time.fill_(1.9 / block.nu())
    return block


def saved_and_loaded(model: nn.Module, path) -> nn.Module:
    """``model`` (sub-steps frozen) through ``save_denoiser`` and ``load``, checked to give the
    same outputs in float64."""
    model.freeze_substeps()
    save_denoiser(model, path)
    again = load(path).double()
    x = torch.rand(1, 1, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(again(x, 0.1), model(x, 0.1), rtol=0, atol=1e-12)
    return again

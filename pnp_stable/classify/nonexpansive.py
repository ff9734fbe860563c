"""The certified classifier: every layer has a proven l2 Lipschitz constant, and so does the whole.

Layout: ``InputShift -> lift -> [gradient-flow blocks] -> NormalizedConv2d(stride 2) -> ... ->
Flatten (or norm-preserving pool) -> NormalizedLinear``. Each gradient-flow block
``x -> x - h A^T s(Ax + b)`` (:mod:`pnp_stable.layers.blocks`) is non-expansive by construction;
lift, transitions and head are normalised by certified norm bounds; shift, flatten and the
scaled pools are isometries or co-isometries. Unlike the paper's code, nothing is unconstrained.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pnp_stable.classify.certified_layers import (
    Flatten,
    InputShift,
    MaxMin,
    NormalizedConv2d,
    NormalizedLinear,
    NormPreservingGlobalPool,
)
from pnp_stable.classify.config import ClassifierConfig
from pnp_stable.layers import Certificate, CertifiedSequential, Lift, certify_layers, conv_block

__all__ = ["NonExpansiveClassifier"]


class NonExpansiveClassifier(nn.Module):
    """Logit map with a certified l2 Lipschitz bound (1 up to rounding) in evaluation mode.

    Guarantee: in eval mode, ``||f(x) - f(y)||_2 <= certified_lipschitz_bound() * ||x - y||_2`` for
    all inputs of any size the layout accepts. Assumes eval mode: in training mode the blocks
    choose sub-steps and the normalised layers their divisors from power *estimates*.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if config.architecture != "nonexpansive":
            raise ValueError(f"NonExpansiveClassifier needs architecture='nonexpansive', got {config.architecture!r}")
        self.config = config
        k = config.kernel_size
        layers: list[nn.Module] = [InputShift(config.input_mean)]
        if config.lift == "zero":
            layers.append(Lift(config.in_channels, config.widths[0]))
        else:
            layers.append(NormalizedConv2d(config.in_channels, config.widths[0], k))
        for stage, (width, n_blocks) in enumerate(zip(config.widths, config.blocks_per_stage)):
            if stage > 0:
                layers.append(NormalizedConv2d(config.widths[stage - 1], width, k, stride=2))
            if config.stage_activation == "maxmin":
                layers.append(MaxMin())
            for _ in range(n_blocks):
                layers.append(conv_block(width, config.hidden_multiplier * width, k,
                                         time=config.block_time, activation=config.activation,
                                         max_substeps=config.max_substeps))
        layers.append(NormPreservingGlobalPool() if config.head == "pool" else Flatten())
        layers.append(NormalizedLinear(config.head_features(), config.num_classes))
        self.layers = CertifiedSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def certificate(self) -> Certificate:
        """Composed certificate of the eval-mode network (per-layer provenance in ``details``)."""
        return self.layers.certificate()

    def certified_lipschitz_bound(self) -> float:
        """Proven upper bound on the l2 Lipschitz constant of the eval-mode logit map."""
        return self.certificate().lipschitz

    def certified_difference_lipschitz(self) -> torch.Tensor:
        """``C x C`` float64 matrix ``K``: ``K[i, j]`` bounds the l2 Lipschitz constant of ``f_i - f_j`` (eval mode).

        Guarantee: the head is linear, ``f = (W / s) g + b`` with ``g`` the rest of the network
        (certified bound ``L_g``) and ``s`` the head's eval divisor, so ``f_i - f_j`` is
        ``L_g ||w_i - w_j|| / s``-Lipschitz. Since ``||w_i - w_j|| <= sqrt(2) ||W||``, every entry is
        at most ``sqrt(2) certified_lipschitz_bound()`` (clamped to it); the diagonal is 0. Pass it
        to :func:`~pnp_stable.classify.certify.certified_radii` for radii at least as large as the
        global ``margin / (sqrt(2) L)``.
        """
        layers = list(self.layers)
        head = layers[-1]
        body_bound = certify_layers(layers[:-1]).lipschitz
        weight = head.weight.detach().double() / head.eval_divisor()
        # row by row rather than torch.cdist, whose matrix-product shortcut loses digits
        row_gaps = torch.stack([(weight - weight[i]).norm(dim=1) for i in range(weight.shape[0])])
        ceiling = math.sqrt(2.0) * self.certified_lipschitz_bound()
        return (body_bound * row_gaps).clamp_max(ceiling).fill_diagonal_(0.0)

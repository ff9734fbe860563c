"""Certified radii from logit margins and a Lipschitz bound.

If the logit map ``f`` is ``L``-Lipschitz in l2, each difference ``f_y - f_j = (e_y - e_j)^T f`` is
``sqrt(2) L``-Lipschitz, so for ``||delta|| < margin(x) / (sqrt(2) L)`` no other class can overtake
``y``: the prediction at ``x`` is constant on that open ball.
"""

from __future__ import annotations

import math

import torch

from pnp_stable.classify.losses import logit_margins

__all__ = ["certified_accuracy", "certified_radii"]


def certified_radii(logits: torch.Tensor, labels: torch.Tensor, lipschitz: float) -> torch.Tensor:
    """``max(margin, 0) / (sqrt(2) L)`` per example; 0 for misclassified (or tied) examples.

    Assumes ``lipschitz`` is a proven l2 bound of the map that produced ``logits``.
    """
    if not lipschitz > 0 or math.isnan(lipschitz):
        raise ValueError(f"Lipschitz bound must be positive, got {lipschitz}")
    margins = logit_margins(logits.double(), labels)
    return margins.clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)


def certified_accuracy(radii: torch.Tensor, eps: float) -> float:
    """Fraction of examples whose prediction is correct and provably constant within ``eps``.

    The ball of radius ``r`` is certified *open*: an example counts at ``eps`` only if ``r > eps``.
    """
    if radii.numel() == 0:
        return float("nan")
    return float((radii > eps).double().mean())

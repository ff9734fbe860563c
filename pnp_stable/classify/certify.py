"""Certified radii from logit margins and a Lipschitz bound.

If the logit map ``f`` is ``L``-Lipschitz in l2, each difference ``f_y - f_j = (e_y - e_j)^T f`` is
``sqrt(2) L``-Lipschitz, so for ``||delta|| < margin(x) / (sqrt(2) L)`` no other class can overtake
``y``: the prediction at ``x`` is constant on that open ball.

Sharper, when a model can prove a bound ``K[y, j]`` on the Lipschitz constant of each difference
``f_y - f_j`` itself (a linear head ``W`` after an ``L_g``-Lipschitz body gives
``K[y, j] = L_g ||w_y - w_j|| <= sqrt(2) L``): class ``j`` cannot overtake ``y`` within
``(f_y - f_j) / K[y, j]``, so the radius is the smallest of these over ``j != y``.
"""

from __future__ import annotations

import math

import torch

from pnp_stable.classify.losses import logit_margins

__all__ = ["certified_accuracy", "certified_radii"]


def certified_radii(logits: torch.Tensor, labels: torch.Tensor, lipschitz: float | torch.Tensor) -> torch.Tensor:
    """Per example, a radius within which the prediction provably cannot change; 0 if it is wrong or tied.

    ``lipschitz`` is either a float ``L``, a proven l2 bound of the map that produced ``logits``
    (radius ``max(margin, 0) / (sqrt(2) L)``), or a ``C x C`` tensor ``K`` whose off-diagonal
    entries are proven l2 bounds of the differences ``f_i - f_j`` (radius
    ``min_{j != y} max(f_y - f_j, 0) / K[y, j]``; the diagonal is ignored). The pairwise radius is
    never smaller than the global one when ``K[i, j] <= sqrt(2) L``.
    """
    logits = logits.double()
    if not isinstance(lipschitz, torch.Tensor):
        if not lipschitz > 0 or math.isnan(lipschitz):
            raise ValueError(f"Lipschitz bound must be positive, got {lipschitz}")
        return logit_margins(logits, labels).clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)
    n_classes = logits.shape[1]
    pairwise = lipschitz.detach().to(logits.device, torch.float64, copy=True)  # filled in below: never the caller's
    if pairwise.shape != (n_classes, n_classes):
        raise ValueError(f"pairwise Lipschitz bounds must be a {n_classes} x {n_classes} matrix, "
                         f"got shape {tuple(pairwise.shape)}")
    off_diagonal = ~torch.eye(n_classes, dtype=torch.bool, device=pairwise.device)
    if not bool((pairwise[off_diagonal] > 0).all()) or not bool(torch.isfinite(pairwise[off_diagonal]).all()):
        raise ValueError("pairwise Lipschitz bounds must be positive and finite off the diagonal")
    own_class = ~off_diagonal[labels]
    # the diagonal is a placeholder (1) so the division is defined; the own class never binds
    per_class = (logits.gather(1, labels[:, None]) - logits) / pairwise.fill_diagonal_(1.0)[labels]
    return per_class.masked_fill(own_class, float("inf")).min(dim=1).values.clamp_min(0.0)


def certified_accuracy(radii: torch.Tensor, eps: float) -> float:
    """Fraction of examples whose prediction is correct and provably constant within ``eps``.

    The ball of radius ``r`` is certified *open*: an example counts at ``eps`` only if ``r > eps``.
    """
    if radii.numel() == 0:
        return float("nan")
    return float((radii > eps).double().mean())

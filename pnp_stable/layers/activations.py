"""Monotone Lipschitz activations ``s = g'`` with ``g`` convex.

A gradient-flow block ``x - h A^T s(Ax + b)`` is a gradient step on the convex potential
``V(x) = sum g(Ax + b)`` only if ``s`` is monotone (non-decreasing); ``grad V`` is then
``L_s ||A||^2``-Lipschitz and cocoercive. Every activation used by a certified block must state
``lipschitz`` (``L_s``) and be monotone; this module provides the common ones and validates
user-supplied modules.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MonotoneActivation", "make_activation"]


class MonotoneActivation(nn.Module):
    """A monotone, ``lipschitz``-Lipschitz scalar function applied elementwise."""

    monotone = True

    def __init__(self, kind: str, negative_slope: float = 0.01) -> None:
        super().__init__()
        kind = kind.lower().replace("-", "_")
        if kind not in {"relu", "leaky_relu", "tanh", "sigmoid"}:
            raise ValueError(f"unknown activation {kind!r}; choose relu, leaky_relu, tanh or sigmoid")
        if kind == "leaky_relu" and not (0.0 <= negative_slope <= 1.0):
            # a negative slope < 0 breaks monotonicity; > 1 raises the Lipschitz constant
            raise ValueError(f"leaky_relu needs 0 <= negative_slope <= 1, got {negative_slope}")
        self.kind = kind
        self.negative_slope = float(negative_slope)
        self.lipschitz = 0.25 if kind == "sigmoid" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu":
            return torch.relu(x)
        if self.kind == "leaky_relu":
            return nn.functional.leaky_relu(x, self.negative_slope)
        if self.kind == "tanh":
            return torch.tanh(x)
        return torch.sigmoid(x)

    def extra_repr(self) -> str:
        return self.kind + (f", negative_slope={self.negative_slope}" if self.kind == "leaky_relu" else "")


def make_activation(spec: str | nn.Module, negative_slope: float = 0.01) -> nn.Module:
    """Return a validated monotone activation from a name or a module.

    A user module must carry ``monotone = True`` and a numeric ``lipschitz`` attribute; plain
    ``nn.ReLU``/``nn.LeakyReLU`` are converted (their constants are known).
    """
    if isinstance(spec, str):
        return MonotoneActivation(spec, negative_slope)
    if isinstance(spec, MonotoneActivation):
        return spec
    if isinstance(spec, nn.ReLU):
        return MonotoneActivation("relu")
    if isinstance(spec, nn.LeakyReLU):
        return MonotoneActivation("leaky_relu", spec.negative_slope)
    if isinstance(spec, nn.Tanh):
        return MonotoneActivation("tanh")
    if getattr(spec, "monotone", False) is True and isinstance(getattr(spec, "lipschitz", None), (int, float)):
        return spec
    raise ValueError(
        f"activation {type(spec).__name__} is not known to be monotone and Lipschitz; "
        "set `monotone = True` and `lipschitz = L_s` on it if it is"
    )

"""The PnP iteration maps ``T`` on their governing variable, with the image read out of each step.

Each map is called on a (sub-)batch ``w`` with the matching measurements ``y`` and returns
``(T w, x)`` where ``x`` is the denoiser output computed on the way (the restored image at ``w``).

* FB: ``T x = (1 - lam) x + lam D_t(x - tau A^T(Ax - y))`` (``lam = 1`` unless the plan averages a
  merely non-expansive map), read-out ``D_t(x - tau A^T(Ax - y))``.
* ADMM (scaled form, data step then denoiser step, ``w = x + u``): ``T w = w - D_t(w) +
  prox_{gamma f}(2 D_t(w) - w) = 1/2 (I + R_f R_D) w``, read-out ``D_t(w)``.
* DRS (data prox first): ``T z = z - prox_{gamma f}(z) + D_t(2 prox_{gamma f}(z) - z) = 1/2 (I + R_D R_f) z``,
  read-out ``D_t(2 prox_{gamma f}(z) - z)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from pnp_stable.protocols import ForwardOperator

__all__ = ["IterationMap", "ForwardBackwardMap", "ADMMMap", "DRSMap", "make_iteration_map"]

Denoise = Callable[[torch.Tensor], torch.Tensor]


class IterationMap:
    """Base: holds the operator, the (relaxed) denoiser call and the step."""

    def __init__(self, operator: ForwardOperator, denoise: Denoise, step: float, relaxation: float) -> None:
        self.operator = operator
        self.denoise = denoise
        self.step = float(step)
        self.relaxation = float(relaxation)

    def relaxed_denoise(self, z: torch.Tensor) -> torch.Tensor:
        d = self.denoise(z)
        if self.relaxation == 1.0:
            return d
        return torch.lerp(z, d, self.relaxation)  # (1 - t) z + t D(z)

    def __call__(self, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class ForwardBackwardMap(IterationMap):
    def __init__(self, operator: ForwardOperator, denoise: Denoise, step: float, relaxation: float, km_relaxation: float = 1.0) -> None:
        super().__init__(operator, denoise, step, relaxation)
        self.km_relaxation = float(km_relaxation)

    def __call__(self, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        op = self.operator
        z = w - self.step * op.A_adjoint(op.A(w) - y)
        x = self.relaxed_denoise(z)
        if self.km_relaxation == 1.0:
            return x, x
        return torch.lerp(w, x, self.km_relaxation), x


class ADMMMap(IterationMap):
    def __call__(self, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relaxed_denoise(w)
        v = self.operator.prox_data(2.0 * x - w, y, self.step)
        return w + (v - x), x


class DRSMap(IterationMap):
    def __call__(self, w: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.operator.prox_data(w, y, self.step)
        x = self.relaxed_denoise(2.0 * p - w)
        return w + (x - p), x


def make_iteration_map(
    method: str, operator: ForwardOperator, denoise: Denoise, step: float, relaxation: float, km_relaxation: float
) -> IterationMap:
    """The map of ``method`` (``"fb"``, ``"admm"`` or ``"drs"``)."""
    if method == "fb":
        return ForwardBackwardMap(operator, denoise, step, relaxation, km_relaxation)
    if method == "admm":
        return ADMMMap(operator, denoise, step, relaxation)
    if method == "drs":
        return DRSMap(operator, denoise, step, relaxation)
    raise ValueError(f"unknown method {method!r}: choose 'fb', 'admm' or 'drs'")

"""The PnP iteration maps ``T`` on their governing variable, with the image read out of each step.

Each map is called on a (sub-)batch ``w`` with the matching measurements ``y`` and returns
``(T w, x)`` where ``x`` is the denoiser output computed on the way (the restored image at ``w``).

* FB: ``T x = (1 - lam) x + lam D_t(x - tau A^T(Ax - y))`` (``lam = 1`` unless the plan averages a
  merely non-expansive map), read-out ``D_t(x - tau A^T(Ax - y))``.
* ADMM (scaled form, data step then denoiser step, ``w = x + u``): ``T w = w - D_t(w) +
  prox_{gamma f}(2 D_t(w) - w) = 1/2 (I + R_f R_D) w``, read-out ``D_t(w)``.
* DRS (data prox first): ``T z = z - prox_{gamma f}(z) + D_t(2 prox_{gamma f}(z) - z) = 1/2 (I + R_D R_f) z``,
  read-out ``D_t(2 prox_{gamma f}(z) - z)``.

An inexact data prox ``prox + e`` moves ``T w`` by at most ``||e||`` in both splittings: in ADMM by
exactly ``e``; in DRS ``T z = 1/2 (z + R_D(2 p - z))`` and ``R_D`` is non-expansive when ``D_t`` is
firmly non-expansive (the guarantee's premise). The splitting maps pass a per-image ``prox_error``
budget to operators that accept one (``certified_prox_error``) and record the operator's certified
bounds in ``last_prox_error``, which :mod:`pnp_stable.solvers.monitor` adds to its tolerance.
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
        # per row of the latest call: certified bound on ||T~ w - T w|| (None: exact to rounding), and
        # whether the prox reached the tolerance its budget set (None: no budget was given)
        self.last_prox_error: list[float] | None = None
        self.last_prox_converged: list[bool] | None = None

    def relaxed_denoise(self, z: torch.Tensor) -> torch.Tensor:
        d = self.denoise(z)
        if self.relaxation == 1.0:
            return d
        return torch.lerp(z, d, self.relaxation)  # (1 - t) z + t D(z)

    def __call__(self, w: torch.Tensor, y: torch.Tensor, prox_error: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def prox(self, z: torch.Tensor, y: torch.Tensor, prox_error: torch.Tensor | None) -> torch.Tensor:
        """The data prox; with ``prox_error`` (per row), an inexact one within that budget whose
        certified error bounds land in ``last_prox_error``."""
        op = self.operator
        if not getattr(op, "certified_prox_error", False):
            self.last_prox_error = self.last_prox_converged = None
            return op.prox_data(z, y, self.step)
        v = op.prox_data(z, y, self.step, max_error=prox_error)  # type: ignore[call-arg]
        info = op.last_prox_info  # type: ignore[attr-defined]
        self.last_prox_error = list(info.error_bounds)
        self.last_prox_converged = [bool(c) for c in info.converged]
        return v


class ForwardBackwardMap(IterationMap):
    def __init__(self, operator: ForwardOperator, denoise: Denoise, step: float, relaxation: float, km_relaxation: float = 1.0) -> None:
        super().__init__(operator, denoise, step, relaxation)
        self.km_relaxation = float(km_relaxation)

    def __call__(self, w: torch.Tensor, y: torch.Tensor, prox_error: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        op = self.operator
        z = w - self.step * op.A_adjoint(op.A(w) - y)
        x = self.relaxed_denoise(z)
        if self.km_relaxation == 1.0:
            return x, x
        return torch.lerp(w, x, self.km_relaxation), x


class ADMMMap(IterationMap):
    def __call__(self, w: torch.Tensor, y: torch.Tensor, prox_error: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relaxed_denoise(w)
        z = 2.0 * x - w
        bad = ~torch.isfinite(z.flatten(1)).all(dim=1)
        if not bool(bad.any()):
            return w + (self.prox(z, y, prox_error) - x), x
        # a denoiser that returned non-finite values: the prox (which refuses them) runs on the
        # finite iterate in those rows, whose result is then discarded, so that the solver stops
        # those images as FB and DRS do (the last finite iterate kept) and goes on with the others
        rows = bad.reshape(-1, *([1] * (z.ndim - 1)))
        v = self.prox(torch.where(rows, w, z), y, prox_error)
        return torch.where(rows, torch.full_like(v, float("nan")), w + (v - x)), x


class DRSMap(IterationMap):
    def __call__(self, w: torch.Tensor, y: torch.Tensor, prox_error: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.prox(w, y, prox_error)
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

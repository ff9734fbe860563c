"""Relaxation ``D_t = (1 - t) I + t D`` and the firmly non-expansive version of a denoiser."""

from __future__ import annotations

import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate, certificate_of

__all__ = ["Relaxed", "relax", "make_firmly_nonexpansive"]


class Relaxed(nn.Module):
    """``x -> (1 - t) x + t D(x, ...)``; extra arguments (e.g. a noise level) go to ``D``.

    If ``D`` is ``alpha``-averaged, ``D_t`` is ``t alpha``-averaged for ``0 < t < 1 / alpha``.
    """

    def __init__(self, denoiser: nn.Module, t: float) -> None:
        super().__init__()
        if not t > 0:
            raise ValueError(f"relaxation parameter must be positive, got {t}")
        self.denoiser = denoiser
        self.t = float(t)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return (1.0 - self.t) * x + self.t * self.denoiser(x, *args, **kwargs)

    def certificate(self) -> Certificate:
        inner = certificate_of(self.denoiser)
        if inner is None:
            raise ValueError(f"{type(self.denoiser).__name__} carries no certificate")
        return inner.relaxed(self.t)

    def certified_lipschitz_bound(self) -> float:
        return self.certificate().lipschitz

    def certified_averagedness(self) -> float | None:
        return self.certificate().averagedness

    def extra_repr(self) -> str:
        return f"t={self.t:.6g}"


def relax(denoiser: nn.Module, t: float) -> Relaxed:
    """Return ``(1 - t) I + t D`` carrying the certificate ``t alpha`` (``D`` alpha-averaged)."""
    return Relaxed(denoiser, t)


def make_firmly_nonexpansive(denoiser: nn.Module) -> Relaxed:
    """Relax a certified averaged ``D`` with ``t = 1 / (2 alpha)``: the result is 1/2-averaged.

    Raises ``ValueError`` if ``D`` has no proven averagedness (then no relaxation is provably
    firmly non-expansive). An already firmly non-expansive ``D`` is wrapped with ``t = 1``.
    """
    cert = certificate_of(denoiser)
    if cert is None or cert.averagedness is None:
        raise ValueError("the denoiser has no certified averagedness; cannot make it firmly non-expansive")
    alpha = cert.averagedness
    t = 1.0 if alpha <= 0.5 else 1.0 / (2.0 * alpha)
    return Relaxed(denoiser, t)

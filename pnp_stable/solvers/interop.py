"""Thin bridges to deepinv: our denoisers inside deepinv's ``PnP`` prior, our operators in its solvers.

deepinv is imported inside the functions (its import takes seconds), never at module import.

* :func:`to_deepinv_denoiser` wraps any denoiser (``D(x, sigma)`` or ``D(x)``, optionally relaxed
  ``D_t = (1 - t) I + t D``) as a ``deepinv.models.Denoiser`` that deepinv's
  ``deepinv.optim.prior.PnP`` calls as ``denoiser(x, sigma)``; the wrapper still states the
  (relaxed) certificate, so our solvers read it through the same protocol.
* :func:`to_deepinv_physics` exposes a :class:`~pnp_stable.protocols.ForwardOperator` as a
  ``deepinv.physics.LinearPhysics`` whose ``A``, ``A_adjoint`` and ``prox_l2`` are the operator's
  own (``prox_l2(z, y, gamma)`` and ``prox_data`` share deepinv's convention).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate, certificate_of
from pnp_stable.protocols import ForwardOperator
from pnp_stable.solvers.denoiser_adapter import accepts_noise_level

__all__ = ["to_deepinv_denoiser", "to_deepinv_physics"]


@functools.lru_cache(maxsize=1)
def _denoiser_class() -> type:
    from deepinv.models import Denoiser

    class CertifiedDenoiserForDeepinv(Denoiser):
        """A pnp-stable denoiser (relaxed by ``t``) with deepinv's ``forward(x, sigma)`` signature."""

        def __init__(self, denoiser: nn.Module, relaxation: float = 1.0) -> None:
            super().__init__()
            if not relaxation > 0:
                raise ValueError(f"the relaxation t must be positive, got {relaxation}")
            self.denoiser = denoiser
            self.relaxation = float(relaxation)
            self.takes_sigma = accepts_noise_level(denoiser)

        def forward(self, x: torch.Tensor, sigma: Any = None, **kwargs: Any) -> torch.Tensor:
            if self.takes_sigma:
                if sigma is None:
                    raise ValueError(f"{type(self.denoiser).__name__} needs a noise level: set sigma_denoiser")
                d = self.denoiser(x, sigma)
            else:
                d = self.denoiser(x)
            return d if self.relaxation == 1.0 else torch.lerp(x, d, self.relaxation)

        def certificate(self) -> Certificate | None:
            inner = certificate_of(self.denoiser)
            if inner is None:
                return None
            return inner if self.relaxation == 1.0 else inner.relaxed(self.relaxation)

    return CertifiedDenoiserForDeepinv


def to_deepinv_denoiser(denoiser: nn.Module, relaxation: float = 1.0) -> nn.Module:
    """``denoiser`` as a ``deepinv.models.Denoiser`` computing ``(1 - t) x + t D(x[, sigma])``.

    Guarantee: the wrapper computes exactly the map our solvers use for the same ``t``, and its
    ``certificate()`` is the relaxed certificate of ``denoiser`` (None if it has none). A
    denoiser called ``D(x)`` ignores deepinv's ``sigma_denoiser``.
    """
    return _denoiser_class()(denoiser, relaxation)


@functools.lru_cache(maxsize=1)
def _physics_class() -> type:
    from deepinv.physics import LinearPhysics

    class ProtocolPhysics(LinearPhysics):
        """A ForwardOperator as a deepinv LinearPhysics (noise-free ``forward``); our solvers unwrap it
        (:func:`pnp_stable.solvers.as_operator`)."""

        wraps_forward_operator = True

        def __init__(self, operator: ForwardOperator) -> None:
            super().__init__(A=lambda x, **kw: operator.A(x), A_adjoint=lambda y, **kw: operator.A_adjoint(y))
            self.operator = operator

        def A(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return self.operator.A(x)

        def A_adjoint(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return self.operator.A_adjoint(y)

        def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float, *args: Any, **kwargs: Any) -> torch.Tensor:
            return self.operator.prox_data(z, y, float(gamma))

    return ProtocolPhysics


def to_deepinv_physics(operator: object) -> nn.Module:
    """``operator`` as a ``deepinv.physics.LinearPhysics`` (returned unchanged if it already is one).

    Guarantee: ``A``, ``A_adjoint`` and ``prox_l2`` delegate to the operator, so deepinv's solvers
    run exactly our operator, including its closed-form data prox.
    """
    from deepinv.physics import LinearPhysics

    if isinstance(operator, LinearPhysics):
        return operator
    if not all(callable(getattr(operator, n, None)) for n in ("A", "A_adjoint", "prox_data")):
        raise ValueError(f"{type(operator).__name__} does not implement the ForwardOperator protocol")
    return _physics_class()(operator)

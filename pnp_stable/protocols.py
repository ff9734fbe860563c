"""The two small protocols the solvers depend on (never concrete classes).

``ForwardOperator`` is what a solver needs from a measurement model; every operator in
:mod:`pnp_stable.operators` implements it, and any ``deepinv.physics.LinearPhysics`` is adapted to
it by :func:`pnp_stable.solvers.as_operator`. ``Denoiser`` is any ``nn.Module`` called as
``D(x, sigma)`` or ``D(x)``; it is *certified* if :func:`pnp_stable.layers.certificate_of`
returns a certificate for it.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch

NormKind = Literal["exact", "certified", "estimated"]


@runtime_checkable
class ForwardOperator(Protocol):
    """A linear measurement model ``y = A x + noise``.

    ``norm()`` is an upper bound on ``||A||`` usable for step sizes; ``norm_kind`` says how it was
    obtained: ``"exact"`` (closed form), ``"certified"`` (a proven upper bound) or
    ``"estimated"`` (a converged power method inflated by a stated safety margin — not a proof).
    ``prox_data(z, y, gamma)`` returns ``argmin_x gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2``.
    """

    norm_kind: NormKind

    def A(self, x: torch.Tensor) -> torch.Tensor: ...

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor: ...

    def norm(self) -> float: ...

    def prox_data(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor: ...

    def simulate(self, x: torch.Tensor, noise_sigma: float, seed: int | None = None) -> torch.Tensor: ...

"""The two small protocols the solvers depend on (never concrete classes).

``ForwardOperator`` is what a solver needs from a measurement model; every operator in
:mod:`pnp_stable.operators` implements it, and any ``deepinv.physics.LinearPhysics`` is adapted to
it by :func:`pnp_stable.solvers.as_operator`. ``Denoiser`` is any ``nn.Module`` called as
``D(x, sigma)`` or ``D(x)``; it is *certified* if :func:`pnp_stable.layers.certificate_of`
returns a certificate for it; :func:`accepts_noise_level` says which of the two calls it takes
and :func:`denoiser_channels` which images.
"""

from __future__ import annotations

import inspect
from typing import Callable, Literal, Protocol, runtime_checkable

import torch
from torch import nn

NormKind = Literal["exact", "certified", "estimated"]


@runtime_checkable
class ForwardOperator(Protocol):
    """A linear measurement model ``y = A x + noise``.

    ``norm()`` is an upper bound on ``||A||`` usable for step sizes; ``norm_kind`` says how it was
    obtained: ``"exact"`` (closed form), ``"certified"`` (a proven upper bound) or
    ``"estimated"`` (a converged power method inflated by a stated safety margin — not a proof).
    ``prox_data(z, y, gamma)`` returns ``argmin_x gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2``.
    An operator may name its problem family in an optional ``parameter_family`` attribute
    (``"ct"``): the automatic parameters then use a denoiser's calibration for that family, if
    it has one (:func:`pnp_stable.solvers.rule_for`; ``"ct"`` also makes an estimated noise level
    read ``y`` as ``B x C x n_detectors x n_angles`` sinograms, along the detectors), and a
    dimensionless sampling density in ``parameter_density`` (CT: projection directions per pixel
    across), which a rule may weigh (``ParameterRule.density_exponent``). An operator whose prox
    is iterative may declare ``certified_prox_error = True``: its ``prox_data`` then takes
    ``max_error`` (per image) and reports certified bounds on its distance to the exact prox in
    ``last_prox_info.error_bounds``, which ADMM/DRS budget and monitor
    (:mod:`pnp_stable.solvers.splitting`).
    """

    norm_kind: NormKind

    def A(self, x: torch.Tensor) -> torch.Tensor: ...

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor: ...

    def norm(self) -> float: ...

    def prox_data(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor: ...

    def simulate(self, x: torch.Tensor, noise_level: float, seed: int | None = None) -> torch.Tensor: ...


def accepts_noise_level(denoiser: Callable) -> bool:
    """True if ``denoiser`` takes a noise level as second positional argument.

    A declared boolean ``accepts_noise_level`` wins; a module stating ``needs_sigma = False`` (a
    denoiser built without noise-level conditioning) is called ``D(x)``; otherwise the signature
    of ``forward`` decides.
    """
    target = denoiser.forward if isinstance(denoiser, nn.Module) else denoiser
    declared = getattr(denoiser, "accepts_noise_level", None)
    if isinstance(declared, bool):
        return declared
    if getattr(denoiser, "needs_sigma", None) is False:
        return False
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: do not guess a second argument
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def denoiser_channels(denoiser: object) -> int | None:
    """The image channels ``denoiser`` takes, if it states them (``metadata["channels"]`` of a loaded
    model, else ``config.channels``); None when it does not say."""
    meta = getattr(denoiser, "metadata", None)
    if isinstance(meta, dict) and isinstance(meta.get("channels"), int):
        return meta["channels"]
    channels = getattr(getattr(denoiser, "config", None), "channels", None)
    return channels if isinstance(channels, int) else None

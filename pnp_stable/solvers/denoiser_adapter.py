"""How the solvers call a denoiser and what they may assume about it.

A denoiser is any ``nn.Module`` called ``D(x, sigma)`` or ``D(x)``. Its constants are read only
through :func:`pnp_stable.layers.certificate_of`; a module without a certificate is treated as
uncertified. :class:`ProximalDenoiser` lets a user *declare* that a foreign module is the exact
proximal operator of a convex function (e.g. deepinv's ``TVDenoiser``): it then carries the
certificate of a prox (firmly non-expansive) together with the statement that this is a
declaration, which the solvers repeat as an assumption of the guarantee.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate
from pnp_stable.protocols import accepts_noise_level

__all__ = [
    "ProximalDenoiser", "StrengthKind", "accepts_noise_level", "denoiser_caller", "evaluation_mode", "strength_kind",
    "warm_start_hooks",
]

# How the number passed to D(x, s) acts: a Gaussian noise level (D ~ prox of s^2 R), the weight of
# a proximal operator (D = prox_{s g}), or nothing (D(x) has a fixed strength).
StrengthKind = Literal["noise_level", "prox_weight", "fixed"]


def strength_kind(denoiser: Callable) -> StrengthKind:
    """The declared :data:`StrengthKind` of ``denoiser`` (attribute ``strength_kind``) or the default.

    Default: ``"noise_level"`` if it takes a second argument, ``"fixed"`` otherwise.
    """
    declared = getattr(denoiser, "strength_kind", None)
    if declared in ("noise_level", "prox_weight", "fixed"):
        return declared
    return "noise_level" if accepts_noise_level(denoiser) else "fixed"


def denoiser_caller(denoiser: Callable, sigma: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> D(x, sigma)`` if ``D`` takes a noise level, else ``x -> D(x)``.

    Raises ``ValueError`` if ``D`` needs a noise level and none is given, or if one is given to a
    denoiser that cannot take it (silently ignoring it would hide a mistake); the returned caller
    raises it if ``D`` returns anything but a tensor of its input's shape.
    """
    name = type(denoiser).__name__
    if accepts_noise_level(denoiser):
        if sigma is None:
            raise ValueError(f"{name} takes a noise level: pass sigma_den (or let it be chosen)")
        value = float(sigma)
        return lambda x: _checked_output(denoiser(x, value), x, name)
    if sigma is not None:
        raise ValueError(f"{name} is called D(x) and takes no noise level, but sigma_den={sigma} was given")
    return lambda x: _checked_output(denoiser(x), x, name)


def _checked_output(out: object, x: torch.Tensor, name: str) -> torch.Tensor:
    # a denoiser that crops, returns a tuple or a batch of another size fails deep inside the
    # iteration otherwise, with a message about tensors the user never made
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the denoiser {name} returned a {type(out).__name__}; a denoiser must return a tensor "
                         "of its input's shape")
    if out.shape != x.shape:
        raise ValueError(f"the denoiser {name} returned shape {tuple(out.shape)} for an input of shape "
                         f"{tuple(x.shape)}; a denoiser must return its input's shape")
    return out


def warm_start_hooks(denoiser: object) -> tuple[Callable[[], Any], Callable[[Any], None]] | None:
    """``(save, restore)`` of a denoiser that keeps state between calls, or None.

    A denoiser whose output depends on its previous calls (an inner iterative solver warm-started
    from the last solution, like deepinv's ``TVDenoiser``) may define ``warm_start_state()``
    (returns an opaque snapshot) and ``restore_warm_start(snapshot)``. The solver then snapshots it
    before evaluating an Anderson candidate and restores it when the candidate is rejected, so a
    rejected candidate leaves no trace and the plain step is exactly the unaccelerated iteration.
    """
    save = getattr(denoiser, "warm_start_state", None)
    restore = getattr(denoiser, "restore_warm_start", None)
    if callable(save) and callable(restore):
        return save, restore
    return None


@contextlib.contextmanager
def evaluation_mode(module: object) -> Iterator[None]:
    """Run ``module`` in eval mode (what its certificate describes), restoring every flag after."""
    if not isinstance(module, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


class ProximalDenoiser(nn.Module):
    """Declare ``module(x, s)`` to be the exact proximal operator of ``s g`` for a convex ``g``.

    A proximal operator of a proper convex lower-semicontinuous function is firmly non-expansive
    (1/2-averaged; Bauschke & Combettes, Prop. 12.28), so this wrapper states ``Certificate(1,
    1/2)``. pnp-stable cannot check the declaration: the certificate's details carry it as an
    ``assumption``, which every guarantee built on it repeats. ``inexact`` describes how the prox
    is computed (e.g. an inner iterative solver), which is part of the same assumption.

    ``warm_start`` names attributes of ``module`` that carry state from one call to the next (for
    deepinv's ``TVDenoiser``: ``("x2", "u2", "restart")``); the wrapper then offers the
    :func:`warm_start_hooks` protocol, so that rejected Anderson candidates do not move the warm
    start of the plain iteration.
    """

    strength_kind: StrengthKind = "prox_weight"
    accepts_noise_level = True

    def __init__(
        self, module: nn.Module, name: str | None = None, inexact: str | None = None, warm_start: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.module = module
        self.name = name or type(module).__name__
        self.inexact = inexact
        self.warm_start = tuple(warm_start)

    def warm_start_state(self) -> dict[str, Any]:
        """Snapshot of the ``warm_start`` attributes (tensors cloned)."""
        return {
            a: (v.clone() if isinstance(v, torch.Tensor) else v)
            for a in self.warm_start
            for v in (getattr(self.module, a, None),)
        }

    def restore_warm_start(self, snapshot: dict[str, Any]) -> None:
        for a, v in snapshot.items():
            setattr(self.module, a, v)

    def forward(self, x: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
        return self.module(x, weight)

    def certificate(self) -> Certificate:
        statement = f"{self.name} is the exact proximal operator of a convex function (declared by the user, not proven)"
        if self.inexact:
            statement += f"; computed {self.inexact}"
        return Certificate(1.0, 0.5, ({"layer": self.name, "assumption": statement},))

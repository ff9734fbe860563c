"""Adapt any linear measurement model to :class:`pnp_stable.protocols.ForwardOperator`.

Objects that already implement the protocol (every operator of :mod:`pnp_stable.operators`) are
returned unchanged. A ``deepinv.physics.LinearPhysics`` (recognised by its methods, so deepinv is
never imported here) is wrapped in :class:`PhysicsOperator`, whose norm is an *estimate*: a power
method run to convergence, inflated by a stated safety margin. The solvers then report any
guarantee as conditional on that estimate.
"""

from __future__ import annotations

import math

import torch

from pnp_stable.layers.norms import power_iteration
from pnp_stable.protocols import ForwardOperator, NormKind

__all__ = ["PhysicsOperator", "as_operator", "is_forward_operator", "check_adjointness"]

_DEFAULT_MARGIN = 0.02
_POWER_MAX_ITER = 2000
_POWER_TOL = 1e-7


def is_forward_operator(obj: object) -> bool:
    """True if ``obj`` has every member of the ForwardOperator protocol with a valid norm kind."""
    return isinstance(obj, ForwardOperator) and getattr(obj, "norm_kind", None) in ("exact", "certified", "estimated")


def _is_linear_physics(obj: object) -> bool:
    return all(callable(getattr(obj, name, None)) for name in ("A", "A_adjoint", "prox_l2"))


def check_adjointness(
    forward, adjoint, x_like: torch.Tensor, y_like: torch.Tensor, seed: int = 0
) -> float:
    """Relative mismatch ``|<Ax, z> - <x, A^T z>| / (||Ax|| ||z||)`` on one random pair.

    Zero up to rounding for a correct adjoint; a wrong adjoint gives O(1).
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(x_like.shape, generator=g, dtype=torch.float64).to(x_like.device, x_like.dtype)
    z = torch.randn(y_like.shape, generator=g, dtype=torch.float64).to(y_like.device, y_like.dtype)
    ax = forward(x)
    lhs = float((ax * z).sum())
    rhs = float((x * adjoint(z)).sum())
    scale = float(ax.norm()) * float(z.norm())
    return abs(lhs - rhs) / max(scale, 1e-30)


class PhysicsOperator:
    """A ``deepinv.physics.LinearPhysics`` seen through the ForwardOperator protocol.

    ``norm()`` is ``(1 + margin)`` times a power-method estimate of ``||A||`` computed on an image
    shaped like ``A^T y`` and iterated until the estimate changes by less than 1e-7 relatively
    (at most 2000 iterations). The power method converges from *below*, so this is not a proof:
    ``norm_kind = "estimated"`` and every guarantee built on it is stated as conditional.
    ``prox_data`` is ``physics.prox_l2`` (closed form when the class provides one, otherwise
    deepinv's iterative least-squares solver, which is inexact; see ``prox_is_exact`` and
    :meth:`prox_exactness`, which the solvers use).
    """

    norm_kind: NormKind = "estimated"

    def __init__(self, physics, like: torch.Tensor, margin: float = _DEFAULT_MARGIN) -> None:
        if not margin >= 0:
            raise ValueError(f"the norm safety margin must be >= 0, got {margin}")
        self.physics = physics
        self.margin = float(margin)
        self._like = like
        self._norm: float | None = None
        self.norm_estimate: float | None = None
        self.norm_iterations = 0

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.physics.A_adjoint(y)

    def _prox_class(self) -> str:
        """Name of the class whose ``prox_l2`` the physics runs."""
        for cls in type(self.physics).__mro__:
            if "prox_l2" in cls.__dict__:
                return cls.__name__
        return "LinearPhysics"

    @property
    def prox_is_exact(self) -> bool:
        """Whether the physics class provides a closed-form ``prox_l2`` for this instance, by its
        structure: ``LinearPhysics.prox_l2`` is deepinv's iterative least-squares solver, and
        deepinv's ``Downsampling`` family overrides it but falls back to that solver unless its
        padding is circular. Other overrides are taken at their word here; :meth:`prox_exactness`
        also checks the optimality condition numerically."""
        return self._structural_inexactness() is None

    def _structural_inexactness(self) -> str | None:
        owner = self._prox_class()
        name = type(self.physics).__name__
        if owner == "LinearPhysics":
            return f"prox_l2 of {name} is deepinv's iterative least-squares solver"
        padding = getattr(self.physics, "padding", None)
        if any(cls.__name__ == "Downsampling" for cls in type(self.physics).__mro__) and padding != "circular":
            return (f"prox_l2 of {name} (padding {padding!r}) falls back to deepinv's iterative least-squares "
                    "solver (its closed form needs circular padding)")
        return None

    def prox_exactness(self, gamma: float) -> tuple[bool, str | None]:
        """``(exact, statement)`` for ``prox_l2`` with weight ``gamma``: exact only if the class
        structure says so (:attr:`prox_is_exact`) *and* a probe on a random ``(z, y)`` satisfies the
        optimality condition ``(gamma A^T A + I) x = gamma A^T y + z`` to rounding, i.e. with relative
        residual at most ``64 eps (1 + gamma ||A||^2)`` (the estimated norm). The probe can only
        falsify: a closed form that passes it is still taken at its word. ``statement`` says why an
        inexact prox is inexact (an assumption of any guarantee built on it)."""
        structural = self._structural_inexactness()
        if structural is not None:
            return False, structural + ": firm non-expansiveness holds up to its tolerance"
        like = self._like[:1]
        x_like = self.physics.A_adjoint(like)
        g = torch.Generator().manual_seed(1)
        z = torch.randn(x_like.shape, generator=g, dtype=torch.float64).to(x_like.device, x_like.dtype)
        y = torch.randn(like.shape, generator=g, dtype=torch.float64).to(like.device, like.dtype)
        x = self.physics.prox_l2(z, y, gamma)
        adjoint_y = self.physics.A_adjoint(y)
        rhs = gamma * adjoint_y + z
        residual = gamma * self.physics.A_adjoint(self.physics.A(x)) + x - rhs
        relative = float(residual.double().norm() / rhs.double().norm().clamp_min(1e-300))
        eps = torch.finfo(like.dtype).eps
        limit = 64.0 * eps * (1.0 + float(gamma) * self.norm() ** 2)
        if not relative <= limit:
            return False, (
                f"prox_l2 of {type(self.physics).__name__} is not the exact prox: on a random probe its optimality "
                f"residual is {relative:.1e} relative (rounding would give at most {limit:.1e}); firm "
                "non-expansiveness holds up to that error"
            )
        return True, None

    def norm(self) -> float:
        if self._norm is None:
            x_like = self.physics.A_adjoint(self._like[:1])
            u = torch.randn(x_like.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            u = u.to(x_like.device, x_like.dtype)
            estimate, _ = power_iteration(self.physics.A, self.physics.A_adjoint, u, n_iter=_POWER_MAX_ITER, tol=_POWER_TOL)
            if not math.isfinite(estimate) or estimate <= 0:
                raise ValueError(f"the power method on {type(self.physics).__name__} gave ||A|| = {estimate}")
            self.norm_estimate = estimate
            self._norm = estimate * (1.0 + self.margin)
        return self._norm

    def norm_statement(self) -> str:
        self.norm()
        return (
            f"||A|| <= {self._norm:.6g}: power-method estimate {self.norm_estimate:.6g} of "
            f"{type(self.physics).__name__} plus a {100 * self.margin:g}% safety margin (not a proof)"
        )

    def prox_data(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
        return self.physics.prox_l2(z, y, gamma)

    def simulate(self, x: torch.Tensor, noise_level: float, seed: int | None = None) -> torch.Tensor:
        ax = self.physics.A(x)
        if noise_level == 0:
            return ax
        g = torch.Generator(device="cpu")
        if seed is not None:
            g.manual_seed(seed)
        else:
            g.seed()
        noise = torch.randn(ax.shape, generator=g, dtype=torch.float64).to(ax.device, ax.dtype)
        return ax + noise_level * noise


def as_operator(A: object, like: torch.Tensor, margin: float = _DEFAULT_MARGIN) -> ForwardOperator:
    """Return ``A`` as a :class:`~pnp_stable.protocols.ForwardOperator`.

    Args:
        A: an object implementing the protocol (returned unchanged after the check), one seen as
            a deepinv physics by :func:`~pnp_stable.solvers.interop.to_deepinv_physics` (unwrapped),
            or a ``deepinv.physics.LinearPhysics`` (wrapped in :class:`PhysicsOperator`).
        like: a measurement ``y`` (any batch size) fixing the image shape for the norm estimate
            and the adjointness check.
        margin: relative safety margin added to a power-method norm estimate.

    Raises:
        ValueError: if ``A`` is neither, or if its adjoint fails a numerical adjointness check
            (relative mismatch above 1e-3 in float32 / 1e-8 in float64), since every step size
            and prox then rests on a false ``A^T``.
    """
    if getattr(A, "wraps_forward_operator", False) and is_forward_operator(getattr(A, "operator", None)):
        # our own operator seen as a deepinv physics (interop.to_deepinv_physics): use it directly,
        # with its certified norm and prox, rather than estimate what it already proves
        A = A.operator  # type: ignore[attr-defined]
    native = is_forward_operator(A)
    if not native and not _is_linear_physics(A):
        raise ValueError(
            f"{type(A).__name__} is not a forward operator: expected pnp_stable.operators or a "
            "deepinv.physics.LinearPhysics (methods A, A_adjoint, prox_l2)"
        )
    x_like = A.A_adjoint(like[:1])  # type: ignore[attr-defined]
    mismatch = check_adjointness(A.A, A.A_adjoint, x_like, like[:1])  # type: ignore[attr-defined]
    limit = 1e-8 if like.dtype == torch.float64 else 1e-3
    if mismatch > limit:
        raise ValueError(
            f"{type(A).__name__}.A_adjoint is not the adjoint of A (relative mismatch {mismatch:.2e} > {limit:g})"
        )
    if native:
        return A  # type: ignore[return-value]
    return PhysicsOperator(A, like, margin)

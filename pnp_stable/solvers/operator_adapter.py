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

__all__ = ["PhysicsOperator", "as_operator", "is_forward_operator", "check_adjointness", "norm_lower_bound",
           "probe_measurements", "prox_optimality_residual"]

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
    """Relative adjointness mismatch of ``adjoint`` (``B``) for ``forward`` (``A``): the larger of
    ``|<Ax, Ax> - <x, B A x>| / ||Ax||^2`` for a random ``x`` and ``|<A B z, z> - <Bz, Bz>| / ||Bz||^2``
    for a random ``z``.

    Zero up to rounding for the true adjoint. A wrong ``B = A^T + E`` gives ``|<x, E A x>| / ||Ax||^2``
    and ``|<Bz, E z>| / ||Bz||^2``: of the order of ``||E|| / ||A||`` at every image size (1.2 A^T
    gives 0.2 and 0.17). The pair are correlated on purpose: on an independent random pair ``(x, z)``
    the mismatch ``<(A - B^T) x, z>`` of any wrong adjoint shrinks like ``1 / sqrt(N)`` relative to
    ``||Ax|| ||z||`` (a 1-pixel shift with the wrong direction read 4e-2 at 64^2 pixels and 8e-5 at
    2048^2, under the 1e-3 a float32 check allows), so that test let wrong adjoints of large images
    through.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(x_like.shape, generator=g, dtype=torch.float64).to(x_like.device, x_like.dtype)
    z = torch.randn(y_like.shape, generator=g, dtype=torch.float64).to(y_like.device, y_like.dtype)
    # unit vectors in: A^T (A x) of an operator with a tiny norm would underflow in float32
    mismatches = []
    ax = forward(x)
    ax_norm = float(ax.double().norm())
    if ax_norm > 0:  # A x = 0 (an all-zero mask) has nothing to compare
        # <Ax, Ax> / ||Ax||^2 = 1 against <x, B (Ax)> / ||Ax||^2
        mismatches.append(abs(ax_norm - float((x.double() * adjoint(ax / ax_norm).double()).sum())) / ax_norm)
    z_unit = z / float(z.double().norm())
    bz = adjoint(z_unit)
    bz_norm = float(bz.double().norm())
    if bz_norm > 0:  # ||Bz||^2 against <A B z, z>, both divided by ||Bz||^2
        mismatches.append(abs(float((forward(bz / bz_norm).double() * z_unit.double()).sum()) - bz_norm) / bz_norm)
    if not all(math.isfinite(v) for v in (ax_norm, bz_norm, *mismatches)):
        return math.inf  # a NaN would pass any "mismatch > limit" test
    return max(mismatches, default=0.0)


def norm_lower_bound(forward, adjoint, x_like: torch.Tensor, steps: int = 4, seed: int = 0) -> float:
    """A lower bound on ``||A||``: ``||A u|| / ||u||`` after ``steps`` power-method steps from a
    random ``u`` (any ``u`` gives one; the steps raise it towards ``||A||``). A claimed upper bound
    below it is false."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(x_like.shape, generator=g, dtype=torch.float64).to(x_like.device, x_like.dtype)
    estimate, _ = power_iteration(forward, adjoint, u, n_iter=steps)
    return estimate


def prox_optimality_residual(operator, like: torch.Tensor, gamma: float, norm: float) -> tuple[float, float]:
    """``(relative residual, rounding limit)`` of ``operator.prox_data`` on a random probe ``(z, y)``
    shaped like :func:`probe_measurements` of the measurements ``like`` (one measurement, or the
    whole batch for an operator with per-image parameters):
    the optimality condition of ``argmin_x gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2`` is
    ``(gamma A^T A + I) x = gamma A^T y + z``; rounding leaves at most ``64 eps (1 + gamma ||A||^2)``
    of its right-hand side. A residual above the limit proves the prox inexact (the probe can only
    falsify: one that passes is taken at its word)."""
    probe_like = probe_measurements(operator, like)
    x_like = operator.A_adjoint(probe_like)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(x_like.shape, generator=g, dtype=torch.float64).to(x_like.device, x_like.dtype)
    y = torch.randn(probe_like.shape, generator=g, dtype=torch.float64).to(probe_like.device, probe_like.dtype)
    x = operator.prox_data(z, y, gamma)
    rhs = gamma * operator.A_adjoint(y) + z
    residual = gamma * operator.A_adjoint(operator.A(x)) + x - rhs
    relative = float(residual.double().norm() / rhs.double().norm().clamp_min(1e-300))
    eps = torch.finfo(like.dtype).eps
    return relative, 64.0 * eps * (1.0 + float(gamma) * norm**2)


def _counted_power_iteration(forward, adjoint, u: torch.Tensor) -> tuple[float, torch.Tensor, int]:
    """:func:`power_iteration` to convergence (``_POWER_TOL``, at most ``_POWER_MAX_ITER`` steps),
    with the number of steps it took."""
    count = 0

    def counted(v: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        return forward(v)

    estimate, u = power_iteration(counted, adjoint, u, n_iter=_POWER_MAX_ITER, tol=_POWER_TOL)
    return estimate, u, count


def probe_measurements(operator: object, y: torch.Tensor) -> torch.Tensor:
    """The measurements to probe ``operator`` with (adjointness, norm, prox): the first of ``y``, or
    the whole batch when it holds parameters per image (``per_image_parameters``: a mask or a blur
    filter per image, which a single measurement does not fit)."""
    return y if getattr(operator, "per_image_parameters", False) else y[:1]


def _holds_per_image_parameters(physics: object, batch: int) -> bool:
    """Whether a deepinv physics holds a tensor per image of a ``batch`` (an inpainting mask or a
    blur filter of shape ``B x ...``): it cannot then be applied to a sub-batch of the images."""
    if batch <= 1:
        return False
    tensors = []
    if isinstance(physics, torch.nn.Module):
        tensors += [t for _, t in physics.named_parameters()] + [t for _, t in physics.named_buffers()]
    tensors += [v for v in vars(physics).values() if isinstance(v, torch.Tensor)]
    return any(t.ndim >= 1 and t.shape[0] == batch for t in tensors)


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
        # the solver then evaluates the whole batch even when some images have converged
        self.per_image_parameters = _holds_per_image_parameters(physics, like.shape[0])

    @property
    def probe_like(self) -> torch.Tensor:
        """A measurement to probe the physics with (:func:`probe_measurements`)."""
        return probe_measurements(self, self._like)

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
        try:
            relative, limit = prox_optimality_residual(self, self._like, gamma, self.norm())
        except (TypeError, ValueError, RuntimeError, NotImplementedError, AttributeError) as err:
            # the physics' own prox is broken for this instance (deepinv's Downsampling without a
            # filter multiplies None): say so here, not from deep inside the first iteration
            raise ValueError(f"prox_l2 of {type(self.physics).__name__} fails on a probe ({type(err).__name__}: "
                             f"{err}); ADMM and DRS need it: use method='fb', which takes gradient steps") from None
        if not relative <= limit:
            return False, (
                f"prox_l2 of {type(self.physics).__name__} is not the exact prox: on a random probe its optimality "
                f"residual is {relative:.1e} relative (rounding would give at most {limit:.1e}); firm "
                "non-expansiveness holds up to that error"
            )
        return True, None

    def norm(self) -> float:
        if self._norm is None:
            # the whole batch when the physics holds an operator per image: the largest norm, which the shared step needs
            x_like = self.physics.A_adjoint(self.probe_like)
            u = torch.randn(x_like.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            u = u.to(x_like.device, x_like.dtype)
            estimate, _, self.norm_iterations = _counted_power_iteration(self.physics.A, self.physics.A_adjoint, u)
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
            f"{type(A).__name__} is not a forward operator: expected pnp_stable.operators, a "
            "deepinv.physics.LinearPhysics (methods A, A_adjoint, prox_l2) or the ForwardOperator protocol "
            f"(pnp_stable.protocols){_protocol_gaps(A)}"
        )
    # wrapped first: the wrapper knows whether the physics holds a filter per image, which takes
    # only its own batch
    operator = A if native else PhysicsOperator(A, like, margin)
    probe = probe_measurements(operator, like)
    x_like = A.A_adjoint(probe)  # type: ignore[attr-defined]
    mismatch = check_adjointness(A.A, A.A_adjoint, x_like, probe)  # type: ignore[attr-defined]
    limit = 1e-8 if like.dtype == torch.float64 else 1e-3
    if not mismatch <= limit:  # NaN included
        hint = (" (deepinv's Tomography: keep adjoint_via_backprop=True, its default, for an exact adjoint)"
                if type(A).__name__ == "Tomography" else "")
        raise ValueError(
            f"{type(A).__name__}.A_adjoint is not the adjoint of A (relative mismatch {mismatch:.2e} > {limit:g}){hint}"
        )
    if native:
        _check_claimed_norm(A, x_like)
    return operator  # type: ignore[return-value]


def _protocol_gaps(A: object) -> str:
    """``": missing simulate; norm_kind 'upper' is not ..."`` for an object that has some of the
    ForwardOperator protocol's members (empty when it has none: it is something else)."""
    members = ("A", "A_adjoint", "norm", "prox_data", "simulate")
    present = [m for m in members if callable(getattr(A, m, None))]
    if not present:
        return ""
    gaps = []
    missing = [m for m in members if m not in present]
    if missing:
        gaps.append(f"missing {', '.join(missing)}")
    kind = getattr(A, "norm_kind", None)
    if kind not in ("exact", "certified", "estimated"):
        gaps.append(f"norm_kind {kind!r} is not 'exact', 'certified' or 'estimated'")
    return ": " + "; ".join(gaps) if gaps else ""


def _check_claimed_norm(A: ForwardOperator, x_like: torch.Tensor) -> None:
    """Refuse a protocol operator whose ``norm()`` is not a positive finite number, or lies below a
    lower bound on ``||A||`` found by a few power-method steps: every step size and every guarantee
    rests on it being an upper bound."""
    name = type(A).__name__
    returned = A.norm()
    try:
        claimed = float(returned)  # a float, a numpy scalar, a one-element tensor
    except (TypeError, ValueError):
        raise ValueError(f"{name}.norm() must return a number, got {type(returned).__name__}") from None
    if not (math.isfinite(claimed) and claimed > 0):
        raise ValueError(f"{name}.norm() returned {claimed}: an upper bound on ||A|| must be positive and finite")
    lower = norm_lower_bound(A.A, A.A_adjoint, x_like)
    # rounding of the power step: a correct exact norm may be met from below to ~1e-7 (float32)
    if not lower <= claimed * (1.0 + 16.0 * torch.finfo(x_like.dtype).eps ** 0.5):  # NaN included
        raise ValueError(f"{name}.norm() = {claimed:.6g} ({A.norm_kind}) is not an upper bound on ||A||: "
                         f"||A u|| / ||u|| = {lower:.6g} for a vector u (power-method steps from a random start)")

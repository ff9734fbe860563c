"""Common machinery of our operators: the ForwardOperator protocol on top of deepinv physics.

:class:`CertifiedLinearPhysics` is a ``deepinv.physics.LinearPhysics`` that adds

* ``norm()`` — an upper bound on ``||A||`` (how it was obtained: ``norm_kind`` and
  :meth:`norm_bound`), cached after the first call;
* ``prox_data(z, y, gamma)`` — ``argmin_x gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2`` (deepinv's
  ``prox_l2`` convention; ``prox_l2`` is routed here so deepinv's solvers use it), in closed form
  where a subclass provides one and otherwise by warm-started batched CG;
* ``simulate(x, noise_level, seed)`` — ``A x`` plus Gaussian noise from a private generator;
* input validation with one-line ``ValueError`` messages.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from deepinv.physics import LinearPhysics

from pnp_stable.operators.cg import (
    ProxConvergenceWarning,
    ProxInfo,
    batched_conjugate_gradient,
    default_tolerance,
    refined_conjugate_gradient,
)
from pnp_stable.protocols import NormKind

__all__ = ["CertifiedLinearPhysics", "NormBound"]

_NORM_KINDS = ("exact", "certified", "estimated")
# the CG prox starts from the previous solution alone (its product known) when its relative residual
# is at most this; otherwise z is tried too, at the cost of one product
WARM_START_TRUSTED = 0.1


@dataclass(frozen=True)
class NormBound:
    """How ``||A||`` is known: ``value`` is an upper bound (the number ``norm()`` returns) of the
    stated ``kind``; ``lower`` is a proven lower bound when one is available (the gap
    ``value / lower - 1`` says how loose ``value`` can be); ``method`` names the argument."""

    value: float
    kind: NormKind
    method: str
    lower: float | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _NORM_KINDS:
            raise ValueError(f"norm kind must be one of {_NORM_KINDS}, got {self.kind!r}")
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"norm bound must be finite and non-negative, got {self.value}")


def _check_kwargs(kwargs: dict[str, Any], where: str) -> None:
    # deepinv passes physics parameters as keyword arguments; ours are fixed at construction, so
    # a non-None one would be silently ignored: refuse it instead
    unexpected = {k: v for k, v in kwargs.items() if v is not None}
    if unexpected:
        raise ValueError(f"{where} does not accept parameters {sorted(unexpected)}; build a new operator instead")


class CertifiedLinearPhysics(LinearPhysics):
    """Base class; subclasses implement ``A``, ``A_adjoint``, ``_compute_norm_bound``,
    ``input_shape_for``/``output_shape_for``, and optionally ``_closed_form_prox``.

    ``cg_tol`` (default: exact to the result's rounding, float64 residuals for float32 problems
    too) and ``cg_max_iter`` control the iterative prox; ``last_prox_info`` holds the
    :class:`ProxInfo` of the latest prox, including certified bounds on its error.
    """

    norm_kind: NormKind
    #: ``prox_data`` takes ``max_error`` and reports certified error bounds in
    #: ``last_prox_info.error_bounds`` (the solvers then account for an inexact prox, see
    #: :mod:`pnp_stable.solvers.monitor`)
    certified_prox_error: bool = True

    def __init__(
        self,
        img_size: tuple[int, ...] | None,
        norm_kind: NormKind,
        cg_tol: float | None = None,
        cg_max_iter: int = 500,
    ) -> None:
        super().__init__(img_size=img_size)
        if norm_kind not in _NORM_KINDS:
            raise ValueError(f"norm kind must be one of {_NORM_KINDS}, got {norm_kind!r}")
        if cg_tol is not None and not (0 < cg_tol < 1):
            raise ValueError(f"cg_tol must lie in (0, 1), got {cg_tol}")
        if int(cg_max_iter) != cg_max_iter or cg_max_iter < 1:
            raise ValueError(f"cg_max_iter must be a positive integer, got {cg_max_iter}")
        self.norm_kind = norm_kind
        self.cg_tol = cg_tol
        self.cg_max_iter = int(cg_max_iter)
        self.last_prox_info: ProxInfo | None = None
        self._norm_bound: NormBound | None = None
        # (previous prox solution x, A^T A x or None): the next prox's warm start, no extra product
        self._warm_start: tuple[torch.Tensor, torch.Tensor | None] | None = None
        # (y, its version, the dtype of A^T y, A^T y): y is usually the same tensor through a whole solve
        self._adjoint_cache: tuple[torch.Tensor, int, torch.dtype, torch.Tensor] | None = None

    # -- shapes ------------------------------------------------------------------------------
    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:  # pragma: no cover
        """Shape of ``A x`` for ``x`` of ``input_shape`` (after validating ``input_shape``)."""
        raise NotImplementedError

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:  # pragma: no cover
        """Shape of ``A^T y`` for ``y`` of ``output_shape`` (after validating ``output_shape``)."""
        raise NotImplementedError

    def _check_tensor(self, t: torch.Tensor, name: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {tuple(t.shape)}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be a float32 or float64 tensor, got {t.dtype}")

    # -- warm start of the iterative prox ------------------------------------------------------
    def warm_start_state(self) -> dict[str, torch.Tensor] | None:
        """The iterative prox's warm start (the previous prox solution and its ``A^T A`` product),
        or None. A solver snapshot stores it, so that a resumed solve starts each CG from the guesses
        the uninterrupted one used and takes exactly its proxes. The tensors are the operator's own
        (not copies): copy them to keep them."""
        if self._warm_start is None:
            return None
        solution, normal = self._warm_start
        return {"solution": solution} if normal is None else {"solution": solution, "normal": normal}

    def restore_warm_start(self, saved: dict[str, torch.Tensor] | None, device: torch.device | str) -> None:
        """Set the warm start from :meth:`warm_start_state`'s output (None clears it), on ``device``
        and in the stored dtype (the CG works in float64)."""
        if saved is None:
            self._warm_start = None
            return
        normal = saved.get("normal")
        self._warm_start = (saved["solution"].to(device), None if normal is None else normal.to(device))

    def _check_finite(self, t: torch.Tensor, name: str) -> None:
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # loaded buffers may define another operator: forget what was derived from the old ones
        super()._load_from_state_dict(*args, **kwargs)
        self._norm_bound = None
        self._warm_start = None
        self._adjoint_cache = None

    def _adjoint_of_data(self, y: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``A^T y`` computed in ``dtype`` (default ``y``'s), reused while ``y`` is the very same
        tensor object, unmodified in place (its version counter): the data term's right-hand side
        does not change during a solve. The cache holds a reference to ``y``, so its memory cannot
        be reused by another tensor."""
        dtype = y.dtype if dtype is None else dtype
        if y.is_inference():
            # an inference tensor (made under torch.inference_mode, e.g. a solver's sub-batch y[idx])
            # has no version counter, so an in-place change could not be detected: never cache it
            return self.A_adjoint(y.to(dtype)).detach()
        cached = self._adjoint_cache
        if cached is not None and cached[0] is y and cached[1] == y._version and cached[2] == dtype:
            return cached[3]
        value = self.A_adjoint(y.to(dtype)).detach()
        self._adjoint_cache = (y, y._version, dtype, value)
        return value

    # -- norm --------------------------------------------------------------------------------
    def _compute_norm_bound(self) -> NormBound:  # pragma: no cover
        raise NotImplementedError

    def norm_bound(self) -> NormBound:
        """The :class:`NormBound` behind :meth:`norm` (computed once, then cached)."""
        if self._norm_bound is None:
            bound = self._compute_norm_bound()
            if bound.kind != self.norm_kind:
                raise RuntimeError(f"{type(self).__name__}: norm computed as {bound.kind}, declared {self.norm_kind}")
            self._norm_bound = bound
        return self._norm_bound

    def norm(self) -> float:
        """An upper bound on ``||A||`` (operator 2-norm), usable for step sizes; see ``norm_kind``."""
        return self.norm_bound().value

    # -- simulation --------------------------------------------------------------------------
    def simulate(self, x: torch.Tensor, noise_level: float, seed: int | None = None) -> torch.Tensor:
        """``A x + noise_level * n`` with ``n`` standard Gaussian drawn from a private
        ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched). Deterministic given
        ``seed`` on a given device; ``seed=None`` draws a fresh seed."""
        self._check_tensor(x, "x")
        self._check_finite(x, "x")
        sigma = float(noise_level)
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"noise_level must be a finite non-negative number, got {noise_level}")
        y = self.A(x)
        if sigma == 0:
            return y
        generator = torch.Generator(device=y.device)
        if seed is None:
            generator.seed()
        else:
            if isinstance(seed, bool) or int(seed) != seed:
                raise ValueError(f"seed must be an integer, got {seed!r}")
            generator.manual_seed(int(seed))
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return y + sigma * noise

    # -- prox --------------------------------------------------------------------------------
    def _gamma(self, gamma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``gamma`` as a ``(B, 1, 1, 1)`` tensor; a scalar or one value per image."""
        g = torch.as_tensor(gamma, dtype=like.dtype, device=like.device)
        if g.numel() == 1:
            g = g.reshape(1).expand(like.shape[0])
        elif g.numel() == like.shape[0]:
            g = g.reshape(like.shape[0])
        else:
            raise ValueError(f"gamma must be a scalar or have one value per image ({like.shape[0]}), got shape {tuple(g.shape)}")
        if not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
            # a finite float64 gamma can still overflow in the data's precision (1e300 in float32)
            finite_as_given = bool(torch.isfinite(torch.as_tensor(gamma, dtype=torch.float64)).all())
            overflow = finite_as_given and not bool(torch.isfinite(g).all())
            why = f" (it overflows to infinity in {str(like.dtype).replace('torch.', '')})" if overflow else ""
            raise ValueError(f"gamma must be finite and non-negative, got {gamma}{why}")
        return g.reshape(-1, 1, 1, 1)

    def _closed_form_prox(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor | None:
        """Exact prox, or None when this operator has no closed form (CG is used instead)."""
        return None

    def _cg_preconditioner(self, gamma: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """An SPD approximation of ``(gamma A^T A + I)^-1`` (``gamma``: ``(B, 1, 1, 1)`` float64) for
        the CG prox, applied image-wise in the dtype of its input; None: plain CG."""
        return None

    def prox_data(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        gamma: float | torch.Tensor,
        tol: float | None = None,
        max_iter: int | None = None,
        max_error: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``argmin_x gamma/2 ||A x - y||^2 + 1/2 ||x - z||^2``, i.e. the solution of
        ``(gamma A^T A + I) x = gamma A^T y + z``.

        Exact (closed form) where the operator has one; otherwise batched CG with float64 residuals
        (for float32 ``z`` by mixed-precision refinement: float64 residuals, float32 CG
        corrections; the result is returned in ``z``'s dtype), warm-started from the previous prox
        solution when the shapes match (from it alone when its relative residual is at most
        ``WARM_START_TRUSTED``, else from the better of it and ``z``), to relative residual ``tol`` (default ``cg_tol``, else 1e-10
        for float64 ``z`` and, for float32 ``z``, ``eps_32 ||z|| / ||rhs||`` clamped to
        [1e-10, 1e-8]: an error below the rounding of the float32 result) within ``max_iter``
        iterations (default ``cg_max_iter``). If an image does not
        converge, a :class:`ProxConvergenceWarning` is issued; ``last_prox_info`` always records
        the outcome. ``gamma`` is a scalar or one value per image. The CG path is not
        differentiable (it runs under ``no_grad``); the closed forms are.

        ``max_error`` (a scalar or one value per image) asks for an *inexact* prox instead of
        ``tol``/``cg_tol``: CG stops once the absolute residual ``||rhs - M x||`` is at most
        ``max_error`` (or at the rounding level of the default tolerance, whichever is looser).
        Guarantee: since every eigenvalue of ``M = gamma A^T A + I`` is >= 1,
        ``||x - prox|| <= ||rhs - M x||``, and ``last_prox_info.error_bounds`` reports that residual
        per image (computed in float64, ``A^T y`` included, before the result is rounded to ``z``'s
        dtype) whether or not ``max_error`` was given. The closed forms are exact (bound 0) and
        ignore ``max_error``. An operator may precondition its CG (:meth:`_cg_preconditioner`).
        """
        self._check_tensor(z, "z")
        self._check_tensor(y, "y")
        expected = self.output_shape_for(z.shape)
        if tuple(y.shape) != tuple(expected):
            raise ValueError(f"y has shape {tuple(y.shape)} but A z has shape {tuple(expected)} for z of shape {tuple(z.shape)}")
        self._check_finite(z, "z")
        self._check_finite(y, "y")
        g = self._gamma(gamma, z)
        exact = self._closed_form_prox(z, y, g)
        if exact is not None:
            self.last_prox_info = ProxInfo("closed-form", 0, (0.0,) * z.shape[0], (True,) * z.shape[0], 0.0,
                                           (0.0,) * z.shape[0])
            return exact
        # The solve is exact to the result's rounding whatever the problem's dtype: the monitored
        # residual of a PnP solve is only as trustworthy as the prox is exact, and a float32 CG stops
        # at ~1e-5 ||rhs||, an error that exceeded the fixed-point residual near convergence
        # (residual increases in 4 of 8 zero/reflect deblurring runs; none once exact). For float32
        # problems, mixed-precision refinement keeps most products in float32 (float64 A^T A costs
        # 2.6x a float32 one for CT).
        work = torch.float64
        # a budget replaces the tolerance (the rounding floor below still applies)
        tol = None if max_error is not None else self.cg_tol if tol is None else float(tol)
        max_iter = self.cg_max_iter if max_iter is None else int(max_iter)
        with torch.no_grad():
            g_work = g.to(work) if isinstance(g, torch.Tensor) else g
            g_coarse = g.to(z.dtype) if isinstance(g, torch.Tensor) else g
            # A^T y in float64 too: the error bound is that of the exact prox of the given z and y
            rhs = g_work * self._adjoint_of_data(y, work) + z.to(work)
            if tol is None:
                tol = default_tolerance(work)
                if z.dtype != work:
                    # exact to the rounding of the float32 result: an error below eps ||z|| cannot
                    # be seen in what is returned, nor move the monitored residual
                    z_norm = z.to(work).flatten(1).norm(dim=1)
                    ratio = float((z_norm / rhs.flatten(1).norm(dim=1).clamp_min(1e-300)).min())
                    tol = min(1e-8, max(tol, torch.finfo(z.dtype).eps * ratio))
            if max_error is not None:
                tol = self._loosened_tolerance(tol, max_error, rhs)
            guesses: list[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]] = [z.to(work)]
            warm = self._warm_start
            if warm is not None and warm[0].shape == z.shape and warm[0].dtype == work and warm[0].device == z.device:
                previous, normal_previous = warm
                if normal_previous is None:
                    guesses.append(previous)
                else:  # M x_prev = gamma A^T A x_prev + x_prev from the stored A^T A x_prev: no product
                    m_previous = g_work * normal_previous + previous
                    guesses.append((previous, m_previous))
                    # z's residual costs a product of its own, worth it only where the previous solution
                    # is a poor start (a new problem): along an iteration z won only the first prox
                    distance = (rhs - m_previous).flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1).clamp_min(1e-300)
                    if bool((distance <= WARM_START_TRUSTED).all()):
                        guesses.pop(0)
            last_product: dict[str, torch.Tensor] = {}

            def apply_matrix(v: torch.Tensor) -> torch.Tensor:
                normal = self.A_adjoint_A(v)
                last_product["input"], last_product["normal"] = v, normal
                return g_work * normal + v

            precondition = self._cg_preconditioner(g_work)
            if z.dtype == work:
                x, info, _ = batched_conjugate_gradient(apply_matrix, rhs, guesses, tol=tol, max_iter=max_iter,
                                                        precondition=precondition)
            else:
                x, info, _ = refined_conjugate_gradient(
                    apply_matrix, lambda v: g_coarse * self.A_adjoint_A(v) + v, rhs, guesses, tol=tol,
                    max_iter=max_iter, coarse_dtype=z.dtype, precondition=precondition)
            # CG's last product is usually its final residual check, i.e. A^T A of the solution
            normal_x = last_product["normal"] if last_product.get("input") is x else None
            self._warm_start = (x.detach(), None if normal_x is None else normal_x.detach())
            x = x.to(z.dtype)
        self.last_prox_info = info
        if not info.all_converged:
            worst = max(info.relative_residuals)
            warnings.warn(
                f"{type(self).__name__}.prox_data: CG stopped after {info.iterations} iterations with "
                f"relative residual {worst:.2e} > tol {info.tolerance:.1e}; raise max_iter or tol",
                ProxConvergenceWarning,
                stacklevel=2,
            )
        return x

    @staticmethod
    def _loosened_tolerance(tol: float, max_error: float | torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """Per-image relative tolerances ``max(tol, max_error_i / ||rhs_i||)``, at most 1 (the zero
        solution's residual)."""
        bound = torch.as_tensor(max_error, dtype=torch.float64, device=rhs.device).reshape(-1)
        if bound.numel() not in (1, rhs.shape[0]):
            raise ValueError(f"max_error must be a scalar or have one value per image ({rhs.shape[0]}), "
                             f"got {bound.numel()} values")
        if bool(torch.isnan(bound).any()) or bool((bound < 0).any()):
            raise ValueError("max_error must be non-negative")
        rhs_norm = rhs.flatten(1).norm(dim=1).to(torch.float64).clamp_min(1e-300)
        return (bound.expand(rhs.shape[0]) / rhs_norm).clamp(min=tol, max=1.0)

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float | torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """deepinv's name for :meth:`prox_data` (same convention); ``tol``/``max_iter`` are honoured."""
        tol, max_iter = kwargs.pop("tol", None), kwargs.pop("max_iter", None)
        kwargs.pop("verbose", None)
        kwargs.pop("solver", None)
        _check_kwargs(kwargs, f"{type(self).__name__}.prox_l2")
        return self.prox_data(z, y, gamma, tol=tol, max_iter=max_iter)

"""Per-image monitoring of the absolute fixed-point residual ``r_k = ||T w_k - w_k||``.

For an averaged ``T`` the theorem says ``r_k`` never increases. In floating point, evaluating
``T`` carries an error of order ``eps ||w||`` whatever the size of ``r``, so an increase is only
meaningful beyond

    r_k > r_{k-1} (1 + c eps) + c eps ||w_k||,

with ``eps`` the machine epsilon of the dtype and ``c`` the ``tolerance_factor`` (default 64:
deep networks and FFTs accumulate a few tens of roundings per evaluation). Increases beyond that
falsify the averagedness assumption; they are counted per image and warned about once per solve.

An inexact evaluation ``T~ w = T w + e`` with a *certified* bound ``||e|| <= err`` (an iterative
data prox, :mod:`pnp_stable.solvers.splitting`) adds that bound twice: with ``w_{k+1} = T~ w_k``,

    ||T~ w_{k+1} - w_{k+1}|| <= ||T w_{k+1} - T w_k|| + err_k + err_{k+1} <= r_k + err_k + err_{k+1}

for a non-expansive ``T``, so the test becomes ``r_k > r_{k-1} (1 + c eps) + c eps ||w_k|| + err_{k-1}
+ err_k``: still a falsification test, as sharp as the bounds are small next to ``r``.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["MonotonicityWarning", "ResidualMonitor", "batch_norms"]

DEFAULT_TOLERANCE_FACTOR = 64.0


class MonotonicityWarning(RuntimeWarning):
    """The absolute fixed-point residual increased beyond floating-point tolerance."""


def batch_norms(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each batch element, in float64."""
    return v.reshape(v.shape[0], -1).to(torch.float64).norm(dim=1)


class ResidualMonitor:
    """Tracks ``r_k`` per image, counts increases beyond float tolerance and decides convergence.

    ``update(iteration, indices, residual, scale, errors)`` records ``r_k``, ``||w_k||`` and the
    certified error bound of the evaluation ``T~ w_k`` (0 if exact) for the images ``indices``
    (those still iterating); an image is converged once ``r_k / max(||w_k||, tiny) <= tol``.
    """

    def __init__(
        self, batch: int, dtype: torch.dtype, tol: float, tolerance_factor: float = DEFAULT_TOLERANCE_FACTOR,
        guarantee_holds: bool = True, method: str = "", assumptions: tuple[str, ...] = (),
    ) -> None:
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        if not tolerance_factor >= 0:
            raise ValueError(f"the monotonicity tolerance factor must be >= 0, got {tolerance_factor}")
        self.eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
        self.tol = float(tol)
        self.factor = float(tolerance_factor)
        self.last = [None] * batch  # previous r per image
        self.first: list[float | None] = [None] * batch  # r_0 per image (of the whole solve, resumes included)
        self.last_error = [0.0] * batch  # certified error bound of the evaluation behind it
        self.violations = [0] * batch
        self.first_violation: list[int | None] = [None] * batch
        self.largest_increase = [0.0] * batch  # largest (r_k - r_{k-1}) / r_{k-1} beyond tolerance
        self.converged = [False] * batch
        self.warned = False
        self.guarantee_holds = guarantee_holds
        self.method = method
        self.assumptions = tuple(assumptions)

    def restore(self, last: list[float | None], violations: list[int], converged: list[bool],
                last_error: list[float] | None = None, first: list[float | None] | None = None) -> None:
        """Continue from a previous run (resume)."""
        self.last = list(last)
        if first is not None:
            self.first = list(first)
        self.violations = list(violations)
        self.converged = list(converged)
        if last_error is not None:
            self.last_error = [float(e or 0.0) for e in last_error]

    def allowed(self, previous: float, scale: float, error: float = 0.0) -> float:
        """Largest residual that does not count as an increase after ``previous``, when the two
        evaluations' certified error bounds sum to ``error``."""
        slack = self.factor * self.eps
        return previous * (1.0 + slack) + slack * scale + error

    def update(self, iteration: int, indices: list[int], residual: list[float], scale: list[float],
               errors: list[float] | None = None) -> list[float]:
        """Record one iteration; returns the relative residuals of ``indices``."""
        relative = []
        for n, (i, r, s) in enumerate(zip(indices, residual, scale)):
            prev = self.last[i]
            error = 0.0 if errors is None else float(errors[n])
            if prev is not None and r > self.allowed(prev, s, self.last_error[i] + error):
                self.violations[i] += 1
                if self.first_violation[i] is None:
                    self.first_violation[i] = iteration
                self.largest_increase[i] = max(self.largest_increase[i], (r - prev) / max(prev, 1e-300))
                if not self.warned:
                    self.warned = True
                    if not self.guarantee_holds:
                        context = "which it may: no convergence guarantee holds for this configuration"
                    elif self.assumptions:
                        context = ("although the convergence guarantee holds if its assumptions do: one of them "
                                   f"({'; '.join(self.assumptions)}) or a certificate is contradicted")
                    else:
                        context = "although the convergence guarantee holds: the averagedness certificate is contradicted"
                    warnings.warn(
                        f"{(self.method.upper() + ' ') if self.method else ''}fixed-point residual increased at iteration {iteration} of image {i} "
                        f"from {prev:.4e} to {r:.4e}, beyond floating-point tolerance, {context}; "
                        "further increases are counted in result.monotonicity_violations",
                        MonotonicityWarning,
                        stacklevel=3,
                    )
            self.last[i] = r
            self.last_error[i] = error
            if self.first[i] is None:
                self.first[i] = r
            rel = r / max(s, 1e-30)
            relative.append(rel)
            if rel <= self.tol:
                self.converged[i] = True
        return relative

    @property
    def monotone(self) -> bool:
        return not any(self.violations)

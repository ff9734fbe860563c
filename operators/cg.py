"""Batched conjugate gradient for ``(gamma A^T A + I) x = b`` with per-image convergence.

Used for the data-fidelity prox of operators without a closed form. Each image of the batch has
its own step lengths and its own stopping test ``||b - M x|| <= tol ||b||``; an image that has
converged is frozen (its updates are masked out) while the others continue. Non-convergence is
never silent: :class:`ProxInfo` records the true final residuals, and the caller warns with
:class:`ProxConvergenceWarning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["ProxInfo", "ProxConvergenceWarning", "batched_conjugate_gradient", "default_tolerance",
           "refined_conjugate_gradient"]


class ProxConvergenceWarning(RuntimeWarning):
    """The iterative data-fidelity prox stopped at its iteration cap before reaching its tolerance."""


@dataclass(frozen=True)
class ProxInfo:
    """Outcome of one data-fidelity prox: ``method`` ("closed-form" or "cg"), CG ``iterations``,
    the true relative residuals ``||b - M x|| / ||b||`` per image, whether each converged, the
    (largest per-image) relative ``tolerance``, and ``error_bounds``: per image, a certified upper
    bound on the distance from the returned solution to the exact prox, before its rounding to the
    problem's dtype. For ``M = gamma A^T A + I``, whose eigenvalues are all >= 1, that bound is the
    absolute residual ``||b - M x||`` itself (computed in float64); a closed form has bound 0."""

    method: str
    iterations: int
    relative_residuals: tuple[float, ...]
    converged: tuple[bool, ...]
    tolerance: float
    error_bounds: tuple[float, ...] = ()

    @property
    def all_converged(self) -> bool:
        return all(self.converged)


def default_tolerance(dtype: torch.dtype) -> float:
    """Relative residual reachable reliably in ``dtype`` for well-conditioned systems."""
    return 1e-10 if dtype == torch.float64 else 1e-5


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _cg_info(iterations: int, res_sq: torch.Tensor, scale: torch.Tensor, converged: torch.Tensor,
             tol: float | torch.Tensor) -> ProxInfo:
    absolute = res_sq.sqrt()
    return ProxInfo(method="cg", iterations=iterations,
                    relative_residuals=tuple(float(v) for v in absolute / scale),
                    converged=tuple(bool(c) for c in converged), tolerance=float(torch.as_tensor(tol).max()),
                    error_bounds=tuple(float(v) for v in absolute))


def _thresholds(rhs: torch.Tensor, tol: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image stopping thresholds ``tol ||rhs||`` and the scale ``||rhs||`` (1 for a zero rhs,
    whose exact solution 0 is then compared absolutely against ``tol``). ``tol`` is a scalar or
    one value per image."""
    rhs_norm = _batch_dot(rhs, rhs).sqrt()
    scale = torch.where(rhs_norm > 0, rhs_norm, torch.ones_like(rhs_norm))
    return torch.as_tensor(tol, dtype=scale.dtype, device=scale.device) * scale, scale


def _best_start(apply_matrix, rhs: torch.Tensor, initial_guesses) -> tuple[torch.Tensor, ...]:
    """Per image, the guess with the smallest residual: ``(x, M x, rhs - M x, ||rhs - M x||^2)``."""
    if not initial_guesses:
        raise ValueError("conjugate gradients need at least one initial guess")
    x = m_x = residual = res_sq = None
    for item in initial_guesses:
        guess, m_guess = item if isinstance(item, tuple) else (item, None)
        if m_guess is None:
            m_guess = apply_matrix(guess)
        candidate_residual = rhs - m_guess
        candidate_sq = _batch_dot(candidate_residual, candidate_residual)
        if x is None:
            x, m_x, residual, res_sq = guess.clone(), m_guess, candidate_residual, candidate_sq
            continue
        better = candidate_sq < res_sq
        mask = _expand(better, x)
        x = torch.where(mask, guess, x)
        m_x = torch.where(mask, m_guess, m_x)
        residual = torch.where(mask, candidate_residual, residual)
        res_sq = torch.where(better, candidate_sq, res_sq)
    return x, m_x, residual, res_sq


def batched_conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    initial_guesses: list[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]],
    tol: float | torch.Tensor,
    max_iter: int,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ProxInfo, torch.Tensor]:
    """Solve ``M x = rhs`` for a symmetric positive-definite ``M`` acting image-wise on a batch.

    Guarantee: image ``i`` is reported converged in the returned :class:`ProxInfo` if and only if
    its *true* residual (recomputed, not the CG recurrence) satisfies ``||rhs_i - M x_i|| <= tol
    ||rhs_i||`` (``tol`` is a scalar or one value per image). When the recurrence claims
    convergence but the true residual disagrees (rounding drift), CG restarts from the true
    residual; iterations (matrix products in the recurrence) never exceed ``max_iter``. For each image the best of ``initial_guesses`` (smallest initial
    residual) is the starting point; a guess may come as ``(x0, M x0)`` when ``M x0`` is already
    known (it is then not recomputed). ``precondition`` (optional) applies a symmetric
    positive-definite approximation of ``M^-1`` image-wise (preconditioned CG); it changes the
    iterations, never the stopping test, which stays on the true residual. Returns
    ``(x, info, M x)``. Assumes ``M`` is SPD; runs under ``torch.no_grad``.
    """
    with torch.no_grad():
        threshold, scale = _thresholds(rhs, tol)
        x, m_x, residual, res_sq = _best_start(apply_matrix, rhs, initial_guesses)

        iterations = 0
        while True:
            converged = res_sq.sqrt() <= threshold
            if bool(converged.all()) or iterations >= max_iter:
                break
            # z = P r (z = r without a preconditioner); rz = <r, z> drives the recurrence
            z = residual if precondition is None else precondition(residual)
            rz = res_sq if precondition is None else _batch_dot(residual, z)
            direction = z.clone()
            while iterations < max_iter and not bool(converged.all()):
                iterations += 1
                m_direction = apply_matrix(direction)
                curvature = _batch_dot(direction, m_direction)
                active = (~converged) & (curvature > 0)
                safe_curvature = torch.where(curvature > 0, curvature, torch.ones_like(curvature))
                step = torch.where(active, rz / safe_curvature, torch.zeros_like(rz))
                x = x + _expand(step, x) * direction
                residual = residual - _expand(step, x) * m_direction
                new_res_sq = _batch_dot(residual, residual)
                z = residual if precondition is None else precondition(residual)
                new_rz = new_res_sq if precondition is None else _batch_dot(residual, z)
                safe_rz = torch.where(rz > 0, rz, torch.ones_like(rz))
                beta = torch.where(active, new_rz / safe_rz, torch.zeros_like(rz))
                direction = torch.where(_expand(active, x), z + _expand(beta, x) * direction, direction)
                res_sq = torch.where(active, new_res_sq, res_sq)
                rz = torch.where(active, new_rz, rz)
                # zero curvature means a zero direction: nothing left to gain for that image
                converged = converged | (res_sq.sqrt() <= threshold) | (curvature <= 0)
            # the recurrence drifts from the true residual in finite precision: check the truth
            m_x = apply_matrix(x)
            residual = rhs - m_x
            res_sq = _batch_dot(residual, residual)
    return x, _cg_info(iterations, res_sq, scale, converged, tol), m_x


def refined_conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    apply_matrix_coarse: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    initial_guesses: list[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]],
    tol: float | torch.Tensor,
    max_iter: int,
    coarse_dtype: torch.dtype,
    inner_tol: float = 1e-4,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ProxInfo, torch.Tensor]:
    """Mixed-precision iterative refinement: :func:`batched_conjugate_gradient`'s result and
    guarantee, at most of the cost of CG in ``coarse_dtype``.

    The residual ``rhs - M x`` is computed in ``rhs``'s (fine) precision with ``apply_matrix``; each
    correction ``M d = r`` is solved by CG in ``coarse_dtype`` with ``apply_matrix_coarse`` to
    ``inner_tol`` relative to ``||r||`` (or less strictly, when half of that round's residual
    reduction already meets the strictest threshold still open); ``x += d``. Each round gains
    about ``-log10(inner_tol)`` digits until the fine precision's tolerance ``tol`` (a scalar or one
    value per image) is met, while almost every product runs in the coarse precision. Guarantee:
    image ``i`` is reported converged if and only if its true fine-precision residual satisfies
    ``||rhs_i - M x_i|| <= tol ||rhs_i||``; coarse CG iterations
    (counted in ``info.iterations``) never exceed ``max_iter``, and a round that improves no
    unconverged image ends the solve (reported as not converged). ``precondition`` is passed to the
    coarse CG (it must accept ``coarse_dtype`` tensors). Returns ``(x, info, M x)``.
    """
    with torch.no_grad():
        threshold, scale = _thresholds(rhs, tol)
        x, m_x, residual, res_sq = _best_start(apply_matrix, rhs, initial_guesses)
        iterations = 0
        while True:
            converged = res_sq.sqrt() <= threshold
            if bool(converged.all()) or iterations >= max_iter:
                break
            # converged images get a zero right-hand side: their correction is exactly 0
            r = torch.where(_expand(converged, residual), torch.zeros_like(residual), residual).to(coarse_dtype)
            # a loose target (an inexact prox, warm-started close to it) needs less than inner_tol's
            # digits: ask for twice the reduction it needs, no more
            needed = (threshold / res_sq.sqrt().clamp_min(1e-300))[~converged]
            round_tol = min(0.25, max(inner_tol, 0.5 * float(needed.min())))
            zero = torch.zeros_like(r)  # its product is 0: not computed
            d, inner, _ = batched_conjugate_gradient(apply_matrix_coarse, r, [(zero, zero)], tol=round_tol,
                                                     max_iter=max_iter - iterations, precondition=precondition)
            iterations += max(inner.iterations, 1)
            x = x + d.to(x.dtype)
            m_x = apply_matrix(x)
            residual = rhs - m_x
            new_sq = _batch_dot(residual, residual)
            improved = (~converged) & (new_sq < 0.25 * res_sq)
            res_sq = new_sq
            if not bool(improved.any()):
                converged = res_sq.sqrt() <= threshold
                break
    return x, _cg_info(iterations, res_sq, scale, converged, tol), m_x

"""Operator-norm bounds for our forward operators.

Two arguments, both rigorous up to float64 rounding (covered by ``CERTIFIED_RELATIVE_MARGIN``):

**Circulant maxima.** A circular convolution on an ``n1 x n2`` grid is diagonalised by the DFT,
so its norm is exactly ``max |FFT(kernel padded to n1 x n2)|``. A zero-padded ("same") or
"valid" convolution is a compression ``R C E`` of a circular one on a grid large enough that no
output wraps around (``E`` zero-embedding, ``R`` restriction, both of norm <= 1), so the same
maximum on that grid is an upper bound.

**Collatz–Wielandt.** For an operator whose matrix ``B`` is entrywise non-negative and dominates
``|A|`` entrywise, ``||A|| <= || |A| || <= ||B||`` and ``||B||^2 = rho(M)`` with ``M = B^T B``
non-negative and symmetric. For any vector ``v > 0``, ``rho(M) <= max_i (M v)_i / v_i``
(Collatz–Wielandt). Iterating ``v <- M v`` from ``v = 1`` (the first bound is exactly the Schur
test ``||B||_1 ||B||_inf``) tightens the upper bound towards ``rho(M)``, while the Rayleigh
quotient ``v^T M v / v^T v`` is a lower bound on ``rho(M)``; we stop when they agree to
``rel_gap``. Entries with ``v_i = 0`` belong to zero rows of ``M`` (``M_ii > 0`` for every
non-zero row since ``M_ii = ||B e_i||^2``) and are skipped. The products must be computed by
direct sums of non-negative terms (not FFTs), so that every entry of ``M v`` carries a *relative*
rounding error of order ``n eps``, which the margin covers.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from pnp_stable.layers.norms import CERTIFIED_RELATIVE_MARGIN

__all__ = ["circulant_kernel_spectrum_max", "collatz_wielandt_norm_bound", "CollatzWielandtResult"]


def circulant_kernel_spectrum_max(kernel: torch.Tensor, grid: tuple[int, int]) -> float:
    """``max |DFT|`` of a 2-D ``kernel`` zero-padded to ``grid``: the exact norm of the circular
    convolution with ``kernel`` on ``grid`` (computed in float64, plus the rounding margin)."""
    k = kernel.detach().to(device="cpu", dtype=torch.float64)
    n1, n2 = int(grid[0]), int(grid[1])
    if k.shape[-2] > n1 or k.shape[-1] > n2:
        raise ValueError(f"kernel {tuple(k.shape)} does not fit the {n1}x{n2} grid")
    spectrum = torch.fft.rfft2(k, s=(n1, n2))
    return float(spectrum.abs().max()) * (1.0 + CERTIFIED_RELATIVE_MARGIN)


class CollatzWielandtResult(tuple):
    """``(upper, lower, iterations)``: ``upper`` bounds ``||B||`` from above, ``lower`` from below."""

    __slots__ = ()

    def __new__(cls, upper: float, lower: float, iterations: int):
        return super().__new__(cls, (upper, lower, iterations))

    @property
    def upper(self) -> float:
        return self[0]

    @property
    def lower(self) -> float:
        return self[1]

    @property
    def iterations(self) -> int:
        return self[2]


def collatz_wielandt_norm_bound(
    apply_b: Callable[[torch.Tensor], torch.Tensor],
    apply_b_adjoint: Callable[[torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    rel_gap: float = 1e-3,
    max_iter: int = 500,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    progress: Callable[[int, float, float], None] | None = None,
) -> CollatzWielandtResult:
    """Certified upper and lower bounds on ``||B||`` for an entrywise non-negative matrix ``B``.

    Assumes ``apply_b`` / ``apply_b_adjoint`` compute ``B v`` and ``B^T w`` by sums of
    non-negative terms (see the module docstring). Guarantee: ``lower <= ||B|| <= upper`` up to
    float rounding (the margin is included in ``upper``); the iteration stops once
    ``upper / lower - 1 <= rel_gap`` or after ``max_iter`` products with ``B^T B``. Every
    intermediate bound is valid, so the smallest one seen is returned.
    """
    with torch.no_grad():
        v = torch.ones(input_shape, dtype=dtype, device=device)
        best_upper_sq, best_lower_sq = math.inf, 0.0
        iterations = 0
        for iterations in range(1, max_iter + 1):
            w = apply_b_adjoint(apply_b(v))
            if bool((w < 0).any()):
                raise ValueError("the operator given to the Collatz-Wielandt bound is not entrywise non-negative")
            positive = v > 0
            if bool((w[~positive] > 0).any()):
                # a row of M reaches an entry where v vanished: the bound from this v is void
                break
            if not bool(positive.any()):
                return CollatzWielandtResult(0.0, 0.0, iterations)
            upper_sq = float((w[positive] / v[positive]).max())
            lower_sq = float((v * w).sum() / (v * v).sum())
            best_upper_sq = min(best_upper_sq, upper_sq)
            best_lower_sq = max(best_lower_sq, lower_sq)
            if progress is not None:
                progress(iterations, math.sqrt(best_upper_sq), math.sqrt(best_lower_sq))
            if best_lower_sq > 0 and math.sqrt(best_upper_sq / best_lower_sq) - 1.0 <= rel_gap:
                break
            peak = w.max()
            if float(peak) == 0.0:
                return CollatzWielandtResult(0.0, 0.0, iterations)
            v = w / peak
    if not math.isfinite(best_upper_sq):
        raise RuntimeError("Collatz-Wielandt iteration produced no valid bound")
    upper = math.sqrt(best_upper_sq) * (1.0 + CERTIFIED_RELATIVE_MARGIN)
    return CollatzWielandtResult(upper, math.sqrt(best_lower_sq), iterations)

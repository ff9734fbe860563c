"""Hamiltonian layers: symplectic-Euler steps of a separable Hamiltonian flow.

The state ``x = (p, q)`` (``p, q in R^d``, concatenated on the last axis) follows the flow of

    H(p, q) = sum G(C p + c) + sum G(B q + b),        G' = s,

i.e. ``p' = -dH/dq = -B^T s(B q + b)`` and ``q' = dH/dp = C^T s(C p + c)``. One layer is one
step of the symplectic Euler method, **p first, then q with the new p**:

    p+ = p  - h B^T s(B q  + b)
    q+ = q  + h C^T s(C p+ + c)

Each half is a shear whose off-diagonal Jacobian block ``h B^T diag(s') B`` (resp. ``C``) is
symmetric, so the Jacobian ``M`` of a layer — and of any stack of layers — satisfies
``M^T J M = J`` with ``J = [[0, I], [-I, 0]]``, for *every* choice of weights, biases, step ``h``
and differentiable activation ``s``. A symplectic matrix has determinant 1 and singular values
in reciprocal pairs ``(sigma, 1/sigma)``; hence ``||M||_2 >= 1``: the sensitivity
``d x_L / d x_j`` of the output to any intermediate state never vanishes (Galimberti et al.,
"Hamiltonian deep neural networks guaranteeing non-vanishing gradients by design", 2023; the
book chapter of Ehrhardt, Murari and Sherry, section 4). The explicit Euler step (both halves
reading the old state) breaks this; :func:`symplectic_defect` measures by how much.

Each layer is also exactly invertible (run the two shears backwards), see
:meth:`SymplecticEulerLayer.inverse`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = [
    "SymplecticEulerLayer",
    "HamiltonianNetwork",
    "canonical_symplectic_matrix",
    "symplectic_defect",
]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
}


def _activation(spec: str | Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(spec):
        return spec
    try:
        return _ACTIVATIONS[spec.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {spec!r}; choose one of {sorted(_ACTIVATIONS)} or pass a callable") from None


class SymplecticEulerLayer(nn.Module):
    """One symplectic-Euler step of the separable Hamiltonian flow (see the module docstring).

    Guarantee: the Jacobian of ``forward`` is symplectic for any parameters and any step, hence
    its spectral norm is ``>= 1`` and its determinant is 1. Assumes ``activation`` is
    differentiable almost everywhere (any elementwise scalar function: no monotonicity needed).

    Args:
        half_dim: ``d``, the size of ``p`` and of ``q``; inputs have ``2 d`` entries on the last axis.
        hidden: number of rows of ``B`` and ``C`` (width of the potentials).
        step: the step ``h`` (any real number; the guarantee does not depend on it).
        activation: ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"softplus"`` or an elementwise callable.
    """

    def __init__(
        self,
        half_dim: int,
        hidden: int,
        step: float = 1.0,
        activation: str | Callable[[torch.Tensor], torch.Tensor] = "tanh",
    ) -> None:
        super().__init__()
        if half_dim < 1 or hidden < 1:
            raise ValueError(f"half_dim and hidden must be positive, got {half_dim}, {hidden}")
        self.half_dim, self.hidden, self.step = int(half_dim), int(hidden), float(step)
        self.activation = _activation(activation)
        bound = 1.0 / math.sqrt(half_dim)  # nn.Linear's default scale
        self.B = nn.Parameter(torch.empty(hidden, half_dim).uniform_(-bound, bound))
        self.C = nn.Parameter(torch.empty(hidden, half_dim).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))
        self.c = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != 2 * self.half_dim:
            raise ValueError(f"expected {2 * self.half_dim} entries on the last axis, got {x.shape[-1]}")
        return x[..., : self.half_dim], x[..., self.half_dim :]

    def _kick_p(self, q: torch.Tensor) -> torch.Tensor:
        """``h dH/dq = h B^T s(B q + b)``."""
        return self.step * (self.activation(q @ self.B.t() + self.b) @ self.B)

    def _drift_q(self, p: torch.Tensor) -> torch.Tensor:
        """``h dH/dp = h C^T s(C p + c)``."""
        return self.step * (self.activation(p @ self.C.t() + self.c) @ self.C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self._split(x)
        p = p - self._kick_p(q)
        q = q + self._drift_q(p)  # the *new* p: this ordering is what makes the step symplectic
        return torch.cat([p, q], dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`forward` (undo the q shear, then the p shear)."""
        p, q = self._split(y)
        q = q - self._drift_q(p)
        p = p + self._kick_p(q)
        return torch.cat([p, q], dim=-1)

    def extra_repr(self) -> str:
        return f"d={self.half_dim}, hidden={self.hidden}, step={self.step:g}"


class HamiltonianNetwork(nn.Sequential):
    """``depth`` :class:`SymplecticEulerLayer` s on ``R^{2d}`` with their own ``B_j, C_j, b_j, c_j``.

    Guarantee: the Jacobian of the whole stack, and of every sub-stack ``x_j -> x_L``, is
    symplectic (a product of symplectic matrices), so its spectral norm is ``>= 1``: back-propagated
    sensitivities cannot vanish with depth. The map is a bijection with an exact :meth:`inverse`.
    """

    def __init__(
        self,
        half_dim: int,
        hidden: int,
        depth: int,
        step: float = 1.0,
        activation: str | Callable[[torch.Tensor], torch.Tensor] = "tanh",
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        super().__init__(*[SymplecticEulerLayer(half_dim, hidden, step, activation) for _ in range(depth)])
        self.half_dim = int(half_dim)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self):
            y = layer.inverse(y)
        return y


def canonical_symplectic_matrix(half_dim: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``J = [[0, I_d], [-I_d, 0]]``."""
    eye = torch.eye(half_dim, dtype=dtype)
    zero = torch.zeros(half_dim, half_dim, dtype=dtype)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def symplectic_defect(jacobian: torch.Tensor) -> float:
    """``||M^T J M - J||_F / max(1, ||M||_F^2)`` for a square ``2d x 2d`` matrix (or a batch of them).

    Zero (up to rounding) exactly when ``M`` is symplectic; the normalisation makes the number
    comparable to the relative rounding error of the product. For a batch, the worst one.
    """
    m = (jacobian if jacobian.ndim == 3 else jacobian.unsqueeze(0)).detach()
    n = m.shape[-1]
    if m.shape[-2] != n or n % 2:
        raise ValueError(f"need square matrices of even size, got {tuple(m.shape[-2:])}")
    j = canonical_symplectic_matrix(n // 2, m.dtype).to(m.device)
    gap = torch.linalg.matrix_norm(m.transpose(-1, -2) @ j @ m - j)
    scale = torch.linalg.matrix_norm(m).pow(2).clamp_min(1.0)
    return float((gap / scale).max())

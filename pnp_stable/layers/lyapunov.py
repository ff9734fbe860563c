"""Lyapunov-stable vector fields (Kolter & Manek, "Learning stable deep dynamics models", 2019).

A learned field ``x' = f(x)`` is made exponentially stable *by construction*: with a Lyapunov
function ``V`` (positive definite, minimised at the equilibrium ``x*``) and any nominal field
``f_hat``, the Kolter-Manek projection

    f(x) = f_hat(x) - grad V(x) * relu(grad V(x)^T f_hat(x) + mu V(x)) / ||grad V(x)||^2

satisfies ``dV/dt = grad V^T f <= -mu V`` at every point, so ``V(x(t)) <= V(x(0)) exp(-mu t)``
along every trajectory, whatever the weights. Since ``V(x) >= eps ||x - x*||^2``, every trajectory
converges to ``x*`` exponentially (book chapter of Ehrhardt, Murari and Sherry, section 5.1).

``V`` is built from an input-convex neural network ``g`` (Amos, Xu & Kolter, ICML 2017):

    V(x) = smooth_relu(g(x) - g(x*)) + eps ||x - x*||^2,

convex, continuously differentiable, ``V(x*) = 0``, ``grad V(x*) = 0`` and ``V(x) >= eps ||x-x*||^2``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SmoothReLU", "InputConvexNetwork", "LyapunovFunction", "StableDynamics"]


def smooth_relu(t: torch.Tensor, width: float) -> torch.Tensor:
    """``0`` for ``t <= 0``, ``t^2 / (2 width)`` on ``[0, width]``, ``t - width / 2`` beyond.

    Convex, non-decreasing, continuously differentiable, zero exactly on ``t <= 0``.
    """
    # torch.where (not clamp) so that autograd returns the true derivative at the kinks too
    inner = torch.where(t < width, t.pow(2) / (2.0 * width), t - width / 2.0)
    return torch.where(t > 0, inner, torch.zeros_like(t))


class SmoothReLU(nn.Module):
    """Module form of :func:`smooth_relu` (a convex, monotone, C^1 activation)."""

    def __init__(self, width: float = 0.1) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return smooth_relu(t, self.width)

    def extra_repr(self) -> str:
        return f"width={self.width:g}"


def _convex_activation(spec: str) -> nn.Module:
    kind = spec.lower().replace("-", "_")
    if kind == "softplus":
        return nn.Softplus()
    if kind == "smooth_relu":
        return SmoothReLU()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"activation {spec!r} is not a known convex non-decreasing function; "
                     "choose softplus, smooth_relu or relu")


class InputConvexNetwork(nn.Module):
    """Fully input-convex network ``g: R^n -> R``.

    ``z_1 = s(W_0 x + b_0)``, ``z_{k+1} = s(U_k z_k + W_k x + b_k)``, ``g = u^T z_K + w^T x + b``
    with ``U_k >= 0`` and ``u >= 0`` entrywise (enforced in ``forward`` by ``relu`` of the stored
    parameters, so it holds whatever the optimiser does) and ``s`` convex and non-decreasing.

    Guarantee: ``g`` is convex in ``x`` for all parameter values (non-negative combinations and
    convex non-decreasing compositions of convex functions are convex). With ``softplus`` or
    ``smooth_relu``, ``g`` is also continuously differentiable.
    """

    def __init__(self, in_features: int, hidden: int = 32, depth: int = 2, activation: str = "softplus") -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.in_features, self.hidden, self.depth = int(in_features), int(hidden), int(depth)
        self.activation = _convex_activation(activation)
        self.input_maps = nn.ModuleList([nn.Linear(in_features, hidden) for _ in range(depth)])
        # stored unconstrained; the effective weights are relu(raw) >= 0
        self.hidden_raw = nn.ParameterList(
            [nn.Parameter(torch.rand(hidden, hidden) / hidden) for _ in range(depth - 1)]
        )
        self.output_raw = nn.Parameter(torch.rand(hidden) / math.sqrt(hidden))
        self.output_skip = nn.Linear(in_features, 1)

    def hidden_weights(self) -> list[torch.Tensor]:
        """The effective (non-negative) hidden-to-hidden weights ``U_k``."""
        return [torch.relu(u) for u in self.hidden_raw]

    def output_weights(self) -> torch.Tensor:
        return torch.relu(self.output_raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)`` with shape ``x.shape[:-1]``."""
        z = self.activation(self.input_maps[0](x))
        for u, lin in zip(self.hidden_weights(), self.input_maps[1:]):
            z = self.activation(z @ u.t() + lin(x))
        return z @ self.output_weights() + self.output_skip(x).squeeze(-1)


class LyapunovFunction(nn.Module):
    """``V(x) = smooth_relu(g(x) - g(x*)) + eps ||x - x*||^2`` with ``g`` input-convex.

    Guarantees (any parameters): ``V`` is convex; ``V(x*) = 0``; ``V(x) >= eps ||x - x*||^2 > 0``
    for ``x != x*``, so ``x*`` is the unique minimiser and ``V`` is radially unbounded. With a
    C^1 ICNN, ``V`` is C^1 and ``grad V(x*) = 0``.

    Args:
        in_features: state dimension ``n``.
        equilibrium: ``x*`` (default the origin).
        eps: the quadratic floor ``eps > 0``.
        width: smoothing width of the outer ``smooth_relu``.
        hidden, depth, activation: of the ICNN.
    """

    def __init__(
        self,
        in_features: int,
        equilibrium: torch.Tensor | None = None,
        eps: float = 1e-2,
        width: float = 0.1,
        hidden: int = 32,
        depth: int = 2,
        activation: str = "softplus",
    ) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.icnn = InputConvexNetwork(in_features, hidden, depth, activation)
        self.outer = SmoothReLU(width)
        self.eps = float(eps)
        x_star = torch.zeros(in_features) if equilibrium is None else torch.as_tensor(equilibrium).reshape(-1)
        if x_star.numel() != in_features:
            raise ValueError(f"equilibrium must have {in_features} entries, got {x_star.numel()}")
        self.register_buffer("equilibrium", x_star.clone().to(torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``V(x)`` with shape ``x.shape[:-1]``."""
        x_star = self.equilibrium.to(x.dtype)
        shifted = self.icnn(x) - self.icnn(x_star)
        return self.outer(shifted) + self.eps * (x - x_star).pow(2).sum(-1)

    def value_and_gradient(self, x: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V(x), grad V(x))``; ``create_graph=True`` keeps the graph for training through both.

        Without ``create_graph`` both are returned detached.
        """
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            v = self(x)
            (grad,) = torch.autograd.grad(v.sum(), x, create_graph=create_graph)
        return (v, grad) if create_graph else (v.detach(), grad)


class StableDynamics(nn.Module):
    """The Kolter-Manek field ``f = f_hat - grad V relu(grad V^T f_hat + mu V) / ||grad V||^2``.

    Guarantee: ``grad V(x)^T f(x) <= -mu V(x)`` at every ``x`` and for any parameters (up to
    floating-point rounding), hence ``V(x(t)) <= V(x(0)) e^{-mu t}`` and every trajectory of
    ``x' = f(x)`` converges to the equilibrium ``x*`` of ``V``. The nominal field is centred,
    ``f_hat(x) = nominal(x) - nominal(x*)``, so that ``f(x*) = 0`` and ``f`` is continuous there.

    Args:
        nominal: any module ``R^n -> R^n`` (the unconstrained field).
        lyapunov: the :class:`LyapunovFunction`.
        decay_rate: ``mu >= 0``.
    """

    def __init__(self, nominal: nn.Module, lyapunov: LyapunovFunction, decay_rate: float = 0.1) -> None:
        super().__init__()
        if decay_rate < 0:
            raise ValueError(f"decay_rate must be non-negative, got {decay_rate}")
        self.nominal = nominal
        self.lyapunov = lyapunov
        self.decay_rate = float(decay_rate)

    def nominal_field(self, x: torch.Tensor) -> torch.Tensor:
        x_star = self.lyapunov.equilibrium.to(x.dtype)
        return self.nominal(x) - self.nominal(x_star)

    def field_and_lyapunov(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f(x), V(x), grad V(x))``."""
        create_graph = torch.is_grad_enabled()
        v, grad = self.lyapunov.value_and_gradient(x, create_graph=create_graph)
        f_hat = self.nominal_field(x)
        sq_norm = grad.pow(2).sum(-1, keepdim=True)
        excess = torch.relu((grad * f_hat).sum(-1, keepdim=True) + self.decay_rate * v.unsqueeze(-1))
        # grad V vanishes only at x* (V is strictly convex there), where excess = 0 as well
        safe = torch.where(sq_norm > 0, sq_norm, torch.ones_like(sq_norm))
        correction = torch.where(sq_norm > 0, grad * (excess / safe), torch.zeros_like(grad))
        return f_hat - correction, v, grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.field_and_lyapunov(x)[0]

    def lyapunov_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V(x), dV/dt = grad V(x)^T f(x))`` along the learned field."""
        f, v, grad = self.field_and_lyapunov(x)
        return v, (grad * f).sum(-1)

    def extra_repr(self) -> str:
        return f"decay_rate={self.decay_rate:g}"

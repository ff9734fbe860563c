"""Group shrinkage: a vector activation that is the gradient of a convex function of channel groups.

The channels of the pre-activation ``u`` are split into groups of ``G`` consecutive channels, and
each group vector ``u_g`` (at every pixel) is shrunk towards 0 by its norm:

    s(u)_g = phi(r_g) u_g / r_g,   r_g = sqrt(||u_g||^2 + eps^2),   phi(r) = max(leak r, r - lambda_g)

with a learned threshold ``lambda_g >= 0`` per group. With ``G = 1`` and ``leak = 0`` this is
soft thresholding; with ``G >= 2`` the decision to keep or to kill a response is taken jointly on a
group (e.g. a quadrature pair of filters: local energy rather than one signed response), which no
elementwise activation can express. Classical wavelet denoisers gain much from joint (group or
neighbourhood) shrinkage over scalar shrinkage; this activation offers that to the potentials.

Why a gradient-flow block stays certified (the guarantee): ``s = grad Psi`` with
``Psi(u) = sum_g psi_g(r_g(u))``, ``psi_g' = phi`` and ``psi_g(0) = 0``. ``phi`` is non-decreasing
and non-negative, so ``psi_g`` is convex and non-decreasing on ``[0, inf)``, and ``r_g`` is a
norm of ``(u_g, eps)``, convex: ``Psi`` is convex, and ``V(x) = Psi(Ax + b)`` is a convex
potential. Per group, with ``f = phi(r) / r`` and ``a = ||u_g||^2 / r^2`` in [0, 1), the Jacobian
of ``s`` is the symmetric ``f I + (phi'(r) - f) u_g u_g^T / r^2``: its eigenvalues are ``f``
(across ``u_g``) and ``(1 - a) f + a phi'(r)`` (along it), both in ``[leak, 1]`` since
``phi' in {leak, 1}`` and ``leak <= f <= 1``. So ``s`` is monotone and 1-Lipschitz
(``lipschitz = 1``), ``grad V`` is ``||A||^2``-Lipschitz exactly as with a ReLU, and every step rule and certificate of the block holds unchanged, for every value of
the thresholds (the forward pass clamps them at 0). ``eps`` only smooths ``r`` at 0 (where
``phi(r) / r = leak``) so that autograd and the certificate searches never divide by 0.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GroupShrinkage"]

# smooths r at u = 0; far below any pre-activation that matters, far above float32's tiny
_RADIUS_SMOOTHING = 1e-12


class GroupShrinkage(nn.Module):
    """Joint shrinkage of groups of ``group_size`` consecutive channels (dimension 1).

    Args:
        channels: number of channels; a multiple of ``group_size``.
        group_size: channels per group (1: a two-sided soft threshold per channel).
        leak: slope ``phi(r) / r`` kept below the threshold, in [0, 1] (as a leaky ReLU's).
        initial_threshold: every ``lambda_g`` at construction (pre-activation units).

    ``monotone = True`` and ``lipschitz = 1`` hold for every parameter value (module docstring):
    ``s`` is the gradient of a convex function whose Hessian has its eigenvalues in
    ``[leak, 1]``, which is what a certified :class:`~pnp_stable.layers.GradientFlowBlock` needs.
    """

    monotone = True
    lipschitz = 1.0

    def __init__(self, channels: int, group_size: int, leak: float = 0.01, initial_threshold: float = 0.05) -> None:
        super().__init__()
        if group_size < 1 or channels < 1 or channels % group_size:
            raise ValueError(f"{channels} channels cannot be split into groups of {group_size}")
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"leak must lie in [0, 1], got {leak}")
        if not initial_threshold >= 0:
            raise ValueError(f"initial_threshold must be >= 0, got {initial_threshold}")
        self.channels, self.group_size, self.leak = int(channels), int(group_size), float(leak)
        self.raw_thresholds = nn.Parameter(torch.full((channels // group_size,), float(initial_threshold)))

    def thresholds(self) -> torch.Tensor:
        """The thresholds ``lambda_g`` in use, always >= 0."""
        return self.raw_thresholds.clamp_min(0.0)

    @torch.no_grad()
    def project_parameters_(self) -> None:
        """Clamp the raw thresholds at 0 in place (so a threshold pushed below 0 keeps a gradient)."""
        self.raw_thresholds.clamp_(min=0.0)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.ndim < 2 or u.shape[1] != self.channels:
            raise ValueError(f"group shrinkage expects {self.channels} channels in dimension 1, got {tuple(u.shape)}")
        groups = u.shape[1] // self.group_size
        grouped = u.reshape(u.shape[0], groups, self.group_size, *u.shape[2:])
        radius = (grouped.square().sum(dim=2, keepdim=True) + _RADIUS_SMOOTHING**2).sqrt()
        lam = self.thresholds().to(u.dtype).view(1, groups, 1, *([1] * (u.ndim - 2)))
        # phi(r) / r = max(leak, 1 - lambda / r)
        factor = (1.0 - lam / radius).clamp_min(self.leak)
        return (grouped * factor).reshape(u.shape)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, group_size={self.group_size}, leak={self.leak:g}"

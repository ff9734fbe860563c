"""Zero-padding lift and keep-first projection between feature widths.

The lift ``E: R^c -> R^C`` pads zeros along the feature/channel axis (``E^T E = I``) and the
projection ``P = E^T`` keeps the first ``c`` entries. For any operator ``N`` on ``R^C`` that is
``alpha``-averaged, ``P N E = (1 - alpha) I + alpha P R E`` with ``P R E`` non-expansive, so the
sandwich keeps both the Lipschitz and the averagedness constants. :class:`CertifiedSequential`
applies that rule when a lift is closed by the matching projection.
"""

from __future__ import annotations

import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate

__all__ = ["Lift", "Projection"]


class Lift(nn.Module):
    """Zero-pad axis ``dim`` (default 1: channels of ``B x C x H x W`` or features of ``B x d``)."""

    def __init__(self, in_dim: int, out_dim: int, dim: int = 1) -> None:
        super().__init__()
        if out_dim < in_dim:
            raise ValueError(f"a lift cannot shrink: {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim, self.dim = in_dim, out_dim, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[self.dim] != self.in_dim:
            raise ValueError(f"lift expects {self.in_dim} entries on axis {self.dim}, got {x.shape[self.dim]}")
        shape = list(x.shape)
        shape[self.dim] = self.out_dim - self.in_dim
        return torch.cat([x, x.new_zeros(shape)], dim=self.dim)

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)  # an isometry between different spaces: no averagedness

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.out_dim}, dim={self.dim}"


class Projection(nn.Module):
    """Keep the first ``out_dim`` entries of axis ``dim`` (the adjoint of :class:`Lift`)."""

    def __init__(self, in_dim: int, out_dim: int, dim: int = 1) -> None:
        super().__init__()
        if out_dim > in_dim:
            raise ValueError(f"a projection cannot grow: {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim, self.dim = in_dim, out_dim, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(self.dim, 0, self.out_dim)

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.out_dim}, dim={self.dim}"

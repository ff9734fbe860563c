"""Shared test helpers: explicit matrices of small operators."""

from __future__ import annotations

import torch


def explicit_matrix(apply, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of the linear map ``apply`` on float64 inputs of ``input_shape`` (batch 1)."""
    n = 1
    for d in input_shape:
        n *= d
    basis = torch.eye(n, dtype=torch.float64).reshape((n, *input_shape))
    columns = [apply(basis[i : i + 1]).reshape(-1) for i in range(n)]
    return torch.stack(columns, dim=1)


def relative_adjoint_error(op, x: torch.Tensor, seed: int = 0) -> float:
    """``|<Ax, v> - <x, A^T v>| / |<Ax, v>|`` with ``v = Ax + noise``, so that the inner product
    is of the order of ``||Ax||^2`` and the relative error is not inflated by cancellation."""
    y = op.A(x)
    g = torch.Generator().manual_seed(seed)
    v = y + torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device) * y.std()
    lhs = (y * v).sum()
    rhs = (x * op.A_adjoint(v)).sum()
    return float((lhs - rhs).abs() / lhs.abs())

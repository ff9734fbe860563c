"""Exact FFT implementations of padded, cropped convolutions and their adjoints.

Every boundary condition is written as ``A = R C E P``: ``P`` an optional padding map (reflect or
replicate), ``E`` zero-embedding at the top-left of an ``n1 x n2`` grid, ``C`` the circular
convolution on that grid (diagonal in Fourier: multiplication by a cached transfer function) and
``R`` a restriction to a window. Then ``A^T = P^T E^T C^T R^T`` with ``C^T`` the multiplication by
the conjugate transfer function and ``P^T`` the exact adjoint of ``torch.nn.functional.pad``
(its autograd backward, a scatter-add).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["good_fft_size", "pad_adjoint", "grid_convolve", "grid_convolve_adjoint"]


def good_fft_size(n: int) -> int:
    """Smallest integer ``>= n`` whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = max(1, int(n))
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def pad_adjoint(y: torch.Tensor, pad: tuple[int, int, int, int], mode: str, input_hw: tuple[int, int]) -> torch.Tensor:
    """Adjoint of ``F.pad(x, pad, mode)`` for ``x`` of spatial size ``input_hw`` (exact: the
    backward of the padding, which sums each padded copy back onto its source pixel)."""
    shape = y.shape[:-2] + tuple(input_hw)
    if mode == "constant":
        left, right, top, bottom = pad
        return y[..., top : y.shape[-2] - bottom, left : y.shape[-1] - right]
    if not y.requires_grad and y.ndim == 4 and mode in _PAD_BACKWARD:
        # the padding's backward kernel itself, without building an autograd graph
        return _PAD_BACKWARD[mode](y.contiguous(), y.new_empty(shape), list(pad))
    template = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
    with torch.enable_grad():
        padded = F.pad(template, pad, mode=mode)
        (grad,) = torch.autograd.grad(padded, template, grad_outputs=y, create_graph=y.requires_grad)
    return grad


_PAD_BACKWARD = {
    "reflect": torch.ops.aten.reflection_pad2d_backward,
    "replicate": torch.ops.aten.replication_pad2d_backward,
}


def grid_convolve(
    x: torch.Tensor,
    transfer: torch.Tensor,
    grid: tuple[int, int],
    offset: tuple[int, int],
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """``R C E x``: embed ``x`` at the top-left of ``grid``, multiply by ``transfer`` in Fourier,
    return the ``out_hw`` window starting at ``offset``."""
    spectrum = torch.fft.rfft2(x, s=grid)
    full = torch.fft.irfft2(spectrum * transfer, s=grid)
    return full[..., offset[0] : offset[0] + out_hw[0], offset[1] : offset[1] + out_hw[1]]


def grid_convolve_adjoint(
    y: torch.Tensor,
    transfer: torch.Tensor,
    grid: tuple[int, int],
    offset: tuple[int, int],
    in_hw: tuple[int, int],
) -> torch.Tensor:
    """``E^T C^T R^T y``, the exact adjoint of :func:`grid_convolve`."""
    h, w = y.shape[-2:]
    placed = F.pad(y, (offset[1], grid[1] - offset[1] - w, offset[0], grid[0] - offset[0] - h))
    spectrum = torch.fft.rfft2(placed, s=grid)
    full = torch.fft.irfft2(spectrum * transfer.conj(), s=grid)
    return full[..., : in_hw[0], : in_hw[1]]

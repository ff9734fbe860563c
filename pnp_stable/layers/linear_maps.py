"""Learnable linear maps ``A`` (dense or convolutional) with exact adjoints and norm tracking.

Each map owns:

* ``forward(x) = A x`` and ``adjoint(z, like) = A^T z`` (the transpose with the same weight, so
  ``<Ax, z> = <x, A^T z>`` exactly up to rounding);
* a power-method state (``power_vector``, ``norm_estimate`` buffers, saved in ``state_dict``)
  advanced by :meth:`estimate_norm` — a cheap **lower** bound used during training;
* :meth:`certified_norm` — an **upper** bound valid for every input size, cached until the weight
  changes (compared by value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pnp_stable.layers.norms import conv_spectral_norm_bound, dense_spectral_norm, power_iteration

__all__ = ["LinearMap", "DenseMap", "ConvMap"]

_WARMUP_ITERATIONS = 100
_WARMUP_TOL = 1e-4


class LinearMap(nn.Module):
    """Base class: subclasses define ``forward``, ``adjoint``, ``_power_ops`` and ``_certified``."""

    weight: nn.Parameter

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("norm_estimate", torch.zeros(()))
        self._certified_cache: tuple[torch.Tensor, tuple, float] | None = None

    # -- interface -------------------------------------------------------------------------
    def adjoint(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _power_ops(self, differentiable: bool = False):  # pragma: no cover
        # returns (forward, adjoint) on the power buffer; detached weights unless differentiable
        raise NotImplementedError

    def _certified(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def _structure(self) -> tuple:
        """What besides the weight's values the map's norm depends on (a convolution's stride,
        dilation, groups, padding): part of the certified bound's cache key."""
        return ()

    # -- norms -----------------------------------------------------------------------------
    def estimate_norm(self, n_iter: int = 1, tol: float | None = None) -> float:
        """Advance the warm-started power method; returns the estimate (a lower bound on ||A||).

        The first call on a fresh map runs up to 100 iterations (to tolerance 1e-4) so that the
        estimate is meaningful from the first training step.
        """
        if float(self.norm_estimate) == 0.0:
            n_iter, tol = max(n_iter, _WARMUP_ITERATIONS), _WARMUP_TOL if tol is None else tol
        fwd, adj = self._power_ops()
        # outside autocast: a bf16/fp16 product would quantise the stored power vector every step
        with torch.no_grad(), torch.autocast(device_type=self.weight.device.type, enabled=False):
            u = self.power_vector.to(self.weight.dtype)
            estimate, u = power_iteration(fwd, adj, u, n_iter=n_iter, tol=tol)
            self.power_vector.copy_(u.to(self.power_vector.dtype))
            self.norm_estimate.fill_(estimate)
        return estimate

    def differentiable_norm_estimate(self) -> torch.Tensor:
        """``||A u||`` for the current unit power vector ``u``, differentiable in the weights.

        The power estimate with a gradient (``u`` held fixed, as in spectral normalisation): a
        lower bound on ``||A||``, for learning only — certificates use :meth:`certified_norm`.
        Computed in float32 outside autocast.
        """
        fwd, _ = self._power_ops(differentiable=True)
        u = self.power_vector.float()
        u = u / u.norm().clamp_min(1e-30)
        with torch.autocast(device_type=u.device.type, enabled=False):
            return fwd(u).norm()

    def certified_norm(self) -> float:
        """Certified upper bound on ``||A||`` for every input size (cached while the weight's values
        and the map's structure, e.g. a convolution's stride and dilation, stay those it was
        computed from)."""
        w = self.weight.detach()
        cached = self._certified_cache
        structure = self._structure()
        # Compared by value: a version counter misses writes through ``weight.data`` (``p.data.mul_``,
        # old-style optimisers), which share the storage but not the counter, and then returned the
        # bound of the old weights; a storage address can be reused by a new tensor.
        if (cached is None or cached[0].shape != w.shape or cached[0].dtype != w.dtype
                or cached[0].device != w.device or cached[1] != structure or not torch.equal(cached[0], w)):
            value = self._certified()
            self._certified_cache = (w.clone(), structure, value)
            return value
        return cached[2]


class DenseMap(LinearMap):
    """``A x = W x`` for ``x`` of shape ``(..., in_features)``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.register_buffer("power_vector", torch.randn(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def adjoint(self, z: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(z, self.weight.t())

    def _power_ops(self, differentiable: bool = False):
        w = self.weight.float() if differentiable else self.weight.detach()
        return (lambda u: w @ u), (lambda v: w.t() @ v)

    def _certified(self) -> float:
        return dense_spectral_norm(self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}"


def _fold_circular_pad(y: torch.Tensor, pads: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Adjoint of ``F.pad(x, pads, mode="circular")`` (pads = left, right, top, bottom)."""
    left, right, top, bottom = pads
    h, w = size
    # rows
    out = y[..., top : top + h, :].clone()
    if top:
        out[..., h - top :, :] += y[..., :top, :]
    if bottom:
        out[..., :bottom, :] += y[..., top + h :, :]
    res = out[..., :, left : left + w].clone()
    if left:
        res[..., :, w - left :] += out[..., :, :left]
    if right:
        res[..., :, :right] += out[..., :, left + w :]
    return res


class ConvMap(LinearMap):
    """2-D convolution ``A`` with zero or circular padding; ``A^T`` is the transposed convolution.

    ``padding="same"`` pads ``dilation * (k - 1) / 2`` on each side (odd kernels), which keeps the
    spatial size for stride 1. Reflect/replicate padding is refused: it is not a compression of a
    circular convolution, so the certified bound would not apply. Circular padding needs the
    ``same`` padding (a total pad of exactly the kernel's span) and, with a stride ``s``, image sides
    that are multiples of ``s``: only then is it the circular convolution the bound covers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        padding: int | str = "same",
        padding_mode: str = "zeros",
        power_size: int = 32,
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(
                f"padding_mode={padding_mode!r} is not certifiable; use 'zeros' or 'circular'"
            )
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        span = dilation * (kernel_size - 1)
        if padding == "same":
            if span % 2:
                raise ValueError("padding='same' needs an odd effective kernel size")
            padding = span // 2
        if padding_mode == "circular" and 2 * int(padding) != span:
            # Only a total pad of exactly the kernel's span makes a circular convolution: with more, rows
            # of it are repeated (a 3x3 kernel padded by 2 on 2x2 images has norm 1.99x the bound).
            raise ValueError(f"circular padding needs padding = dilation * (kernel_size - 1) / 2 = {span / 2:g} "
                             f"('same'), got {padding}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = kernel_size, stride, dilation, groups
        self.padding, self.padding_mode = int(padding), padding_mode
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        size = max(power_size, span + 1)
        size += (-size) % stride
        self.register_buffer("power_vector", torch.randn(1, in_channels, size, size))

    # zero padding is built into conv2d; circular padding is an explicit pad + its adjoint fold
    def _conv(self, x: torch.Tensor, weight: torch.Tensor, circular: bool, pads: tuple[int, int, int, int]) -> torch.Tensor:
        if circular:
            x = F.pad(x, pads, mode="circular")
            return F.conv2d(x, weight, None, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _conv_adjoint(
        self, z: torch.Tensor, weight: torch.Tensor, size: tuple[int, int], circular: bool, pads: tuple[int, int, int, int]
    ) -> torch.Tensor:
        span = self.dilation * (self.kernel_size - 1)
        if circular:
            full = (size[0] + pads[2] + pads[3], size[1] + pads[0] + pads[1])
            p = 0
        else:
            full, p = size, self.padding
        op = []
        for dim in range(2):
            base = (z.shape[-2 + dim] - 1) * self.stride - 2 * p + span + 1
            op.append(full[dim] - base)
        if min(op) < 0 or max(op) >= max(self.stride, self.dilation):
            raise ValueError(f"cannot form the adjoint for input size {size} and output {tuple(z.shape[-2:])}")
        y = F.conv_transpose2d(z, weight, None, self.stride, p, tuple(op), self.groups, self.dilation)
        if circular:
            y = _fold_circular_pad(y, pads, size)
        return y

    def _pads(self) -> tuple[int, int, int, int]:
        p = self.padding
        return (p, p, p, p)

    def _check_circular_size(self, size: tuple[int, ...]) -> None:
        # A strided circular convolution is the polyphase (certified) one only on a torus whose sides
        # are multiples of the stride; otherwise the wrap mixes the phases, and the map is no longer
        # bounded by the polyphase symbol (stride 2, all-ones 3x3 kernel, 1x1 image: 1.79x the bound).
        if self.stride > 1 and any(n % self.stride for n in size):
            raise ValueError(f"a circular convolution with stride {self.stride} needs image sides that are "
                             f"multiples of {self.stride}, got {tuple(size)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        circular = self.padding_mode == "circular"
        if circular:
            self._check_circular_size(tuple(x.shape[-2:]))
        return self._conv(x, self.weight, circular, self._pads())

    def adjoint(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        circular = self.padding_mode == "circular"
        if circular:
            self._check_circular_size(tuple(like.shape[-2:]))
        return self._conv_adjoint(z, self.weight, tuple(like.shape[-2:]), circular, self._pads())

    def _power_ops(self, differentiable: bool = False):
        # The power method runs on a *circular* convolution of the buffer's size: its norm is the
        # symbol's maximum on that grid, a lower bound on the certified all-sizes bound.
        w = self.weight.float() if differentiable else self.weight.detach()
        span = self.dilation * (self.kernel_size - 1)
        pads = (span // 2, span - span // 2, span // 2, span - span // 2)
        size = tuple(self.power_vector.shape[-2:])
        return (
            lambda u: self._conv(u, w, True, pads),
            lambda v: self._conv_adjoint(v, w, size, True, pads),
        )

    def _certified(self) -> float:
        return conv_spectral_norm_bound(self.weight, self.stride, self.dilation, self.groups)

    def _structure(self) -> tuple:
        return (self.stride, self.dilation, self.groups, self.padding, self.padding_mode)

    def extra_repr(self) -> str:
        s = f"{self.in_channels} -> {self.out_channels}, kernel={self.kernel_size}"
        if self.stride != 1:
            s += f", stride={self.stride}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", padding={self.padding} ({self.padding_mode})"

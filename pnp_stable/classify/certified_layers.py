"""The non-block layers of a certified classifier, each with a proven l2 Lipschitz constant.

* :class:`NormalizedConv2d` / :class:`NormalizedLinear`: the weight is divided by its spectral
  norm. In evaluation the divisor is the **certified** upper bound (valid for every input size),
  so the layer has norm <= 1; in training it is the warm-started power estimate, made
  differentiable as ``||A u||`` with the power vector ``u`` held fixed (spectral normalisation).
  Same spirit as the gradient-flow blocks: cheap estimates to learn, certified bounds to prove.
* :class:`NormPreservingAvgPool2d` (``k`` times a ``k x k`` average pool with stride ``k``) and
  :class:`NormPreservingGlobalPool` (``sqrt(HW)`` times the global mean): exactly 1-Lipschitz.
* :class:`InputShift` and :class:`Flatten`: isometries.
* :class:`MaxMin` (GroupSort with groups of two): an optional parameter-free nonlinearity
  between stages, exactly 1-Lipschitz and norm-preserving (unlike ReLU, it loses no gradient norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pnp_stable.layers import Certificate, ConvMap, DenseMap

__all__ = [
    "Flatten",
    "InputShift",
    "MaxMin",
    "NormPreservingAvgPool2d",
    "NormPreservingGlobalPool",
    "NormalizedConv2d",
    "NormalizedLinear",
]

# a weight whose norm bound is below this is treated as zero (avoids 0/0)
_TINY_NORM = 1e-12


def _learning(module: nn.Module) -> bool:
    return module.training and torch.is_grad_enabled()


class NormalizedConv2d(nn.Module):
    """``x -> conv(x, W / sigma) + b`` with zero "same" padding; ``||conv(., W / sigma)|| <= 1`` in eval.

    Guarantee (eval mode): ``sigma`` is :meth:`ConvMap.certified_norm`, an upper bound on ``||W||``
    for every input size, so the layer is 1-Lipschitz in l2 whatever the image size. In training
    mode ``sigma`` is a power estimate (a lower bound): the layer may then slightly exceed 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = True, power_size: int = 32) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (zero 'same' padding), got {kernel_size}")
        self.map = ConvMap(in_channels, out_channels, kernel_size, stride=stride, padding="same",
                           power_size=power_size)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        return self.map.weight

    def divisor(self) -> torch.Tensor | float:
        """What ``W`` is divided by: the power estimate while learning, else the certified bound."""
        if _learning(self):
            self.map.estimate_norm(n_iter=1)
            return self.map.differentiable_norm_estimate().clamp_min(_TINY_NORM)
        return max(self.map.certified_norm(), _TINY_NORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.map
        weight = m.weight / self.divisor()
        return F.conv2d(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                        m.stride, m.padding)

    def certificate(self) -> Certificate:
        """Lipschitz bound of the eval-mode layer: certified ``||W||`` over the eval divisor (= 1)."""
        bound = self.map.certified_norm()
        divisor = max(bound, _TINY_NORM)
        return Certificate(lipschitz=bound / divisor,
                           details=({"layer": "NormalizedConv2d", "norm_certified": bound,
                                     "stride": self.map.stride},))

    def extra_repr(self) -> str:
        return f"bias={self.bias is not None}"


class NormalizedLinear(nn.Module):
    """``z -> (W / sigma) z + b``; ``||W / sigma|| <= 1`` in eval mode (exact SVD bound)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.map = DenseMap(in_features, out_features)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        return self.map.weight

    def divisor(self) -> torch.Tensor | float:
        """What ``W`` is divided by: the power estimate while learning, else the certified norm."""
        m = self.map
        if _learning(self):
            m.estimate_norm(n_iter=1)
            return m.differentiable_norm_estimate().clamp_min(_TINY_NORM)
        return self.eval_divisor()

    def eval_divisor(self) -> float:
        """The eval-mode divisor: the certified norm of ``W`` (so ``||W / divisor|| <= 1``)."""
        return max(self.map.certified_norm(), _TINY_NORM)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        weight = self.map.weight / self.divisor()
        return F.linear(z, weight.to(z.dtype), None if self.bias is None else self.bias.to(z.dtype))

    def certificate(self) -> Certificate:
        """Lipschitz bound of the eval-mode layer: ``||W||_2`` over the eval divisor (= 1)."""
        bound = self.map.certified_norm()
        return Certificate(lipschitz=bound / max(bound, _TINY_NORM),
                           details=({"layer": "NormalizedLinear", "norm_certified": bound},))


class NormPreservingAvgPool2d(nn.Module):
    """``k`` times the ``k x k`` average pool with stride ``k``: exactly 1-Lipschitz.

    Each output is ``(1/k) sum`` of ``k^2`` disjoint inputs (a row of norm 1), so the map is a
    co-isometry onto the pooled grid (norm exactly 1; trailing rows/columns are dropped).
    """

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"pool size must be positive, got {kernel_size}")
        self.kernel_size = int(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.kernel_size) * self.kernel_size

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class NormPreservingGlobalPool(nn.Module):
    """``B x C x H x W -> B x C``: ``sqrt(HW)`` times the spatial mean, exactly 1-Lipschitz."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1)) * math.sqrt(x.shape[-2] * x.shape[-1])

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)


class InputShift(nn.Module):
    """``x -> x - mean`` per channel (a translation: an isometry, no scaling of the input)."""

    def __init__(self, mean: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean.to(x.dtype)

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)


class Flatten(nn.Flatten):
    """``nn.Flatten`` with its certificate (a re-indexing: an isometry)."""

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)


class MaxMin(nn.Module):
    """Channel pairs ``(a, b) -> (max(a, b), min(a, b))``, pairing channel ``c`` with ``c + C/2``.

    Guarantee: exactly 1-Lipschitz in l2 (on each pair the map is either the identity or the swap,
    and it is continuous, so ``||MaxMin(x) - MaxMin(y)|| <= ||x - y||``) and norm-preserving
    (``||MaxMin(x)|| = ||x||``). Assumes an even number of channels.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"MaxMin needs an even number of channels, got {x.shape[1]}")
        a, b = x.chunk(2, dim=1)
        return torch.cat((torch.maximum(a, b), torch.minimum(a, b)), dim=1)

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=1.0)

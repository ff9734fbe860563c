"""The unconstrained baseline: the same layout as the certified classifier, nothing normalised.

Blocks are ``x + B s(Ax + b)`` with free convolutions ``A`` (width -> hidden) and ``B``
(hidden -> width). The model still reports a *valid* Lipschitz bound, the product of per-layer
bounds (``1 + L_s ||A|| ||B||`` per block, certified convolution norms elsewhere), which is
typically astronomically loose: that is the point of the comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from pnp_stable.classify.certified_layers import Flatten, InputShift, MaxMin, NormPreservingGlobalPool
from pnp_stable.classify.config import ClassifierConfig
from pnp_stable.layers import Certificate, CertifiedSequential, Lift, conv_spectral_norm_bound, dense_spectral_norm
from pnp_stable.layers.activations import make_activation

__all__ = ["PlainConv2d", "PlainLinear", "ResidualBlock", "ResNetClassifier"]


class PlainConv2d(nn.Conv2d):
    """``nn.Conv2d`` with zero "same" padding and a certified norm bound as its certificate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=conv_spectral_norm_bound(self.weight, self.stride))


class PlainLinear(nn.Linear):
    """``nn.Linear`` with its exact spectral norm (plus rounding margin) as its certificate."""

    def certificate(self) -> Certificate:
        return Certificate(lipschitz=dense_spectral_norm(self.weight))


class ResidualBlock(nn.Module):
    """``x -> x + B s(Ax + b)``; Lipschitz bound ``1 + L_s ||A|| ||B||`` (certified norms)."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3, activation: str = "relu") -> None:
        super().__init__()
        self.inner = nn.Conv2d(channels, hidden, kernel_size, padding=kernel_size // 2, bias=True)
        self.outer = nn.Conv2d(hidden, channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(self.activation(self.inner(x)))

    def certificate(self) -> Certificate:
        norm_a = conv_spectral_norm_bound(self.inner.weight)
        norm_b = conv_spectral_norm_bound(self.outer.weight)
        return Certificate(lipschitz=1.0 + float(self.activation.lipschitz) * norm_a * norm_b)


class ResNetClassifier(nn.Module):
    """Unconstrained ResNet baseline; ``certified_lipschitz_bound()`` is valid but loose."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if config.architecture != "resnet":
            raise ValueError(f"ResNetClassifier needs architecture='resnet', got {config.architecture!r}")
        self.config = config
        k = config.kernel_size
        layers: list[nn.Module] = [InputShift(config.input_mean)]
        if config.lift == "zero":
            layers.append(Lift(config.in_channels, config.widths[0]))
        else:
            layers.append(PlainConv2d(config.in_channels, config.widths[0], k))
        for stage, (width, n_blocks) in enumerate(zip(config.widths, config.blocks_per_stage)):
            if stage > 0:
                layers.append(PlainConv2d(config.widths[stage - 1], width, k, stride=2))
            if config.stage_activation == "maxmin":
                layers.append(MaxMin())
            for _ in range(n_blocks):
                layers.append(ResidualBlock(width, config.hidden_multiplier * width, k, config.activation))
        layers.append(NormPreservingGlobalPool() if config.head == "pool" else Flatten())
        layers.append(PlainLinear(config.head_features(), config.num_classes))
        self.layers = CertifiedSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def certificate(self) -> Certificate:
        return self.layers.certificate()

    def certified_lipschitz_bound(self) -> float:
        """Product of per-layer certified bounds: a proven but loose l2 Lipschitz bound."""
        return self.certificate().lipschitz

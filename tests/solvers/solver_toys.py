"""Small operators and denoisers with known constants and closed-form fixed points (tests only)."""

from __future__ import annotations

import torch
from torch import nn

from pnp_stable.layers import CertifiedSequential, Lift, Projection, conv_block
from pnp_stable.layers.certificates import Certificate


def gaussian_kernel(size: int, std: float, dtype=torch.float64) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * std**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def _transfer(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Transfer function of the circular convolution with ``kernel`` centred at pixel (0, 0)."""
    h, w = shape
    padded = torch.zeros(h, w, dtype=kernel.dtype)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.fft2(padded)


class FFTBlur:
    """Circular blur ``A x = k * x`` (ForwardOperator protocol) with exact norm and closed-form prox."""

    norm_kind = "exact"

    def __init__(self, kernel: torch.Tensor, shape: tuple[int, int]) -> None:
        self.symbol = _transfer(kernel, shape)

    def _apply(self, x: torch.Tensor, symbol: torch.Tensor) -> torch.Tensor:
        s = symbol.to(x.device)
        return torch.fft.ifft2(torch.fft.fft2(x) * s).real.to(x.dtype)

    def A(self, x):
        return self._apply(x, self.symbol)

    def A_adjoint(self, y):
        return self._apply(y, self.symbol.conj())

    def norm(self) -> float:
        return float(self.symbol.abs().max())

    def prox_data(self, z, y, gamma):
        s = self.symbol.to(z.device)
        num = gamma * torch.fft.fft2(y) * s.conj() + torch.fft.fft2(z)
        return torch.fft.ifft2(num / (gamma * s.abs() ** 2 + 1)).real.to(z.dtype)

    def simulate(self, x, noise_level, seed=None):
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        y = self.A(x)
        return y + noise_level * torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)


class GaussianSmoother(nn.Module):
    """Linear denoiser ``D = F^-1 diag(g) F`` with ``0 <= g <= 1``: self-adjoint, firmly non-expansive.

    For a self-adjoint D with spectrum in [m, 1], D = (1 - a) I + a N with a = (1 - m) / 2 and N
    non-expansive, so D is a-averaged; here a = (1 - min g) / 2 <= 1/2.
    """

    def __init__(self, std: float, shape: tuple[int, int], gain: float = 1.0, certified: bool = True) -> None:
        super().__init__()
        size = shape[0] - 1 if shape[0] % 2 == 0 else shape[0]
        symbol = _transfer(gaussian_kernel(size, std), shape).real.clamp(0, 1)
        self.register_buffer("symbol", gain * symbol)
        self.certified = certified

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(x) * self.symbol.to(x.dtype)).real

    def certificate(self):
        if not self.certified:
            return None
        return Certificate(1.0, float((1 - self.symbol.min()) / 2))


class SigmaSmoother(GaussianSmoother):
    """The same smoother called ``D(x, sigma)``; sigma scales nothing (tests the call convention)."""

    def forward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:  # type: ignore[override]
        self.last_sigma = sigma
        return super().forward(x)


def closed_form_fixed_point(op: FFTBlur, smoother: GaussianSmoother, y: torch.Tensor, step: float, t: float = 1.0):
    """x = g t-relaxed ... : x_hat = g step conj(k) y_hat / (1 - g + g step |k|^2) (FB, ADMM and DRS alike)."""
    g = (1 - t) + t * smoother.symbol
    k = op.symbol
    num = g * step * k.conj() * torch.fft.fft2(y)
    den = 1 - g + g * step * k.abs() ** 2
    return torch.fft.ifft2(num / den).real


def certified_network(channels: int = 8, blocks: int = 3, dtype=torch.float64, seed: int = 0) -> CertifiedSequential:
    torch.manual_seed(seed)
    net = CertifiedSequential(Lift(1, channels), *[conv_block(channels) for _ in range(blocks)], Projection(channels, 1))
    for m in net.modules():
        if hasattr(m, "bias") and isinstance(m.bias, nn.Parameter):
            nn.init.normal_(m.bias, std=0.1)
    return net.to(dtype).eval()


def declared_norm_only(guarantee) -> bool:
    """A guarantee that holds with one assumption: a toy operator's own norm claim (FB rests on
    ``||A||``, which pnp-stable proves for its operators only)."""
    return guarantee.holds and not guarantee.proven and len(guarantee.assumptions) == 1 \
        and "declares it" in guarantee.assumptions[0]

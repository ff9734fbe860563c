"""Super-resolution operator ``A x = (k * x)[::s, ::s]``: blur, then keep every ``s``-th pixel.

Sampling keeps rows and columns ``0, s, 2s, ...`` (deepinv's ``Downsampling`` convention).

* No kernel: plain decimation, ``||A|| = 1`` exactly, prox in closed form.
* Circular boundary with ``s`` dividing ``H`` and ``W``: ``A A^T`` is a circulant on the low-
  resolution grid whose eigenvalues are the means of ``|DFT(k)|^2`` over the ``s^2`` aliases of
  each low-resolution frequency. Hence ``||A||`` is exact (the root of the largest mean) and the
  prox is exact through Woodbury: ``(gamma A^T A + I)^-1 = I - gamma A^T (I + gamma A A^T)^-1 A``.
* Otherwise: certified Collatz–Wielandt bound (on ``|k|``) and CG prox.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pnp_stable.operators.base import CertifiedLinearPhysics, NormBound, _check_kwargs
from pnp_stable.operators.blur import BOUNDARIES, Blur, as_kernel_array, magnitude_norm_bound, parse_image_shape
from pnp_stable.layers.norms import CERTIFIED_RELATIVE_MARGIN

__all__ = ["Downsample"]


class Downsample(CertifiedLinearPhysics):
    """``A x = (k * x)[..., ::factor, ::factor]`` on images of ``image_shape`` (``(H, W)`` or
    ``(C, H, W)``); ``kernel`` is None (no anti-aliasing), an array/tensor or a kernel spec.

    Guarantees: exact adjoint; ``norm()`` exact without a kernel or for a circular boundary with
    ``factor`` dividing the image size, certified otherwise; prox exact in those same cases and
    by CG (reported) otherwise.
    """

    def __init__(
        self,
        factor: int,
        kernel: Any,
        image_shape: tuple[int, ...],
        boundary: str = "circular",
        cg_tol: float | None = None,
        cg_max_iter: int = 500,
    ) -> None:
        channels, height, width = parse_image_shape(image_shape)
        if isinstance(factor, bool) or int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        factor = int(factor)
        if factor > min(height, width):
            raise ValueError(f"factor {factor} exceeds the image size {height}x{width}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}; got {boundary!r}")
        blur = None if kernel is None else Blur(as_kernel_array(kernel), (height, width), boundary=boundary)
        closed_form = blur is None or (boundary == "circular" and height % factor == 0 and width % factor == 0)
        super().__init__(
            img_size=(channels or 1, height, width),
            norm_kind="exact" if closed_form else "certified",
            cg_tol=cg_tol,
            cg_max_iter=cg_max_iter,
        )
        self.closed_form = closed_form
        self.factor = factor
        self.boundary = boundary
        self.channels = channels
        self.image_hw = (height, width)
        self.blur = blur
        blurred_hw = (height, width) if blur is None else blur._out_hw
        self._blurred_hw = blurred_hw
        self._out_hw = (math.ceil(blurred_hw[0] / factor), math.ceil(blurred_hw[1] / factor))
        self._alias_gain: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    # -- shapes ------------------------------------------------------------------------------
    def _check(self, shape: tuple[int, ...], hw: tuple[int, int], name: str) -> None:
        if len(shape) != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {shape}")
        if tuple(shape[-2:]) != tuple(hw):
            raise ValueError(f"{name} has spatial size {tuple(shape[-2:])}, this Downsample expects {tuple(hw)}")
        if self.channels is not None and shape[1] != self.channels:
            raise ValueError(f"{name} has {shape[1]} channels, this Downsample was built for {self.channels}")

    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(input_shape), self.image_hw, "x")
        return (input_shape[0], input_shape[1], *self._out_hw)

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(output_shape), self._out_hw, "y")
        return (output_shape[0], output_shape[1], *self.image_hw)

    @property
    def first_sample(self) -> tuple[int, int]:
        """Row and column of the image grid that the first measured sample sits on: ``(0, 0)``, or
        the kernel's half-size for a ``valid`` boundary (which crops the blurred image by it)."""
        return ((self.image_hw[0] - self._blurred_hw[0]) // 2, (self.image_hw[1] - self._blurred_hw[1]) // 2)

    # -- A, A^T ------------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Blur (if a kernel is set), then keep every ``factor``-th row and column."""
        _check_kwargs(kwargs, "Downsample.A")
        self._check_tensor(x, "x")
        self.output_shape_for(x.shape)
        blurred = x if self.blur is None else self.blur.A(x)
        return blurred[..., :: self.factor, :: self.factor]

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Zero-filled upsampling followed by the blur's exact adjoint."""
        _check_kwargs(kwargs, "Downsample.A_adjoint")
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        filled = y.new_zeros(y.shape[:-2] + self._blurred_hw)
        filled[..., :: self.factor, :: self.factor] = y
        return filled if self.blur is None else self.blur.A_adjoint(filled)

    # -- closed forms ------------------------------------------------------------------------
    def _low_resolution_gain(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Eigenvalues of ``A A^T`` on the low-resolution DFT grid (circular, divisible case)."""
        key = (dtype, device)
        gain = self._alias_gain.get(key)
        if gain is None:
            gain = self._alias_gain_float64()
            gain = gain.to(device=device, dtype=dtype)
            self._alias_gain[key] = gain
        return gain

    def _alias_gain_float64(self) -> torch.Tensor:
        height, width = self.image_hw
        s = self.factor
        if self.blur is None:
            return torch.ones(height // s, width // s, dtype=torch.float64)
        k = torch.from_numpy(self.blur._kernel64)
        power = torch.fft.fft2(k, s=(height, width)).abs() ** 2
        # frequency j + a (H / s) of the fine grid aliases onto j of the coarse grid
        return power.reshape(s, height // s, s, width // s).mean(dim=(0, 2))

    def _closed_form_prox(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor | None:
        if not self.closed_form:
            return None
        if self.blur is None and (self.image_hw[0] % self.factor or self.image_hw[1] % self.factor):
            # pure decimation is diagonal: observed pixels get (z + gamma y) / (1 + gamma)
            observed = torch.zeros_like(z)
            observed[..., :: self.factor, :: self.factor] = 1
            return (z + gamma * self.A_adjoint(y)) / (1 + gamma * observed)
        # Woodbury on the residual: x = z - gamma A^T (I + gamma A A^T)^-1 (A z - y). The textbook
        # form r - gamma A^T (I + gamma A A^T)^-1 A r with r = z + gamma A^T y subtracts two terms of
        # size gamma |y|: in float32 at gamma ~ 300 its rounding (~gamma * 6e-8 relative) outgrew the
        # fixed-point residual near convergence, which then rose (36 times in 300 iterations) although
        # the map is averaged. Here gamma (I + gamma A A^T)^-1 stays below 1 / (smallest gain).
        gain = self._low_resolution_gain(z.dtype, z.device)
        misfit = torch.fft.ifft2(torch.fft.fft2(self.A(z) - y) * (gamma / (1 + gamma * gain))).real
        return z - self.A_adjoint(misfit)

    # -- norm --------------------------------------------------------------------------------
    def _compute_norm_bound(self) -> NormBound:
        if self.blur is None:
            return NormBound(1.0, "exact", "decimation (a coordinate restriction)", lower=1.0)
        if self.closed_form:
            value = math.sqrt(float(self._alias_gain_float64().max()))
            return NormBound(
                value * (1 + CERTIFIED_RELATIVE_MARGIN),
                "exact",
                "root of the largest alias-averaged |DFT(kernel)|^2 (A A^T is circulant)",
                lower=value * (1 - CERTIFIED_RELATIVE_MARGIN),
            )
        return magnitude_norm_bound(self.blur._kernel64, self.boundary, self.image_hw, subsample=self.factor)

    def __repr__(self) -> str:
        k = "none" if self.blur is None else "x".join(map(str, self.blur._kernel64.shape))
        return f"Downsample(factor={self.factor}, kernel={k}, image={self.image_hw}, boundary={self.boundary!r})"

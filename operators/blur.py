"""Convolution blur ``y = k * x`` with circular, reflect, replicate, zero or valid boundaries.

The kernel is applied as a true convolution, centred at ``(h // 2, w // 2)`` (deepinv's and
MATLAB's convention; even-sized kernels are padded with a zero row/column at the bottom/right,
which keeps that centre). The same kernel blurs every channel.

=========== =============== =========================================== =========================
boundary    output size     ``norm()``                                   ``prox_data``
=========== =============== =========================================== =========================
circular    H x W           exact: ``max |DFT(k)|`` on the H x W grid    closed form (FFT)
zero        H x W           certified: ``max |DFT(k)|`` on (H+kh-1) x    CG
                            (W+kw-1) (compression of a circulant)
valid       (H-kh+1) x      certified: ``max |DFT(k)|`` on H x W         CG
            (W-kw+1)
reflect,    H x W           certified: Collatz–Wielandt bound on the     CG
replicate                   non-negative matrix of ``|k|`` (tight for
                            non-negative k; can exceed 1 for a kernel
                            summing to 1, e.g. 1.0106 for a 25x25
                            Gaussian with reflect on 64x64)
=========== =============== =========================================== =========================
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from pnp_stable.operators.base import CertifiedLinearPhysics, NormBound, _check_kwargs
from pnp_stable.operators.fft_conv import good_fft_size, grid_convolve, grid_convolve_adjoint, pad_adjoint
from pnp_stable.operators.kernels import parse_kernel_spec, validate_kernel
from pnp_stable.operators.norm_bounds import circulant_kernel_spectrum_max, collatz_wielandt_norm_bound

__all__ = ["Blur", "BOUNDARIES", "as_kernel_array", "parse_image_shape", "magnitude_norm_bound"]

Boundary = Literal["circular", "reflect", "replicate", "zero", "valid"]
BOUNDARIES: tuple[str, ...] = ("circular", "reflect", "replicate", "zero", "valid")


def as_kernel_array(kernel: Any) -> np.ndarray:
    """A kernel given as a spec string, a numpy array or a tensor (``h x w`` or ``1 x 1 x h x w``)
    as a validated 2-D float64 array (finite; signs and scale are kept as given)."""
    if isinstance(kernel, str):
        return parse_kernel_spec(kernel)
    if isinstance(kernel, torch.Tensor):
        kernel = kernel.detach().to(device="cpu", dtype=torch.float64).numpy()
    array = np.asarray(kernel, dtype=np.float64) if not isinstance(kernel, np.ndarray) else kernel
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return validate_kernel(array, allow_negative=True, normalize=False)


def parse_image_shape(image_shape: Any) -> tuple[int | None, int, int]:
    """``(H, W)`` or ``(C, H, W)`` as ``(C or None, H, W)`` with positive integers."""
    try:
        dims = tuple(image_shape)
    except TypeError:
        raise ValueError(f"image_shape must be (H, W) or (C, H, W), got {image_shape!r}") from None
    if len(dims) not in (2, 3) or any(isinstance(d, bool) or int(d) != d or d < 1 for d in dims):
        raise ValueError(f"image_shape must be (H, W) or (C, H, W) of positive integers, got {image_shape!r}")
    dims = tuple(int(d) for d in dims)
    return (None, *dims) if len(dims) == 2 else dims  # type: ignore[return-value]


def _odd(kernel: np.ndarray) -> np.ndarray:
    h, w = kernel.shape
    return np.pad(kernel, ((0, 1 - h % 2), (0, 1 - w % 2)))


def magnitude_norm_bound(
    kernel: np.ndarray,
    boundary: str,
    image_hw: tuple[int, int],
    subsample: int = 1,
    rel_gap: float = 1e-3,
    max_iter: int = 2000,
) -> NormBound:
    """Certified bound on the norm of ``x -> (k * x)[::s, ::s]`` with ``boundary``, by the
    Collatz–Wielandt iteration on the same operator built from ``|k|`` (entrywise non-negative
    and dominating the operator's matrix entrywise, see :mod:`pnp_stable.operators.norm_bounds`).

    The products use direct float64 convolutions, so each entry is a sum of non-negative terms.
    For a non-negative kernel the matrix is the operator's own and ``lower`` bounds its norm too.
    """
    kh, kw = kernel.shape
    weight = torch.flip(torch.from_numpy(np.abs(kernel)), dims=(0, 1))[None, None]  # F.conv2d correlates
    height, width = image_hw
    pad = (kw // 2, kw // 2, kh // 2, kh // 2)
    mode = {"zero": "constant", "valid": None}.get(boundary, boundary)
    out_h = height - kh + 1 if boundary == "valid" else height
    out_w = width - kw + 1 if boundary == "valid" else width
    s = int(subsample)

    def apply_b(v: torch.Tensor) -> torch.Tensor:
        padded = v if mode is None else F.pad(v, pad, mode=mode)
        return F.conv2d(padded, weight)[..., ::s, ::s]

    def apply_b_adjoint(w: torch.Tensor) -> torch.Tensor:
        filled = w.new_zeros(w.shape[:-2] + (out_h, out_w))
        filled[..., ::s, ::s] = w
        back = F.conv_transpose2d(filled, weight)
        return back if mode is None else pad_adjoint(back, pad, mode, (height, width))

    result = collatz_wielandt_norm_bound(apply_b, apply_b_adjoint, (1, 1, height, width), rel_gap=rel_gap, max_iter=max_iter)
    non_negative = bool((kernel >= 0).all())
    what = f"{boundary}-boundary convolution" + (f" subsampled by {s}" if s > 1 else "")
    return NormBound(
        result.upper,
        "certified",
        f"Collatz-Wielandt bound on the {what} with |kernel|",
        lower=result.lower if non_negative else None,
        details={"iterations": result.iterations, "relative_gap": result.upper / max(result.lower, 1e-300) - 1},
    )


class Blur(CertifiedLinearPhysics):
    """Blur operator ``A x = k * x`` on images of ``image_shape`` with the given ``boundary``.

    ``kernel`` is a 2-D array/tensor or a kernel spec (``"gauss:1.6"``, ``"levin.mat#3"``, see
    :mod:`pnp_stable.operators.kernels`). ``image_shape`` is ``(H, W)`` (any channel count) or
    ``(C, H, W)``. Inputs are ``(B, C, H, W)`` tensors of any float dtype and device.

    Guarantees: ``A_adjoint`` is the exact transpose of ``A`` (up to float rounding) for every
    boundary; ``norm()`` is an upper bound on ``||A||`` (exact for circular, certified otherwise,
    see the module table); ``prox_data`` solves ``(gamma A^T A + I) x = gamma A^T y + z`` exactly
    (circular) or to the CG tolerance (reported otherwise).
    """

    def __init__(
        self,
        kernel: Any,
        image_shape: tuple[int, ...],
        boundary: Boundary = "circular",
        cg_tol: float | None = None,
        cg_max_iter: int = 500,
    ) -> None:
        channels, height, width = parse_image_shape(image_shape)
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}; got {boundary!r}")
        k = _odd(as_kernel_array(kernel))
        kh, kw = k.shape
        if kh > height or kw > width:
            raise ValueError(f"kernel ({kh}x{kw} after centring) is larger than the {height}x{width} image")
        if boundary == "reflect" and (kh // 2 >= height or kw // 2 >= width):
            raise ValueError(f"reflect boundary needs the kernel half-width below the image size ({height}x{width})")
        super().__init__(
            img_size=(channels or 1, height, width),
            norm_kind="exact" if boundary == "circular" else "certified",
            cg_tol=cg_tol,
            cg_max_iter=cg_max_iter,
        )
        self.boundary: str = boundary
        self.channels = channels
        self.image_hw = (height, width)
        self._kernel64 = k
        self.register_buffer("filter", torch.from_numpy(k.copy()).to(torch.float32)[None, None])
        ph, pw = kh // 2, kw // 2
        self._pad = (pw, pw, ph, ph)
        if boundary == "circular":
            self._grid, self._offset, self._out_hw = (height, width), (0, 0), (height, width)
        elif boundary == "valid":
            self._grid, self._offset = (height, width), (kh - 1, kw - 1)
            self._out_hw = (height - kh + 1, width - kw + 1)
        else:  # zero, reflect, replicate: linear convolution of the (padded) image, no wrap-around
            in_h = height + (2 * ph if boundary != "zero" else 0)
            in_w = width + (2 * pw if boundary != "zero" else 0)
            self._grid = (good_fft_size(height + kh - 1), good_fft_size(width + kw - 1))
            offset_h = ph if boundary == "zero" else kh - 1
            offset_w = pw if boundary == "zero" else kw - 1
            self._offset, self._out_hw = (offset_h, offset_w), (height, width)
            self._padded_hw = (in_h, in_w)
        self._transfers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    # -- structure ---------------------------------------------------------------------------
    @property
    def kernel(self) -> np.ndarray:
        """The (odd-sized) kernel as a float64 array (a copy)."""
        return self._kernel64.copy()

    def _transfer(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        transfer = self._transfers.get(key)
        if transfer is None:
            k = torch.from_numpy(self._kernel64)
            padded = torch.zeros(self._grid, dtype=torch.float64)
            padded[: k.shape[0], : k.shape[1]] = k
            if self.boundary == "circular":
                # centre the kernel at the origin so that no output shift is needed
                padded = torch.roll(padded, shifts=(-(k.shape[0] // 2), -(k.shape[1] // 2)), dims=(0, 1))
            complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            transfer = torch.fft.rfft2(padded).to(device=device, dtype=complex_dtype)
            self._transfers[key] = transfer
        return transfer

    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:
        self._check_spatial(tuple(input_shape), self.image_hw, "x")
        return (input_shape[0], input_shape[1], *self._out_hw)

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:
        self._check_spatial(tuple(output_shape), self._out_hw, "y")
        return (output_shape[0], output_shape[1], *self.image_hw)

    def _check_spatial(self, shape: tuple[int, ...], hw: tuple[int, int], name: str) -> None:
        if len(shape) != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {shape}")
        if tuple(shape[-2:]) != tuple(hw):
            raise ValueError(f"{name} has spatial size {tuple(shape[-2:])}, this Blur expects {tuple(hw)}")
        if self.channels is not None and shape[1] != self.channels:
            raise ValueError(f"{name} has {shape[1]} channels, this Blur was built for {self.channels}")

    # -- A, A^T ------------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Blur ``x`` (``B x C x H x W``)."""
        _check_kwargs(kwargs, "Blur.A")
        self._check_tensor(x, "x")
        self.output_shape_for(x.shape)
        transfer = self._transfer(x.dtype, x.device)
        if self.boundary in ("reflect", "replicate"):
            x = F.pad(x, self._pad, mode=self.boundary)
        return grid_convolve(x, transfer, self._grid, self._offset, self._out_hw)

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Exact transpose of :meth:`A` applied to ``y``."""
        _check_kwargs(kwargs, "Blur.A_adjoint")
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        transfer = self._transfer(y.dtype, y.device)
        if self.boundary in ("reflect", "replicate"):
            padded = grid_convolve_adjoint(y, transfer, self._grid, self._offset, self._padded_hw)
            return pad_adjoint(padded, self._pad, self.boundary, self.image_hw)
        return grid_convolve_adjoint(y, transfer, self._grid, self._offset, self.image_hw)

    def A_adjoint_A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``A^T A x``; one FFT pair for the circular boundary."""
        if self.boundary != "circular":
            return super().A_adjoint_A(x, **kwargs)
        _check_kwargs(kwargs, "Blur.A_adjoint_A")
        self._check_tensor(x, "x")
        self.output_shape_for(x.shape)
        transfer = self._transfer(x.dtype, x.device)
        gain = transfer.real**2 + transfer.imag**2
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=self.image_hw)

    # -- prox --------------------------------------------------------------------------------
    def _closed_form_prox(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor | None:
        if self.boundary != "circular":
            return None
        transfer = self._transfer(z.dtype, z.device)
        gain = transfer.real**2 + transfer.imag**2
        numerator = gamma * transfer.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(z)
        return torch.fft.irfft2(numerator / (gamma * gain + 1), s=self.image_hw)

    # -- norm --------------------------------------------------------------------------------
    def _compute_norm_bound(self) -> NormBound:
        kernel = torch.from_numpy(self._kernel64)
        kh, kw = self._kernel64.shape
        height, width = self.image_hw
        if self.boundary == "circular":
            value = circulant_kernel_spectrum_max(kernel, (height, width))
            return NormBound(value, "exact", "max |DFT(kernel)| on the image grid", lower=value / (1 + 2e-9))
        if self.boundary in ("zero", "valid"):
            grid = (height + kh - 1, width + kw - 1) if self.boundary == "zero" else (height, width)
            value = circulant_kernel_spectrum_max(kernel, grid)
            return NormBound(
                value,
                "certified",
                f"compression of the circular convolution on {grid[0]}x{grid[1]}: max |DFT(kernel)|",
                details={"grid": grid},
            )
        return magnitude_norm_bound(self._kernel64, self.boundary, self.image_hw)

    def __repr__(self) -> str:
        kh, kw = self._kernel64.shape
        c = "any" if self.channels is None else self.channels
        return f"Blur(kernel={kh}x{kw}, image={c}x{self.image_hw[0]}x{self.image_hw[1]}, boundary={self.boundary!r})"

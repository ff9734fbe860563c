"""Diagonal operators: ``Identity`` (denoising) and ``Inpainting`` (a pixel mask).

Both are diagonal matrices, so the norm is exact (``max |m|``) and the data-fidelity prox is the
pixelwise closed form ``(z + gamma m y) / (1 + gamma m^2)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pnp_stable.operators.base import CertifiedLinearPhysics, NormBound, _check_kwargs
from pnp_stable.operators.blur import parse_image_shape

__all__ = ["Identity", "Inpainting"]


class Identity(CertifiedLinearPhysics):
    """``A = I`` (denoising): ``norm() == 1`` exactly, prox ``(z + gamma y) / (1 + gamma)``.

    ``image_shape`` (``(H, W)`` or ``(C, H, W)``) is optional; without it any 4-D input is accepted.
    """

    def __init__(self, image_shape: tuple[int, ...] | None = None) -> None:
        parsed = None if image_shape is None else parse_image_shape(image_shape)
        super().__init__(img_size=None if parsed is None else (parsed[0] or 1, parsed[1], parsed[2]), norm_kind="exact")
        self._shape = parsed

    def _check(self, shape: tuple[int, ...], name: str) -> None:
        if len(shape) != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {shape}")
        if self._shape is not None:
            channels, height, width = self._shape
            if tuple(shape[-2:]) != (height, width) or (channels is not None and shape[1] != channels):
                raise ValueError(f"{name} has shape {shape}, this Identity was built for {self._shape}")

    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(input_shape), "x")
        return tuple(input_shape)

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(output_shape), "y")
        return tuple(output_shape)

    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``x`` itself (after validating its shape)."""
        _check_kwargs(kwargs, "Identity.A")
        self._check_tensor(x, "x")
        self._check(tuple(x.shape), "x")
        return x

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``y`` itself (after validating its shape)."""
        _check_kwargs(kwargs, "Identity.A_adjoint")
        self._check_tensor(y, "y")
        self._check(tuple(y.shape), "y")
        return y

    def _closed_form_prox(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return (z + gamma * y) / (1 + gamma)

    def _compute_norm_bound(self) -> NormBound:
        return NormBound(1.0, "exact", "identity", lower=1.0)


def _as_mask(mask: Any) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.asarray(mask, dtype=np.float64))
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a numpy array or torch tensor, got {type(mask).__name__}")
    m = mask.detach().to(dtype=torch.float64)
    while m.ndim > 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.numel() == 0:
        raise ValueError(f"mask must have shape (H, W) or (C, H, W), got {tuple(mask.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError("mask contains NaN or infinite values")
    return m


class Inpainting(CertifiedLinearPhysics):
    """``A x = m ⊙ x`` for a mask ``m`` of shape ``(H, W)`` (shared by all channels) or
    ``(C, H, W)``; entries are usually 0 (missing) and 1 (observed), any finite weights are allowed.
    The mask is the (float64) buffer ``mask``, saved in the ``state_dict``.

    The measurement has the image's shape with unobserved pixels set to 0. ``norm()`` is exactly
    ``max |m|``; the prox is exact and pixelwise.
    """

    def __init__(self, mask: Any) -> None:
        m = _as_mask(mask)
        channels = m.shape[0] if m.shape[0] > 1 else None
        super().__init__(img_size=(m.shape[0], m.shape[1], m.shape[2]), norm_kind="exact")
        self.channels = channels
        self.image_hw = (int(m.shape[1]), int(m.shape[2]))
        self.register_buffer("mask", m[None])

    @classmethod
    def random(cls, image_shape: tuple[int, ...], observed_fraction: float, seed: int = 0) -> "Inpainting":
        """A binary mask keeping each pixel independently with probability ``observed_fraction``
        (deterministic given ``seed``); ``image_shape`` is ``(H, W)`` or ``(C, H, W)``."""
        channels, height, width = parse_image_shape(image_shape)
        fraction = float(observed_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"observed_fraction must lie in (0, 1], got {observed_fraction}")
        generator = torch.Generator().manual_seed(int(seed))
        keep = torch.rand((channels or 1, height, width), generator=generator, dtype=torch.float64) < fraction
        return cls(keep.to(torch.float64))

    def _mask_like(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask.to(device=t.device, dtype=t.dtype)

    def measured_entries(self, y: torch.Tensor) -> torch.Tensor:
        """Which entries of a measurement ``y`` are measured (``m != 0``), as a boolean tensor of
        ``y``'s shape: the others are zeros by construction, not data, and an estimate of the
        noise (Stein's, :func:`pnp_stable.solvers.strength.sure_predicted_risk`) must not count them."""
        return (self.mask != 0).to(device=y.device).expand(y.shape)

    def _check(self, shape: tuple[int, ...], name: str) -> None:
        if len(shape) != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {shape}")
        if tuple(shape[-2:]) != self.image_hw:
            raise ValueError(f"{name} has spatial size {tuple(shape[-2:])}, the mask is {self.image_hw}")
        if self.channels is not None and shape[1] != self.channels:
            raise ValueError(f"{name} has {shape[1]} channels, the mask has {self.channels}")

    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(input_shape), "x")
        return tuple(input_shape)

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(output_shape), "y")
        return tuple(output_shape)

    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``m ⊙ x``."""
        _check_kwargs(kwargs, "Inpainting.A")
        self._check_tensor(x, "x")
        self._check(tuple(x.shape), "x")
        return x * self._mask_like(x)

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``m ⊙ y`` (the operator is diagonal, hence self-adjoint)."""
        _check_kwargs(kwargs, "Inpainting.A_adjoint")
        self._check_tensor(y, "y")
        self._check(tuple(y.shape), "y")
        return y * self._mask_like(y)

    def _closed_form_prox(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        m = self._mask_like(z)
        return (z + gamma * m * y) / (1 + gamma * m * m)

    def _compute_norm_bound(self) -> NormBound:
        value = float(self.mask.abs().max())
        return NormBound(value, "exact", "max |mask| (diagonal operator)", lower=value)

    def __repr__(self) -> str:
        observed = float((self.mask != 0).to(torch.float64).mean())
        return f"Inpainting(mask={tuple(self.mask.shape[1:])}, observed={observed:.1%})"

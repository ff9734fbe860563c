"""Noise-level conditioning: sigma -> per-block bias shifts and a relaxation weight.

Both enter the denoiser only through quantities that do not touch its constants in ``x``: a bias
shift changes ``b`` in ``x - h A^T s(Ax + b)`` (the potential stays convex with the same
gradient Lipschitz constant), and ``t(sigma)`` lies in ``(0, 1)`` so that, for every fixed
sigma, ``(1 - t) I + t N`` is ``t alpha``-averaged, hence at most ``alpha``-averaged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["as_sigma_batch", "check_image_dtype", "NoiseEmbedding"]

# sigma is on the [0, 1] image scale; features are expressed relative to 25/255
_SIGMA_REF = 25.0 / 255.0
_SIGMA_FLOOR = 1e-4


def check_image_dtype(x: torch.Tensor, weights_dtype: torch.dtype) -> None:
    """One-line errors for images a denoiser cannot take as they are: integer samples (0..255 data
    would be denoised as if on the [0, 1] scale), complex or empty tensors, and a floating dtype
    other than the weights' (torch would fail deep inside a layer; under autocast it is allowed)."""
    if x.is_complex() or not x.is_floating_point():
        hint = ": divide by 255 (or 65535) and convert, e.g. x.float() / 255" if not x.is_complex() else ""
        raise ValueError(f"the denoiser takes real floating-point images on the [0, 1] scale, got {x.dtype}{hint}")
    if x.numel() == 0:
        raise ValueError(f"the image is empty (shape {tuple(x.shape)})")
    if x.dtype != weights_dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"the denoiser's weights are {weights_dtype} and the image {x.dtype}: convert the image "
                         f"(x.to({weights_dtype})) or the model (model.to({x.dtype}))")


def as_sigma_batch(sigma: float | torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Return sigma as a ``(batch,)`` tensor on ``like``'s device/dtype; validates the values.

    Accepts a float, a 0-d tensor, or a tensor with ``batch`` (or 1) entries (any shape, e.g.
    ``(B,)`` or ``(B, 1, 1, 1)``).
    """
    if sigma is None:
        raise ValueError("this denoiser is noise-level conditioned: call it as D(x, sigma)")
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    elif s.numel() != batch:
        raise ValueError(f"sigma has {s.numel()} entries for a batch of {batch} images")
    # one host synchronisation per call (every denoiser call passes here); details only on failure
    if bool((~torch.isfinite(s) | (s < 0) | (s > 1)).any()):
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ValueError("sigma must be finite and non-negative (on the [0, 1] image scale)")
        # a level on the 0..255 scale (25 for 25/255) would give garbage silently
        raise ValueError(f"sigma {float(s.max()):g} is above 1: noise levels are on the [0, 1] image scale "
                         f"(e.g. {float(s.max()):g}/255 = {float(s.max()) / 255:.4g})")
    return s


class NoiseEmbedding(nn.Module):
    """Small MLP from sigma to ``outputs`` numbers (bias shifts, then optionally a relaxation logit).

    The last layer starts at zero so that a fresh model is unconditioned; the relaxation logit
    starts at ``initial_logit``.
    """

    def __init__(self, outputs: int, embedding_dim: int = 64, initial_logit: float | None = None) -> None:
        super().__init__()
        self.outputs = outputs
        self.mlp = nn.Sequential(
            nn.Linear(2, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim), nn.SiLU(),
            nn.Linear(embedding_dim, outputs),
        )
        last = self.mlp[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if initial_logit is not None:
            with torch.no_grad():
                last.bias[-1] = initial_logit

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        rel = sigma.clamp_min(_SIGMA_FLOOR) / _SIGMA_REF
        features = torch.stack([rel, torch.log(rel)], dim=-1)
        return self.mlp(features)

"""PSNR of a denoiser on a validation set (the metric of DESIGN.md §5: peak 1, estimate clipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pnp_stable.training.data import ValidationSet

__all__ = ["psnr", "evaluate_denoiser", "denoise_bsd68", "BSD68_SIGMAS_255"]


def psnr(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, peak 1) of ``estimate`` clipped to [0, 1] against ``clean``."""
    mse = (estimate.clamp(0, 1) - clean).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


@torch.no_grad()
def evaluate_denoiser(denoiser: Callable[[torch.Tensor, float], torch.Tensor], data: ValidationSet,
                      sigmas: Sequence[float], device: str | torch.device = "cpu") -> dict[float, float]:
    """Mean PSNR over ``data`` for each sigma ([0, 1] scale), noise seeded by image index."""
    results = {}
    for sigma in sigmas:
        values = []
        for i, clean in enumerate(data.images):
            noisy = data.noisy(i, sigma).to(device)
            values.append(float(psnr(denoiser(noisy, sigma), clean.to(device))[0]))
        results[float(sigma)] = sum(values) / len(values)
    return results


BSD68_SIGMAS_255 = (15.0, 25.0, 50.0)


@torch.no_grad()
def denoise_bsd68(denoiser: Callable[[torch.Tensor, float], torch.Tensor], folder: str,
                  sigmas_255: Sequence[float] = BSD68_SIGMAS_255, limit: int | None = None,
                  device: str | torch.device = "cpu", progress: bool = False, channels: int = 1) -> dict[str, Any]:
    """The denoise-bsd68 protocol (DESIGN.md §5): mean PSNR over the BSD68 gray images.

    ``channels=3`` runs the same protocol on colour images (CBSD68): noise drawn per RGB value,
    PSNR over all three channels (the usual colour convention). For each sigma (0-255 scale) a
    generator seeded with 0 draws the noise of the images in sorted file order; PSNR has peak 1
    and is taken on the estimate clipped to [0, 1], with deepinv's metric. ``limit`` evaluates
    only the first images (a quick check, not the protocol).
    Returns ``{"psnr": {sigma: dB}, "noisy_psnr": {...}, "images": n, "seconds": {...}}``.
    """
    import time

    from deepinv.loss.metric import PSNR
    from tqdm.auto import tqdm

    metric = PSNR(max_pixel=1.0)
    data = ValidationSet.from_folder(folder, channels=channels, limit=limit)
    out: dict[str, Any] = {"psnr": {}, "noisy_psnr": {}, "images": len(data.images), "seconds": {}}
    for sigma_255 in sigmas_255:
        sigma = sigma_255 / 255.0
        g = torch.Generator().manual_seed(0)
        values, noisy_values = [], []
        tic = time.time()
        for clean in tqdm(data.images, desc=f"{Path(folder).name} sigma {sigma_255:g}", disable=not progress, leave=False):
            noisy = clean + sigma * torch.randn(clean.shape, generator=g)
            estimate = denoiser(noisy.to(device), sigma).cpu()
            values.append(float(metric(estimate.clamp(0, 1), clean)))
            noisy_values.append(float(metric(noisy.clamp(0, 1), clean)))
        key = f"{sigma_255:g}"
        out["psnr"][key] = sum(values) / len(values)
        out["noisy_psnr"][key] = sum(noisy_values) / len(noisy_values)
        out["seconds"][key] = time.time() - tic
    return out

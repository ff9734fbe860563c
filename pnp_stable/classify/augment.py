"""Batch augmentation for natural images (CIFAR): random translation by zero-padded crops and
horizontal flips, drawn from an explicit generator so that resumed runs replay the same draws."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Crop each ``B x C x H x W`` image at a random offset from its ``padding``-zero-padded copy
    (a shift by up to ``padding`` pixels) and mirror it left-right with probability 1/2."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)[None]
        cols = ox[:, None] + torch.arange(w, device=x.device)[None]
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(mirror, x.flip(-1), x)
    return x.contiguous()

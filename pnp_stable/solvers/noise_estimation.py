"""The Gaussian noise level of an observation, estimated from the data alone.

Donoho's estimator, ``median(|HH|) / 0.6745`` on the finest diagonal Haar band ``HH = (a - b - c
+ d) / 2`` of the 2x2 blocks ``[[a, b], [c, d]]``, reads texture as noise: a sharp photograph's
fine detail has energy in that band too, and so does an edge. It also under-reads clipped data,
whose saturated regions hold no noise.

Both are mended by choosing *which* blocks to read, without biasing the estimate. For white
Gaussian noise the four orthonormal Haar coefficients of a block (its mean, its horizontal and
vertical details LH and HL, and HH) are independent, and independent of every other block's. So
a choice made from a block's mean, its LH and HL, and its neighbours' coefficients leaves the
distribution of its HH unchanged under noise, while it can avoid texture: the estimator keeps
the quarter of the blocks whose 3x3 neighbourhood has the least horizontal and vertical detail
(flat regions, whose HH is mostly noise; at least 1024 blocks, so a small image is read whole),
among those whose mean lies away from the data's extremes (where clipping squeezes the noise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["estimate_noise_level"]

# the share of the candidate blocks read: the flattest quarter, but never fewer than
# MIN_READ_BLOCKS (or all there are): the MAD of n samples has a relative standard error of about
# 1.2 / sqrt(n), 4 % for 1024 blocks (a 64 x 64 image, read whole), 2 % for a quarter of 256 x 256
SELECTED_FRACTION = 0.25
MIN_READ_BLOCKS = 1024
# blocks whose mean lies within this many (plain) noise levels of the data's minimum or maximum
# are left out: clipping at a bound flattens the noise there
CLIPPING_MARGIN = 2.0
# below this many candidate blocks, no clipping margin is applied
MIN_BLOCKS = 16
_MAD_TO_SIGMA = 0.6745  # the median of |N(0, 1)|


def estimate_noise_level(y: torch.Tensor, observed: torch.Tensor | None = None) -> list[float]:
    """Per-image Gaussian noise level of ``y`` (``B x C x H x W``): Donoho's MAD of the finest
    diagonal Haar band, read on the flattest quarter of the 2x2 blocks away from the data's
    extremes (see the module docstring; unbiased for white Gaussian noise, whatever the choice).

    Accurate when the clean signal has little energy in that band in its flattest regions, which
    holds for most photographs (a blurred one all the more); it still over-reads an image that is
    textured everywhere. ``observed`` (``y``'s shape, nonzero where a value was measured; e.g. an
    inpainting mask) keeps only the blocks measured in full: a missing pixel's 0 would read as a
    jump. ValueError if an image has no such block.
    """
    if y.ndim != 4:
        raise ValueError(f"noise estimation needs B x C x H x W measurements, got shape {tuple(y.shape)}")
    if y.shape[-1] < 2 or y.shape[-2] < 2:
        raise ValueError(f"noise estimation needs images of at least 2 x 2 pixels, got {y.shape[-2]} x {y.shape[-1]}: "
                         "give the noise level")
    if observed is not None and tuple(observed.shape) != tuple(y.shape):
        raise ValueError(f"observed has shape {tuple(observed.shape)}, y {tuple(y.shape)}")
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2

    def blocks(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = t[..., :h, :w]
        return t[..., 0::2, 0::2], t[..., 0::2, 1::2], t[..., 1::2, 0::2], t[..., 1::2, 1::2]

    a, b, c, d = blocks(y.detach().to(torch.float64))
    diagonal = (a - b - c + d) / 2.0
    detail = ((a + b - c - d).abs() + (a - b + c - d).abs()) / 2.0
    mean = (a + b + c + d) / 4.0
    if observed is None:
        full = torch.ones_like(diagonal, dtype=torch.bool)
    else:
        full = torch.stack([o.to(y.device) != 0 for o in blocks(observed)]).all(dim=0)
    levels = []
    for i in range(y.shape[0]):
        if not bool(full[i].any()):
            raise ValueError("no 2x2 block of the image is fully observed, so its noise level cannot be estimated: "
                             "give it (noise_level=, --noise)")
        levels.append(_selected_level(diagonal[i], detail[i], mean[i], full[i]))
    return levels


def _selected_level(diagonal: torch.Tensor, detail: torch.Tensor, mean: torch.Tensor, full: torch.Tensor) -> float:
    """The MAD level of ``diagonal`` (``C x h x w`` HH coefficients) read on the flattest blocks
    of ``full`` away from the extremes of ``mean`` (the blocks' means)."""
    plain = float(diagonal[full].abs().median()) / _MAD_TO_SIGMA
    candidates = full
    if int(full.sum()) >= MIN_BLOCKS:
        low, high = float(mean[full].min()), float(mean[full].max())
        margin = CLIPPING_MARGIN * plain
        inside = full & (mean > low + margin) & (mean < high - margin)
        if int(inside.sum()) >= max(MIN_BLOCKS, 0.1 * int(full.sum())):  # else: (almost) all near an extreme
            candidates = inside
    count = int(candidates.sum())
    kept = max(math.ceil(SELECTED_FRACTION * count), min(count, MIN_READ_BLOCKS))
    if kept == count:
        return float(diagonal[candidates].abs().median()) / _MAD_TO_SIGMA
    # each block's neighbourhood activity: the mean detail of the observed blocks around it
    weight = full.to(detail.dtype)[:, None]
    around = F.avg_pool2d((detail * full)[:, None], 3, 1, 1) / F.avg_pool2d(weight, 3, 1, 1).clamp_min(1e-12)
    activity = torch.where(candidates, around[:, 0], torch.full_like(detail, math.inf))
    flattest = torch.topk(activity.flatten(), kept, largest=False).indices
    return float(diagonal.flatten()[flattest].abs().median()) / _MAD_TO_SIGMA

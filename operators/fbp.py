"""What the parallel- and fan-beam filtered back-projections share: the ramp filter, each view's
share of the turn, and the back-projection of filtered views about the image centre with linear
interpolation between cells. The geometry of each beam (where a pixel meets the detector, and its
weight) stays in its operator (:mod:`pnp_stable.operators.ct`, :mod:`pnp_stable.operators.fan_beam`)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


def view_shares(angles_deg: np.ndarray, turn: float = 360.0) -> np.ndarray:
    """Each view's share of the ``turn`` (degrees: 360 for a fan beam, 180 for a parallel beam,
    whose views repeat every half-turn) in radians, summing to ``turn`` in radians: half the gaps on
    either side, each gap capped at the typical one (so that an arc missing from the scan does not
    go to its two end views), scaled to the whole turn (``turn / N`` each for ``N`` uniform views)."""
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    full = np.deg2rad(turn)
    if angles_deg.size == 1:
        return np.array([full])
    directions = np.mod(angles_deg, turn)
    order = np.argsort(directions)
    sorted_deg = directions[order]
    gaps = np.diff(np.concatenate([sorted_deg, sorted_deg[:1] + turn]))
    gaps = np.minimum(gaps, np.median(gaps))
    shares_sorted = (gaps + np.roll(gaps, 1)) / 2.0
    total = shares_sorted.sum()
    shares_sorted = (full * shares_sorted / total) if total > 0 else np.full(gaps.size, full / gaps.size)
    shares = np.empty_like(shares_sorted)
    shares[order] = shares_sorted
    return shares


def ram_lak(sinogram: torch.Tensor, step: float, angular: bool = False) -> torch.Tensor:
    """The band-limited ramp filter (Ram-Lak, spatial kernel of Kak and Slaney) along the detector
    axis (dim -2) of ``(..., cells, views)`` samples ``step`` apart, zero-padded so nothing wraps.
    ``angular``: the samples are fan angles ``step`` radians apart (a curved detector), and the
    kernel ``h(gamma)`` becomes ``(gamma / sin gamma)^2 h(gamma)`` (Kak and Slaney, equiangular rays)."""
    cells = sinogram.shape[-2]
    size = 1 << int(math.ceil(math.log2(2 * cells)))
    offsets = torch.arange(size, device=sinogram.device)
    offsets = torch.where(offsets <= size // 2, offsets, offsets - size).to(torch.float64)
    kernel = torch.zeros(size, dtype=torch.float64, device=sinogram.device)
    kernel[offsets == 0] = 1.0 / (4 * step**2)
    odd = (offsets.abs() % 2) == 1
    # only offsets within the detector meet data (the rest meets the zero padding); beyond it an
    # angular kernel may reach gamma = pi, where (gamma / sin gamma)^2 overflows and the FFT would
    # spread its rounding into every output
    odd &= offsets.abs() < cells
    kernel[odd] = -1.0 / (math.pi**2 * step**2 * offsets[odd] ** 2)
    if angular:
        gamma = offsets[odd] * step
        kernel[odd] *= (gamma / torch.sin(gamma)) ** 2
    spectrum = torch.fft.rfft(kernel) * step
    padded = torch.fft.rfft(sinogram, n=size, dim=-2)
    return torch.fft.irfft(padded * spectrum.real[:, None], n=size, dim=-2)[..., :cells, :]


def extend_to_reach(views: torch.Tensor, centre: float, half: float) -> tuple[torch.Tensor, float]:
    """``views`` (``(..., cells, views)``) zero-padded along the cells so that every cell within
    ``half`` cells of ``centre`` (the central ray's or the axis's, fractional) exists, and that
    centre's index in the result. The ramp filter's output reaches beyond the data: a pixel whose
    ray misses the detector (an offset one's short side, a narrow one's edges) still needs it."""
    cells = views.shape[-2]
    before = max(0, int(math.ceil(half - centre)))
    after = max(0, int(math.ceil(centre + half - (cells - 1))))
    if before or after:
        views = torch.nn.functional.pad(views, (0, 0, before, after))
    return views, centre + before


def interpolate_cells(view: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``view`` (``(B, C, cells)``) linearly interpolated at the fractional cell ``index`` of each
    pixel (``(n, n)``), zero beyond the detector's ends: ``(B, C, n, n)``."""
    cells = view.shape[-1]
    low = torch.floor(index)
    frac = index - low
    low = low.long()
    values = view.new_zeros(view.shape[:-1] + index.shape)
    for offset, weight in ((0, 1.0 - frac), (1, frac)):
        cell = low + offset
        inside = (cell >= 0) & (cell < cells)
        values = values + view[..., cell.clamp(0, cells - 1)] * (weight * inside)
    return values


def back_project(filtered: torch.Tensor, angles_deg: np.ndarray, n: int,
                 cell_and_weight: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
                 ) -> torch.Tensor:
    """Sum over the views of ``filtered`` (``(B, C, cells, views)``, float64) read at each pixel of
    an ``n x n`` image: ``cell_and_weight(lateral, depth)`` gives, from the pixels' coordinates about
    the image centre along the view's detector and towards it (rows counted downwards), the
    fractional cell each pixel reads and its weight (None: one). One view at a time: memory
    ``n^2``, not ``n^2`` times the views. Returns ``(B, C, n, n)`` float64."""
    axis = torch.arange(n, dtype=torch.float64, device=filtered.device) - (n - 1) / 2.0
    rows, cols = axis[:, None], axis[None, :]
    theta = torch.tensor(np.deg2rad(angles_deg), dtype=torch.float64, device=filtered.device)
    out = torch.zeros(filtered.shape[:2] + (n, n), dtype=torch.float64, device=filtered.device)
    for k in range(theta.numel()):
        cos, sin = torch.cos(theta[k]), torch.sin(theta[k])
        cell, weight = cell_and_weight(cols * cos - rows * sin, -cols * sin - rows * cos)
        values = interpolate_cells(filtered[..., k], cell)
        out = out + (values if weight is None else values * weight)
    return out

"""What the image tasks derive from an observation before they solve: where the measurements sit
(the samples of a super-resolution, the missing pixels of an inpainting), an image to start from
that agrees with them, and a noise level the parameter rule can balance against.

None of this changes what a solve converges to, nor its guarantee: the starts only save
iterations, and the masks and noise levels define the problem the tasks of
:mod:`pnp_stable.restore` hand to :func:`pnp_stable.solvers.solve`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["QUANTISATION_NOISE_LEVEL", "default_super_resolution_kernel", "interpolate_samples", "observed_mask",
           "without_missing_values", "rounding_level_floor", "fill_missing"]


def default_super_resolution_kernel(factor: int) -> str:
    """The blur assumed before sampling when none is given: a Gaussian of std ``factor / 2`` pixels
    (of the fine grid), the anti-aliasing of a camera or a careful downscaling, as a kernel spec."""
    return f"gauss:{factor / 2:g}"


def interpolate_samples(y: torch.Tensor, factor: int, size: tuple[int, int], offset: tuple[int, int] = (0, 0),
                        mode: str = "bicubic") -> torch.Tensor:
    """Interpolate samples ``y`` (``B x C x h x w``) taken at rows and columns ``offset + factor * i``
    of an ``H x W`` grid (``size``) onto that grid (the edge samples repeated beyond the last ones).

    This is the sampling of :class:`~pnp_stable.operators.Downsample` (rows ``0, s, 2s, ...``), so
    the interpolation is aligned with the operator; ``torch.nn.functional.interpolate`` centres
    the coarse pixels instead, a shift of ``(factor - 1) / 2`` fine pixels."""
    import torch.nn.functional as F

    def normalised(n_fine: int, n_coarse: int, start: int) -> torch.Tensor:
        position = (torch.arange(n_fine, dtype=y.dtype, device=y.device) - start) / factor
        return 2 * position / (n_coarse - 1) - 1 if n_coarse > 1 else torch.zeros_like(position)

    rows = normalised(size[0], y.shape[-2], offset[0])
    cols = normalised(size[1], y.shape[-1], offset[1])
    grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"), dim=-1)  # H x W x (x, y)
    return F.grid_sample(y, grid.expand(y.shape[0], *grid.shape), mode=mode, padding_mode="border",
                         align_corners=True)


# The noise level of data that are exact up to 8-bit rounding: uniform error of one step, std
# 1 / (255 sqrt(12)). Inpainting and super-resolution use it for noise-free observations, where the
# automatic rule (regularisation balanced against the noise) needs a positive level.
QUANTISATION_NOISE_LEVEL = 1.0 / (255.0 * math.sqrt(12.0))


def observed_mask(missing: Any, image: torch.Tensor) -> torch.Tensor:
    """``missing`` (``H x W`` or ``C x H x W``, True/nonzero where a pixel is missing) as a float
    ``C' x H x W`` mask of observed pixels (1) for ``image`` (``C x H x W``), ``C'`` 1 or ``C``."""
    if isinstance(missing, torch.Tensor):
        m = missing.detach().cpu()
        kind = "c" if m.dtype.is_complex else "f"
    else:
        array = np.asarray(missing)
        kind = array.dtype.kind
        m = torch.from_numpy(array.astype(np.float64)) if kind in "biuf" else None
    if kind not in "biuf":
        raise ValueError(f"the missing-pixel mask must hold booleans or numbers (nonzero: missing), got "
                         f"{getattr(missing, 'dtype', type(missing).__name__)}")
    if m.ndim == 2:
        m = m[None]
    m = m.to(torch.float64)
    if m.ndim == 3 and m.shape[0] > 1 and bool((m == m[:1]).all()):  # the same mask on every channel
        m = m[:1]  # (an RGB or palette mask image of a gray photograph)
    if m.ndim != 3 or tuple(m.shape[-2:]) != tuple(image.shape[-2:]) or m.shape[0] not in (1, image.shape[0]):
        turned = tuple(m.shape[-2:]) == tuple(image.shape[-2:])[::-1] and m.shape[-1] != m.shape[-2]
        # a photograph turned upright by its EXIF orientation when read, and a mask drawn on the stored pixels
        hint = (": it is the image's size turned by 90 degrees (an image read upright by its EXIF orientation "
                "tag needs its mask drawn as displayed, or tagged alike)" if turned else "")
        raise ValueError(f"the missing-pixel mask has shape {tuple(m.shape)}; the image is {tuple(image.shape)} "
                         f"(the mask must be H x W, or C x H x W with the image's channels){hint}")
    if not torch.isfinite(m).all():
        raise ValueError("the missing-pixel mask contains NaN or infinite values")
    observed = (m == 0).to(torch.float64)
    if not observed.any():
        raise ValueError("every pixel is marked missing: there is nothing to inpaint from")
    return observed


def without_missing_values(image: Any, missing: Any) -> Any:
    """``image`` with its missing values (``missing`` nonzero) set to 0, before the image checks: a
    NaN or an out-of-range value may mark a hole. Left as it is when the shapes do not fit, for the
    checks to name the problem."""
    t = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if t.ndim not in (2, 3) or t.dtype.is_complex:
        return image
    t3 = t[None] if t.ndim == 2 else t
    observed = observed_mask(missing, t3).to(torch.bool)
    if t3.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch.where has no CPU kernel for them
        kept = torch.from_numpy(np.where(observed.cpu().numpy(), t3.cpu().numpy(), 0).astype(t3.cpu().numpy().dtype))
    else:
        kept = torch.where(observed.to(t3.device), t3, torch.zeros((), dtype=t3.dtype, device=t3.device))
    return kept[0] if t.ndim == 2 else kept


def rounding_level_floor(sigma: float, notes: list[str],
                         use: str = "the regularisation is balanced against") -> tuple[float, float | None]:
    """``sigma``, or ``QUANTISATION_NOISE_LEVEL`` (with a note saying how it is used: ``use`` the
    rounding level) when below it, and the level it replaced (None when kept): the rule balances
    the regularisation against a positive level, and a denoiser needs one too."""
    if sigma >= QUANTISATION_NOISE_LEVEL:
        return sigma, None
    level = "no noise" if sigma == 0 else f"a noise level of {sigma * 255:.2g}/255"
    notes.append(f"{level}: {use} the 8-bit rounding level ({QUANTISATION_NOISE_LEVEL * 255:.2f}/255) instead")
    return QUANTISATION_NOISE_LEVEL, sigma


def fill_missing(y: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``y`` (``B x C x H x W``) with its unobserved pixels (``observed`` 0, broadcast to ``y``)
    filled by normalised Gaussian smoothing of the observed ones, at the finest scale (std 2, 4,
    8 ... pixels) that reaches them: a smooth start for inpainting, not a restoration. Observed
    pixels are kept as they are; filled ones are weighted means of observed ones."""
    observed = observed.to(dtype=y.dtype, device=y.device).expand_as(y)
    height, width = y.shape[-2:]
    num, den = (y * observed).flatten(0, 1)[:, None], observed.flatten(0, 1)[:, None]
    filled, todo = y * observed, observed == 0
    scale = 2.0
    while bool(todo.any()):
        whole = 3 * scale >= max(height, width)  # this scale reaches every pixel from every other
        smooth_num, smooth_den = (_smooth(t, scale, (height, width)).view_as(y) for t in (num, den))
        reached = todo & (smooth_den > 1e-3) if not whole else todo
        filled = torch.where(reached, smooth_num / smooth_den.clamp_min(1e-12), filled)
        todo = todo & ~reached
        scale *= 2
    return filled


def _smooth(t: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
    """Gaussian smoothing (std ``scale`` pixels, replicate edges) of ``N x 1 x H x W`` ``t``. From std
    8 on it runs on a grid pooled by ``scale / 4`` (std 4 there) and is interpolated back: nearly
    the same smooth weights at a cost that falls with the scale (a direct 800-pixel hole on a 2048^2
    image took 14 s)."""
    import torch.nn.functional as F

    pool = max(1, int(scale) // 4)
    if pool > 1:
        pad = (0, -size[1] % pool, 0, -size[0] % pool)
        t = F.avg_pool2d(F.pad(t, pad, mode="replicate"), pool)
    sigma = scale / pool
    radius = int(min(3 * sigma, max(t.shape[-2:])))
    r = torch.arange(-radius, radius + 1, dtype=t.dtype, device=t.device)
    g = torch.exp(-r**2 / (2 * sigma**2))
    g = g / g.sum()
    # separable: rows, then columns; replicate padding works for any radius (reflect does not)
    for kernel, pad in ((g.view(1, 1, -1, 1), (0, 0, radius, radius)), (g.view(1, 1, 1, -1), (radius, radius, 0, 0))):
        t = F.conv2d(F.pad(t, pad, mode="replicate"), kernel)
    if pool > 1:
        t = F.interpolate(t, scale_factor=pool, mode="bilinear", align_corners=False)[..., : size[0], : size[1]]
    return t

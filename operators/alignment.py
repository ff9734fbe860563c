"""Where a parallel-beam scan's rotation axis projects onto its detector, read off the sinogram.

A misaligned rotation axis is the commonest artefact of lab and synchrotron CT: the axis projects a
few bins off the detector's centre, and a reconstruction that assumes it centred smears every edge
into an arc (on a 256 x 256 phantom the FBP loses 0.5 dB for a tenth of a bin, 10 dB for one bin).
:class:`~pnp_stable.operators.ParallelBeamCT` takes the shift as ``detector_offset``;
:func:`estimate_detector_offset` measures it from the data alone.

The measure is the first Helgason-Ludwig consistency condition: in a parallel beam, the centre of
mass of every projection is the projection of the object's centre of mass, so across views it
traces ``a cos(theta) + b sin(theta) + c`` exactly, ``c`` being the bin of the rotation axis. A
least-squares fit over the views gives ``c``; only the bins of the object's shadow in the mean
projection (and a margin on either side, a twenty-fourth of the detector) count, so that the noise of
the air beside it, at a long lever arm, does not; the air's own level is taken off first (air
not at zero pulls every centre of mass towards the detector's centre). It needs projections that
hold the whole object and a non-negative object
(no truncation: refused when the shadow reaches the detector's ends) and views over enough of the
half-turn to tell the sinusoid from the constant (refused below about 80 degrees; near that limit the
fit is loose: 0.17 to 0.19 bins root-mean-square with 1 % noise over 83 to 90 degrees). Exact to 0.004
bins on noise-free phantoms; with Gaussian noise of 1 % of the sinogram's maximum, on the Shepp-Logan
phantom and two Mayo slices at 256 x 256 (four noise draws each), 0.02 to 0.03 bins root-mean-square
over 180 views in 180 degrees, 0.01 to 0.05 over 60 views, 0.05 to 0.11 over 60 views in 120
degrees; with 3 % noise up to 0.20 (docs/operators.md, "A misaligned rotation axis"). Line integrals
corrected by a measured flat field carry its noise as a fixed pattern, the same in every view, which
the views' mean does not reduce: the shadow's threshold also follows the mean projection's own noise
where it is faint, and a lone bin beyond it far from the others is no shadow (before, 99 of 144 such
sinograms were refused, their air counted as shadow; now 1: docs/benchmarks.md, "The rotation axis
behind a measured flat field").
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np
import torch

__all__ = ["AxisEstimate", "estimate_detector_offset"]

# the least-squares variance of the fitted constant, relative to that of a full turn's views, above
# which the views' span cannot separate the axis from the object's position (120 degrees: 31, 90: 106,
# 83: 144, 80: 173, 60: 570)
MAX_VARIANCE_INFLATION = 150.0
# the object's shadow: bins whose mean over the views exceeds this many of its noise deviations
SHADOW_THRESHOLD_SIGMAS = 4.0
# bins kept beyond the shadow's run on either side, per bin of the detector: the noise hides the
# shadow's faint tails, and cutting them biases the centres of mass (a 363-bin detector with 1 % or 3 %
# noise: 0.12 bins root-mean-square error over 18 problems with two bins, 0.074 with 16, 0.11 with 32)
SHADOW_MARGIN_SHARE = 1.0 / 24.0
# the mean projection's own noise (a flat field's fixed pattern) is read where it lies within this share of
# its largest magnitude, from at least this many triples of such bins (else the views' noise alone counts)
FAINT_SHARE = 0.05
MIN_FAINT_TRIPLES = 8
# a view is truncated when the mean of two bins at either end exceeds this many of their noise deviations
TRUNCATION_SIGMAS = 6.0


class AxisEstimate(NamedTuple):
    """``offset``: the :class:`~pnp_stable.operators.ParallelBeamCT` ``detector_offset`` (bins) that
    puts the rotation axis where the data say; ``axis_bin``: that bin, ``(G - 1)/2 - offset``;
    ``fit_residual``: root-mean-square distance (bins) of the views' centres of mass from the fitted
    sinusoid, which a consistent parallel-beam scan keeps near ``expected_residual``, what the
    sinogram's noise alone gives (a much larger one says the data are not a parallel beam's, or the
    object moved); ``bins_used``: the shadow's width with its margins; ``baseline``: the air level
    (the median over the detector's outer fortieth at its lower end) subtracted first."""

    offset: float
    axis_bin: float
    fit_residual: float
    expected_residual: float
    bins_used: int
    baseline: float


def _noise_of_second_differences(second: np.ndarray) -> float:
    """The standard deviation of white noise whose second differences are ``second`` (robust: the
    median absolute deviation, which an edge's few large differences do not move)."""
    return 1.4826 * float(np.median(np.abs(second - np.median(second)))) / np.sqrt(6.0)


def estimate_detector_offset(sinogram: np.ndarray | torch.Tensor, angles_deg: Iterable[float]) -> AxisEstimate:
    """The detector offset of a parallel-beam ``sinogram`` (``bins x views``, line integrals of a
    non-negative object) whose columns are views at ``angles_deg`` (degrees), from the centres of
    mass of its projections (the module docstring: exact for noise-free data of an untruncated
    object, after the air level is subtracted).

    Raises ValueError when the data cannot say: not 2-D, a column count that differs from the
    angles', views spanning too little of the half-turn (about 80 degrees), projections whose shadow
    reaches the detector's ends (truncated: the centre of mass is not the object's), an object with
    negative values (its centre of mass is no point of it), or views without mass.
    """
    s = np.asarray(sinogram.detach().cpu() if isinstance(sinogram, torch.Tensor) else sinogram, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a sinogram is a 2-D array (detector bins x angles), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("the sinogram contains NaN or infinite values")
    theta = np.deg2rad(np.asarray(list(angles_deg), dtype=np.float64))
    bins, views = s.shape
    if theta.size != views:
        raise ValueError(f"{theta.size} angles for a sinogram of {views} columns")
    design = np.stack([np.cos(theta), np.sin(theta), np.ones_like(theta)], axis=1)
    gram = design.T @ design
    if views < 3 or np.linalg.cond(gram) > 1e12 or views * np.linalg.inv(gram)[2, 2] > MAX_VARIANCE_INFLATION:
        raise ValueError("the views span too little of the half-turn to locate the rotation axis (the centres of mass "
                         "need about 80 degrees or more; angles in degrees): give the detector offset")
    # the views' noise from the second differences along the bins, where smooth projections leave it
    # (no air bins needed: an object may nearly fill the detector); the mean projection's noise is
    # that over sqrt(views) (a bin's largest value over many views rises above any threshold in the
    # noise alone)
    noise = _noise_of_second_differences((s[2:] - 2.0 * s[1:-1] + s[:-2]).ravel() if bins >= 3 else np.zeros(1))
    # air not at zero (a flat field a little off) moves every centre of mass towards the detector's
    # centre, the more so the farther the object lies from the axis: its level is taken off first
    edge = max(2, bins // 40)
    # (the lower end's: a truncated end holds the object, not air)
    baseline = min(float(np.median(s[:edge])), float(np.median(s[-edge:])))
    s = s - baseline
    profile = s.mean(axis=1)
    # a flat field's own noise offsets each bin alike in every view (its mean over k frames is off by
    # 1 / sqrt(k N0)): that part does not average out over the views, so the mean projection's noise
    # is also read off its own second differences where it is faint (the air beside the object, away
    # from the structure of its shadow)
    faint = np.abs(profile) <= FAINT_SHARE * float(np.abs(profile).max())
    within = faint[2:] & faint[1:-1] & faint[:-2]
    profile_noise = noise / np.sqrt(views)
    if int(within.sum()) >= MIN_FAINT_TRIPLES:
        profile_noise = max(profile_noise, _noise_of_second_differences(
            (profile[2:] - 2.0 * profile[1:-1] + profile[:-2])[within]))
    level = max(SHADOW_THRESHOLD_SIGMAS * profile_noise, 1e-9 * float(np.abs(profile).max()))
    # the shadow (or a dip below the air): the bins beyond the level, less lone ones (no neighbour
    # beyond it) farther than a margin from the others: a stray bin of noise at the detector's end is
    # no shadow, while a lone bin in the shadow's faint tail is
    margin = max(2, int(round(SHADOW_MARGIN_SHARE * bins)))
    beyond = np.abs(profile) > level
    beside = np.zeros_like(beyond)
    beside[1:] |= beyond[:-1]
    beside[:-1] |= beyond[1:]
    significant = np.flatnonzero(beyond)
    paired = np.flatnonzero(beyond & beside)
    if paired.size:
        significant = significant[(significant >= paired[0] - margin) & (significant <= paired[-1] + margin)]
    if significant.size == 0 or not profile.max() > level:
        raise ValueError("the sinogram is empty (no projection rises above its noise): nothing locates the axis")
    first, last = int(significant[0]), int(significant[-1])
    if float(profile[first:last + 1].min()) < -level:
        raise ValueError("the mean projection dips below the air level inside the object's shadow: the object has "
                         "negative values (or the data are not line integrals), and its centre of mass locates no "
                         "axis; give the detector offset")
    # a view whose end bins hold the object is truncated, even where the mean projection hides it
    ends = np.maximum(s[:2].mean(axis=0), s[-2:].mean(axis=0))
    if first == 0 or last == bins - 1 or float(ends.max()) > TRUNCATION_SIGMAS * noise / np.sqrt(2.0) + 1e-9 * float(
            np.abs(s).max()):
        raise ValueError("the object's shadow reaches the detector's ends in some views (truncated projections, or no "
                         "air beside the object): the centres of mass do not locate the axis; give the detector offset")
    low, high = max(0, first - margin), min(bins, last + margin + 1)
    band = s[low:high]
    positions = np.arange(low, high, dtype=np.float64)
    mass = band.sum(axis=0)
    if np.any(mass <= SHADOW_THRESHOLD_SIGMAS * noise * np.sqrt(high - low)):
        raise ValueError("some views hold no mass above the noise: the object is too faint or too small in them to "
                         "locate the axis (or the data are not line integrals); give the detector offset")
    centres = (positions[:, None] * band).sum(axis=0) / mass
    coefficients, *_ = np.linalg.lstsq(design, centres, rcond=None)
    axis_bin = float(coefficients[2])
    residual = float(np.sqrt(np.mean((design @ coefficients - centres) ** 2)))
    # each centre's deviation from the noise: sigma sqrt(sum (position - centre)^2) / mass; the fit
    # takes three degrees of freedom
    spread = np.sqrt(((positions[:, None] - centres[None, :]) ** 2).sum(axis=0)) * noise / mass
    expected = float(np.sqrt(np.mean(spread**2) * max(views - 3, 0) / views))
    return AxisEstimate(offset=(bins - 1) / 2.0 - axis_bin, axis_bin=axis_bin, fit_residual=residual,
                        expected_residual=expected, bins_used=high - low, baseline=baseline)

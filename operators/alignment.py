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

__all__ = ["AxisEstimate", "AxisLineFit", "AxisTiltEstimate", "estimate_axis_tilt", "estimate_detector_offset",
           "fit_axis_line"]

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
# a tilted axis's line through the rows' axis bins: rows farther from the first fit than this many robust
# deviations of the rows (and than AXIS_LINE_MIN_OUTLIER_BINS) misread their axis and are left out
AXIS_LINE_OUTLIER_DEVIATIONS = 4.0
AXIS_LINE_MIN_OUTLIER_BINS = 0.1
# a tilt is read off the projections' centres of mass only where they swing this many bins or more about
# the axis, and only where its standard error moves the detector's farthest bin from the axis by this
# many bins (or rows) at most
MIN_TILT_SWING_BINS = 1.0
MAX_TILT_ERROR_SHIFT = 0.25


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


def _air_levelled(s: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``s`` (bins x views) less its air level, the views' noise and that level. The noise from the
    second differences along the bins, where smooth projections leave it (no air bins needed: an
    object may nearly fill the detector). Air not at zero (a flat field a little off) moves every
    centre of mass towards the detector's centre, the more so the farther the object lies from the
    axis: its level, the median over the detector's outer fortieth at its lower end (a truncated end
    holds the object, not air), is taken off first."""
    bins = s.shape[0]
    noise = _noise_of_second_differences((s[2:] - 2.0 * s[1:-1] + s[:-2]).ravel() if bins >= 3 else np.zeros(1))
    edge = max(2, bins // 40)
    baseline = min(float(np.median(s[:edge])), float(np.median(s[-edge:])))
    return s - baseline, noise, baseline


def _ends_hold_the_object(s: np.ndarray, noise: float) -> bool:
    """Whether some view's two end bins at either end (of ``s`` levelled by :func:`_air_levelled`)
    rise above their noise: a truncated projection, even where the views' mean hides it."""
    ends = np.maximum(s[:2].mean(axis=0), s[-2:].mean(axis=0))
    return float(ends.max()) > TRUNCATION_SIGMAS * noise / np.sqrt(2.0) + 1e-9 * float(np.abs(s).max())


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
    # the air's level taken off, the views' noise read (the mean projection's is that over sqrt(views):
    # a bin's largest value over many views rises above any threshold in the noise alone)
    s, noise, baseline = _air_levelled(s)
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
    if first == 0 or last == bins - 1 or _ends_hold_the_object(s, noise):
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


class AxisLineFit(NamedTuple):
    """A rotation axis that turns on the detector: it crosses ``reference_row`` at bin ``axis_bin`` and
    moves ``slope`` bins per row; ``residual``: root-mean-square distance (bins) of the rows kept from the
    line; ``rows_used`` / ``rows_left_out``: rows fitted / left out as misread."""

    axis_bin: float
    slope: float
    reference_row: float
    residual: float
    rows_used: int
    rows_left_out: int


def fit_axis_line(rows: Iterable[float], axis_bins: Iterable[float], reference_row: float, *,
                  slope: float | None = None, axis_bin: float | None = None) -> AxisLineFit:
    """The line ``axis_bin + slope (row - reference_row)`` through the axis bins read off single rows
    (each by :func:`estimate_detector_offset`), by least squares; ``slope`` or ``axis_bin`` given holds
    that coefficient. A row whose object is nearly empty or truncated misreads its axis: rows farther
    from the first fit than ``AXIS_LINE_OUTLIER_DEVIATIONS`` robust deviations of the rows (and than
    ``AXIS_LINE_MIN_OUTLIER_BINS``) are left out and the line fitted again, once.

    Raises ValueError for fewer rows than the unknowns need with one to spare (three to fit both,
    two to fit one), rows not all distinct where a slope is fitted, or values not finite."""
    r = np.asarray(list(rows), dtype=np.float64)
    b = np.asarray(list(axis_bins), dtype=np.float64)
    if r.shape != b.shape or r.ndim != 1:
        raise ValueError(f"{r.size} rows for {b.size} axis bins")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(b))) or any(
            v is not None and not np.isfinite(v) for v in (slope, axis_bin, reference_row)):
        raise ValueError("the rows, axis bins and coefficients must be finite")
    unknowns = (slope is None) + (axis_bin is None)
    if unknowns and r.size < unknowns + 1:
        raise ValueError(f"{r.size} rows located the axis; its line needs {unknowns + 1} or more")
    if slope is None and np.ptp(r) == 0:
        raise ValueError("the rows that located the axis are all the same row: no slope to read")

    def fit(keep: np.ndarray) -> tuple[float, float]:
        x, y = r[keep] - reference_row, b[keep]
        if slope is None and axis_bin is None:
            coefficients, *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), y, rcond=None)
            return float(coefficients[0]), float(coefficients[1])
        if slope is None:  # the crossing held: the slope alone
            return float(axis_bin), float(np.dot(x, y - axis_bin) / np.dot(x, x)) if np.dot(x, x) > 0 else 0.0
        if axis_bin is None:
            return float(np.mean(y - slope * x)), float(slope)
        return float(axis_bin), float(slope)

    keep = np.ones(r.size, dtype=bool)
    crossing, rise = fit(keep)
    distance = np.abs(b - crossing - rise * (r - reference_row))
    deviation = 1.4826 * float(np.median(distance))
    outlying = distance > max(AXIS_LINE_OUTLIER_DEVIATIONS * deviation, AXIS_LINE_MIN_OUTLIER_BINS)
    if outlying.any() and (~outlying).sum() >= max(unknowns + 1, 1):
        keep = ~outlying
        crossing, rise = fit(keep)
    residual = float(np.sqrt(np.mean((b[keep] - crossing - rise * (r[keep] - reference_row)) ** 2)))
    return AxisLineFit(axis_bin=crossing, slope=rise, reference_row=float(reference_row), residual=residual,
                       rows_used=int(keep.sum()), rows_left_out=int((~keep).sum()))


class AxisTiltEstimate(NamedTuple):
    """A rotation axis read off whole projections: its image on the detector makes ``tilt_deg``
    degrees with the columns (positive: its bin grows with the row) and crosses ``reference_row`` at
    bin ``axis_bin``; ``swing``: the amplitude (bins) of the projections' centre of mass about the
    axis over the views, which carries the tilt; ``tilt_error_deg``: the tilt's standard error from
    the fit's residuals; ``rows_used``: detector rows summed."""

    tilt_deg: float
    axis_bin: float
    reference_row: float
    swing: float
    tilt_error_deg: float
    rows_used: int


def estimate_axis_tilt(rows: Iterable[tuple[float, np.ndarray]], angles_deg: Iterable[float],
                       reference_row: float) -> AxisTiltEstimate:
    """The tilt and position of a parallel beam's rotation axis from whole projections: ``rows``
    yields ``(row, sinogram)`` for every detector row (or rows evenly spaced), each ``bins x views``
    line integrals of a non-negative object, the views at ``angles_deg``.

    The centre of mass of a whole projection is the projection of the object's centre of mass
    (Helgason-Ludwig, first moments, in two dimensions): over the views it swings across the axis's
    image as ``u(theta) = a cos(theta) + b sin(theta)`` while its height along the axis stays fixed.
    A tilt ``phi`` turns that swing: the centre's column moves by ``u cos(phi)``, its row by
    ``-u sin(phi)``, so fitting both sinusoids gives ``tan(phi)`` as minus the ratio of their
    amplitudes, and the fits' constants a point of the axis. Exact for the continuous projections of
    an object inside the detector, whatever its structure along the axis (rows read alone are not: a
    tilted row cuts the object aslant, and an object whose cross-section changes along the axis, such
    as a sphere towards its poles, biases each row's axis by as much as the tilt moves it). Summing
    the rows samples the object's ends, which move by fractions of a row from view to view: every row
    must be given (every s-th one aliases them), and a detector's pixels, which integrate their area,
    leave a bias of a few thousandths of a degree on 72 rows (point samples: 2 to 5 %;
    docs/benchmarks.md, "A tilted rotation axis"). ``tilt_error_deg`` is the noise's part alone.

    Raises ValueError when the object reaches the first or last row or either end of the detector
    in some view (the centre of mass of what is seen is not the object's), when the views span too
    little of the half-turn, when the centre of mass swings less than ``MIN_TILT_SWING_BINS`` about
    the axis (an object centred on it: the tilt does not show), or when the tilt's standard error
    would move the detector's farthest bin or row from the middle by more than
    ``MAX_TILT_ERROR_SHIFT``."""
    theta = np.deg2rad(np.asarray(list(angles_deg), dtype=np.float64))
    design = np.stack([np.cos(theta), np.sin(theta), np.ones_like(theta)], axis=1)
    gram = design.T @ design
    if theta.size < 4 or np.linalg.cond(gram) > 1e12 or theta.size * np.linalg.inv(gram)[2, 2] > \
            MAX_VARIANCE_INFLATION:
        raise ValueError("the views span too little of the half-turn to read the rotation axis's tilt (the centres "
                         "of mass need about 80 degrees or more): give the tilt")
    mass = column = height = None
    bins = 0
    # the first and last rows: (row, its mass per view, its mass's noise)
    first: tuple[float, np.ndarray, float] | None = None
    last: tuple[float, np.ndarray, float] | None = None
    count = 0
    for row, sinogram in rows:
        s = np.asarray(sinogram, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != theta.size:
            raise ValueError(f"row {row}: a sinogram of bins x {theta.size} views was expected, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"row {row}: the sinogram contains NaN or infinite values")
        bins = s.shape[0]
        s, noise, _ = _air_levelled(s)
        if _ends_hold_the_object(s, noise):
            raise ValueError(f"row {row}: the object's shadow reaches the detector's ends in some views (truncated "
                             "projections): the centres of mass do not locate the axis; give the tilt")
        row_mass = s.sum(axis=0)
        positions = np.arange(bins, dtype=np.float64)
        if mass is None:
            mass, column, height = np.zeros(theta.size), np.zeros(theta.size), np.zeros(theta.size)
        mass += row_mass
        column += positions @ s
        height += float(row) * row_mass
        entry = (float(row), row_mass, noise * np.sqrt(bins))
        if first is None or entry[0] < first[0]:
            first = entry
        if last is None or entry[0] > last[0]:
            last = entry
        count += 1
    if count < 3:
        raise ValueError(f"{count} detector rows given: the tilt needs the whole projections (three rows or more)")
    for label, (row, row_mass, noise) in (("first", first), ("last", last)):
        if float(np.abs(row_mass).max()) > TRUNCATION_SIGMAS * noise:
            raise ValueError(f"the object reaches the detector's {label} row ({row:g}) in some views: the centres of "
                             "mass of projections that do not hold it whole do not locate the axis; give the tilt")
    if np.any(mass <= 0):
        raise ValueError("some projections hold no mass: the object is too faint (or the data are not line "
                         "integrals) to read the tilt; give it")
    along, *_ = np.linalg.lstsq(design, column / mass, rcond=None)
    across, *_ = np.linalg.lstsq(design, height / mass, rcond=None)
    swing2 = float(along[0] ** 2 + along[1] ** 2)
    if swing2 < MIN_TILT_SWING_BINS ** 2:
        raise ValueError(f"the projections' centre of mass swings {np.sqrt(swing2):.2f} bins about the rotation axis "
                         f"(under {MIN_TILT_SWING_BINS:g}): an object centred on the axis does not show its tilt; "
                         "give it")
    slope = -float(along[0] * across[0] + along[1] * across[1]) / swing2  # tan(phi)
    residual = (height / mass) - design @ across
    # the row sinusoid's amplitude from residual noise, over the column sinusoid's
    error = float(np.sqrt(np.mean(residual ** 2) * 2.0 / max(theta.size - 3, 1) / swing2))
    tilt, error_deg = float(np.degrees(np.arctan(slope))), float(np.degrees(error))
    reach = max(bins, last[0] - first[0] + 1) / 2.0  # the farthest bin or row from the middle
    if error * reach > MAX_TILT_ERROR_SHIFT:
        raise ValueError(f"the tilt reads {tilt:+.3f} +- {error_deg:.3f} degrees: too loose to correct it (the "
                         "projections' centres of mass stray from their sinusoids, or swing too little about the "
                         "axis); give the tilt")
    # the fits' constants: a point of the axis, at the centre of mass's height
    axis_bin = float(along[2]) + (reference_row - float(across[2])) * slope
    return AxisTiltEstimate(tilt_deg=tilt, axis_bin=axis_bin, reference_row=float(reference_row),
                            swing=float(np.sqrt(swing2)), tilt_error_deg=error_deg, rows_used=count)

"""A parallel beam's rotation axis read off opposite views: the registration of a projection with
the one half a turn later.

Turning an object half a turn about an axis that lies in the detector's plane sends each ray to
the same ray run backwards, whose line integral is the same, and mirrors the detector's plane in
the axis's image: the projection at ``theta + 180`` degrees is the one at ``theta`` reflected in
the axis's line on the detector, pixel for pixel, whatever the object. Where both the pixel and
its mirror image lie on the detector the relation is exact, so unlike the centres of mass of whole
projections (:func:`~pnp_stable.operators.estimate_axis_tilt`) it holds for an object longer than
the detector (a core, a long sample cut by the first and last rows), wider than it, or centred on
the axis. It needs a scan with views half a turn apart: a full turn, or a half turn whose last view
lies at 180 degrees from its first.

The reflection is found by least squares on the two images after a light Gaussian smoothing (which
keeps the interpolation from preferring whole-pixel positions of the mirror, a bias on noisy data),
read at the mirror images by cubic splines (bilinear interpolation left residuals four times larger
on a sharp-edged phantom, and tilts up to 0.02 degrees off without noise), coarse to fine: a search
over the tilt on images reduced to about a hundred bins across (for each tilt the axis from the
sheared views' column profiles), then Levenberg-Marquardt on each finer level, twice: with the
mirror alone, and with each pair's drift along the axis (an object that moved between the two
views), the second kept where the drift it finds is real. The bands along the detector's edges
are left out: the smoothing meets the edges there, and being along the rows in both views they
pull the tilt towards none (an object cut by the first and last rows read 0.46 for 0.5 degrees
with them).
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np

__all__ = ["AxisRegistration", "estimate_axis_from_opposite_views", "opposite_view_pairs"]

# views whose angles differ by 180 degrees to within this (a turn left over between them moves a
# point r bins from the axis by r times it, across the axis: 0.17 bins at 1000 bins; logged angles
# carry jitter of about this size)
OPPOSITE_TOLERANCE_DEG = 1e-2
# pairs registered at most (spread over those the scan holds)
MAX_PAIRS = 8
# the Gaussian smoothing (pixels of each level) before interpolating
SMOOTHING_PIXELS = 1.0
# pixels (of each level) along the detector's edges left out, where the smoothing meets them
BORDER_PIXELS = 3
# residuals per level at most (the pixels are sampled beyond: a 2048 x 2048 detector's 8 pairs hold
# 33 million)
MAX_SAMPLES = 1 << 20
# the coarsest level's width (bins) where the tilt is searched over its whole range
COARSE_WIDTH = 96
# a registration is refused where the tilt's standard error moves the farthest overlapping pixel
# by more than this many bins
MAX_REGISTRATION_ERROR_SHIFT = 0.25
# the correlation of the views with their opposites' registered mirror images below which they are
# not taken for mirror images (unrelated views register somewhere, near 0; the benchmark's, 0.999)
MIN_CORRELATION = 0.5
# pairs from which the spread of their own readings bounds the standard errors
MIN_PAIRS_FOR_SPREAD = 3
# a pair's drift along the axis is taken out of the reading where it exceeds this many rows and this
# many of its standard errors
DRIFT_ROWS = 0.1
DRIFT_SIGNIFICANCE = 4.0
# the share of a view's pixels whose mirror images must lie on the detector at the registration found
MIN_OVERLAP_SHARE = 0.1


class AxisRegistration(NamedTuple):
    """A rotation axis read off opposite views: its image on the detector makes ``tilt_deg`` degrees
    with the columns (positive: its bin grows with the row) and crosses ``reference_row`` at bin
    ``axis_bin``. ``tilt_error_deg`` and ``axis_error_bins``: standard errors from the residuals
    (their correlation by the smoothing allowed for); ``residual``: the root-mean-square difference
    between the views and their registered opposites, over ``signal``, the views' root-mean-square
    deviation about their mean (near 0 for a clean match; noise adds its own share);
    ``correlation``: that of the views with their opposites' mirror images; ``drift_rows``: per pair,
    how far the object moved along the axis between the view and its opposite (rows, positive
    towards the higher rows), as the opposite view shows it against the view's mirror image, and
    ``drift_modelled`` whether the tilt and axis were read with it taken out (where it is real: more
    than ``DRIFT_ROWS`` and ``DRIFT_SIGNIFICANCE`` standard errors for some pair), else by the mirror
    alone; ``pairs_used``: pairs of opposite views; ``overlap``: the share of pixels whose mirror images lie
    on the detector."""

    tilt_deg: float
    axis_bin: float
    reference_row: float
    tilt_error_deg: float
    axis_error_bins: float
    residual: float
    correlation: float
    drift_rows: list[float]
    drift_modelled: bool
    pairs_used: int
    overlap: float


def opposite_view_pairs(angles_deg: Sequence[float], tolerance_deg: float = OPPOSITE_TOLERANCE_DEG,
                        at_most: int | None = None) -> list[tuple[int, int]]:
    """The pairs ``(i, j)`` of views whose angles differ by 180 degrees (modulo 360, to within
    ``tolerance_deg``), each view in one pair at most, in the order of the first view; with
    ``at_most``, that many of them (or all there are) spread evenly over the list."""
    angles = np.asarray(list(angles_deg), dtype=np.float64)
    taken: set[int] = set()
    pairs = []
    for i in range(angles.size):
        if i in taken:
            continue
        gap = np.abs(np.mod(angles - angles[i], 360.0) - 180.0)
        for j in np.flatnonzero(gap <= tolerance_deg):
            if int(j) != i and int(j) not in taken:
                pairs.append((i, int(j)))
                taken.update((i, int(j)))
                break
    if at_most is not None and len(pairs) > at_most:
        pairs = [pairs[int(k)] for k in np.linspace(0, len(pairs) - 1, at_most).round()]
    return pairs


def _reduced(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor x factor`` pixels (the image cropped to whole blocks)."""
    if factor == 1:
        return image
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


def _mirror_centre(profiles: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The point (in profile bins) about which the second profile of each pair best mirrors the
    first, by cross-correlation with a parabola through the peak."""
    total = None
    for pa, pb in profiles:
        corr = np.convolve(pb - pb.mean(), pa - pa.mean())  # sum_u pb(u) pa(k - u): mirrored about k/2
        total = corr if total is None else total + corr
    k = int(np.argmax(total))
    shift = 0.0
    if 0 < k < total.size - 1:
        left, mid, right = total[k - 1], total[k], total[k + 1]
        curvature = left - 2.0 * mid + right
        if curvature < 0:
            shift = 0.5 * (left - right) / curvature
    return (k + shift) / 2.0


class _Level:
    """The pairs at one level of detail (pixels ``factor`` bins wide), smoothed, with their
    gradients; the mirror map's residuals and their derivatives in the parameters ``(tilt,
    axis_bin, shift_1, ..., shift_K)`` (``shift_k``: how far along the axis pair k's view lies from
    its opposite's mirror image, in rows: minus the object's drift along the axis), at the
    level's pixels (every ``stride``-th along each side, at most ``MAX_SAMPLES`` over the pairs)."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], factor: int, reference_row: float,
                 search: bool = False) -> None:
        from scipy.ndimage import gaussian_filter, spline_filter

        def coefficients(image: np.ndarray) -> np.ndarray:  # cubic B-spline's, for map_coordinates
            return spline_filter(image, order=3, mode="nearest")

        self.factor, self.reference_row = factor, reference_row
        reduced = [_reduced(a, factor) for a, _ in pairs]
        smoothed = [gaussian_filter(a, SMOOTHING_PIXELS, mode="nearest") for a in reduced]
        smoothed_opposites = [gaussian_filter(_reduced(b, factor), SMOOTHING_PIXELS, mode="nearest") for _, b in pairs]
        # the smoothed images themselves only where the coarse search reads their profiles (axis_for_tilt):
        # the finer levels, the largest, keep their spline coefficients alone
        self.smoothed_pairs = list(zip(smoothed, smoothed_opposites)) if search else None
        self.views = [coefficients(v) for v in smoothed]
        # the smoothed views' exact derivatives (d/drow, d/dcol), per level pixel
        self.gradients = [[coefficients(gaussian_filter(a, SMOOTHING_PIXELS, order=order, mode="nearest"))
                           for order in ((1, 0), (0, 1))] for a in reduced]
        self.shape = rows, cols = reduced[0].shape
        self.stride = stride = max(1, math.ceil(math.sqrt(len(pairs) * rows * cols / MAX_SAMPLES)))
        m = BORDER_PIXELS
        # the sampled pixels, away from the detector's edges (see mirror)
        grid_v, grid_u = np.meshgrid(np.arange(m, rows - m, stride), np.arange(m, cols - m, stride), indexing="ij")
        self.opposites = [o[grid_v, grid_u] for o in smoothed_opposites]
        # their centres in full-resolution bins and rows
        self.u, self.v = grid_u * factor + (factor - 1) / 2.0, grid_v * factor + (factor - 1) / 2.0

    def to_level(self, full: np.ndarray | float) -> np.ndarray | float:
        return (full - (self.factor - 1) / 2.0) / self.factor

    def axis_for_tilt(self, tilt: float) -> float:
        """The axis's bin at the reference row for this tilt: the views and their opposites sheared so
        that the axis's line stands along the columns, their column profiles mirrored into each other.
        (Unsheared, the profiles of views whose structure lies far from the reference row, or of a tall
        detector, place the axis tens of bins off at a few degrees.)"""
        from scipy.ndimage import map_coordinates

        rows, cols = self.shape
        v_full = np.arange(rows) * self.factor + (self.factor - 1) / 2.0
        shift = (v_full - self.reference_row) * math.tan(tilt) / self.factor  # level pixels, per row
        grid_v, grid_u = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                                     indexing="ij")
        coordinates = [grid_v, grid_u + shift[:, None]]
        profiles = []
        for a, b in self.smoothed_pairs:
            # each image about its median (the air's level), zero off the detector
            pa = map_coordinates(a - np.median(a), coordinates, order=1, mode="constant").sum(axis=0)
            pb = map_coordinates(b - np.median(b), coordinates, order=1, mode="constant").sum(axis=0)
            profiles.append((pa, pb))
        return _mirror_centre(profiles) * self.factor + (self.factor - 1) / 2.0

    def mirror(self, tilt: float, axis_bin: float) -> tuple[np.ndarray, np.ndarray]:
        """The sampled pixels' mirror images in the axis (this level's pixel coordinates: row, column)."""
        a_u, a_v = math.sin(tilt), math.cos(tilt)
        du, dv = self.u - axis_bin, self.v - self.reference_row
        along = du * a_u + dv * a_v
        row = self.reference_row + 2.0 * along * a_v - dv
        column = axis_bin + 2.0 * along * a_u - du
        return self.to_level(row), self.to_level(column)

    def inside(self, tilt: float, axis_bin: float, margin: float = 0.0) -> np.ndarray:
        """The sampled pixels whose mirror images lie on the detector, ``BORDER_PIXELS + margin`` from
        its edges: the smoothing runs into the edges, and the bands along them, along the rows in both
        views, would pull the registration towards no tilt."""
        gv, gu = self.mirror(tilt, axis_bin)
        rows, cols = self.shape
        m = BORDER_PIXELS + margin
        return (gu >= m) & (gu <= cols - 1 - m) & (gv >= m) & (gv <= rows - 1 - m)

    def residuals(self, params: np.ndarray, mask: np.ndarray, jacobian: bool = False):
        """The opposite views minus the views at the mirror images (moved by each pair's shift) over
        the sampled pixels ``mask``, and with ``jacobian`` their derivatives in ``params``."""
        from scipy.ndimage import map_coordinates

        tilt, axis_bin, shifts = float(params[0]), float(params[1]), params[2:]
        gv, gu = self.mirror(tilt, axis_bin)
        gv, gu = gv[mask], gu[mask]
        out, derivatives = [], []
        if jacobian:
            du, dv = self.u[mask] - axis_bin, self.v[mask] - self.reference_row
            a_u, a_v, b_u, b_v = math.sin(tilt), math.cos(tilt), math.cos(tilt), -math.sin(tilt)
            along, across = du * a_u + dv * a_v, du * b_u + dv * b_v
            # q = p0 + 2 (d.a) a - d: d/dtilt = 2 (d.a') a + 2 (d.a) a' with a' = (cos, -sin)
            dq_tilt_u, dq_tilt_v = 2.0 * (across * a_u + along * b_u), 2.0 * (across * a_v + along * b_v)
            dq_axis_u, dq_axis_v = 2.0 * math.cos(tilt) ** 2, -math.sin(2.0 * tilt)
        for k, (view, opposite, (d_row, d_col)) in enumerate(zip(self.views, self.opposites, self.gradients)):
            # the drift moves the object along the axis, (sin, cos) in (bin, row)
            coordinates = np.stack([gv + shifts[k] * math.cos(tilt) / self.factor,
                                    gu + shifts[k] * math.sin(tilt) / self.factor])
            out.append(opposite[mask] - map_coordinates(view, coordinates, order=3, mode="nearest", prefilter=False))
            if jacobian:
                # the gradients are per level pixel; the parameters in full-resolution units
                g_col = map_coordinates(d_col, coordinates, order=3, mode="nearest", prefilter=False) / self.factor
                g_row = map_coordinates(d_row, coordinates, order=3, mode="nearest", prefilter=False) / self.factor
                block = np.zeros((g_col.size, params.size))
                # the drift's direction turns with the tilt: d(shift a)/dtilt = shift a'
                block[:, 0] = -(g_col * (dq_tilt_u + shifts[k] * b_u) + g_row * (dq_tilt_v + shifts[k] * b_v))
                block[:, 1] = -(g_col * dq_axis_u + g_row * dq_axis_v)
                block[:, 2 + k] = -(g_col * a_u + g_row * a_v)
                derivatives.append(block)
        residual = np.concatenate(out)
        return (residual, np.concatenate(derivatives)) if jacobian else residual

    def cost(self, params: np.ndarray, mask: np.ndarray) -> float:
        return float(np.mean(self.residuals(params, mask) ** 2))

    def correlation(self, residual: np.ndarray, mask: np.ndarray) -> float:
        """The correlation of the opposite views with the views at the mirror images, from the
        ``residual`` over the sampled pixels ``mask`` (1 for a perfect match; near 0 for views that are
        not each other's mirror images; NaN where either is flat)."""
        opposite = np.concatenate([o[mask] for o in self.opposites])
        mirrored = opposite - residual
        if mirrored.size < 2 or mirrored.std() == 0 or opposite.std() == 0:
            return math.nan
        return float(np.corrcoef(mirrored, opposite)[0, 1])


def _levenberg_marquardt(level: _Level, params: np.ndarray, free: np.ndarray, max_tilt: float, steps: int = 30
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on the parameters ``free`` (indices) at one level, over the pixels whose
    mirror images lie on the detector at the start (with a margin for the steps): one set of pixels
    for every cost compared, so that no step gains by trading object for air (a mean over pixels
    that change with the step can fall by taking in empty ones). Returns the parameters, the
    residuals, their Jacobian in the free parameters, and the set of pixels."""
    params = params.copy()
    margin = 2.0 + float(np.abs(params[2:]).max(initial=0.0)) / level.factor
    mask = level.inside(params[0], params[1], margin)
    if not mask.any():
        mask = level.inside(params[0], params[1])
    damping = 1e-3
    residual, jac = level.residuals(params, mask, jacobian=True)
    jac = jac[:, free]
    cost = float(np.mean(residual ** 2))
    for _ in range(steps):
        normal, gradient = jac.T @ jac, jac.T @ residual
        improved = False
        for _ in range(12):
            step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
            trial = params.copy()
            trial[free] += step
            trial[0] = float(np.clip(trial[0], -max_tilt, max_tilt))
            trial_cost = level.cost(trial, mask)
            if trial_cost < cost:
                params, cost = trial, trial_cost
                damping = max(damping / 10.0, 1e-9)
                improved = True
                break
            damping *= 10.0
        if not improved:
            break
        residual, jac = level.residuals(params, mask, jacobian=True)
        jac = jac[:, free]
        if abs(step[0]) < 1e-7 and np.all(np.abs(step[1:]) < 1e-5):
            break
    return params, residual, jac, mask


def _covariance(level: _Level, residual: np.ndarray, jac: np.ndarray) -> np.ndarray | None:
    """The parameters' covariance, the residuals taken for noise (None where the Jacobian leaves a
    parameter free): the smoothing correlates neighbouring residuals over about 4 pi s^2 pixels, of
    which every stride-th along each side is sampled."""
    correlated = max(1.0, 4.0 * math.pi * SMOOTHING_PIXELS ** 2 / level.stride ** 2)
    try:
        return float(np.mean(residual ** 2)) * correlated * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return None


def _pair_spread(pairs: list[tuple[np.ndarray, np.ndarray]], reference_row: float, params: np.ndarray,
                 drifted: bool, max_tilt: float) -> tuple[float, float]:
    """The standard errors of the mean of the pairs' own readings (each pair refitted alone at full
    resolution from the joint reading, with its drift where the joint one has drifts)."""
    readings = []
    for k, pair in enumerate(pairs):
        level = _Level([pair], 1, reference_row)
        start = np.array([params[0], params[1], params[2 + k]])
        free = np.array([0, 1, 2]) if drifted else np.array([0, 1])
        fitted = _levenberg_marquardt(level, start, free, max_tilt)[0]
        readings.append(fitted[:2])
    readings = np.array(readings)
    spread = readings.std(axis=0, ddof=1) / math.sqrt(len(readings))
    return float(spread[0]), float(spread[1])


def estimate_axis_from_opposite_views(pairs: Iterable[tuple[np.ndarray, np.ndarray]], reference_row: float, *,
                                      max_tilt_deg: float = 5.0) -> AxisRegistration:
    """The tilt and position of a parallel beam's rotation axis from pairs ``(view, opposite)`` of
    projections half a turn apart (each ``rows x bins`` line integrals, the second taken 180 degrees
    after the first; :func:`opposite_view_pairs` finds them in a scan's angles): the line on the
    detector in which every opposite view is its view's mirror image (the module docstring), each
    opposite allowed its own shift along the axis (the object's drift between the two views, which a
    mirror cannot take up: a reviewer's, growing to a row over the scan, unmodelled, read a tilt of
    2 degrees as 0.2).

    Guarantee: exact for continuous projections of any object, truncated or not, wherever a pixel
    and its mirror image both lie on the detector. A detector's pixels, which integrate their area,
    mirror to squares turned by twice the tilt, and the cubic interpolation of sharp edges is not
    exact: on the benchmark's phantom without noise the tilt read within 0.004 degrees, the axis
    within 0.001 bins (docs/benchmarks.md, "A tilted rotation axis"). The standard errors take the
    residuals for noise, the misfit of such edges included, and with ``MIN_PAIRS_FOR_SPREAD`` pairs or
    more are at least the spread of the pairs' own readings (the residuals alone understated them
    fourfold at 20 photons per bin). Assumes a parallel beam, the axis in a plane parallel to the
    detector (a tilt towards the beam is not modelled), the object rigid and still but for a drift
    along the axis between two views, views exactly half a turn apart (see
    ``OPPOSITE_TOLERANCE_DEG``), and no fixed pattern of the detector: a dead or hot row or column, a
    gain stripe or rings, the same in every view, register with themselves at no tilt and pull the
    reading towards none, unrefused (a reviewer's dead row read 2 degrees as 0.2 to 0.4, 3 % rings as
    4.25, a 1 % stripe as 1.3). Registering differences of two pairs instead, in which an additive
    pattern cancels, was tried and dropped: it misread drifts that differ between pairs (a 0.1-row
    step mid-scan read 2 degrees as 2.22) and objects nearly symmetric about the axis (1.70).
    ``max_tilt_deg`` bounds the search.

    Raises ValueError when no pair is given, the views' shapes differ, values are not finite, the
    views hold nothing to register (constant), fewer than ``MIN_OVERLAP_SHARE`` of the pixels
    mirror onto the detector at the registration found, the views correlate less than
    ``MIN_CORRELATION`` with their opposites' registered mirror images (not mirror images: unrelated
    views, an object that moved across the axis, noise that hides it), the registration runs to the
    bound of the tilts searched, or the tilt's standard error would move the farthest overlapping
    pixel by more than ``MAX_REGISTRATION_ERROR_SHIFT`` bins."""
    pairs = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) for a, b in pairs]
    if not pairs:
        raise ValueError("no pair of opposite views (180 degrees apart) to register: the scan needs a full turn of "
                         "an even number of views, or a view at 180 degrees from another")
    shape = pairs[0][0].shape
    for k, (a, b) in enumerate(pairs):
        if a.ndim != 2 or a.shape != shape or b.shape != shape:
            raise ValueError(f"pair {k}: the views must be images rows x bins of one shape, got {a.shape} and "
                             f"{b.shape}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError(f"pair {k}: the views contain NaN or infinite values")
    rows, cols = shape
    if rows < 4 * BORDER_PIXELS or cols < 4 * BORDER_PIXELS:
        raise ValueError(f"views of {rows} x {cols} (rows x bins) are too small to register; give the tilt")
    signal = float(np.sqrt(np.mean([np.var(a) for a, _ in pairs])))
    if signal == 0.0:
        raise ValueError("the views are constant: nothing to register; give the tilt")
    max_tilt = math.radians(max_tilt_deg)

    # coarse: the whole range of tilts on views about COARSE_WIDTH bins across, for each the axis that
    # mirrors the sheared views' profiles and a few coarse pixels about it
    factor = 1
    while cols // (factor * 2) >= COARSE_WIDTH and rows // (factor * 2) >= 4 * BORDER_PIXELS:
        factor *= 2
    level = _Level(pairs, factor, reference_row, search=True)
    # a tilt step that moves the farthest bin by about one coarse pixel
    tilt_step = min(max(factor / cols, 1e-4), max(max_tilt, 1e-4))
    candidates = np.arange(-max_tilt, max_tilt + tilt_step / 2, tilt_step)
    no_shift = np.zeros(len(pairs))
    best, best_cost = None, math.inf
    for t in candidates:
        start = level.axis_for_tilt(t)
        for d in factor * np.arange(-1.0, 1.01, 0.5):
            mask = level.inside(t, start + d)
            if mask.mean() < MIN_OVERLAP_SHARE:
                continue
            candidate = np.array([t, start + d, *no_shift])
            cost = level.cost(candidate, mask)
            if cost < best_cost:
                best, best_cost = candidate, cost
    if best is None:
        raise ValueError(f"too few pixels mirror onto the detector (under {MIN_OVERLAP_SHARE:.0%}) at any tilt "
                         "within the range: the axis lies too far off the detector's centre; give the tilt")
    # two fits through the finer levels: the mirror alone, and with each pair's drift along the axis;
    # the second is kept where the drift it finds is real (it costs precision where there is none: an
    # object off the axis moves much as a drift does when the tilt turns its mirror image)
    levels = [level]
    while levels[-1].factor > 1:
        levels.append(_Level(pairs, levels[-1].factor // 2, reference_row))
    fits = []
    for free in (np.array([0, 1]), np.arange(2 + len(pairs))):
        params = best
        for level in levels:
            params, residual, jac, mask = _levenberg_marquardt(level, params, free, max_tilt)
        fits.append((params, residual, _covariance(level, residual, jac), mask))
    drift = fits[1][0][2:]
    drifted = False
    if fits[1][2] is not None:
        drift_error = np.sqrt(np.clip(np.diag(fits[1][2])[2:], 0.0, None))
        drifted = bool(np.any((np.abs(drift) > DRIFT_ROWS) & (np.abs(drift) > DRIFT_SIGNIFICANCE * drift_error)))
    params, residual, covariance, mask = fits[1] if drifted else fits[0]
    if covariance is None:
        raise ValueError("the views hold nothing that fixes the axis's line (a featureless image): give the tilt "
                         "and offset")
    tilt, axis_bin = float(params[0]), float(params[1])
    share = float(level.inside(tilt, axis_bin).mean())
    if share < MIN_OVERLAP_SHARE:
        raise ValueError(f"{share:.0%} of the pixels mirror onto the detector at the registration found (under "
                         f"{MIN_OVERLAP_SHARE:.0%}): too little to register; give the tilt")
    correlation = level.correlation(residual, mask)
    if not math.isfinite(correlation):
        raise ValueError("the views hold nothing where they overlap their opposites' mirror images at the best "
                         "registration found (an object small on the detector, its mirror image off it); give the "
                         "tilt")
    if correlation < MIN_CORRELATION:
        raise ValueError(f"the views correlate {correlation:.2f} with their opposites' mirror images at best (under "
                         f"{MIN_CORRELATION:g}): they are not each other's mirror images (views not half a turn "
                         "apart, an object that moved, or noise that hides it); give the tilt")
    if abs(tilt) >= max_tilt - 1e-9:
        raise ValueError(f"the opposite views register best at the bound of the tilts searched ({max_tilt_deg:g} "
                         "degrees): no line within it mirrors them (a fixed pattern of the detector, such as rings or "
                         "a dead or hot column, can outweigh the object); give the tilt")
    tilt_error, axis_error = (float(np.sqrt(max(covariance[i, i], 0.0))) for i in range(2))
    # the residuals' errors miss what is not noise-like (noise in the views' gradients at low counts, the
    # misfit of edges): where there are pairs enough, the spread of their own readings bounds them
    if len(pairs) >= MIN_PAIRS_FOR_SPREAD:
        spread = _pair_spread(pairs, reference_row, params, drifted, max_tilt)
        tilt_error, axis_error = max(tilt_error, spread[0]), max(axis_error, spread[1])
    reach = math.hypot(cols / 2.0, rows / 2.0)
    if not math.isfinite(tilt_error) or tilt_error * reach > MAX_REGISTRATION_ERROR_SHIFT:
        raise ValueError(f"the opposite views register at a tilt of {math.degrees(tilt):+.3f} +- "
                         f"{math.degrees(tilt_error):.3f} degrees: too loose to correct it (noisy or featureless "
                         "views); give the tilt")
    return AxisRegistration(tilt_deg=math.degrees(tilt), axis_bin=axis_bin, reference_row=float(reference_row),
                            tilt_error_deg=math.degrees(tilt_error), axis_error_bins=axis_error,
                            residual=float(np.sqrt(np.mean(residual ** 2))) / signal, correlation=correlation,
                            drift_rows=[-float(x) for x in drift], drift_modelled=drifted, pairs_used=len(pairs),
                            overlap=share)

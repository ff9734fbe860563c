"""Fan-beam CT with a flat or a curved detector, on top of ``deepinv.physics.Tomography(fan_beam=True)``.

deepinv samples each ray at one point per pixel along the *central* ray's axis and sums the
samples, so its values are the line integrals times ``cos(gamma)``, ``gamma`` the ray's angle to
the central ray (10 % low at the edge of a 27-degree half fan). :class:`FanBeamCT` multiplies each
detector bin by ``1 / cos(gamma)``, which makes its values line integrals in pixel units, as
:class:`~pnp_stable.operators.ParallelBeamCT`'s are. deepinv also converts distances to its grid
units as if a unit were ``G / 2`` pixels (``G = ceil(sqrt(2) n)``, the padded side) while its grids
are corner-aligned, a unit of ``(G - 1) / 2`` pixels: source, detector and cell spacing would all
shrink by ``(G - 1) / G``, so they are handed to it scaled by ``G / (G - 1)``. Both corrections are
checked by tests against exact chord lengths of a disc and, for a distant source, against
:class:`ParallelBeamCT` with more cells than the parallel beam's bins. What they cannot undo is
the sampling: one sample per central-axis pixel is ``1 / cos(gamma)`` pixels apart along the ray
(a disc of radius 30 pixels seen over a 33-degree half fan: its chords to 1.2 % at the rays grazing
its edge, 0.13 % mean over the rays crossing its inner part).

The bin weights are positive, so ``A``'s matrix stays entrywise non-negative and the certified
Collatz-Wielandt norm bound of the parallel beam applies unchanged (:class:`RadonTomography`).

A curved detector (third-generation scanners: cells equally spaced on an arc centred on the
source, so equally spaced in fan angle) is the same ray model with cells at ``D tan(gamma)`` on a
flat detector at ``D`` from the source: deepinv's grids, which only place cells uniformly, are
rebuilt for those rays (:func:`fan_ray_grids`, checked against deepinv's own for a flat detector).

Memory: deepinv keeps one sampling grid per view, ``8 * ceil(sqrt(2) n) * n_detectors`` bytes
each in float32 (about 400 MB for 256 x 256, the default detector and 360 views).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from pnp_stable.operators.ct import (DIRECTION_TOLERANCE_DEG, _NORM_METHOD, RadonTomography, _angles_in_degrees,
                                     _image_size, check_detector_offset, detector_count)
from pnp_stable.operators.fbp import back_project, extend_to_reach, ram_lak, view_shares

__all__ = ["FanBeamCT", "DETECTOR_SHAPES", "conjugate_view", "fan_ray_grids", "redundancy_weights"]

_FAN_METHOD = "fan-flat-cos-v2"  # v2: distances in deepinv's corner-aligned grid units
DETECTOR_SHAPES = ("flat", "curved")


def _image_half_fan(n: int, source: float, margin: float = 0.0) -> float:
    """The angle (radians) from the central ray to the source's tangent to the circle through an
    ``n x n`` image's corners, widened by ``margin`` pixels: the half fan every view must see."""
    return math.asin(min(1.0, (math.sqrt(2) * n / 2 + margin) / source))


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


class FanBeamCT(RadonTomography):
    """Fan-beam CT ``y = A x`` with a flat or curved detector, for ``n x n`` images (any channel and batch count).

    Distances are in image pixels. The source turns on a circle of radius ``source_distance``
    about the image centre; the detector, ``detector_distance`` beyond the centre, has
    ``n_detectors`` cells ``detector_spacing`` apart (at the detector), centred on the central ray.
    ``detector_shape``: ``"flat"`` (a line perpendicular to the central ray) or ``"curved"`` (an arc
    centred on the source, radius ``source_distance + detector_distance``, as in third-generation
    clinical scanners: cells equally spaced in fan angle, ``detector_spacing`` measured along the
    arc). ``detector_offset``: the cells shifted along the detector by this many cells (positive:
    with the bins' order), so that the central ray falls between cells; a quarter cell (``0.25``, as
    many scanners have) makes a full scan's second measurement of each line fall halfway between the
    first one's rays, doubling the lateral sampling.
    ``angles`` is a count (uniform over ``[0, 360)`` degrees: a full scan) or the source angles in
    degrees. Defaults: source at ``2 n``, detector at ``n`` (magnification 1.5), one cell per pixel
    at the centre (``detector_spacing`` = the magnification) and enough cells for the circle
    through the image's corners. Source and detector must lie outside that circle (radius
    ``ceil(sqrt(2) n) / 2``). Measurements have shape ``(B, C, n_detectors, n_angles)``; values are
    line integrals in pixel units. ``normalize=True`` divides ``A`` by its certified norm bound;
    ``statistical_weights`` makes it ``W^(1/2) A`` for weighted least squares, ``shared_variance`` whitens an
    error every view of a bin shares too (generalized least squares; :class:`RadonTomography`).

    Orientation: view ``theta`` is :class:`ParallelBeamCT`'s angle ``theta`` in the limit of a
    distant source (same bins in the same order; at 0 degrees the source lies below the image,
    rows counted downwards, and bins run with the columns); the source turns about the image
    centre ``(n - 1)/2``. This is the ASTRA Toolbox's ``fanflat`` geometry with
    ``source_origin = source_distance``, ``origin_det = detector_distance``, ``det_width =
    detector_spacing`` (pixels), angles in radians, and its sinogram transposed.

    Guarantees: exact adjoint (autograd transpose, times the same bin weights); ``norm()`` a
    certified upper bound; ``prox_data`` by warm-started batched CG with reported convergence.
    ``fbp`` is the fan-beam FBP (flat or equiangular) with Parker-type redundancy weights, exact in
    the continuum for any scan that measures every line (a full scan, a short scan of 180 degrees
    plus the fan angle) with a detector that covers the object in every view: an initialisation.
    Limits: ``|detector_offset|`` at most ``(n_detectors - 1)/2`` (half the image's shadow, for the default
    detector); a curved detector's cells within 90 degrees of the central ray.
    """

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        angles: int | Iterable[float] = 360,
        source_distance: float | None = None,
        detector_distance: float | None = None,
        n_detectors: int | None = None,
        detector_spacing: float | None = None,
        normalize: bool = False,
        cg_tol: float | None = None,
        cg_max_iter: int = 500,
        device: torch.device | str = "cpu",
        statistical_weights: np.ndarray | torch.Tensor | None = None,
        detector_shape: str = "flat",
        detector_offset: float = 0.0,
        shared_variance: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        n = _image_size(image_size)
        if detector_shape not in DETECTOR_SHAPES:
            raise ValueError(f"detector_shape must be one of {DETECTOR_SHAPES}, got {detector_shape!r}")
        offset = check_detector_offset(detector_offset)
        angles_deg = _angles_in_degrees(angles, turn=360.0)  # a count: a full scan
        # deepinv samples each ray across the square padded to its diagonal: the source and the
        # detector must lie outside it, or samples behind the source (or past the detector) count
        reach = detector_count(n, "full") / 2.0
        source = 2.0 * n if source_distance is None else _positive(source_distance, "source_distance")
        detector = 1.0 * n if detector_distance is None else _positive(detector_distance, "detector_distance")
        for name, value in (("source_distance", source), ("detector_distance", detector)):
            if value <= reach:
                raise ValueError(f"{name} {value:g} lies inside the image's reach: it must exceed "
                                 f"{reach:g} pixels (half the diagonal of the padded {n}x{n} image)")
        magnification = (source + detector) / source
        spacing = magnification if detector_spacing is None else _positive(detector_spacing, "detector_spacing")
        defaulted = n_detectors is None
        if defaulted:
            # cover the circle through the corners (its tangent rays from the source), plus the
            # cell that a corner pixel's bilinear footprint reaches beyond it
            half_fan = _image_half_fan(n, source)
            half_width = (source + detector) * (half_fan if detector_shape == "curved" else math.tan(half_fan))
            shadow_cells = half_width / spacing
            if abs(offset) > shadow_cells:
                raise ValueError(f"detector_offset {offset:g} moves the central ray off the image's shadow (at most "
                                 f"{shadow_cells:.4g} cells either way)")
            # (an offset detector reaches as far on its short side)
            n_detectors = 2 * (int(math.ceil(shadow_cells + abs(offset))) + 1) + 1
        if isinstance(n_detectors, bool) or int(n_detectors) != n_detectors or n_detectors < 2:
            raise ValueError(f"n_detectors must be an integer >= 2, got {n_detectors!r}")
        if abs(offset) > (n_detectors - 1) / 2:
            raise ValueError(f"detector_offset {offset:g} moves the central ray off the detector of {int(n_detectors)} "
                             f"cells (at most {(n_detectors - 1) / 2:g} either way)")
        if detector_shape == "curved":
            farthest_cell = (n_detectors - 1) / 2.0 + abs(offset)  # cells from the central ray
            widest = math.degrees(farthest_cell * spacing / (source + detector))
            if widest >= 90.0:
                what = ("the default curved detector, widened on both sides by the offset," if defaulted else
                        "the curved detector's cells")
                remedy = "give n_detectors or a smaller offset" if defaulted else "use fewer cells or a smaller spacing"
                raise ValueError(f"{what} reach {widest:.4g} degrees from the central ray; a ray at 90 degrees or more "
                                 f"never meets the image: {remedy}")
        super().__init__(img_size=(1, n, n), norm_kind="certified", cg_tol=cg_tol, cg_max_iter=cg_max_iter)
        self.image_size = n
        self.angles_deg = angles_deg
        self.source_distance = source
        self.detector_distance = detector
        self.detector_spacing = spacing
        self.n_detectors = int(n_detectors)
        self.detector_shape = detector_shape
        self.detector_offset = offset
        self._start(normalize, device, statistical_weights, shared_variance)

    @property
    def magnification(self) -> float:
        """``(source_distance + detector_distance) / source_distance``: the detector's scale of the centre."""
        return (self.source_distance + self.detector_distance) / self.source_distance

    def detector_positions(self) -> np.ndarray:
        """The cells' centres on the detector, in pixels from the central ray (float64): along the
        line for a flat detector, along the arc for a curved one; shifted by ``detector_offset`` cells."""
        cells = np.arange(self.n_detectors) - (self.n_detectors - 1) / 2.0 + self.detector_offset
        return cells * self.detector_spacing

    def fan_angles(self) -> np.ndarray:
        """Each cell's ray angle to the central ray, in radians."""
        positions = self.detector_positions() / (self.source_distance + self.detector_distance)
        return positions if self.detector_shape == "curved" else np.arctan(positions)

    @property
    def short_scan_range(self) -> float:
        """Degrees a short scan spans: 180 plus the detector's full fan angle. Views uniform over
        ``[0, short_scan_range)`` measure every line at least once (the arc they sample, half a step
        beyond each end view, is this range), which :meth:`fbp` then weights to count once, if the
        detector covers the object on both sides of the central ray: a displaced detector (an offset
        that leaves one side short) needs a full turn (:meth:`covers_both_sides`). Less than 360
        (cells lie within 90 degrees of the central ray)."""
        return 180.0 + 2.0 * float(np.degrees(np.abs(self.fan_angles()).max()))

    def covers_both_sides(self) -> bool:
        """Whether the detector reaches the image's whole fan on both sides of the central ray (a
        default detector does; a displaced one, shifted to widen a full scan's field of view, does
        not, and a short scan with it misses lines)."""
        reach = _image_half_fan(self.image_size, self.source_distance)
        gamma = self.fan_angles()
        return min(-float(gamma.min()), float(gamma.max())) >= reach - 1e-9

    @property
    def parameter_density(self) -> float:
        """Views per half-turn of the scan, per image pixel across: a full scan (360 degrees)
        measures every line about twice, so ``N`` views count as ``N / 2``; a scan of ``R`` degrees
        counts ``N * min(1, 180 / R)``. The span ``R`` is the circle less the largest gap between
        successive views beyond the typical one (``[0, 360)`` in ``N`` uniform views: 360). How
        the shipped CT rule, calibrated in parallel beam, fares with it: docs/benchmarks.md."""
        directions = np.sort(np.mod(self.angles_deg, 360.0))
        gaps = np.diff(np.concatenate([directions, directions[:1] + 360.0]))
        distinct = gaps > DIRECTION_TOLERANCE_DEG  # a view repeated (0 and 360 degrees, a list given twice) counts once
        if int(np.count_nonzero(distinct)) < 2:
            return 1.0 / self.image_size
        gaps = gaps[distinct]
        span = 360.0 - (float(gaps.max()) - float(np.median(gaps)))
        views = gaps.size * min(1.0, 180.0 / max(span, 1e-9))
        return max(1.0, views) / self.image_size

    # -- deepinv backend ---------------------------------------------------------------------
    def _make_tomography(self, dtype: torch.dtype, device: torch.device) -> nn.Module:
        # deepinv turns distances into grid units as if a unit were G / 2 pixels (G the padded side),
        # but samples with corner-aligned grids, where it is (G - 1) / 2: every distance handed to it
        # is scaled by G / (G - 1) so that the rays run where this geometry says
        padded = detector_count(self.image_size, "full")
        to_grid = padded / (padded - 1)
        parameters = {
            "pixel_spacing": 1.0,  # distances in pixels
            "source_radius": self.source_distance * to_grid,
            "detector_radius": self.detector_distance * to_grid,
            "n_detector_pixels": self.n_detectors,
            "detector_spacing": self.detector_spacing * to_grid,
        }
        # deepinv's fan view a is the parallel beam's a - 90 degrees
        views = self.angles_deg + 90.0
        # deepinv places cells uniformly on a flat detector, centred on the central ray; the arc's
        # cells are its rays through D tan(gamma), an offset detector's are shifted ones: the same
        # grids with other slopes
        slopes = torch.tensor(np.tan(self.fan_angles()), dtype=torch.float64)
        source_grid = self.source_distance * to_grid * 2.0 / padded  # deepinv's unit: G / 2 pixels

        def rebuilt(grids: torch.Tensor) -> torch.Tensor:
            return fan_ray_grids(views, padded, source_grid, slopes, out=grids)

        rays = rebuilt if self.detector_shape == "curved" or self.detector_offset else None
        return self._deepinv_tomography(views, dtype, device, rays=rays, circle=False, fan_beam=True,
                                        fan_parameters=parameters)

    def _bin_weight_array(self) -> np.ndarray:
        return (1.0 / np.cos(self.fan_angles()))[:, None]  # deepinv sums one sample per pixel of the central axis

    def object_support(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Every pixel (the rays cross the whole square): a ``1 x 1 x n x n`` mask of ones. Pixels
        outside the fan of some views are still seen by the others."""
        n = self.image_size
        return torch.ones(1, 1, n, n, dtype=dtype, device=self._device if device is None else device)

    # -- FBP ---------------------------------------------------------------------------------
    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Fan-beam filtered back-projection (Kak and Slaney's, for equally spaced cells on a flat
        detector or equally spaced fan angles on a curved one): each measured value weighted by its
        view's angular step and by its line's redundancy weight (:func:`redundancy_weights`:
        ``1/2`` everywhere on a full scan with a centred detector, 1 where an offset detector misses a
        ray's conjugate, smooth Parker-type weights that sum to one over the
        measurements of each line on a partial one), cosine pre-weighting, Ram-Lak filter (at the
        centre's scale; for a curved detector in fan angle, with the ``(gamma / sin gamma)^2``
        kernel), back-projection weighted by ``1 / U^2`` (``U`` the pixel's distance to the source
        along the central ray over ``source_distance``; curved: ``source_distance / L^2``, ``L`` the
        distance itself).
        Exact in the continuum for a full scan and for any scan that measures every line (a short
        scan: 180 degrees plus the fan angle, or more); lines a scan misses are missing from it. An
        approximate inverse for initialisation, not a least-squares solution."""
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        self._check_finite(y, "y")
        data = y * self._scale if self.normalize else y
        work = self._unweighted(data.to(torch.float64))
        source, offset = self.source_distance, self.detector_offset
        gamma = self.fan_angles()
        # the weights vary along the detector on a partial scan, so they come before the filter
        weighted = work * torch.tensor(redundancy_weights(self.angles_deg, gamma) * np.cos(gamma)[:, None],
                                       dtype=torch.float64, device=y.device)
        curved = self.detector_shape == "curved"
        # the filtered views extend to every ray through the image (extend_to_reach; a default
        # detector needs a cell at most), about the central ray's cell
        reach = _image_half_fan(self.image_size, source, margin=1.0)
        step = float(gamma[1] - gamma[0]) if curved else self.detector_spacing / self.magnification
        half = (reach if curved else source * math.tan(reach)) / step  # cells, either side of the central ray
        weighted, centre = extend_to_reach(weighted, (self.n_detectors - 1) / 2.0 - offset, half)
        if curved:
            filtered = ram_lak(weighted * source, step, angular=True)  # step: radians between cells

            def cell_and_weight(lateral: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                along = source + depth
                return torch.atan2(lateral, along) / step + centre, 1.0 / (along**2 + lateral**2)
        else:
            filtered = ram_lak(weighted, step)  # step: the cells' spacing scaled to the centre

            def cell_and_weight(lateral: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                u_ratio = (source + depth) / source
                position = lateral / u_ratio  # where the ray through the pixel meets the detector, at the centre's scale
                return position / step + centre, 1.0 / u_ratio**2

        return back_project(filtered, self.angles_deg, self.image_size, cell_and_weight).to(y.dtype)

    # -- norm --------------------------------------------------------------------------------
    _norm_method = f"{_NORM_METHOD}+{_FAN_METHOD}"

    def _constructor_arguments(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "angles": self.angles_deg, **self.geometry_fields()}

    def geometry_fields(self) -> dict[str, Any]:
        fields = {key: getattr(self, key) for key in ("source_distance", "detector_distance", "n_detectors",
                                                      "detector_spacing")}
        # named only when not the default: a centred flat detector's cache entries and checkpoints keep their keys
        if self.detector_shape == "curved":
            fields["detector_shape"] = "curved"
        if self.detector_offset:
            fields["detector_offset"] = self.detector_offset
        return fields

    def __repr__(self) -> str:
        return (
            f"FanBeamCT(image_size={self.image_size}, n_angles={len(self.angles_deg)}, "
            f"angle_range=[{self.angles_deg.min():.1f}, {self.angles_deg.max():.1f}] deg, "
            f"source_distance={self.source_distance:g}, detector_distance={self.detector_distance:g}, "
            f"n_detectors={self.n_detectors}, detector_spacing={self.detector_spacing:g}, "
            f"detector_shape={self.detector_shape!r}, detector_offset={self.detector_offset:g}, "
            f"normalize={self.normalize})"
        )


def fan_ray_grids(views_deg: np.ndarray, padded: int, source_grid: float, slopes: torch.Tensor,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """deepinv's fan-beam sampling grids (``Radon.all_grids``, ``(1, padded, cells * views, 2)``) for
    rays of any slopes: in a view at deepinv's angle ``views_deg``, the ray of cell ``j`` leaves the
    source (``source_grid`` grid units behind the centre on the central axis) with lateral slope
    ``slopes[j]`` (``tan`` of its fan angle) and is sampled once per padded pixel along the central
    axis, corner-aligned from -1 to 1, as deepinv samples its flat detector's rays (whose slopes are
    the cells' positions over the source-detector distance). Computed in float64; written into
    ``out`` (of that shape) when given, e.g. the grids it replaces, so that no second copy is held."""
    depth = torch.linspace(-1.0, 1.0, padded, dtype=torch.float64)[None, :]
    lateral = slopes.to(torch.float64)[:, None] * (depth + source_grid)  # (cells, padded)
    depth = depth.expand_as(lateral)
    cells = lateral.shape[0]
    angles = np.deg2rad(np.asarray(views_deg, dtype=np.float64))
    # filled view by view: only one view is ever held in float64 beside the result
    shape = (1, padded, cells * angles.size, 2)
    if out is not None and tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the grids {shape}")
    grids = torch.empty(shape, dtype=dtype, device=device) if out is None else out
    for k, theta in enumerate(angles):
        cos, sin = math.cos(theta), math.sin(theta)
        grid = torch.stack([cos * depth + sin * lateral, -sin * depth + cos * lateral], dim=-1)
        grids[0, :, k * cells:(k + 1) * cells] = grid.transpose(0, 1)  # (padded, cells, 2): along the ray first
    return grids


def conjugate_view(theta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """The source angle (radians, in ``[0, 2 pi)``) from which :class:`FanBeamCT` measures the line
    of the ray at fan angle ``gamma`` from source angle ``theta`` a second time, as its ray at fan
    angle ``-gamma``: ``theta + pi - 2 gamma`` (the chord's two ends on the source circle)."""
    return np.mod(theta + np.pi - 2.0 * gamma, 2 * np.pi)


def _detector_cover(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A window over the detector's fan angles (``gamma``: ``(cells, 1)``), at the rays' own angles and
    at their conjugates' ``-gamma``: 1 inside, falling in ``sin^2`` ramps to 0 at those of the
    detector's ends whose mirror image lies on it, 0 beyond them. A centred detector's window is
    symmetric (its two values equal); an offset one's cells whose conjugate falls off the detector
    get 0 there, so their lines count once, and the ramp at its short end hands the lines over to
    the conjugates smoothly (Wang 2002, for displaced detectors)."""
    low, high = float(gamma.min()), float(gamma.max())
    overlap = min(-low, high)  # the half-width measured from both sides
    step = float(np.median(np.abs(np.diff(gamma[:, 0])))) if gamma.shape[0] > 1 else 1.0
    # the hand-over as wide as the detector is lopsided (a quarter-cell offset: two cells, which keeps
    # the interleaved rays at 1/2 over the rest), at most the whole overlap (a displaced detector)
    ramp = max(min(max(abs(high + low), 2.0 * step), overlap), 1e-12)

    # only an end whose mirror lies on the detector fades: beyond it the conjugate rays take over; at an
    # end whose mirror is off the detector, the rays are the lines' only measurements
    fade_low, fade_high = -low <= high, -high >= low

    def cover(g: np.ndarray) -> np.ndarray:
        distance = np.minimum(g - low if fade_low else np.inf, high - g if fade_high else np.inf)
        rise = np.clip(distance / ramp, 0.0, 1.0)
        return np.where((g >= low) & (g <= high), np.sin(np.pi / 2 * rise) ** 2, 0.0)

    return cover(gamma), cover(-gamma)


def redundancy_weights(angles_deg: np.ndarray, fan_angles: np.ndarray) -> np.ndarray:
    """FBP weights of a fan-beam scan, ``(cells, views)``: each view's angular step (radians) times
    a redundancy weight of each of its rays.

    A scan with no gap wider than 1.5 typical steps is a full scan: with a centred detector every
    line is measured twice, and every ray gets ``1/2`` of its view's share of the turn
    (:func:`~pnp_stable.operators.fbp.view_shares`); an offset detector's rays whose conjugate (at
    ``-gamma``) misses it get all of it, with a smooth hand-over across its short end
    (:func:`_detector_cover`, which also multiplies the windows below). Otherwise
    the views span an arc ``[0, R]`` (the circle less its widest gap, plus half a typical step at
    either end) and the weights are Parker-type: with a window ``s`` that rises from 0 to 1 over a
    length ``e`` at each end of the arc (``sin^2`` ramps; ``e`` the overscan ``R - 180`` degrees,
    at most the full fan angle and at least two steps), a ray at arc position ``b`` whose line is
    measured again at ``b'`` (:func:`conjugate_view`) weighs ``s(b) / (s(b) + s(b'))``, ``s(b')``
    being zero when ``b'`` lies outside the arc. The weights of the two measurements of a line sum
    to one, a line measured once weighs one, and the weights vary smoothly with the view and the
    ray, so a short scan (180 degrees plus the fan angle) reconstructs as well as a full one. A
    view's step is half of the gaps on either side (at the arc's ends, half a typical step
    outwards), so irregular views are weighted by the arc they sample (Parker 1982; the normalised
    form of Silver 2000 and Wesarg et al. 2002)."""
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    gamma = np.asarray(fan_angles, dtype=np.float64)[:, None]
    directions = np.mod(angles_deg, 360.0)
    order = np.argsort(directions)
    sorted_deg = directions[order]
    gaps = np.diff(np.concatenate([sorted_deg, sorted_deg[:1] + 360.0]))
    distinct = gaps[gaps > DIRECTION_TOLERANCE_DEG]
    here_cover, again_cover = _detector_cover(gamma)
    if distinct.size < 2 or distinct.max() <= 1.5 * np.median(distinct):
        total = here_cover + again_cover
        halves = np.divide(here_cover, total, out=np.full_like(total, 0.5), where=total > 0)
        return view_shares(angles_deg)[None, :] * halves
    widest = int(np.argmax(gaps))  # the opening lies between sorted views widest and widest + 1
    # the typical step leaves the opening out: two views 10 degrees apart have gaps 10 and 350
    others = np.delete(gaps, widest)
    typical = float(np.median(others[others > DIRECTION_TOLERANCE_DEG]))
    start = sorted_deg[(widest + 1) % sorted_deg.size] - typical / 2.0
    arc = np.deg2rad(360.0 - gaps[widest] + typical)
    position = np.deg2rad(np.mod(directions - start, 360.0))[None, :]  # b, radians from the arc's start
    step = np.deg2rad(typical)
    ramp = float(np.clip(arc - np.pi, 2 * step, 2 * np.abs(gamma).max()))
    ramp = min(ramp, arc / 2.0)

    def window(b: np.ndarray) -> np.ndarray:
        rise = np.clip(np.minimum(b, arc - b) / ramp, 0.0, 1.0)
        return np.where((b >= 0) & (b <= arc), np.sin(np.pi / 2 * rise) ** 2, 0.0)

    here = window(position)
    again = window(np.mod(position + np.pi - 2.0 * gamma, 2 * np.pi))
    total = here + again
    weights = np.divide(here, total, out=np.zeros_like(total), where=total > 0)
    # a line whose second ray misses an offset detector counts once; where both ends of the detector
    # fade (a centred detector's last cells) the arc's weights stand
    covered = here * here_cover + again * again_cover
    weights = np.divide(here * here_cover, covered, out=weights, where=covered > 0)
    # each view's step: half of either gap (the opening counts as one typical step), so that the
    # weights are a quadrature of the arc wherever its views lie, regularly or not
    sampled = gaps.copy()
    sampled[widest] = typical
    steps_sorted = np.deg2rad((sampled + np.roll(sampled, 1)) / 2.0)
    steps = np.empty_like(steps_sorted)
    steps[order] = steps_sorted
    return weights * steps[None, :]

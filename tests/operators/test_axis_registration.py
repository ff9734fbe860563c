"""The rotation axis read off opposite views: the pairs a scan holds, the registration of a view with
its mirror image in a known tilted axis (whole on the detector or cut by its edges), and its
refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

from pnp_stable.operators import AxisRegistration, estimate_axis_from_opposite_views, opposite_view_pairs


def test_the_pairs_half_a_turn_apart():
    assert opposite_view_pairs(np.arange(8) * 45.0) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert opposite_view_pairs(np.linspace(0, 180, 7)) == [(0, 6)]  # a half turn with its last view at 180
    assert opposite_view_pairs(np.arange(6) * 30.0) == []  # [0, 180): none
    assert opposite_view_pairs([10.0, 190.005, 370.0]) == [(0, 1)]  # within the tolerance; 370 is 10
    assert opposite_view_pairs([10.0, 190.02]) == []
    assert opposite_view_pairs([-90.0, 90.0, 270.0]) == [(0, 1)]  # each view in one pair at most
    spread = opposite_view_pairs(np.arange(40) * 9.0, at_most=4)
    assert spread == [(0, 20), (6, 26), (13, 33), (19, 39)]
    assert len(opposite_view_pairs(np.arange(40) * 9.0, at_most=30)) == 20


def _mirrored(field: np.ndarray, tilt_deg: float, axis_bin: float, reference_row: float) -> np.ndarray:
    """``field`` at each pixel's mirror image in the line through (axis_bin, reference_row) at
    ``tilt_deg`` from the columns: the view half a turn later."""
    rows, cols = field.shape
    v, u = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    a_u, a_v = math.sin(math.radians(tilt_deg)), math.cos(math.radians(tilt_deg))
    du, dv = u - axis_bin, v - reference_row
    along = du * a_u + dv * a_v
    return map_coordinates(field, [reference_row + 2 * along * a_v - dv, axis_bin + 2 * along * a_u - du], order=3,
                           mode="nearest")


def _pairs(tilt_deg: float, axis_bin: float, *, count: int = 2, noise: float = 0.0, crop: int = 0, seed: int = 0):
    """Pairs of smooth random views (64 x 96) and their mirror images; ``crop`` rows cut from the top
    and bottom after mirroring (an object longer than the detector). The axis's bin and the
    reference row are the uncropped detector's."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        field = gaussian_filter(rng.standard_normal((64, 96)), 2.0) * 10
        opposite = _mirrored(field, tilt_deg, axis_bin, 31.5)
        view = field + noise * rng.standard_normal(field.shape)
        opposite = opposite + noise * rng.standard_normal(field.shape)
        pairs.append((view[crop:64 - crop], opposite[crop:64 - crop]))
    return pairs


@pytest.mark.parametrize("tilt", [-2.5, 0.0, 0.7, 4.0])
def test_a_known_mirror_is_found(tilt):
    """Views and their exact mirror images in a tilted axis 3.3 bins off the middle: the tilt and the
    axis come back; with noise within a few of their standard errors."""
    clean = estimate_axis_from_opposite_views(_pairs(tilt, 50.8), 31.5)
    assert isinstance(clean, AxisRegistration)
    # the mirror's pixels that fall off the detector take the edge's value: the border is left out
    assert clean.tilt_deg == pytest.approx(tilt, abs=0.01)
    assert clean.axis_bin == pytest.approx(50.8, abs=0.01)
    assert clean.pairs_used == 2 and clean.residual < 0.05 and clean.correlation > 0.99
    assert 0.5 < clean.overlap <= 1.0
    noisy = estimate_axis_from_opposite_views(_pairs(tilt, 50.8, count=3, noise=0.5, seed=1), 31.5)
    assert noisy.tilt_deg == pytest.approx(tilt, abs=4 * noisy.tilt_error_deg)
    assert noisy.axis_bin == pytest.approx(50.8, abs=4 * noisy.axis_error_bins)
    assert 0 < noisy.tilt_error_deg < 0.05 and noisy.residual > clean.residual


def test_the_reference_row_only_moves_the_axis_along_its_line():
    pairs = _pairs(1.5, 50.8)
    middle = estimate_axis_from_opposite_views(pairs, 31.5)
    low = estimate_axis_from_opposite_views(pairs, 11.5)
    assert low.tilt_deg == pytest.approx(middle.tilt_deg, abs=1e-3)
    assert low.axis_bin == pytest.approx(50.8 - 20 * math.tan(math.radians(1.5)), abs=0.01)


def test_an_object_longer_than_the_detector():
    """The rows cut the object at the top and bottom (and the field runs off the sides): the mirror
    relation holds wherever both pixels lie on the detector, and the detector's edges, along the rows
    in both views, must not pull the tilt towards zero."""
    estimate = estimate_axis_from_opposite_views(_pairs(2.0, 50.8, crop=16), 15.5)
    assert estimate.tilt_deg == pytest.approx(2.0, abs=0.02)
    assert estimate.axis_bin == pytest.approx(50.8, abs=0.02)


def test_refusals():
    pairs = _pairs(1.0, 50.8)
    with pytest.raises(ValueError, match="no pair of opposite views"):
        estimate_axis_from_opposite_views([], 31.5)
    with pytest.raises(ValueError, match="pair 1: the views must be images rows x bins of one shape"):
        estimate_axis_from_opposite_views([pairs[0], (pairs[1][0], pairs[1][1][:-1])], 31.5)
    damaged = pairs[0][1].copy()
    damaged[3, 4] = np.nan
    with pytest.raises(ValueError, match="pair 0: the views contain NaN"):
        estimate_axis_from_opposite_views([(pairs[0][0], damaged)], 31.5)
    with pytest.raises(ValueError, match="too small to register"):
        estimate_axis_from_opposite_views([(p[0][:8], p[1][:8]) for p in pairs], 3.5)
    flat = np.ones((40, 60))
    with pytest.raises(ValueError, match="constant: nothing to register"):
        estimate_axis_from_opposite_views([(flat, flat)], 19.5)
    # views that are not mirror images of each other: unrelated noise registers nowhere
    rng = np.random.default_rng(3)
    unrelated = [(rng.standard_normal((64, 96)), rng.standard_normal((64, 96))) for _ in range(2)]
    with pytest.raises(ValueError, match="correlate -?0.0. with their opposites' mirror images at best .under 0.5."):
        estimate_axis_from_opposite_views(unrelated, 31.5)


def test_a_loose_registration_is_refused(monkeypatch):
    """The refusal of a tilt whose standard error would move the farthest pixel too far (noisy views
    at a threshold set below what they reach)."""
    from pnp_stable.operators import axis_registration

    noisy = _pairs(1.0, 50.8, noise=0.5, seed=2)
    error = estimate_axis_from_opposite_views(noisy, 31.5).tilt_error_deg
    reach = math.hypot(48, 32)
    monkeypatch.setattr(axis_registration, "MAX_REGISTRATION_ERROR_SHIFT", 0.5 * math.radians(error) * reach)
    with pytest.raises(ValueError, match=r"register at a tilt of \+(1\.0|0\.9).. \+- 0\.0.. degrees: too loose"):
        estimate_axis_from_opposite_views(noisy, 31.5)


def test_structure_far_from_the_reference_row():
    """A tall detector whose object lies in its top rows, at a large tilt: the axis where the views'
    structure crosses it is not the reference row's, and the search starts from the right one (else
    it can settle where the object's mirror image leaves the detector, and nothing is compared)."""
    rng = np.random.default_rng(4)
    pairs = []
    for _ in range(2):
        field = np.zeros((1024, 128))
        field[:40, 24:-24] = gaussian_filter(rng.standard_normal((40, 80)), 2.0) * 10
        pairs.append((field, _mirrored(field, 4.5, 67.3, 511.5)))
    estimate = estimate_axis_from_opposite_views(pairs, 511.5)
    assert estimate.tilt_deg == pytest.approx(4.5, abs=0.01) and estimate.axis_bin == pytest.approx(67.3, abs=0.02)


def test_a_drift_along_the_axis_between_views():
    """Each opposite view moved along the axis (the object's drift between the two views): a mirror
    alone cannot take it up, the shift per pair does, and is reported."""
    pairs = []
    for k, drift in enumerate((0.6, -1.3)):
        view, opposite = _pairs(2.0, 50.8, count=1, seed=10 + k)[0]
        # the object moved ``drift`` rows along the axis, (sin, cos) in (bin, row): the opposite view at
        # p shows what the undrifted one shows at p - drift (sin, cos)
        rows, cols = opposite.shape
        v, u = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
        t = math.radians(2.0)
        pairs.append((view, map_coordinates(opposite, [v - drift * math.cos(t), u - drift * math.sin(t)], order=3,
                                            mode="nearest")))
    estimate = estimate_axis_from_opposite_views(pairs, 31.5)
    # (two interpolations of the opposite views, mirror then drift, blur them a little)
    assert estimate.tilt_deg == pytest.approx(2.0, abs=0.01) and estimate.axis_bin == pytest.approx(50.8, abs=0.03)
    assert estimate.drift_rows == pytest.approx([0.6, -1.3], abs=0.02) and estimate.drift_modelled


def test_a_mirror_beyond_the_tilts_searched_is_refused():
    pairs = _pairs(6.0, 50.8)
    with pytest.raises(ValueError, match="register best at the bound of the tilts searched .5 degrees"):
        estimate_axis_from_opposite_views(pairs, 31.5)
    assert estimate_axis_from_opposite_views(pairs, 31.5, max_tilt_deg=8).tilt_deg == pytest.approx(6.0, abs=0.01)



def test_pairs_that_disagree_widen_the_standard_error(monkeypatch):
    """Four clean pairs mirrored in lines 0.2 degrees apart (1.9 and 2.1, as inconsistent data would
    be): the residuals stay small, the pairs' own readings do not agree, and their spread bounds the
    standard error from below."""
    from pnp_stable.operators import axis_registration

    pairs = [_pairs(tilt, 50.8, count=1, seed=20 + k)[0] for k, tilt in enumerate((1.9, 2.1, 1.9, 2.1))]
    bounded = estimate_axis_from_opposite_views(pairs, 31.5)
    assert bounded.tilt_deg == pytest.approx(2.0, abs=0.05)
    assert bounded.tilt_error_deg > 0.04  # about 0.1 / sqrt(4) from the spread
    monkeypatch.setattr(axis_registration, "MIN_PAIRS_FOR_SPREAD", 99)
    residuals_only = estimate_axis_from_opposite_views(pairs, 31.5)
    assert residuals_only.tilt_error_deg < 0.5 * bounded.tilt_error_deg

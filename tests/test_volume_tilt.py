"""A rotation axis tilted on the detector: the line fit, the tilt read off whole projections, the
slices read along their lines, and reconstruct_volume with the tilt told or read.

The scans are bench/bench_axis_tilt.py's: the 3-D Shepp-Logan phantom off the axis, projected
analytically onto a tilted detector whose pixels integrate their area."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bench_loader import load_bench_script

from pnp_stable import restore, volume
from pnp_stable.operators import ParallelBeamCT, estimate_axis_tilt, fit_axis_line

SIZE, ROWS, VIEWS, OFFSET = 32, 22, 30, 1.3


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("bench_axis_tilt")


@pytest.fixture(scope="module")
def geometry():
    op = ParallelBeamCT(SIZE, angles=VIEWS, detector_offset=OFFSET)
    return op.angles_deg, op.n_detectors


@pytest.fixture(scope="module")
def scans(bench, geometry):
    """Line integrals (views x rows x bins) of the phantom at a few tilts (degrees), each detector pixel
    the mean of 8 x 8 points (at this size 4 x 4 leave the tilt read 0.06 to 0.09 degrees off)."""
    angles, bins = geometry
    return {tilt: 0.1 * bench.projections(SIZE, ROWS, angles, bins, tilt, OFFSET, subpixels=8)
            for tilt in (-2.0, 0.0, 1.5)}


@pytest.fixture(scope="module")
def denoiser():
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser

    torch.manual_seed(0)
    return build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()


def _rows(stack):
    return ((r, volume.row_sinogram(stack, r)) for r in range(stack.shape[1]))


def test_the_line_through_the_rows_axes():
    rows = np.arange(10.0)
    bins = 20.0 + 0.05 * (rows - 4.5)
    fit = fit_axis_line(rows, bins, 4.5)
    assert fit.axis_bin == pytest.approx(20.0) and fit.slope == pytest.approx(0.05)
    assert fit.residual < 1e-12 and (fit.rows_used, fit.rows_left_out) == (10, 0)
    held = fit_axis_line(rows, bins + 0.1, 4.5, slope=0.05)  # the slope given: the crossing alone
    assert held.axis_bin == pytest.approx(20.1) and held.slope == 0.05
    assert fit_axis_line(rows, bins, 4.5, axis_bin=20.0).slope == pytest.approx(0.05)
    misread = bins.copy()
    misread[3] += 2.0  # a row whose object is truncated reads its axis far off: left out
    fit = fit_axis_line(rows, misread, 4.5)
    assert fit.rows_left_out == 1 and fit.slope == pytest.approx(0.05) and fit.axis_bin == pytest.approx(20.0)
    with pytest.raises(ValueError, match="2 rows located the axis; its line needs 3"):
        fit_axis_line([0, 1], [1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="all the same row"):
        fit_axis_line([2, 2, 2], [1.0, 2.0, 3.0], 0.5)
    with pytest.raises(ValueError, match="finite"):
        fit_axis_line([0, 1, 2], [1.0, np.nan, 3.0], 0.5)


def test_a_slice_is_read_along_its_line_between_the_rows_it_crosses():
    """Stack values linear in (row, column) are read exactly at the line's crossings; the axis's bin
    moves along the slices by sin(tilt) per slice; the end slices leave the detector."""
    n_rows, n_cols, tilt = 12, 40, 2.0
    axis = volume.TiltedAxis(tilt, 21.0, (n_rows - 1) / 2, n_rows, n_cols)
    columns = np.arange(n_cols)
    stack = np.broadcast_to(3.0 * np.arange(n_rows)[:, None] + 0.01 * columns[None, :], (2, n_rows, n_cols))
    phi = math.radians(tilt)
    for row in (3, 5, 8):
        crossing = axis.reference_row + (row - axis.reference_row) / math.cos(phi) - (columns - 21.0) * math.tan(phi)
        np.testing.assert_allclose(volume.row_sinogram(stack, axis.sources(row))[:, 0], 3.0 * crossing + 0.01 * columns)
    # the line runs over tan(2 deg) x 40 = 1.4 rows: the first and last slices leave the detector
    assert [r for r in range(n_rows) if not axis.inside(r)] == [0, 11]
    with pytest.raises(ValueError, match="slice 0's line leaves the detector"):
        axis.sources(0)
    assert volume.TiltedAxis(0.0, 21.0, 5.5, n_rows, n_cols).sources(4) == 4
    # a tilt of a millionth of a degree keeps every row, each reading its own
    faint = volume.TiltedAxis(1e-6, 21.0, 5.5, n_rows, n_cols)
    assert all(faint.inside(r) and r - 1 <= volume._rows_crossed(faint, r)[0] <= r <= volume._rows_crossed(faint, r)[1]
               <= r + 1 for r in range(n_rows))
    assert volume._rows_crossed(faint, 0)[0] == 0 and volume._rows_crossed(faint, n_rows - 1)[1] == n_rows - 1


def test_a_slice_read_along_its_line_is_an_untilted_scan_s_row(bench, geometry, monkeypatch):
    """An object the same all along the axis: each slice of its tilted scan, read along its line, is
    the row of an untilted scan whose axis lies where the slice's does (to the bins' 1/cos(tilt)
    spacing); read along the lines of another tilt, or as the rows are, it is not."""
    angles, bins = geometry
    monkeypatch.setattr(bench, "SHEPP_LOGAN_3D", ((1.0, 0.5, 0.3, 100.0, 0.1, 0.05, 0.0, 20.0),
                                                  (0.5, 0.1, 0.1, 100.0, -0.2, 0.1, 0.0, 0.0)))
    scan = bench.projections(SIZE, ROWS, angles, bins, -2.0, OFFSET)

    def mismatch(tilt: float, row: int) -> float:
        axis = volume.TiltedAxis(tilt, (bins - 1) / 2 - OFFSET, (ROWS - 1) / 2, ROWS, bins)
        untilted = bench.projections(SIZE, ROWS, angles, bins, 0.0, axis.detector_offset(row))[:, row].T
        return float(np.abs(volume.row_sinogram(scan, axis.sources(row)) - untilted).mean() / np.abs(untilted).max())

    for row in (5, 15):
        assert mismatch(-2.0, row) < 2e-4
        assert min(mismatch(-1.5, row), mismatch(2.0, row), mismatch(0.0, row)) > 10 * mismatch(-2.0, row)


@pytest.mark.parametrize("tilt", [-2.0, 0.0, 1.5])
def test_the_tilt_is_read_off_whole_projections(scans, geometry, tilt):
    angles, bins = geometry
    estimate = estimate_axis_tilt(_rows(scans[tilt]), angles, (ROWS - 1) / 2)
    assert estimate.tilt_deg == pytest.approx(tilt, abs=0.05)
    assert estimate.axis_bin == pytest.approx((bins - 1) / 2 - OFFSET, abs=0.02)
    assert estimate.rows_used == ROWS and estimate.swing > 2 and estimate.tilt_error_deg < 0.05
    # the axis where it crosses another row: 6.5 rows up the line
    low = estimate_axis_tilt(_rows(scans[tilt]), angles, 4.0)
    assert low.axis_bin == pytest.approx((bins - 1) / 2 - OFFSET - 6.5 * math.tan(math.radians(tilt)), abs=0.02)


def test_the_tilt_is_not_read_where_projections_do_not_show_it(bench, scans, geometry, monkeypatch):
    angles, bins = geometry
    stack = scans[1.5]
    with pytest.raises(ValueError, match="reaches the detector's first row"):
        estimate_axis_tilt(_rows(stack[:, 4:]), angles, 8.0)
    with pytest.raises(ValueError, match="reaches the detector's ends"):
        estimate_axis_tilt(_rows(stack[:, :, 12:-12]), angles, 10.5)
    with pytest.raises(ValueError, match="span too little"):
        estimate_axis_tilt(_rows(stack[:10]), angles[:10], 10.5)
    with pytest.raises(ValueError, match="three rows or more"):
        estimate_axis_tilt([(0, volume.row_sinogram(stack, 0))], angles, 0.0)
    # a ball on the axis: its projections do not move, and show no tilt
    monkeypatch.setattr(bench, "SHEPP_LOGAN_3D", ((1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0),))
    monkeypatch.setattr(bench, "X_SHIFT", 0.0)
    ball = bench.projections(SIZE, ROWS, angles, bins, 1.5, OFFSET)
    with pytest.raises(ValueError, match="does not show its tilt"):
        estimate_axis_tilt(_rows(ball), angles, (ROWS - 1) / 2)


def test_a_volume_with_its_tilt_told_is_each_slice_along_its_line(scans, geometry, denoiser):
    angles, bins = geometry
    common = dict(denoiser=denoiser, max_iter=3, progress=False, device="cpu", noise_level=0.01)
    result = volume.reconstruct_volume(scans[1.5], axis_tilt=1.5, detector_offset=OFFSET, **common)
    axis = volume.TiltedAxis(1.5, (bins - 1) / 2 - OFFSET, (ROWS - 1) / 2, ROWS, bins)
    inside = [r for r in range(ROWS) if axis.inside(r)]
    assert result.rows == inside and len(inside) < ROWS
    assert any("end rows left out" in n for n in result.notes)
    assert result.shared["rows_left_out"] == [r for r in range(ROWS) if r not in inside]
    assert result.shared["axis_tilt"] == 1.5 and result.all_guaranteed
    for i in (0, len(inside) // 2):
        row = inside[i]
        sinogram = torch.from_numpy(volume.row_sinogram(scans[1.5], axis.sources(row))).float()[None]
        alone = restore.reconstruct_ct(sinogram, detector_offset=axis.detector_offset(row), **common)
        torch.testing.assert_close(result.volume[i], alone.image[0])
        assert result.reports[i]["operator"]["detector_offset"] == axis.detector_offset(row)
        assert result.reports[i]["detector_rows"][0] <= row <= result.reports[i]["detector_rows"][1]
    with pytest.raises(ValueError, match=f"row 0's slice leaves the detector .* rows {inside[0]} to {inside[-1]}"):
        volume.reconstruct_volume(scans[1.5], rows=[0, 5], axis_tilt=1.5, detector_offset=OFFSET, **common)


def test_a_volume_reads_its_tilt_and_axis(scans, geometry, denoiser):
    angles, bins = geometry
    common = dict(denoiser=denoiser, max_iter=1, progress=False, device="cpu", rows=[8, 12], noise_level=0.01)
    result = volume.reconstruct_volume(scans[-2.0], axis_tilt="auto", detector_offset="auto", **common)
    assert result.shared["axis_tilt"] == pytest.approx(-2.0, abs=0.05)
    assert result.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.02)
    assert result.shared["axis_fit"]["method"] == "whole projections' centres of mass"
    assert any("tilted -" in n and "centres of mass of whole projections" in n for n in result.notes)
    # the tilt told, the axis read off the slices' sinograms along the tilt's lines
    told = volume.reconstruct_volume(scans[-2.0], axis_tilt=-2.0, detector_offset="auto", **common)
    assert told.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.1)
    assert told.shared["axis_fit"]["rows_used"] >= 10 and told.shared["axis_tilt"] == -2.0
    # the tilt read with the offset told keeps the offset; one not given (centred) is noted as far off
    kept = volume.reconstruct_volume(scans[-2.0], axis_tilt="auto", detector_offset=OFFSET, **common)
    assert kept.shared["detector_offset"] == OFFSET and any("as given" in n for n in kept.notes)
    assert not any("detector_offset='auto'" in n for n in kept.notes)
    centred = volume.reconstruct_volume(scans[-2.0], axis_tilt="auto", **common)
    assert centred.shared["detector_offset"] == 0.0
    assert any("bins off the detector's centre at row 10.5, not +0.000" in n for n in centred.notes)


def test_raw_readings_of_a_tilted_scan(scans, geometry, denoiser):
    """Raw readings with flat and dark frames: the tilt read off their line integrals, the flats and
    darks read along the slices' lines as the projections are, one scale for all slices."""
    rng = np.random.default_rng(0)
    line_integrals = 5.0 * scans[1.5]  # the longest ray at e^-2.3
    raw = 4.0 * rng.poisson(1e6 * np.exp(-line_integrals)) + 100.0
    flats = 4.0 * rng.poisson(1e6, size=(4, *line_integrals.shape[1:])) + 100.0
    darks = 100.0 + rng.standard_normal((4, *line_integrals.shape[1:]))
    result = volume.reconstruct_volume(raw, flat=flats, dark=darks, axis_tilt="auto", detector_offset="auto",
                                       shared_scale=True, rows=[8, 12], denoiser=denoiser, max_iter=1, progress=False,
                                       device="cpu")
    assert result.shared["axis_tilt"] == pytest.approx(1.5, abs=3 * result.shared["axis_fit"]["tilt_error_deg"] + 0.05)
    assert result.shared["axis_fit"]["tilt_error_deg"] < 0.03
    assert result.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.05)
    assert "data_scale" in result.shared and result.rows == [8, 12]


def test_a_damaged_row_beside_a_tilted_slice(scans, denoiser):
    """A slice reads the rows its line crosses: one with NaN values is refused before any work, named;
    reading the tilt names what it was doing."""
    damaged = scans[1.5].copy()
    damaged[3, 12, 5] = np.nan
    common = dict(denoiser=denoiser, max_iter=1, progress=False, device="cpu", noise_level=0.01)
    with pytest.raises(ValueError, match="row 12 of the projections, which the tilted slices' lines cross"):
        volume.reconstruct_volume(damaged, rows=[11], axis_tilt=1.5, detector_offset=OFFSET, **common)
    assert volume.reconstruct_volume(damaged, rows=[11], **common).rows == [11]  # untilted: row 11 alone
    with pytest.raises(ValueError, match="reading the axis's tilt: row 12 holds NaN.* repair the row, or give the tilt"):
        volume.reconstruct_volume(damaged, rows=[5], axis_tilt="auto", **common)


def test_tilt_refusals_and_a_checkpoint_of_another_tilt(scans, denoiser, tmp_path):
    common = dict(denoiser=denoiser, max_iter=1, progress=False, device="cpu", rows=[9, 10], noise_level=0.01)
    for bad, message in (("x", "number of degrees or 'auto'"), (float("nan"), "finite number of degrees"),
                         (6.0, "within \\+-5"), (True, "number of degrees")):
        with pytest.raises(ValueError, match=message):
            volume.reconstruct_volume(scans[1.5], axis_tilt=bad, **common)
    state = tmp_path / "tilt.state"
    volume.reconstruct_volume(scans[1.5], axis_tilt=1.5, detector_offset=OFFSET, checkpoint=state, **common)
    with pytest.raises(ValueError, match="another volume .different axis, projections"):
        volume.reconstruct_volume(scans[1.5], axis_tilt=1.0, detector_offset=OFFSET, checkpoint=state, resume=True,
                                  **common)
    again = volume.reconstruct_volume(scans[1.5], axis_tilt=1.5, detector_offset=OFFSET, checkpoint=state,
                                      resume=True, **common)
    assert again.rows == [9, 10]


@pytest.fixture(scope="module")
def full_turn(bench, geometry):
    """A full turn's scan (30 views over 360 degrees: 15 pairs half a turn apart) at a tilt of 1.5."""
    _, bins = geometry
    angles = np.arange(30) * 12.0
    return angles, 0.1 * bench.projections(SIZE, ROWS, angles, bins, 1.5, OFFSET, subpixels=4)


@pytest.fixture(scope="module")
def long_full_turn(bench, full_turn):
    """The same full turn of an object longer than the detector: 64 pixels across, 31 rows long, on
    24 rows (on fewer the mirror's tilt is loose: 0.1 degrees at 48 x 18)."""
    angles, _ = full_turn
    return 0.1 * bench.projections(64, 24, angles, ParallelBeamCT(64, angles=4).n_detectors, 1.5, OFFSET,
                                   subpixels=4)


def test_a_long_object_s_tilt_is_read_off_opposite_views(full_turn, long_full_turn, denoiser):
    """Rows cut the object at the top and bottom: the centres of mass cannot read the tilt (refused,
    with the way out), the opposite views of a full turn can."""
    angles, stack = full_turn
    long = long_full_turn
    common = dict(denoiser=denoiser, max_iter=1, progress=False, device="cpu", rows=[11, 12], noise_level=0.01)
    result = volume.reconstruct_volume(long, angles=list(angles), axis_tilt="auto", detector_offset="auto", **common)
    assert result.shared["axis_fit"]["method"] == "opposite views' registration"
    assert result.shared["axis_fit"]["pairs_used"] == 8 and len(result.shared["axis_fit"]["pairs"]) == 8
    assert result.shared["axis_tilt"] == pytest.approx(1.5, abs=0.05)
    assert result.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.02)
    assert any("read off 8 pairs of opposite views" in n for n in result.notes)
    # half the turn ([0, 180) degrees): no pair, and the centres of mass refuse the long object
    with pytest.raises(ValueError, match="reaches the detector.s first row .*give the tilt .or scan views exactly half"):
        volume.reconstruct_volume(long[:15], angles=list(angles[:15]), axis_tilt="auto", **common)
    # the same whole object over the full turn: opposite views preferred where the scan has them
    whole = volume.reconstruct_volume(stack, angles=list(angles), axis_tilt="auto", detector_offset="auto", **common)
    assert whole.shared["axis_fit"]["method"] == "opposite views' registration"
    assert whole.shared["axis_tilt"] == pytest.approx(1.5, abs=0.05)
    assert whole.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.02)


def test_opposite_views_with_a_drift_and_a_resumed_checkpoint(full_turn, long_full_turn, denoiser, tmp_path):
    """The object one row lower in the second half-turn's views: the tilt is still read, the drift
    taken out and noted (without it the mirror reads the tilt far off); a checkpoint written with
    the tilt read off opposite views resumes."""
    angles, stack = full_turn
    drifted = long_full_turn.copy()
    drifted[15:, 1:] = long_full_turn[15:, :-1]  # views from 180 degrees on: the object a row lower
    common = dict(denoiser=denoiser, max_iter=1, progress=False, device="cpu", rows=[11, 12], noise_level=0.01,
                  angles=list(angles), axis_tilt="auto", detector_offset="auto")
    result = volume.reconstruct_volume(drifted, **common)
    fit = result.shared["axis_fit"]
    assert fit["drift_modelled"] and fit["drift_rows"] == pytest.approx([1.0] * 8, abs=0.05)
    assert result.shared["axis_tilt"] == pytest.approx(1.5, abs=3 * fit["tilt_error_deg"] + 0.02)
    assert any("the object moved up to 1.0" in n for n in result.notes)
    still = volume.reconstruct_volume(long_full_turn, **common)
    assert not still.shared["axis_fit"]["drift_modelled"] and not any("moved up to" in n for n in still.notes)
    common["rows"] = [9, 10]
    state = tmp_path / "volume.state"
    first = volume.reconstruct_volume(stack, checkpoint=state, **common)
    again = volume.reconstruct_volume(stack, checkpoint=state, resume=True, **common)
    assert again.rows == first.rows == [9, 10]
    torch.testing.assert_close(again.volume, first.volume)

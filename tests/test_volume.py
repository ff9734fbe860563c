"""reconstruct_volume: a projection stack reconstructed slice by slice, with what the slices share
measured once from the whole stack, stopped and resumed between slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pnp_stable import restore, volume
from pnp_stable.operators import ParallelBeamCT
from pnp_stable.transmission import estimate_gain

SIZE, VIEWS, ROWS, GAIN, DARK, PHOTONS, OFFSET = 24, 30, 4, 4.0, 100.0, 3e3, 1.5


@pytest.fixture(scope="module")
def denoiser():
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser

    torch.manual_seed(0)
    return build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()


@pytest.fixture(scope="module")
def scan():
    """Raw readings of ROWS slices (a disc of rising brightness) with the axis OFFSET bins off the
    detector's centre: projections (views x rows x bins), 4 flat and 4 dark frames."""
    op = ParallelBeamCT(SIZE, angles=VIEWS, detector_offset=OFFSET)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    disc = ((xx + 2) ** 2 + yy ** 2 < 49).astype(np.float64) + 0.5 * ((xx - 4) ** 2 + (yy - 3) ** 2 < 9)
    slices = np.stack([disc * (0.5 + 0.2 * r) for r in range(ROWS)])
    line_integrals = np.stack([0.1 * op.A(torch.from_numpy(s)[None, None])[0, 0].numpy() for s in slices])
    rng = np.random.default_rng(0)
    bins = line_integrals.shape[1]
    raw = GAIN * rng.poisson(PHOTONS * np.exp(-line_integrals)) + DARK
    flats = GAIN * rng.poisson(PHOTONS, size=(4, ROWS, bins)) + DARK + rng.standard_normal((4, ROWS, bins))
    darks = DARK + rng.standard_normal((4, ROWS, bins))
    return {"projections": raw.transpose(2, 0, 1).copy(), "flats": flats, "darks": darks,
            "line_integrals": line_integrals}


def test_rows_and_row_sinograms():
    stack = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    assert volume.row_sinogram(stack, 1).shape == (5, 2)
    np.testing.assert_array_equal(volume.row_sinogram(stack, 1), stack[:, 1, :].T)
    assert volume.selected_rows(None, 3) == [0, 1, 2]
    assert volume.selected_rows(slice(1, None), 3) == [1, 2]
    assert volume.selected_rows(2, 3) == [2]
    assert volume.selected_rows([2, 0, 2], 3) == [0, 2]
    with pytest.raises(ValueError, match="row 3 lies outside"):
        volume.selected_rows(3, 3)
    with pytest.raises(ValueError, match="no detector rows"):
        volume.selected_rows(slice(2, 1), 3)


def test_each_slice_is_reconstruct_ct_of_its_row_with_the_shared_values(scan, denoiser):
    """The volume's slices are reconstruct_ct's of their rows given the gain, axis and scale measured
    once: the gain by photon transfer over every flat bin, the axis from the rows' mean sinogram."""
    common = dict(denoiser=denoiser, max_iter=6, device="cpu")
    result = volume.reconstruct_volume(scan["projections"], flat=scan["flats"], dark=scan["darks"],
                                       detector_offset="auto", rows=slice(1, 3), progress=False, **common)
    assert result.rows == [1, 2] and result.volume.shape == (2, SIZE, SIZE) and result.stopped is None
    flats, darks = scan["flats"], scan["darks"]
    expected_gain = estimate_gain(flats.reshape(4, -1).T, darks.reshape(4, -1).T).gain
    assert result.shared["gain"] == expected_gain and abs(expected_gain / GAIN - 1) < 0.1
    assert result.shared["detector_offset"] == pytest.approx(OFFSET, abs=0.2)
    assert result.shared["detector_offset_rows"] == ROWS  # the whole stack's, whatever the rows chosen
    assert result.all_guaranteed
    for i, row in enumerate(result.rows):
        alone = restore.reconstruct_ct(
            torch.from_numpy(volume.row_sinogram(scan["projections"], row)).float()[None],
            flat=flats[:, row, :].T, dark=darks[:, row, :].T, gain=result.shared["gain"],
            detector_offset=result.shared["detector_offset"], progress=False, **common)
        torch.testing.assert_close(result.volume[i], alone.image[0])
        assert result.reports[i]["row"] == row and "history" not in result.reports[i]
        # four flat frames: their rings cost less than their model (weighting="auto" keeps wls)
        assert result.reports[i]["noise"]["weighting"] == "wls"


def test_one_scale_for_every_slice(scan, denoiser):
    """shared_scale=True divides every slice by the volume's scale; by default each has its own."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=1, progress=False)
    result = volume.reconstruct_volume(scan["projections"], shared_scale=True, **common)
    scales = {r["operator"]["data_scale"] for r in result.reports}
    assert scales == {result.shared["data_scale"]} and result.shared["data_scale"] != 1.0
    assert result.shared["gain_source"] == "given"
    own = volume.reconstruct_volume(scan["projections"], **common)
    assert "data_scale" not in own.shared and len({r["operator"]["data_scale"] for r in own.reports}) == ROWS


def test_stopped_between_slices_and_resumed(scan, denoiser, tmp_path, monkeypatch):
    """A stop keeps the finished slices in the checkpoint; the resumed run gives the uninterrupted
    volume, and refuses a state of other data or options."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=4, progress=False)
    whole = volume.reconstruct_volume(scan["projections"], **common)
    state = tmp_path / "volume.state"
    calls = {"n": 0}
    original = restore.reconstruct_ct

    def stopped_at_the_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(restore, "reconstruct_ct", stopped_at_the_third)
    partial = volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    monkeypatch.setattr(restore, "reconstruct_ct", original)
    assert partial.stopped == "interrupted" and partial.rows == [0, 1] and state.is_file()
    with pytest.raises(ValueError, match="exists: resume it"):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    with pytest.raises(ValueError, match="another volume .different options"):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **{**common, "method": "fb"})
    with pytest.raises(ValueError, match="different projections, rows"):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, rows=[0, 1], **common)
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    assert resumed.stopped is None and resumed.rows == list(range(ROWS))
    torch.testing.assert_close(resumed.volume, whole.volume)
    assert not (tmp_path / "volume.state.slice").exists()


def _stop_at_the_second_count(monkeypatch) -> None:
    """A stop (KeyboardInterrupt) where the second finished slice would be counted (undo: monkeypatch.undo())."""
    original, calls = volume._VolumeState.record, {"n": 0}

    def stopped_at_the_second_count(self, report):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, report)

    monkeypatch.setattr(volume._VolumeState, "record", stopped_at_the_second_count)


def test_a_stop_between_a_slices_writing_and_its_count_and_a_torn_report_line(scan, denoiser, tmp_path,
                                                                            monkeypatch):
    """A stop after a slice is stored but before it is counted redoes that slice (its solver state is
    already gone, so the next slice does not take it for its own); a report line torn by a crash is cut
    and its slice redone."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=3, accelerate=False, progress=False)
    whole = volume.reconstruct_volume(scan["projections"], **common)
    state = tmp_path / "volume.state"
    _stop_at_the_second_count(monkeypatch)
    partial = volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    monkeypatch.undo()
    assert partial.stopped == "interrupted" and partial.rows == [0]
    assert not (tmp_path / "volume.state.slice").exists()
    reports = tmp_path / "volume.state.reports.jsonl"
    with open(reports, "a") as handle:
        handle.write('{"row": 1, "solver"')  # a crash in the middle of a line
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    assert resumed.rows == list(range(ROWS))
    torch.testing.assert_close(resumed.volume, whole.volume)
    assert [json.loads(line)["row"] for line in reports.read_text().splitlines()] == list(range(ROWS))


def test_a_slice_stopped_mid_solve_continues_from_its_solver_state(scan, denoiser, tmp_path, monkeypatch):
    """A stop inside a slice's solve leaves its solver state beside the checkpoint; the resumed run
    continues that solve (not from the start) and ends with the uninterrupted volume (bit for bit
    without Anderson acceleration, whose memory restarts on a resume)."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=4, tol=1e-9, accelerate=False, progress=False, rows=[0, 1])
    whole = volume.reconstruct_volume(scan["projections"], **common)
    state = tmp_path / "volume.state"
    original = restore.reconstruct_ct
    calls = {"n": 0}

    def stopped_after_two_iterations_of_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] != 2:
            return original(*args, **kwargs)
        stopped = original(*args, **{**kwargs, "max_iter": 2})  # its state saved at iteration 2
        stopped.result.stopped_by = "interrupted"
        return stopped

    monkeypatch.setattr(restore, "reconstruct_ct", stopped_after_two_iterations_of_the_second)
    partial = volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    monkeypatch.setattr(restore, "reconstruct_ct", original)
    assert partial.stopped == "interrupted" and partial.rows == [0]
    assert (tmp_path / "volume.state.slice").is_file() and (tmp_path / "volume.state.slices.npy").is_file()
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    assert resumed.reports[1]["checkpoint"]["resumed_from_iteration"] == 2
    torch.testing.assert_close(resumed.volume, whole.volume)


def test_a_diverged_slice_stops_the_volume_and_is_not_kept(scan, denoiser, tmp_path, monkeypatch):
    """A slice whose iteration diverged ends the run (stopped="non-finite", its report last) and is not
    recorded as finished: the resumed run solves it again."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=2, progress=False)
    state = tmp_path / "volume.state"
    original = restore.reconstruct_ct
    calls = {"n": 0}

    def diverging_second(*args, **kwargs):
        calls["n"] += 1
        result = original(*args, **kwargs)
        if calls["n"] == 2:
            result.result.stopped_by = "non-finite"
            result.image = torch.full_like(result.image, float("nan"))
        return result

    monkeypatch.setattr(restore, "reconstruct_ct", diverging_second)
    stopped = volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    monkeypatch.setattr(restore, "reconstruct_ct", original)
    assert stopped.stopped == "non-finite" and stopped.rows == [0] and stopped.reports[-1]["row"] == 1
    assert stopped.volume.shape == (1, SIZE, SIZE) and torch.isfinite(stopped.volume).all()
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    assert resumed.stopped is None and resumed.rows == list(range(ROWS)) and torch.isfinite(resumed.volume).all()


def test_damaged_rows_are_named_and_left_out_of_the_shared_values(scan, denoiser):
    """A non-finite row is refused before any work, naming it; a row of no signal (a dead detector
    row) is left out of the shared values with a note, and named when it is reconstructed."""
    projections, flats = scan["projections"].copy(), scan["flats"].copy()
    projections[3, 2, 5] = np.nan
    common = dict(flat=flats, dark=DARK, gain=GAIN, detector_offset="auto", denoiser=denoiser, max_iter=1,
                  progress=False)
    with pytest.raises(ValueError, match="row 2 of the projections contains NaN"):
        volume.reconstruct_volume(projections, **common)
    assert volume.reconstruct_volume(projections, rows=[0], **common).rows == [0]  # row 2 only sampled: left out
    projections, flats = scan["projections"].copy(), scan["flats"].copy()
    projections[:, 3, :], flats[:, 3, :] = DARK, DARK  # a dead detector row
    result = volume.reconstruct_volume(projections, rows=[0, 1], **common)
    assert any(note.startswith("1 of the rows sampled for the shared values left out (row 3") for note in result.notes)
    with pytest.raises(ValueError, match="^row 3: "):
        volume.reconstruct_volume(projections, rows=[3], **common)


def test_the_shared_values_read_only_their_sampled_rows_and_only_when_asked(scan, denoiser):
    """Rows neither chosen nor sampled are never read (a NaN there goes unnoticed); the sample is not
    read when nothing is measured (gain and axis given)."""
    wide = [r % ROWS for r in range(20)]  # 20 detector rows
    projections, flats = scan["projections"][:, wide, :].copy(), scan["flats"][:, wide, :]
    sampled = volume._sample(list(range(20)))
    unsampled = next(r for r in range(20) if r not in sampled)
    projections[:, unsampled, 3] = np.nan
    common = dict(flat=flats, dark=DARK, gain=GAIN, denoiser=denoiser, max_iter=1, progress=False, rows=[0])
    measured = volume.reconstruct_volume(projections, detector_offset="auto", **common)
    assert measured.shared["detector_offset_rows"] == len(sampled) and not any("left out" in n for n in measured.notes)
    projections[:, sampled[1], 3] = np.nan
    measured = volume.reconstruct_volume(projections, detector_offset="auto", **common)
    assert any(note.startswith(f"1 of the rows sampled for the shared values left out (row {sampled[1]}: NaN")
               for note in measured.notes)
    given = volume.reconstruct_volume(projections, detector_offset=OFFSET, **common)
    assert not any("left out" in note for note in given.notes)


def test_a_checkpoint_whose_creation_stopped_is_completed_on_resume(scan, denoiser, tmp_path, monkeypatch):
    """Stopped after the state file but before the reports were created: the resume creates them
    (no slice was counted) and ends with the uninterrupted volume."""
    from pnp_stable import fileio

    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=2, accelerate=False, progress=False)
    whole = volume.reconstruct_volume(scan["projections"], **common)
    state = tmp_path / "volume.state"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "atomic_write_bytes", stopped)
    with pytest.raises(KeyboardInterrupt):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    monkeypatch.undo()
    assert state.is_file() and not (tmp_path / "volume.state.reports.jsonl").exists()
    with pytest.raises(ValueError, match="exists: resume it"):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, **common)
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    torch.testing.assert_close(resumed.volume, whole.volume)


def test_angle_range_spreads_the_views_and_the_slices_options_reach_them(scan, denoiser):
    result = volume.reconstruct_volume(scan["projections"], flat=scan["flats"][:1], dark=scan["darks"], gain=GAIN,
                                       detector_offset=OFFSET, angle_range=90, rows=0, denoiser=denoiser, max_iter=1,
                                       progress=False, flat_exposures=1)
    assert result.reports[0]["operator"]["angles_deg"][:3] == [0.0, 3.0, 6.0]
    # one flat frame told as one exposure: each row's flat's rings are whitened
    assert result.reports[0]["noise"]["weighting"] == "gls"
    assert result.reports[0]["noise"]["flat_field"]["flat_exposures"] == 1


def test_post_log_stack_with_its_photon_count_read_once(scan, denoiser):
    """A post-log stack (no flat): photons='auto' is read once, the median over the rows."""
    post_log = -np.log((scan["projections"] - DARK) / (GAIN * PHOTONS))
    result = volume.reconstruct_volume(post_log, photons="auto", detector_offset=OFFSET, denoiser=denoiser,
                                       max_iter=2, rows=0, progress=False)
    assert result.shared["photons_source"].startswith("read off the noise of 4 rows")
    assert 0.5 < result.shared["photons"] / PHOTONS < 2
    assert result.reports[0]["noise"]["photons_source"] == "given"  # handed to the slice as a number


def test_refusals(scan, denoiser):
    stack = scan["projections"]
    for kwargs, message in ((dict(geometry="fan"), "cone beam"),
                            (dict(simulate=True), "not an option of reconstruct_volume"),
                            (dict(flat=scan["flats"][:, :2]), "one frame of the detector"),
                            (dict(dark=scan["darks"]), "give their flat field"),
                            (dict(flat=1e4, photons=1e3), "photons describes post-log data"),
                            (dict(resume=True), "needs the checkpoint"),
                            (dict(resume=True, checkpoint="mistyped.state"), "no checkpoint to resume at"),
                            (dict(rows=slice(2, 9)), "runs outside the projections' 4 detector rows"),
                            (dict(strength="sure", checkpoint="sure.state"), "cannot be checkpointed"),
                            (dict(rows=9), "outside the projections' 4 detector rows")):
        with pytest.raises(ValueError, match=message):
            volume.reconstruct_volume(stack, denoiser=denoiser, progress=False, **kwargs)
    with pytest.raises(ValueError, match="n_angles x n_rows x n_cols"):
        volume.reconstruct_volume(stack[0], denoiser=denoiser, progress=False)
    with pytest.raises(ValueError, match="data_scale must be a positive number"):
        restore.reconstruct_ct(torch.ones(1, 35, 10), data_scale=0.0, denoiser=denoiser, progress=False)


def test_the_flats_noise_options_are_refused_before_any_work(scan, denoiser, tmp_path):
    """A misused flat option is refused before the shared values, the denoiser and the checkpoint:
    no files are left to block the corrected run (review)."""
    state = tmp_path / "volume.state"
    for kwargs, message in ((dict(flat=scan["flats"], flat_exposures=1), "the 4 frames given are counted"),
                            (dict(flat=scan["flats"][:1], flat_exposures=0), "positive whole number"),
                            (dict(flat=scan["flats"][:1], flat_exposures=float("nan")), "positive whole number"),
                            (dict(flat=1e4, flat_exposures=2), "a number is no measurement"),
                            (dict(flat_exposures=2, photons=1e3), "give the flat"),
                            (dict(flat=1e4, weighting="gls"), "not a number"),
                            (dict(weighting="gls", photons=1e3), "models a measured flat field")):
        with pytest.raises(ValueError, match=message):
            volume.reconstruct_volume(scan["projections"], denoiser=denoiser, progress=False, checkpoint=state,
                                      **kwargs)
        assert not list(tmp_path.iterdir())


def test_workers_solve_the_same_slices_and_a_stop_resumes_with_any_number_of_workers(scan, denoiser, tmp_path,
                                                                                       monkeypatch):
    """Slices solved by two worker processes are the one-process volume's, bit for bit (one torch thread
    each here); a run with workers stopped in the middle resumes, with workers or without, to that volume;
    a slice stopped mid-solve by a one-process run is continued from its state by a run with workers, and
    one left by workers by a one-process run."""
    common = dict(flat=scan["flats"], dark=scan["darks"], gain=GAIN, detector_offset=OFFSET, denoiser=denoiser,
                  max_iter=4, tol=1e-9, accelerate=False, progress=False)
    whole = volume.reconstruct_volume(scan["projections"], **common)
    parallel = volume.reconstruct_volume(scan["projections"], workers=2, **common)
    assert parallel.rows == whole.rows and [r["row"] for r in parallel.reports] == whole.rows
    torch.testing.assert_close(parallel.volume, whole.volume, rtol=0, atol=0)

    # a stop of the main process after one slice is counted: the slices in progress stop with it
    state = tmp_path / "volume.state"
    _stop_at_the_second_count(monkeypatch)
    partial = volume.reconstruct_volume(scan["projections"], checkpoint=state, workers=2, **common)
    monkeypatch.undo()
    assert partial.stopped == "interrupted" and 1 <= len(partial.rows) < ROWS
    with pytest.raises(ValueError, match="exists: resume it"):
        volume.reconstruct_volume(scan["projections"], checkpoint=state, workers=2, **common)
    resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, **common)
    assert resumed.stopped is None and resumed.rows == list(range(ROWS))
    torch.testing.assert_close(resumed.volume, whole.volume, rtol=0, atol=0)
    assert not _slice_states(tmp_path)

    # a one-process run's slice stopped after two iterations, continued by workers (and the other way)
    original_ct = restore.reconstruct_ct

    def stops_the_second_after_two_iterations(*args, **kwargs):
        if bool(args[0][0, 0, 0] == scan["projections"][0, 1, 0]) and kwargs.get("checkpoint"):  # row 1's slice
            stopped = original_ct(*args, **{**kwargs, "max_iter": 2})
            stopped.result.stopped_by = "interrupted"
            return stopped
        return original_ct(*args, **kwargs)

    for workers, left in ((2, "volume.state.slice"), (1, "volume.state.slice.1")):
        for name in tmp_path.glob("volume.state*"):
            name.unlink()
        monkeypatch.setattr(restore, "reconstruct_ct", stops_the_second_after_two_iterations)
        partial = volume.reconstruct_volume(scan["projections"], checkpoint=state, rows=[0, 1, 2], **common)
        monkeypatch.setattr(restore, "reconstruct_ct", original_ct)
        assert partial.rows == [0] and (tmp_path / "volume.state.slice").is_file()
        (tmp_path / "volume.state.slice").rename(tmp_path / left)  # as a one-process run, or workers, leave it
        resumed = volume.reconstruct_volume(scan["projections"], checkpoint=state, resume=True, rows=[0, 1, 2],
                                            workers=workers, **common)
        assert [r["checkpoint"]["resumed_from_iteration"] for r in resumed.reports] == [None, 2, None]
        torch.testing.assert_close(resumed.volume, whole.volume[:3], rtol=0, atol=0)
        assert not _slice_states(tmp_path)


def _slice_states(folder) -> list[str]:
    """The solver states of slices in progress left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name == "volume.state.slice" or p.name.startswith("volume.state.slice.")
            and p.name.rsplit(".", 1)[1].isdigit()]


def test_workers_refused(scan, denoiser, tmp_path):
    common = dict(detector_offset=OFFSET, denoiser=denoiser, max_iter=1, progress=False, rows=0)
    for workers in (0, -1, 1.5, True, "all"):
        with pytest.raises(ValueError, match="workers must be a number of processes"):
            volume.reconstruct_volume(scan["line_integrals"].transpose(2, 0, 1), workers=workers, **common)
    from pnp_stable import restore

    on_a_gpu = pytest.MonkeyPatch()
    on_a_gpu.setattr(restore, "resolve_device", lambda device: torch.device("cuda"))
    with pytest.raises(ValueError, match="solve slices in processes on the CPU, but the device is cuda: choose"):
        volume.reconstruct_volume(scan["line_integrals"].transpose(2, 0, 1), workers=2, **common)
    on_a_gpu.undo()
    (tmp_path / "volume.state.slice.3").write_bytes(b"")  # a slice in progress, left by a run with workers
    with pytest.raises(ValueError, match=r"volume.state.slice.3 exists: resume it"):
        volume.reconstruct_volume(scan["line_integrals"].transpose(2, 0, 1), checkpoint=tmp_path / "volume.state",
                                  **common)

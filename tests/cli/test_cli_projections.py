"""``pnp-stable ct PROJECTIONS --projections``: a volume from a projection stack (.npy or multi-page
TIFF) and its flat and dark frames, written as a float volume; refusals in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from cli_test_helpers import assert_user_error, run

from pnp_stable.operators import ParallelBeamCT

SIZE, VIEWS, ROWS = 24, 30, 3


@pytest.fixture(scope="module")
def stack_files(tmp_path_factory):
    """Raw projections (views x rows x bins, 16-bit) as .npy and TIFF, 4 flat frames (TIFF), a dark
    offset of 100 and the axis 1.5 bins off centre."""
    folder = tmp_path_factory.mktemp("stack")
    op = ParallelBeamCT(SIZE, angles=VIEWS, detector_offset=1.5)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    disc = ((xx + 2) ** 2 + yy ** 2 < 49).astype(np.float64)
    line_integrals = np.stack([0.1 * (1 + r) * op.A(torch.from_numpy(disc)[None, None])[0, 0].numpy()
                               for r in range(ROWS)])
    rng = np.random.default_rng(0)
    raw = (4 * rng.poisson(3e3 * np.exp(-line_integrals)) + 100).transpose(2, 0, 1).astype(np.uint16)
    flats = (4 * rng.poisson(3e3, size=(4, ROWS, line_integrals.shape[1])) + 100).astype(np.uint16)
    np.save(folder / "proj.npy", raw)
    tifffile.imwrite(folder / "proj.tif", raw, photometric="minisblack")
    tifffile.imwrite(folder / "flats.tif", flats, photometric="minisblack")
    np.save(folder / "one_flat.npy", flats.mean(axis=0))
    return folder


def test_a_volume_from_an_npy_stack_with_flat_frames(stack_files, tiny_denoiser, tmp_path):
    out, report = tmp_path / "vol.npy", tmp_path / "vol.json"
    result = run("ct", stack_files / "proj.npy", "--projections", "--flat", stack_files / "flats.tif", "--dark",
                 "100", "--detector-offset", "auto", "--rows", "1:", "--denoiser", tiny_denoiser, "--max-iter", 3,
                 "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert "reconstructed" in result.output and "2 slices of 24x24" in result.output
    assert "guaranteed" in result.output and "rotation axis" in result.output
    assert "--workers auto" not in result.output  # two slices: not worth starting workers
    volume = np.load(out)
    assert volume.shape == (2, SIZE, SIZE) and volume.dtype == np.float32 and volume.max() > 0
    payload = json.loads(report.read_text())
    assert payload["volume"] == {"shape": [2, SIZE, SIZE], "rows": [1, 2]}
    assert payload["projections"] == {"shape": [VIEWS, ROWS, 34], "dtype": "uint16",
                                      "angles_deg": [6.0 * k for k in range(VIEWS)]}
    assert payload["options"]["angles"] is None  # the stack's own
    assert payload["shared"]["gain_source"].startswith("4 flat frames") and payload["all_guaranteed"]
    assert abs(payload["shared"]["detector_offset"] - 1.5) < 0.3
    assert [s["row"] for s in payload["slices"]] == [1, 2] and payload["options"]["rows"] == "1:"


def test_a_tiff_stack_gives_a_tiff_volume_beside_it(stack_files, tiny_denoiser, tmp_path):
    import shutil

    for name in ("proj.tif", "one_flat.npy"):
        shutil.copy(stack_files / name, tmp_path / name)
    result = run("ct", tmp_path / "proj.tif", "--projections", "--flat", tmp_path / "one_flat.npy", "--dark", "100",
                 "--gain", "4", "--detector-offset", "1.5", "--rows", "2", "--denoiser", tiny_denoiser,
                 "--max-iter", 2, "--quiet", "--flat-exposures", "1", "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1  # --quiet: the summary line only
    volume = tifffile.imread(tmp_path / "proj_reconstructed.tif")
    assert volume.shape == (1, SIZE, SIZE) and volume.dtype == np.float32  # a volume of one slice
    # one flat frame told as one exposure: each slice's data term whitens its rings
    slice_report = json.loads((tmp_path / "report.json").read_text())["slices"][0]
    assert slice_report["noise"]["weighting"] == "gls" and slice_report["noise"]["flat_field"]["flat_exposures"] == 1


def test_a_folder_of_projections_in_name_order_is_the_stack(stack_files, tiny_denoiser, tmp_path):
    """One TIFF per angle, numbered without padding (p_2 before p_10), flat frames in a folder and the
    mean flat inside the projections' folder (an input, so no projection): the stack's volume."""
    raw, flats = np.load(stack_files / "proj.npy"), tifffile.imread(stack_files / "flats.tif")
    scan, flat_folder = tmp_path / "scan", tmp_path / "flats"
    scan.mkdir(), flat_folder.mkdir()
    for k, projection in enumerate(raw):
        tifffile.imwrite(scan / f"p_{k}.tif", projection)
    for k, frame in enumerate(flats):
        tifffile.imwrite(flat_folder / f"flat_{k}.tif", frame)
    common = ("--projections", "--dark", "100", "--gain", "4", "--detector-offset", "1.5", "--denoiser",
              tiny_denoiser, "--max-iter", 2, "--quiet")
    assert run("ct", stack_files / "proj.npy", "--flat", flat_folder, "--out", tmp_path / "a.npy", *common
               ).exit_code == 0
    result = run("ct", scan, "--flat", flat_folder, *common)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "scan_reconstructed.tif"), np.load(tmp_path / "a.npy"))
    np.save(scan / "mean_flat.npy", flats.mean(axis=0))
    with_mean_flat = run("ct", scan, "--flat", scan / "mean_flat.npy", "--out", tmp_path / "b.npy", "--report",
                         tmp_path / "b.json", *common)
    assert with_mean_flat.exit_code == 0, with_mean_flat.output
    assert json.loads((tmp_path / "b.json").read_text())["projections"]["shape"][0] == VIEWS
    assert_user_error(run("ct", scan, "--flat", flat_folder, "--out", scan / "v.tif", *common),
                      "lies in the folder of frames")
    (scan / "mean_flat.npy").unlink()  # (not an input of the next run: it would be a frame of float samples)
    tifffile.imwrite(scan / "p_99.tif", np.ones((2, 34), np.uint16))
    assert_user_error(run("ct", scan, "--flat", flat_folder, *common), "p_99.tif is 2 x 34")


def test_a_folder_of_frames_refuses_mixed_frames_and_doubts_its_order(stack_files, tiny_denoiser, tmp_path,
                                                                       monkeypatch):
    raw = np.load(stack_files / "proj.npy")
    scan = tmp_path / "scan"
    scan.mkdir()
    for k, projection in enumerate(raw):
        tifffile.imwrite(scan / f"p_{2 * k}.tif", projection)  # every second number: evenly, no doubt
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for k, frame in enumerate(tifffile.imread(stack_files / "flats.tif")):
        tifffile.imwrite(calibration / f"flat_{k}.tif", frame)
    np.save(calibration / "dark.npy", np.full(raw.shape[1:], 100.0))  # an input, so no flat frame
    common = ("--projections", "--gain", "4", "--detector-offset", "1.5", "--denoiser", tiny_denoiser,
              "--max-iter", 1, "--report", tmp_path / "r.json")
    monkeypatch.chdir(scan)
    result = run("ct", ".", "--flat", calibration, "--dark", calibration / "dark.npy", *common)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scan_reconstructed.tif").is_file() and "note: the frames" not in result.output
    assert json.loads((tmp_path / "r.json").read_text())["shared"] == {"gain": 4.0, "gain_source": "given"}
    assert_user_error(run("ct", ".", "--flat", ".", *common), "--flat . is the projections themselves")
    (scan / "p_6.tif").unlink()  # a frame missing
    result = run("ct", ".", "--flat", calibration, "--dark", calibration / "dark.npy", *common)
    assert "their numbers do not run evenly (0, 2, ... 58: a frame missing?)" in result.output
    tifffile.imwrite(scan / "p_6.tif", raw[3].astype(np.float32))
    assert_user_error(run("ct", ".", "--flat", calibration, *common), "p_6.tif stores float32 samples")
    Image.fromarray(raw[3].astype(np.uint8)).save(scan / "p_6.jpg")
    (scan / "p_6.tif").unlink()
    assert_user_error(run("ct", ".", "--flat", calibration, *common), "p_6.jpg is a JPEG")


def test_a_stopped_volume_exits_130_and_resumes_to_the_uninterrupted_result(stack_files, tiny_denoiser, tmp_path,
                                                                           monkeypatch):
    from pnp_stable import restore

    state, out = tmp_path / "vol.state", tmp_path / "vol.npy"
    args = ("ct", stack_files / "proj.npy", "--projections", "--flat", stack_files / "flats.tif", "--dark", "100",
            "--detector-offset", "1.5", "--denoiser", tiny_denoiser, "--max-iter", 2, "--out", out, "--quiet")
    assert run(*args).exit_code == 0
    whole = np.load(out)
    out.unlink()
    original, calls = restore.reconstruct_ct, {"n": 0}

    def stop_at_the_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(restore, "reconstruct_ct", stop_at_the_second)
    stopped = run(*args, "--checkpoint", state)
    monkeypatch.setattr(restore, "reconstruct_ct", original)
    assert stopped.exit_code == 130 and "interrupted: 1 of 3 slices reconstructed, kept in" in stopped.output
    assert not out.exists()
    assert_user_error(run(*args, "--checkpoint", state), "exists: resume it")
    assert_user_error(run(*args, "--checkpoint", state, "--resume", "--rows", "0"),
                      "another volume (different projections, rows)")
    for taken in (f"{state}.slices.npy", f"{state}.slice.2"):  # (a slice in progress with --workers)
        assert_user_error(run(*args, "--checkpoint", state, "--resume", "--report", taken), "is a file of --checkpoint")
    assert run(*args, "--checkpoint", state, "--resume").exit_code == 0
    np.testing.assert_array_equal(np.load(out), whole)


def test_the_cores_left_idle_are_said_for_a_volume_worth_workers(tmp_path, tiny_denoiser):
    from pnp_stable.worker_pool import usable_cores

    stack = np.random.default_rng(0).random((6, 4, 13)).astype(np.float32)  # 6 views, 4 rows, 13 bins: post-log
    np.save(tmp_path / "p.npy", stack)
    args = ("ct", tmp_path / "p.npy", "--projections", "--denoiser", tiny_denoiser, "--max-iter", 1, "--noise", "0.01")
    said = f"reconstructing 4 rows (0-3) (one at a time: --workers auto solves up to {usable_cores()} at once)"
    assert (said in run(*args).output) == (usable_cores() > 1)
    assert "--workers auto" not in run(*args, "--workers", "1", "--out", tmp_path / "one.npy").output


def test_workers_give_the_one_process_volume(stack_files, tiny_denoiser, tmp_path):
    args = ("ct", stack_files / "proj.npy", "--projections", "--flat", stack_files / "flats.tif", "--dark", "100",
            "--detector-offset", "1.5", "--denoiser", tiny_denoiser, "--max-iter", 2, "--quiet")
    assert run(*args, "--out", tmp_path / "one.npy").exit_code == 0
    result = run(*args, "--out", tmp_path / "two.npy", "--workers", "2", "--report", tmp_path / "two.json")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"))
    payload = json.loads((tmp_path / "two.json").read_text())
    assert payload["options"]["workers"] == "2" and [s["row"] for s in payload["slices"]] == [0, 1, 2]


@pytest.mark.parametrize("extra, message", [
    (("--rows", "1"), "--rows selects detector rows of a projection stack"),
    (("--projections", "--geometry", "fan", "--size", "24"), "cone beam"),
    (("--projections", "--plot", "p.png"), "--plot draws one solve's residual"),
    (("--projections", "--out", "v.png"), "a volume is written as .npy or a multi-page .tif"),
    (("--projections", "--rows", "2:1"), "the range is empty"),
    (("--projections", "--rows", "a"), "give a row R or a range A:B"),
    (("--projections", "--rows", "7"), "row 7 lies outside the projections' 3 detector rows"),
    (("--projections", "--angles", "20"), "holds 30 projections (its first axis"),
    (("--projections", "--from-skimage"), "not with --projections"),
    (("--workers", "2"), "--workers solves the slices of a projection stack at once: add --projections"),
    (("--projections", "--workers", "0"), "--workers '0': give a number of processes"),
    (("--projections", "--workers", "two"), "--workers 'two': give a number of processes"),
])
def test_refusals(stack_files, tiny_denoiser, extra, message):
    result = run("ct", stack_files / "proj.npy", *extra, "--denoiser", tiny_denoiser)
    assert_user_error(result, message)


def test_stacks_are_read_as_stored_and_mapped_where_they_can_be(tmp_path):
    """An uncompressed TIFF stack and a .npy are memory-mapped (a scan larger than the memory is read
    row by row); a compressed TIFF and pages written one by one are read whole; the values as stored."""
    from pnp_stable.cli.images import read_stack

    frames = (np.arange(5 * 6 * 7) % 300).reshape(5, 6, 7).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", frames, photometric="minisblack")
    tifffile.imwrite(tmp_path / "zlib.tif", frames, photometric="minisblack", compression="zlib")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for frame in frames:
            writer.write(frame)
    np.save(tmp_path / "stack.npy", frames.astype(">f4"))
    for name, mapped in (("plain.tif", True), ("zlib.tif", False), ("pages.tif", False), ("stack.npy", True)):
        stack = read_stack(tmp_path / name)
        assert isinstance(stack, np.memmap) == mapped, name
        np.testing.assert_array_equal(np.asarray(stack, dtype=np.float64), frames)
    pngs = tmp_path / "pngs"  # a folder of 16-bit PNG frames keeps their integers and their type
    pngs.mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(pngs / f"f_{k}.png")
    stack = read_stack(pngs)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack, frames)


def test_input_refusals(stack_files, tmp_path):
    assert_user_error(run("ct", "--projections"), "--projections reads a measured stack")
    np.save(tmp_path / "flat.npy", np.ones((2, 5)))
    assert_user_error(run("ct", stack_files / "proj.npy", "--projections", "--flat", tmp_path / "flat.npy"),
                      "--flat flat.npy holds frames of 2 x 5")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    assert_user_error(run("ct", tmp_path / "words.npy", "--projections"), "expected real numbers")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((20, 30, 3), np.uint8))
    assert_user_error(run("ct", tmp_path / "rgb.tif", "--projections"), "stores 3 colour samples per pixel")
    np.save(tmp_path / "sinogram.npy", np.ones((34, 30)))
    assert_user_error(run("ct", tmp_path / "sinogram.npy", "--projections"), "holds one 2-D image")
    with tifffile.TiffWriter(tmp_path / "uneven.tif") as writer:
        for shape in ((3, 34), (3, 34), (2, 34)):
            writer.write(np.ones(shape, np.uint16))
    assert_user_error(run("ct", tmp_path / "uneven.tif", "--projections"), "image 3 is 2 x 34")
    (tmp_path / "stack.png").write_bytes(b"")
    assert_user_error(run("ct", tmp_path / "stack.png", "--projections"), "a 3-D .npy or a multi-page TIFF")
    assert_user_error(run("ct", stack_files / "proj.npy", "--projections", "--out", stack_files / "proj.npy"),
                      "refusing to overwrite the input proj.npy")
    assert_user_error(run("ct", stack_files / "proj.npy", "--projections", "--out", tmp_path / "no" / "v.npy"),
                      "output folder")


@pytest.fixture(scope="module")
def tilted_stack(tmp_path_factory):
    """Post-log projections (views x rows x bins) of bench_axis_tilt's phantom, its axis tilted 1.5
    degrees on the detector and 1.3 bins off its centre at the middle row."""
    from bench_loader import load_bench_script

    bench = load_bench_script("bench_axis_tilt")
    op = ParallelBeamCT(32, angles=30)
    stack = 0.1 * bench.projections(32, 22, op.angles_deg, op.n_detectors, 1.5, 1.3)
    path = tmp_path_factory.mktemp("tilted") / "tilted.npy"
    np.save(path, stack.astype(np.float32))
    return path


def test_a_tilted_axis_read_off_the_stack(tilted_stack, tiny_denoiser, tmp_path):
    out, report = tmp_path / "vol.npy", tmp_path / "vol.json"
    result = run("ct", tilted_stack, "--projections", "--axis-tilt", "auto", "--detector-offset", "auto", "--rows",
                 "9:11", "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", 1, "--out", out, "--report",
                 report)
    assert result.exit_code == 0, result.output
    assert "rotation axis tilted +" in result.output and "2 slices of 32x32" in result.output
    payload = json.loads(report.read_text())
    assert abs(payload["shared"]["axis_tilt"] - 1.5) < 0.1 and abs(payload["shared"]["detector_offset"] - 1.3) < 0.05
    assert payload["options"]["axis_tilt"] == "auto" and np.load(out).shape == (2, 32, 32)
    assert all(s["detector_rows"][0] <= s["row"] <= s["detector_rows"][1] for s in payload["slices"])


def test_a_tilted_stack_leaves_out_the_end_rows(tilted_stack, tiny_denoiser, tmp_path):
    """Without --rows (or with a range), the end rows whose slices leave the detector are left out."""
    out = tmp_path / "vol.npy"
    result = run("ct", tilted_stack, "--projections", "--axis-tilt", "1.5", "--detector-offset", "1.3", "--noise",
                 "0.01", "--denoiser", tiny_denoiser, "--max-iter", 1, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 end rows left out" in result.output and "20 slices of 32x32 (20 rows (1-20))" in result.output
    assert np.load(out).shape == (20, 32, 32)


def test_a_long_object_s_tilt_read_off_a_full_turn(tmp_path, tiny_denoiser):
    """An object longer than the detector, scanned over a full turn (--angle-range 360): the tilt is
    read off opposite views; over a half turn it cannot be, and the one-line refusal says what would."""
    from bench_loader import load_bench_script

    bench = load_bench_script("bench_axis_tilt")
    angles = np.arange(30) * 12.0
    op = ParallelBeamCT(64, angles=30)
    long = 0.1 * bench.projections(64, 24, angles, op.n_detectors, 1.5, 1.3, subpixels=2)  # 31 rows long
    stack = tmp_path / "long.npy"
    np.save(stack, long.astype(np.float32))
    report = tmp_path / "vol.json"
    result = run("ct", stack, "--projections", "--angle-range", "360", "--axis-tilt", "auto", "--detector-offset",
                 "auto", "--rows", "11:13", "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", 1, "--out",
                 tmp_path / "vol.npy", "--report", report)
    assert result.exit_code == 0, result.output
    assert "pairs of opposite views" in result.output
    shared = json.loads(report.read_text())["shared"]
    assert abs(shared["axis_tilt"] - 1.5) < 0.1 and abs(shared["detector_offset"] - 1.3) < 0.05
    half = tmp_path / "half.npy"
    np.save(half, long[:15].astype(np.float32))
    assert_user_error(run("ct", half, "--projections", "--angle-range", "180", "--axis-tilt", "auto", "--noise",
                          "0.01", "--denoiser", tiny_denoiser, "--quiet"),
                      "reaches the detector's first row")


@pytest.mark.parametrize("extra, message", [
    (("--axis-tilt", "1"), "--axis-tilt describes a measured projection stack's rotation axis"),
    (("--projections", "--axis-tilt", "x"), "--axis-tilt 'x' is not a number of degrees or 'auto'"),
    (("--projections", "--axis-tilt", "7"), "--axis-tilt must be a number of degrees within +-5"),
    (("--projections", "--axis-tilt", "nan"), "--axis-tilt must be a number of degrees within +-5"),
    (("--projections", "--axis-tilt", "1.5", "--rows", "0", "--quiet"), "row 0's slice leaves the detector"),
])
def test_axis_tilt_refusals(tilted_stack, tiny_denoiser, extra, message):
    result = run("ct", tilted_stack, *extra, "--noise", "0.01", "--denoiser", tiny_denoiser)
    assert_user_error(result, message)


def test_a_worker_killed_for_memory_is_a_user_error(stack_files, tiny_denoiser, monkeypatch):
    """A worker process the system kills (for memory, most often) ends the run in one line that says
    what to do, not with a traceback nor with the hint for a solve's own memory."""
    from pnp_stable import volume
    from pnp_stable.worker_pool import WorkerDied

    def killed(*args, **kwargs):
        raise WorkerDied("a worker process died before finishing its task (killed by the system, most often for "
                         "lack of memory): run fewer workers")

    monkeypatch.setattr(volume, "reconstruct_volume", killed)
    result = run("ct", stack_files / "proj.npy", "--projections", "--workers", "2", "--denoiser", tiny_denoiser,
                 "--quiet")
    assert_user_error(result, "a worker process died")
    assert "run fewer workers" in result.output and "smaller tiles" not in result.output

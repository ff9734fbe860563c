"""Raw transmission readings (``reconstruct_ct(flat=...)``, ``pnp-stable ct --flat``): the same
reconstruction as the post-log data of their photons, files read unscaled, refusals in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_test_helpers import assert_user_error, run
from PIL import Image

from pnp_stable import restore
from pnp_stable.operators import ParallelBeamCT


def test_reconstruct_ct_from_raw_readings_is_the_post_log_reconstruction_of_their_photons(tiny_denoiser):
    """A flat of I0 photons with gain 1 and no dark is --photons I0 on -log(I / I0): the same
    reconstruction, noise level and weights; the report describes the correction."""
    op = ParallelBeamCT(24, angles=20)
    square = torch.from_numpy(np.pad(np.ones((12, 12)) * 0.6, 6))[None, None]
    line_integrals = (0.05 * op.A(square))[0, 0].numpy()
    rng = np.random.default_rng(2)
    raw = rng.poisson(1e4 * np.exp(-line_integrals)).astype(np.float64)
    common = dict(denoiser=str(tiny_denoiser), max_iter=3, progress=False)
    from_raw = restore.reconstruct_ct(torch.from_numpy(raw)[None].float(), flat=1e4, gain=1.0, **common)
    post_log = restore.reconstruct_ct(torch.from_numpy(-np.log(raw / 1e4))[None].float(), photons=1e4, **common)
    assert from_raw.report["noise"]["sigma"] == pytest.approx(post_log.report["noise"]["sigma"], rel=1e-5)
    torch.testing.assert_close(from_raw.image, post_log.image, rtol=1e-4, atol=1e-5)
    assert from_raw.guarantee.holds and from_raw.report["operator"]["statistical_weights"] == "photon counts"
    summary = from_raw.report["noise"]["flat_field"]
    assert summary["gain"] == 1.0 and summary["gain_source"] == "given" and summary["dead_detectors"] == []
    # the gain not given (one flat): read off the sinogram's noise (35 x 20 bins of a sharp-edged
    # square are too few for accuracy: tests/test_transmission.py measures it on a larger sinogram)
    read = restore.reconstruct_ct(torch.from_numpy(raw)[None].float(), flat=1e4, **common)
    summary = read.report["noise"]["flat_field"]
    assert summary["gain_source"] == "sinogram noise" and 0.5 < summary["gain"] < 2
    assert any("gain read off the sinogram's noise" in note for note in read.notes)
    for kwargs, message in ((dict(flat=1e4, simulate=True), "a simulation makes its own data"),
                            (dict(flat=1e4, photons=1e4), "not both"),
                            (dict(flat=1e4, noise_level=0.1), "give no noise level"),
                            (dict(dark=10.0), "dark describes raw detector readings"),
                            (dict(gain=2.0), "gain describes raw detector readings")):
        with pytest.raises(ValueError, match=message):
            restore.reconstruct_ct(torch.from_numpy(raw)[None].float(), **kwargs, **common)


def test_data_that_transmit_nothing_like_air_get_a_note(tiny_denoiser):
    """Post-log line integrals given as raw readings transmit far less than the flat everywhere."""
    op = ParallelBeamCT(24, angles=20)
    square = torch.from_numpy(np.pad(np.ones((12, 12)) * 0.6, 6))[None, None]
    line_integrals = (0.05 * op.A(square))[0, 0].float()
    result = restore.reconstruct_ct(line_integrals[None] + 0.01, flat=1e4, gain=1.0, denoiser=str(tiny_denoiser),
                                    max_iter=1, progress=False)
    assert any("drop the flat field" in note for note in result.notes)


def _raw_scan(tmp_path, views=20):
    """A 16-bit PNG raw sinogram of a 24 x 24 square (gain 2, dark 100), its flat as eight 16-bit
    frames and as a float .npy (one value per bin), and the dark as a .npy of frames."""
    op = ParallelBeamCT(24, angles=views)
    square = torch.from_numpy(np.pad(np.ones((12, 12)) * 0.6, 6))[None, None]
    line_integrals = (0.05 * op.A(square))[0, 0].numpy()
    rng = np.random.default_rng(3)
    incident = np.full(line_integrals.shape[0], 2e4)
    raw = 2.0 * rng.poisson(incident[:, None] * np.exp(-line_integrals)) + 100
    flat = 2.0 * rng.poisson(incident[:, None] * np.ones((1, 8))) + 100
    Image.fromarray(raw.astype(np.uint16)).save(tmp_path / "raw.png")
    Image.fromarray(flat.astype(np.uint16)).save(tmp_path / "flat.png")
    np.save(tmp_path / "flat_mean.npy", flat.mean(axis=1))
    np.save(tmp_path / "dark.npy", np.full((raw.shape[0], 4), 100.0))
    return line_integrals


def test_the_command_reconstructs_raw_readings_read_unscaled(tmp_path, tiny_denoiser):
    """A 16-bit sinogram with a float .npy flat: the files are read as the readings they store
    (scaling the PNG to [0, 1] would shift every line integral by log 65535); the gain is measured
    from the flat's frames, and the report says how the data were corrected."""
    _raw_scan(tmp_path)
    common = ("--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet")
    r = run("ct", tmp_path / "raw.png", "--flat", tmp_path / "flat.png", "--dark", tmp_path / "dark.npy", *common,
            "--out", tmp_path / "frames.npy", "--report", tmp_path / "frames.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "frames.json").read_text())
    correction = report["noise"]["flat_field"]
    assert correction["gain_source"] == "flat frames" and correction["gain"] == pytest.approx(2.0, rel=0.3)
    assert correction["flat_frames"] == 8 and correction["dark_frames"] == 4
    assert report["options"]["flat"].endswith("flat.png") and report["options"]["weighting"] == "auto"
    assert report["noise"]["source"] == "photon counts"
    r = run("ct", tmp_path / "raw.png", "--flat", tmp_path / "flat_mean.npy", "--dark", "100", "--gain", "2", *common,
            "--out", tmp_path / "mean.npy", "--report", tmp_path / "mean.json")
    assert r.exit_code == 0, r.output
    mean = json.loads((tmp_path / "mean.json").read_text())
    assert mean["noise"]["flat_field"]["gain_source"] == "given"
    # the two flats are the same readings: the corrected data, hence the FBP's scale, agree
    assert mean["operator"]["data_scale"] == pytest.approx(report["operator"]["data_scale"], rel=1e-6)
    assert abs(np.load(tmp_path / "mean.npy")).max() < 1  # line integrals of 0.05 per pixel, not shifted by 11


def test_flat_field_refusals_are_one_line(tmp_path, tiny_denoiser):
    _raw_scan(tmp_path)
    raw, flat = tmp_path / "raw.png", tmp_path / "flat.png"
    assert_user_error(run("ct", raw, "--dark", "100"), "--dark describes raw detector readings")
    assert_user_error(run("ct", raw, "--gain", "2"), "--gain describes raw detector readings")
    assert_user_error(run("ct", "--flat", flat), "a simulation makes its own data")
    assert_user_error(run("ct", tmp_path, "--flat", flat), "give the sinograms one at a time")
    assert_user_error(run("ct", raw, "--flat", flat, "--photons", "1e4"), "give one of them")
    assert_user_error(run("ct", raw, "--flat", flat, "--noise", "0.1"), "drop --noise")
    assert_user_error(run("ct", raw, "--flat", tmp_path / "nothing.npy"), "neither a number nor a file")
    assert_user_error(run("ct", raw, "--flat", flat, "--gain", "-1"), "--gain must be a positive number")
    np.save(tmp_path / "short.npy", np.ones(5))
    assert_user_error(run("ct", raw, "--flat", tmp_path / "short.npy", "--denoiser", tiny_denoiser),
                      "one value per detector bin")
    assert not list(tmp_path.glob("raw_reconstructed*"))


def test_the_command_models_the_flats_own_noise_from_its_frames_or_the_exposures_told(tmp_path, tiny_denoiser):
    """--weighting gls models a measured flat's noise: its frames (8) or --flat-exposures for a flat
    averaged already, alike; --weighting auto does so for at most two exposures (a single raw frame
    told by --flat-exposures 1), and for a flat of one value per bin not told, notes how."""
    _raw_scan(tmp_path)
    raw = tmp_path / "raw.png"
    common = ("--dark", "100", "--gain", "2", "--denoiser", tiny_denoiser, "--max-iter", "2")
    mean = ("--flat", tmp_path / "flat_mean.npy")
    cases = {"frames": ("--flat", tmp_path / "flat.png", "--weighting", "gls"),
             "told": (*mean, "--flat-exposures", "8", "--weighting", "gls"),
             "auto-frames": ("--flat", tmp_path / "flat.png"), "auto-one": (*mean, "--flat-exposures", "1"),
             "auto-unknown": mean}
    reports = {}
    for name, options in cases.items():
        r = run("ct", raw, *options, *common, "--out", tmp_path / f"{name}.npy", "--report", tmp_path / f"{name}.json")
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        reports[name]["output"] = r.output
    for name, weighting, exposures in (("frames", "gls", 8), ("told", "gls", 8), ("auto-frames", "wls", 8),
                                       ("auto-one", "gls", 1), ("auto-unknown", "wls", 1)):
        assert reports[name]["noise"]["weighting"] == weighting, name
        assert reports[name]["noise"]["flat_field"]["flat_exposures"] == exposures, name
    assert "--flat-exposures 1" in reports["auto-unknown"]["output"]
    assert "--flat-exposures 1" not in reports["auto-one"]["output"]
    # the same flat, its frames or their mean told as 8 exposures: the same data term
    np.testing.assert_allclose(np.load(tmp_path / "frames.npy"), np.load(tmp_path / "told.npy"), rtol=1e-4, atol=1e-6)
    assert_user_error(run("ct", raw, "--flat-exposures", "4"), "--flat-exposures counts the exposures")
    assert_user_error(run("ct", raw, "--flat", "20100", "--weighting", "gls"), "--flat 20100 is a number")
    assert_user_error(run("ct", raw, "--flat", "20100", "--flat-exposures", "3"), "--flat 20100 is a number")
    assert_user_error(run("ct", raw, "--flat", tmp_path / "flat.png", "--flat-exposures", "0"), "must be a positive")
    assert_user_error(run("ct", raw, "--photons", "1e4", "--weighting", "gls"), "add its frames (--flat FILE)")
    assert_user_error(run("ct", raw, "--flat", tmp_path / "flat.png", "--flat-exposures", "4", *common),
                      "the 8 frames given are counted")


def test_dead_bins_under_plain_least_squares_keep_the_noise_level(tiny_denoiser):
    """A dead detector bin's precision is ~0: the plain-least-squares level (the root mean square of
    1 / sqrt(N)) must leave it out, or one bin makes the level thousands of times too large."""
    op = ParallelBeamCT(24, angles=20)
    square = torch.from_numpy(np.pad(np.ones((12, 12)) * 0.6, 6))[None, None]
    rng = np.random.default_rng(6)
    raw = 2.0 * rng.poisson(1e4 * np.exp(-(0.05 * op.A(square))[0, 0].numpy())) + 100
    flat = np.full(raw.shape[0], 2e4 + 100)
    common = dict(dark=100.0, gain=2.0, weighting="none", denoiser=str(tiny_denoiser), max_iter=2, progress=False)
    alive = restore.reconstruct_ct(torch.from_numpy(raw)[None].float(), flat=flat, **common)
    flat[5] = 100.0  # one dead bin
    dead = restore.reconstruct_ct(torch.from_numpy(raw)[None].float(), flat=flat, **common)
    assert dead.report["noise"]["sigma"] == pytest.approx(alive.report["noise"]["sigma"], rel=0.05)
    assert dead.report["noise"]["flat_field"]["dead_detectors"] == [5]
    assert any("plain least squares fits those too" in note for note in dead.notes)


def test_raw_files_of_any_integer_width_shape_and_frame_count_are_read(tmp_path, tiny_denoiser):
    """Raw .npy readings beyond 16 bits, with a leading axis of 1, and a 4-frame 32-bit integer TIFF
    flat (narrower than the 8 x 8 an image needs) are read as the readings they are; the dark matters."""
    line_integrals = _raw_scan(tmp_path)
    raw = np.asarray(Image.open(tmp_path / "raw.png"), dtype=np.int64)
    np.save(tmp_path / "raw_wide.npy", ((raw - 100) * 40 + 100)[None])  # counts up to ~1.6e6, shape (1, bins, views)
    flat = np.asarray(Image.open(tmp_path / "flat.png"), dtype=np.int64)
    Image.fromarray(((flat[:, :4] - 100) * 40 + 100).astype(np.int32)).save(tmp_path / "flat4.tif")
    common = ("--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet")
    r = run("ct", tmp_path / "raw_wide.npy", "--flat", tmp_path / "flat4.tif", "--dark", "100", "--gain", "80", *common,
            "--out", tmp_path / "wide.npy", "--report", tmp_path / "wide.json")
    assert r.exit_code == 0, r.output  # a 32-bit integer TIFF (a photon counter's) read as stored
    report = json.loads((tmp_path / "wide.json").read_text())
    assert report["noise"]["flat_field"]["flat_frames"] == 4 and report["options"]["dark"] == "100"
    assert "scaled" not in r.output
    r = run("ct", tmp_path / "raw_wide.npy", "--flat", tmp_path / "flat4.tif", "--dark", "3e5", "--gain", "80",
            *common, "--out", tmp_path / "dark.npy", "--report", tmp_path / "dark.json")
    assert r.exit_code == 0, r.output
    dark = json.loads((tmp_path / "dark.json").read_text())
    # a larger dark taken off both: every ratio moves away from 1, the line integrals (and their FBP) grow
    assert dark["operator"]["data_scale"] > 1.1 * report["operator"]["data_scale"]
    assert float(np.abs(line_integrals).max()) > 0


def test_photons_auto_reads_a_post_log_sinograms_count_off_its_noise(tmp_path, tiny_denoiser):
    """--photons auto (photons="auto"): the count read off the noise, then weighted least squares;
    refused for a simulation and for text that is neither."""
    op = ParallelBeamCT(48, angles=60)
    disc = torch.from_numpy((np.hypot(*np.mgrid[-24:24, -24:24]) < 16).astype(np.float64) * 0.8)[None, None]
    line_integrals = (0.1 * op.A(disc))[0, 0].numpy()
    rng = np.random.default_rng(8)
    y = -np.log(np.maximum(rng.poisson(5e3 * np.exp(-line_integrals)), 1) / 5e3)
    result = restore.reconstruct_ct(torch.from_numpy(y).float()[None], photons="auto", denoiser=str(tiny_denoiser),
                                    max_iter=2, progress=False)
    noise = result.report["noise"]
    assert noise["photons_source"] == "sinogram noise" and noise["photons"] == pytest.approx(5e3, rel=0.3)
    assert noise["weighting"] == "wls" and noise["source"] == "photon counts"
    assert any("read off the sinogram's noise" in note for note in result.notes)
    with pytest.raises(ValueError, match="a simulation draws counts"):
        restore.reconstruct_ct(disc[0].float(), simulate=True, photons="auto", progress=False)
    with pytest.raises(ValueError, match="or 'auto'"):
        restore.reconstruct_ct(torch.from_numpy(y).float()[None], photons="many", progress=False)
    np.save(tmp_path / "post_log.npy", y.astype(np.float32))
    r = run("ct", tmp_path / "post_log.npy", "--photons", "auto", "--denoiser", tiny_denoiser, "--max-iter", "2",
            "--quiet", "--report", tmp_path / "auto.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "auto.json").read_text())["noise"]["photons_source"] == "sinogram noise"
    assert_user_error(run("ct", "--photons", "auto"), "a simulation (--simulate, the demo) draws counts")
    assert_user_error(run("ct", tmp_path / "post_log.npy", "--photons", "lots"), "neither a number")


def test_photons_auto_doubts_gaussian_and_clipped_sinograms(tiny_denoiser):
    """Gaussian noise of one level (std 0.02 on line integrals up to 4) does not grow with the
    attenuation: a note doubts the count read; a sinogram clipped at 0 gets its own note."""
    op = ParallelBeamCT(48, angles=60)
    disc = torch.from_numpy((np.hypot(*np.mgrid[-24:24, -24:24]) < 18).astype(np.float64))[None, None]
    clean = op.A(disc)[0, 0].numpy()
    line_integrals = 4.0 * clean / clean.max()
    rng = np.random.default_rng(11)
    gaussian = line_integrals + 0.02 * rng.standard_normal(line_integrals.shape)
    common = dict(photons="auto", denoiser=str(tiny_denoiser), max_iter=1, progress=False)
    result = restore.reconstruct_ct(torch.from_numpy(gaussian).float()[None], **common)
    assert any("may not be photon counts'" in note for note in result.notes), result.notes
    counts = -np.log(np.maximum(rng.poisson(1e4 * np.exp(-line_integrals)), 1) / 1e4)
    result = restore.reconstruct_ct(torch.from_numpy(counts).float()[None], **common)
    assert not any("may not be photon counts'" in note for note in result.notes), result.notes
    result = restore.reconstruct_ct(torch.from_numpy(np.maximum(gaussian, 0)).float()[None], **common)
    assert any("sits at its minimum (clipped" in note for note in result.notes), result.notes

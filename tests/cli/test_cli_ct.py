"""``pnp-stable ct`` with a CT user's own sinograms (review of 2026-12-06): angles from a file,
360-degree scans, transposed data, counts, objects brighter than 1, earlier outputs in the folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_test_helpers import assert_user_error, run
from skimage import data, transform

from pnp_stable import restore
from pnp_stable.operators import ParallelBeamCT

SIZE = 32


@pytest.fixture(scope="module")
def phantom():
    return transform.resize(data.shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True).astype(np.float32)


def _record_skimage_conversions(monkeypatch) -> list:
    """The angles each ``sinogram_from_skimage`` call of the command is given (None: its default)."""
    from pnp_stable.operators import ct as ct_module

    seen = []
    original = ct_module.sinogram_from_skimage

    def recording(sinogram, angles_deg=None, *, detector):
        seen.append(None if angles_deg is None else list(angles_deg))
        return original(sinogram, angles_deg, detector=detector)

    monkeypatch.setattr(ct_module, "sinogram_from_skimage", recording)
    return seen


def _mean_error(path, phantom) -> float:
    return float(np.abs(np.load(path) - phantom).mean())


def sinogram(phantom, angles, scale=1.0, noise=0.0):
    op = ParallelBeamCT(SIZE, angles=angles)
    y = op.A(torch.from_numpy(phantom * scale)[None, None].double())[0, 0]
    if noise:
        y = y + noise * torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return y.float().numpy()


def test_angles_from_a_file_reconstruct_a_360_degree_scan_that_a_count_misreads(tmp_path, phantom):
    angles = np.arange(40) * 9.0  # 0, 9, ..., 351 degrees
    np.save(tmp_path / "s.npy", sinogram(phantom, list(angles), noise=0.05))
    (tmp_path / "a.txt").write_text(", ".join(f"{a:g}" for a in angles))
    common = ("ct", tmp_path / "s.npy", "--denoiser", "gray", "--max-iter", "30")
    given = run(*common, "--angles", tmp_path / "a.txt", "--out", tmp_path / "g.npy", "--report", tmp_path / "g.json")
    assert given.exit_code == 0 and "360-degree" not in given.output, given.output
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["operator"]["angles_deg"] == pytest.approx(list(angles))
    read_as_180 = run(*common, "--out", tmp_path / "u.npy", "--report", tmp_path / "u.json")
    assert "second half mirrors its first, as a 360-degree scan's does" in read_as_180.output
    assert json.loads((tmp_path / "u.json").read_text())["options"]["angles"] is None  # none given: its columns

    def error(name):
        return float(np.linalg.norm(np.load(tmp_path / name) - phantom) / np.linalg.norm(phantom))

    assert error("g.npy") < 0.5 * error("u.npy")
    np.save(tmp_path / "a.npy", angles[:5])
    assert_user_error(run(*common, "--angles", tmp_path / "a.npy"), "has 40 angles (columns")
    assert_user_error(run(*common, "--angles", "nofile.txt"), "neither a count of angles nor a file of them")


def test_an_object_brighter_than_1_is_not_clipped(phantom):
    # peaking at 1.8: its FBP's 99.9th percentile lay inside the band that kept the scale, and the
    # result was clipped at 1
    scale = 1.8 / float(phantom.max())
    y = torch.from_numpy(sinogram(phantom, 40, scale=scale, noise=0.02))
    r = restore.reconstruct_ct(y, denoiser="gray", max_iter=40, progress=False, device="cpu")
    assert float(r.image.max()) > 1.4
    truth = torch.from_numpy(phantom * scale)
    assert float((r.image[0] - truth).norm() / truth.norm()) < 0.2


def test_doubtful_sinograms_get_a_note_and_dense_views_do_not(tmp_path, phantom):
    dense = sinogram(phantom, 120, noise=0.02)  # more angles than detectors: a sinogram still
    np.save(tmp_path / "dense.npy", dense)
    common = ("--denoiser", "gray", "--max-iter", "2")
    r = run("ct", tmp_path / "dense.npy", *common, "--out", tmp_path / "d.npy")
    assert r.exit_code == 0 and "transpose" not in r.output and "counts" not in r.output, r.output
    counts = 1e4 * np.exp(-0.05 * sinogram(phantom, 40))  # intensities, not line integrals
    np.save(tmp_path / "counts.npy", counts.astype(np.float32))
    r = run("ct", tmp_path / "counts.npy", *common, "--out", tmp_path / "c.npy")
    assert "if it holds detector counts or intensities I, reconstruct line integrals -log(I / I0)" in r.output


def test_a_solver_state_is_not_read_as_an_image_and_a_plot_in_the_folder_is_skipped(tmp_path, phantom, tiny_denoiser):
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(2):
        np.save(folder / f"s{i}.npy", sinogram(phantom, 12, noise=0.05 * (i + 1)))
    common = ("ct", folder, "--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet")
    assert_user_error(run(*common, "--checkpoint", folder / "state.npy"), "a solver state is no image")
    r = run(*common, "--plot", folder / "plot.png", "--checkpoint", tmp_path / "st.state")
    assert r.exit_code == 0 and (folder / "plot_s0.png").is_file(), r.output
    r = run(*common)  # the plots in the folder are no sinograms
    assert r.exit_code == 0 and "plot_s0" not in r.output, r.output
    (tmp_path / "st_s0.state").rename(tmp_path / "zip.npy")  # a zip archive under a .npy name
    assert_user_error(run("ct", tmp_path / "zip.npy", "--denoiser", tiny_denoiser), "zip.npy is a zip archive")


def test_from_skimage_shifts_each_column_by_the_angles_given(tmp_path, phantom, tiny_denoiser, monkeypatch):
    from skimage.transform import radon

    angles = np.arange(40) * 9.0
    np.save(tmp_path / "s.npy", radon(phantom.astype(np.float64), theta=angles, circle=False).astype(np.float32))
    np.save(tmp_path / "a.npy", angles)
    seen = _record_skimage_conversions(monkeypatch)
    r = run("ct", tmp_path / "s.npy", "--from-skimage", "--angles", tmp_path / "a.npy", "--denoiser", tiny_denoiser,
            "--max-iter", "1", "--out", tmp_path / "o.npy", "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert seen == [list(angles)]
    assert json.loads((tmp_path / "r.json").read_text())["options"]["angles"] == str(tmp_path / "a.npy")


def test_an_angles_file_in_the_folder_is_no_sinogram_and_a_count_is_reported_as_a_number(tmp_path, phantom,
                                                                                          tiny_denoiser):
    folder = tmp_path / "scans"
    folder.mkdir()
    angles = list(np.arange(12) * 15.0)
    np.save(folder / "s0.npy", sinogram(phantom, angles, noise=0.05))
    np.save(folder / "angles.npy", np.array(angles))
    r = run("ct", folder, "--angles", folder / "angles.npy", "--denoiser", tiny_denoiser, "--max-iter", "1")
    assert r.exit_code == 0 and "angles.npy is an input of the others (--angles)" in r.output, r.output
    assert (folder / "s0_reconstructed.npy").is_file() and not (folder / "angles_reconstructed.npy").exists()
    np.save(tmp_path / "one.npy", sinogram(phantom, 12, noise=0.05))
    r = run("ct", tmp_path / "one.npy", "--angles", "12", "--denoiser", tiny_denoiser, "--max-iter", "1",
            "--out", tmp_path / "o.npy", "--report", tmp_path / "r.json")
    assert r.exit_code == 0 and json.loads((tmp_path / "r.json").read_text())["options"]["angles"] == 12


def test_a_rotationally_symmetric_object_is_not_taken_for_a_360_degree_scan(tmp_path, tiny_denoiser):
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    disc = (np.hypot(yy, xx) < 12).astype(np.float32) * 0.8
    np.save(tmp_path / "disc.npy", sinogram(disc, 40, noise=0.02))
    r = run("ct", tmp_path / "disc.npy", "--denoiser", tiny_denoiser, "--max-iter", "1", "--out", tmp_path / "o.npy")
    assert r.exit_code == 0 and "360-degree" not in r.output, r.output


def test_a_circle_sinogram_from_skimage_is_reconstructed_with_the_circle_detector(tmp_path, tiny_denoiser):
    """skimage.transform.radon's default, circle=True, has n detectors for an n x n image: read as
    the full detector of a smaller image, it gets a note; with --detector circle it is the right
    size, with nothing outside the inscribed disc."""
    import warnings

    from skimage.transform import radon

    size = 64
    truth = transform.resize(data.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    def circle_radon(image):  # skimage warns of an image not 0 outside its own disc: moot here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return radon(image, theta=np.arange(30) * 6.0).astype(np.float32)

    np.save(tmp_path / "s.npy", circle_radon(truth))
    common = ("ct", tmp_path / "s.npy", "--from-skimage", "--denoiser", tiny_denoiser, "--max-iter", "2")
    misread = run(*common, "--out", tmp_path / "m.npy")
    assert misread.exit_code == 0 and "needs --detector circle" in misread.output, misread.output
    assert np.load(tmp_path / "m.npy").shape == (45, 45)  # ceil(sqrt(2) 45) = 64
    r = run(*common, "--detector", "circle", "--out", tmp_path / "c.npy", "--report", tmp_path / "r.json")
    assert r.exit_code == 0 and "--detector" not in r.output, r.output
    image = np.load(tmp_path / "c.npy")
    assert image.shape == (size, size)
    outside = ParallelBeamCT(size, angles=30, detector="circle").object_support()[0, 0].numpy() == 0
    assert outside.any() and (image[outside] == 0).all() and image[~outside].max() > 0
    assert json.loads((tmp_path / "r.json").read_text())["operator"]["detector"] == "circle"
    assert_user_error(run(*common, "--size", "64"), "pass --detector circle")
    # no image has 48 full detectors: the size cannot be inferred, and the message names the other detector
    np.save(tmp_path / "s48.npy", circle_radon(truth[8:56, 8:56]))
    assert_user_error(run("ct", tmp_path / "s48.npy", "--denoiser", tiny_denoiser), "--detector circle")


def test_sinograms_of_the_right_geometry_get_no_shadow_note(phantom):
    """The note reads mass where the image casts no shadow; noise alone, at any level, a constant
    offset (a detector's dark current), and a full sinogram read as a circle one (whose disc's
    shadow is every bin) give none."""
    for noise in (0.0, 0.05, 0.5):
        y = torch.from_numpy(sinogram(phantom, 24, noise=noise))[None, None]
        assert restore._outside_shadow_doubt(y, ParallelBeamCT(SIZE, angles=24)) == []
        assert restore._outside_shadow_doubt(y + 0.05 * float(y.max()), ParallelBeamCT(SIZE, angles=24)) == []
    wide = ParallelBeamCT(SIZE, angles=24)
    y = wide.A(torch.from_numpy(phantom)[None, None])
    assert restore._outside_shadow_doubt(y, ParallelBeamCT(y.shape[-2], angles=24, detector="circle")) == []


def test_a_circle_simulation_notes_a_phantom_that_reaches_outside_the_disc(tiny_denoiser):
    square = torch.full((1, 24, 24), 0.5)
    result = restore.reconstruct_ct(square, simulate=True, angles=12, detector="circle", denoiser=str(tiny_denoiser),
                                    max_iter=1, progress=False)
    assert any("not 0 outside the inscribed disc" in note for note in result.notes), result.notes
    assert result.report["operator"]["detector"] == "circle"
    with pytest.raises(ValueError, match="detector must be 'full' or 'circle'"):
        restore.reconstruct_ct(square, simulate=True, detector="disc", denoiser=str(tiny_denoiser), progress=False)


def test_an_rgb_denoiser_is_refused_by_name_before_any_work(tmp_path, phantom):
    """CT reconstructs a gray image: a colour model (e.g. the shipped ``color``) is refused with a
    message naming the channels, not with the colour wrapper's tensor-shape complaint."""
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    model = build_denoiser(DenoiserConfig(channels=3, width=4, hidden=6, blocks=1, embedding_dim=8)).eval()
    save_denoiser(model, tmp_path / "rgb.pt", {"channels": 3})
    np.save(tmp_path / "s.npy", sinogram(phantom, 20))
    assert_user_error(run("ct", tmp_path / "s.npy", "--denoiser", tmp_path / "rgb.pt"),
                      "the denoiser takes 3-channel images; a CT reconstruction is gray")


def test_a_sinogram_is_read_along_its_detectors_floored_at_half_the_2d_reading(phantom, tiny_denoiser):
    """Sparse views at low noise: the 2-D reading takes the views' differences for noise (7.6x the
    level here), the detector-axis one does not; the reconstruction is given the larger of the
    latter and half the former, by ``reconstruct_ct`` and by ``solve`` with a CT operator. A
    noise-free sinogram of another model (skimage's radon, converted) reads ~0 along the detectors:
    the floor is what it gets. A NaN reading stays NaN (``max`` would drop it when second)."""
    from skimage.transform import radon

    from pnp_stable.operators.ct import sinogram_from_skimage
    from pnp_stable.solvers import (estimate_noise_level, estimate_noise_level_for_parameters,
                                    estimate_sinogram_noise_level, solve)

    image = transform.resize(data.shepp_logan_phantom(), (64, 64), anti_aliasing=True)  # 32: too few flat bins
    clean = ParallelBeamCT(64, angles=30).A(torch.from_numpy(image)[None, None])[0, 0].numpy()
    sigma = 0.001 * float(np.abs(clean).max())
    y = torch.from_numpy((clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)).astype(np.float32))
    batch = y[None, None]
    two_d, along = estimate_noise_level(batch)[0], estimate_sinogram_noise_level(batch)[0]
    assert two_d > 4 * sigma and along == pytest.approx(sigma, rel=0.25)  # the premise (7.6x and 0.88x)
    report = restore.reconstruct_ct(y, denoiser=tiny_denoiser, max_iter=1, progress=False, device="cpu").report
    assert report["noise"]["sigma"] == pytest.approx(max(along, 0.5 * two_d), rel=1e-5)
    assert any(f"(0.5 x the 2-D reading {two_d:.4g}, above the reading along the detectors, {along:.4g}"
               in note for note in report["notes"]), report["notes"]
    from pnp_stable.denoisers import load

    solved = solve(batch, ParallelBeamCT(64, angles=30), load(tiny_denoiser), max_iter=1, progress=False)
    assert solved.parameters["automatic"]["noise_level"] == pytest.approx(max(along, 0.5 * two_d), rel=1e-5)
    from pnp_stable.solvers import select_strength

    sure = select_strength(batch, ParallelBeamCT(64, angles=30), load(tiny_denoiser), "admm", max_iter=1,
                           factors=(2.0,), progress=False)
    assert sure.parameters["automatic"]["noise_level"] == pytest.approx(max(along, 0.5 * two_d), rel=1e-5)
    # dense views at 1 %: the 2-D reading is right, its half is the floor, and the detector reading wins
    dense = ParallelBeamCT(64, angles=180).A(torch.from_numpy(image)[None, None])
    dense = dense + 0.01 * float(dense.abs().max()) * torch.randn(dense.shape, generator=torch.Generator().manual_seed(1))
    dense = dense.float()
    along_dense, two_d_dense = estimate_sinogram_noise_level(dense)[0], estimate_noise_level(dense)[0]
    assert along_dense > 0.6 * two_d_dense  # the premise: no floor here
    dense_report = restore.reconstruct_ct(dense[0, 0], denoiser=tiny_denoiser, max_iter=1, progress=False,
                                          device="cpu").report
    assert dense_report["noise"]["sigma"] == pytest.approx(along_dense, rel=1e-5)
    assert any(f"(read along the detectors; the 2-D reading is {two_d_dense:.4g})" in note
               for note in dense_report["notes"]), dense_report["notes"]
    larger = transform.resize(data.shepp_logan_phantom(), (96, 96), anti_aliasing=True)  # flat bins again
    theirs = torch.from_numpy(sinogram_from_skimage(radon(larger, theta=np.linspace(0, 180, 40, endpoint=False),
                                                          circle=False), detector="full").astype(np.float32))[None, None]
    floor = 0.5 * estimate_noise_level(theirs)[0]
    assert estimate_sinogram_noise_level(theirs)[0] < floor
    assert estimate_noise_level_for_parameters(theirs, "ct") == [pytest.approx(floor)]
    assert estimate_noise_level_for_parameters(theirs) == [pytest.approx(2 * floor)]  # another family: 2-D
    assert math.isnan(estimate_noise_level_for_parameters(torch.full((1, 1, 30, 12), math.nan), "ct")[0])


def test_a_resume_keeps_the_checkpoints_estimated_noise_level_when_the_estimate_changed(tmp_path, phantom,
                                                                                       tiny_denoiser, monkeypatch):
    """A checkpoint saved by a version that read the sinogram's noise otherwise resumes at the
    checkpoint's level (its parameters came from it), with a note; a *given* level that differs
    is refused, naming the checkpoint's."""
    import pnp_stable.solvers as solvers

    y = torch.from_numpy(sinogram(phantom, 30, noise=0.02))
    state = tmp_path / "state.pt"
    original = solvers.estimate_noise_level_for_parameters  # what reconstruct_ct reads
    monkeypatch.setattr(solvers, "estimate_noise_level_for_parameters",
                        lambda y, family=None, observed=None: [2 * v for v in original(y, family, observed)])
    first = restore.reconstruct_ct(y, denoiser=tiny_denoiser, max_iter=2, progress=False, device="cpu",
                                   checkpoint=state)
    monkeypatch.setattr(solvers, "estimate_noise_level_for_parameters", original)
    resumed = restore.reconstruct_ct(y, denoiser=tiny_denoiser, max_iter=4, progress=False, device="cpu",
                                     checkpoint=state, resume=True)
    assert resumed.report["noise"]["sigma"] == pytest.approx(first.report["noise"]["sigma"])
    assert any("kept from the checkpoint" in note for note in resumed.report["notes"])
    assert not any("kept from the checkpoint" in note for note in first.report["notes"])
    assert resumed.result.iterations == 4
    with pytest.raises(ValueError, match="it was solved at noise level .*: pass that level to resume"):
        restore.reconstruct_ct(y, denoiser=tiny_denoiser, max_iter=6, progress=False, device="cpu",
                               checkpoint=state, resume=True, noise_level=0.5)


def test_a_fan_beam_sinogram_is_reconstructed_in_its_own_geometry(tmp_path, phantom):
    """``--geometry fan`` with the scanner's distances: a sinogram of that fan is reconstructed well,
    and better than when read with the default distances (another fan); the report names the geometry."""
    from pnp_stable.operators import FanBeamCT

    op = FanBeamCT(SIZE, angles=60, source_distance=40.0, detector_distance=30.0)
    clean = torch.from_numpy(phantom)[None, None]
    np.save(tmp_path / "fan.npy", op.simulate(clean, 0.02, seed=0)[0, 0].numpy())
    common = ("ct", tmp_path / "fan.npy", "--geometry", "fan", "--size", str(SIZE), "--denoiser", "gray",
              "--max-iter", "40", "--quiet")
    own = run(*common, "--source-distance", "40", "--detector-distance", "30", "--out", tmp_path / "own.npy",
              "--report", tmp_path / "own.json")
    assert own.exit_code == 0, own.output
    report = json.loads((tmp_path / "own.json").read_text())
    assert report["operator"]["type"] == "FanBeamCT" and report["operator"]["source_distance"] == 40.0
    assert report["operator"]["n_detectors"] == op.n_detectors
    other = run(*common, "--out", tmp_path / "other.npy")
    assert other.exit_code == 0, other.output

    errors = [_mean_error(tmp_path / name, phantom) for name in ("own.npy", "other.npy")]
    assert errors[0] < 0.03 < errors[1], errors


def test_a_curved_detector_sinogram_is_read_on_its_arc(tmp_path, phantom):
    """``--detector-shape curved``: a sinogram of a curved (equiangular) detector is reconstructed
    well in its geometry and worse when its cells are read as a flat detector's; the report names
    the shape."""
    from pnp_stable.operators import FanBeamCT

    op = FanBeamCT(SIZE, angles=60, source_distance=40.0, detector_distance=30.0, detector_shape="curved")
    clean = torch.from_numpy(phantom)[None, None]
    np.save(tmp_path / "arc.npy", op.simulate(clean, 0.02, seed=0)[0, 0].numpy())
    common = ("ct", tmp_path / "arc.npy", "--geometry", "fan", "--size", str(SIZE), "--denoiser", "gray",
              "--source-distance", "40", "--detector-distance", "30", "--max-iter", "40", "--quiet")
    own = run(*common, "--detector-shape", "curved", "--out", tmp_path / "own.npy", "--report", tmp_path / "own.json")
    assert own.exit_code == 0, own.output
    report = json.loads((tmp_path / "own.json").read_text())
    assert report["operator"]["detector_shape"] == "curved"
    flat = run(*common, "--out", tmp_path / "flat.npy", "--report", tmp_path / "flat.json")
    assert flat.exit_code == 0, flat.output
    assert "detector_shape" not in json.loads((tmp_path / "flat.json").read_text())["operator"]

    errors = [_mean_error(tmp_path / name, phantom) for name in ("own.npy", "flat.npy")]
    assert errors[0] < 0.03 and errors[1] > 3 * errors[0], errors  # measured 0.0048 and 0.031


def test_a_misaligned_rotation_axis_is_read_off_the_sinogram(tmp_path, phantom):
    """``--detector-offset auto``: a parallel-beam sinogram whose axis projects 2.3 bins off the
    detector's centre is reconstructed as well as with the offset given, and far better than read
    centred; the note and the report give the estimate."""
    from pnp_stable.operators import ParallelBeamCT

    op = ParallelBeamCT(SIZE, angles=60, detector_offset=2.3)
    clean = torch.from_numpy(phantom)[None, None]
    np.save(tmp_path / "tilted.npy", op.simulate(clean, 0.01 * float(op.A(clean).max()), seed=0)[0, 0].numpy())
    common = ("ct", tmp_path / "tilted.npy", "--denoiser", "gray", "--max-iter", "40", "--quiet")
    auto = run(*common, "--detector-offset", "auto", "--out", tmp_path / "auto.npy", "--report", tmp_path / "auto.json")
    assert auto.exit_code == 0, auto.output
    report = json.loads((tmp_path / "auto.json").read_text())
    estimate = report["operator"]["detector_offset_estimate"]
    assert estimate["offset"] == pytest.approx(2.3, abs=0.15)
    assert report["operator"]["detector_offset"] == round(estimate["offset"], 3)  # shared norms across slices
    assert any(note.startswith("rotation axis read off the sinogram") for note in report["notes"])
    for name, extra in (("given.npy", ("--detector-offset", "2.3")), ("centred.npy", ())):
        result = run(*common, *extra, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    errors = [_mean_error(tmp_path / name, phantom) for name in ("auto.npy", "given.npy", "centred.npy")]
    assert errors[0] < 1.1 * errors[1] and errors[2] > 2 * errors[0], errors


def test_the_axis_estimate_notes_an_air_level_and_doubts_only_inconsistent_data(phantom, tiny_denoiser):
    """``detector_offset="auto"`` (any case): a sinogram whose air lies above zero gets its offset all
    the same and a note on the air level; noisy but consistent data raise no doubt, an object that
    moved during the scan does."""
    from pnp_stable.operators import ParallelBeamCT

    clean = torch.from_numpy(phantom)[None, None]
    op = ParallelBeamCT(SIZE, angles=60, detector_offset=-1.6)
    y = op.A(clean)
    common = dict(denoiser=str(tiny_denoiser), max_iter=1, progress=False, noise_level=0.05)
    lifted = restore.reconstruct_ct((y + 0.02 * float(y.max()))[0], detector_offset="AUTO", **common)
    assert lifted.report["operator"]["detector_offset"] == pytest.approx(-1.6, abs=0.05)
    assert any("air lies at" in note for note in lifted.notes)
    noisy = y + 0.05 * float(y.max()) * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    consistent = restore.reconstruct_ct(noisy[0], detector_offset="auto", **common)
    assert not any("stray" in note for note in consistent.notes), consistent.notes
    moved = y.clone()
    moved[..., 30:] = torch.roll(y[..., 30:], 4, dims=-2)  # the object moved 4 bins halfway through the scan
    other = restore.reconstruct_ct(moved[0], detector_offset="auto", **common)
    assert any("stray" in note for note in other.notes), other.notes


def test_a_360_degree_scan_read_as_180_is_noted_about_an_offset_axis(phantom):
    """Review 2026-12-06: the halves of a 360-degree scan mirror about the rotation axis, which an
    offset moves off the detector's centre: the note compared them about the centre and missed it."""
    from pnp_stable.operators import ParallelBeamCT

    clean = torch.from_numpy(phantom)[None, None].double()
    for offset in (0.0, 2.3):
        full_turn = ParallelBeamCT(SIZE, angles=np.arange(40) * 9.0, detector_offset=offset).A(clean)[0, 0]
        notes = restore._sinogram_doubts(full_turn, uniform_angles=True, axis_offset=offset)
        assert any("second half mirrors its first" in note for note in notes), (offset, notes)
    half_turn = ParallelBeamCT(SIZE, angles=40, detector_offset=2.3).A(clean)[0, 0]
    assert not any("mirrors" in note for note in restore._sinogram_doubts(half_turn, True, axis_offset=2.3))


def test_fan_beam_options_are_checked_before_any_work(tmp_path, phantom):
    np.save(tmp_path / "s.npy", sinogram(phantom, 20))
    assert_user_error(run("ct", tmp_path / "s.npy", "--geometry", "fan"),
                      "a fan-beam sinogram needs the image size: pass --size N")
    assert_user_error(run("ct", tmp_path / "s.npy", "--source-distance", "90"),
                      "--source-distance describes a fan beam: add --geometry fan")
    assert_user_error(run("ct", "--geometry", "fan", "--detector", "circle"), "--detector is the parallel beam's")
    assert_user_error(run("ct", tmp_path / "s.npy", "--geometry", "fan", "--size", "32", "--from-skimage"),
                      "--from-skimage converts a parallel-beam sinogram")
    assert_user_error(run("ct", "--geometry", "fan", "--detector-spacing", "-1"),
                      "--detector-spacing must be a positive number of pixels")
    assert_user_error(run("ct", "--detector-shape", "curved"),
                      "--detector-shape describes a fan beam's detector: add --geometry fan")
    assert_user_error(run("ct", "--geometry", "fan", "--detector-offset", "nan"),
                      "--detector-offset must be a finite number of cells, got nan")
    assert_user_error(run("ct", "--detector-offset", "one"), "--detector-offset 'one' is not a number of cells or 'auto'")
    assert_user_error(run("ct", "--detector-offset", "auto"),
                      "--detector-offset auto reads a measured sinogram's rotation axis; a simulation sets it")
    assert_user_error(run("ct", tmp_path / "s.npy", "--geometry", "fan", "--size", "32", "--detector-offset", "auto"),
                      "--detector-offset auto locates a parallel beam's rotation axis")
    assert_user_error(run("ct", tmp_path / "s.npy", "--detector", "circle", "--detector-offset", "1"),
                      "--detector-offset shifts the full detector's bins; not with --detector circle")
    assert_user_error(run("ct", tmp_path / "s.npy", "--geometry", "fan", "--size", "32", "--source-distance", "5"),
                      "source_distance 5 lies inside the image's reach")


def test_the_api_simulates_a_fan_beam_with_120_views_by_default(tiny_denoiser):
    square = torch.from_numpy(np.pad(np.ones((12, 12), np.float32) * 0.6, 6))[None]
    result = restore.reconstruct_ct(square, simulate=True, geometry="fan", denoiser=str(tiny_denoiser), max_iter=2,
                                    progress=False)
    assert result.report["operator"]["type"] == "FanBeamCT" and result.report["operator"]["angles"] == 120
    assert result.guarantee.holds
    with pytest.raises(ValueError, match="geometry must be 'parallel' or 'fan'"):
        restore.reconstruct_ct(square, simulate=True, geometry="cone", progress=False)
    with pytest.raises(ValueError, match="detector_spacing describes a fan beam"):
        restore.reconstruct_ct(square, simulate=True, detector_spacing=1.0, progress=False)
    with pytest.raises(ValueError, match="detector_shape describes a fan beam"):
        restore.reconstruct_ct(square, simulate=True, detector_shape="flat", progress=False)
    with pytest.raises(ValueError, match="detector_offset='auto' reads a measured sinogram's rotation axis"):
        restore.reconstruct_ct(square, simulate=True, detector_offset="auto", progress=False)
    with pytest.raises(ValueError, match="detector_offset='auto' locates a parallel beam's rotation axis"):
        restore.reconstruct_ct(square, simulate=True, geometry="fan", detector_offset="auto", progress=False)
    with pytest.raises(ValueError, match="detector_offset must be a number of cells or 'auto', got 'centre'"):
        restore.reconstruct_ct(square, simulate=True, detector_offset="centre", progress=False)
    with pytest.raises(ValueError, match="detector_shape must be one of"):
        restore.reconstruct_ct(square, simulate=True, geometry="fan", detector_shape="arc", progress=False)


def test_a_checkpoint_of_one_fan_geometry_does_not_resume_another(tmp_path, tiny_denoiser):
    square = torch.from_numpy(np.pad(np.ones((12, 12), np.float32) * 0.6, 6))[None]
    y = restore.reconstruct_ct(square, simulate=True, geometry="fan", angles=30, denoiser=str(tiny_denoiser),
                               max_iter=1, progress=False).observation
    state = tmp_path / "fan.state"
    common = dict(geometry="fan", image_size=24, denoiser=str(tiny_denoiser), noise_level=0.1, progress=False,
                  checkpoint=state)
    restore.reconstruct_ct(y, max_iter=2, **common)
    assert restore.reconstruct_ct(y, max_iter=3, resume=True, **common).result.iterations == 3
    with pytest.raises(ValueError, match="checkpoint"):
        restore.reconstruct_ct(y, max_iter=3, resume=True, source_distance=60.0, **common)
    with pytest.raises(ValueError, match="checkpoint"):
        restore.reconstruct_ct(y, max_iter=3, resume=True, detector_shape="curved", **common)
    with pytest.raises(ValueError, match="checkpoint"):
        restore.reconstruct_ct(y, max_iter=3, resume=True, detector_offset=0.25, **common)


def test_angle_range_spreads_a_count_over_a_limited_or_short_scan(tmp_path, phantom, tiny_denoiser):
    """``angle_range`` (``--angle-range``): a count of views uniform over [0, R), for a simulation and
    for a sinogram's columns; ``"short"`` spans a fan beam's short scan (180 degrees plus its fan angle,
    for the sinogram's own cells). A short-scan sinogram read over the full turn reconstructs worse."""
    from pnp_stable.operators import FanBeamCT

    square = torch.from_numpy(np.pad(np.ones((12, 12), np.float32) * 0.6, 6))[None]
    common = dict(simulate=True, denoiser=str(tiny_denoiser), max_iter=1, progress=False)
    limited = restore.reconstruct_ct(square, angles=30, angle_range=90, **common)
    assert limited.report["operator"]["angles_deg"] == pytest.approx(np.arange(30) * 3.0)
    fan = restore.reconstruct_ct(square, geometry="fan", angles=40, angle_range="short", **common)
    span = FanBeamCT(24, angles=1).short_scan_range
    assert 180 < span < 260
    assert fan.report["operator"]["angles_deg"] == pytest.approx(np.arange(40) * span / 40)
    assert restore.reconstruct_ct(square, geometry="fan", angle_range=200.0, **common) \
        .report["operator"]["angles_deg"] == pytest.approx(np.arange(120) * 200 / 120)

    # a sinogram: its columns spread over the range; "short" follows its cells and the distances
    op = FanBeamCT(SIZE, angles=1, source_distance=40.0, detector_distance=30.0)
    short = FanBeamCT(SIZE, angles=np.arange(50) * op.short_scan_range / 50, source_distance=40.0,
                      detector_distance=30.0)
    clean = torch.from_numpy(phantom)[None, None]
    np.save(tmp_path / "short.npy", short.simulate(clean, 0.01, seed=0)[0, 0].numpy())
    args = ("ct", tmp_path / "short.npy", "--geometry", "fan", "--size", str(SIZE), "--denoiser", "gray",
            "--source-distance", "40", "--detector-distance", "30", "--max-iter", "40", "--quiet")
    own = run(*args, "--angle-range", "short", "--out", tmp_path / "own.npy", "--report", tmp_path / "own.json")
    assert own.exit_code == 0, own.output
    report = json.loads((tmp_path / "own.json").read_text())
    assert report["operator"]["angles_deg"] == pytest.approx(short.angles_deg)
    full = run(*args, "--out", tmp_path / "full.npy")
    assert full.exit_code == 0, full.output

    errors = [_mean_error(tmp_path / name, phantom) for name in ("own.npy", "full.npy")]
    assert errors[0] < 0.03 < errors[1], errors


def test_angle_range_errors(tmp_path, phantom):
    np.savetxt(tmp_path / "angles.txt", np.arange(20) * 3.0)
    assert_user_error(run("ct", "--angle-range", "short"), "--angle-range short is a fan beam's short scan")
    assert_user_error(run("ct", "--angle-range", "0"), "--angle-range 0: must lie in (0, 360] degrees")
    assert_user_error(run("ct", "--angle-range", "nan"), "must lie in (0, 360] degrees")
    assert_user_error(run("ct", "--angle-range", "wide"), "neither a number of degrees nor 'short'")
    assert_user_error(run("ct", "--angles", tmp_path / "angles.txt", "--angle-range", "90"),
                      "--angle-range spreads a count of angles")
    square = torch.ones(1, 16, 16)
    for kwargs, message in ((dict(angle_range="short"), "angle_range='short' is a fan beam's short scan"),
                            (dict(angle_range=400), r"angle_range must lie in \(0, 360\]"),
                            (dict(angle_range=True), r"angle_range must lie in \(0, 360\]"),
                            (dict(angle_range="full"), "a number of degrees or 'short'"),
                            (dict(angles=[0.0, 10.0], angle_range=90), "angle_range spreads a count of angles")):
        with pytest.raises(ValueError, match=message):
            restore.reconstruct_ct(square, simulate=True, progress=False, **kwargs)


def test_reconstruct_ct_with_photons(tiny_denoiser):
    square = torch.from_numpy(np.pad(np.ones((12, 12), np.float32) * 0.6, 6))[None]
    common = dict(simulate=True, angles=30, photons=5e3, denoiser=str(tiny_denoiser), max_iter=2, progress=False)
    wls = restore.reconstruct_ct(square, **common)
    noise = wls.report["noise"]
    assert noise["model"] == "poisson" and noise["weighting"] == "wls" and noise["source"] == "photon counts"
    assert wls.report["operator"]["statistical_weights"] == "photon counts" and wls.guarantee.holds
    assert wls.psnr is not None and math.isfinite(wls.psnr)
    plain = restore.reconstruct_ct(square, weighting="none", **common)
    assert plain.report["noise"]["weighting"] == "none" and plain.report["operator"]["statistical_weights"] is None
    mu = noise["attenuation"]
    _, counts, _ = restore._photon_count_simulation(ParallelBeamCT(24, angles=30), square[None].double(), 5e3, None,
                                                    0, [])
    assert noise["sigma"] == pytest.approx(1 / (mu * math.sqrt(float(counts.mean()))), rel=1e-6)
    assert plain.report["noise"]["sigma"] == pytest.approx(math.sqrt(float((1 / counts).mean())) / mu, rel=1e-6)
    fixed = restore.reconstruct_ct(square, attenuation=0.01, **common)
    assert fixed.report["noise"]["attenuation"] == 0.01
    # a measured post-log sinogram with its I0: counts I0 e^-y, the level in the sinogram's units
    op = ParallelBeamCT(24, angles=30)
    line_integrals = 0.02 * op.A(square[None].double())[0, 0]
    measured = restore.reconstruct_ct(line_integrals.float(), photons=1e4, denoiser=str(tiny_denoiser), max_iter=2,
                                      progress=False)
    counts = 1e4 * torch.exp(-line_integrals)
    assert measured.report["noise"]["sigma"] == pytest.approx(1 / math.sqrt(float(counts.mean())), rel=1e-4)
    for kwargs, message in ((dict(photons=0), "photons must be a positive number"),
                            (dict(photons=1e4, noise_level=0.1), "give photons .* or a noise level"),
                            (dict(weighting="wls"), "weighting applies to photon-count data"),
                            (dict(photons=1e4, weighting="heavy"), "weighting must be 'auto', 'gls', 'wls' or 'none'"),
                            (dict(attenuation=0.1), "attenuation scales a phantom")):
        with pytest.raises(ValueError, match=message):
            restore.reconstruct_ct(square, simulate=True, progress=False, **kwargs)


def test_the_command_reads_photon_counts(tmp_path, tiny_denoiser):
    """``--photons`` simulates Poisson counts (weighted least squares by default, ``--weighting none``
    plain) and reads a sinogram as post-log line integrals of that many photons; the report says so."""
    common = ("--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet")
    square = np.pad(np.ones((12, 12)) * 0.6, 6)
    from PIL import Image

    Image.fromarray((square * 255).astype(np.uint8)).save(tmp_path / "phantom.png")
    r = run("ct", tmp_path / "phantom.png", "--simulate", "--photons", "2e3", "--angles", "20", *common,
            "--out", tmp_path / "a.png", "--report", tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["noise"]["model"] == "poisson" and report["noise"]["weighting"] == "wls"
    assert report["options"]["photons"] == 2000.0
    r = run("ct", tmp_path / "phantom.png", "--simulate", "--photons", "2e3", "--angles", "20", "--weighting", "none",
            "--attenuation", "0.05", *common, "--out", tmp_path / "b.png", "--report", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["noise"]["weighting"] == "none" and report["noise"]["attenuation"] == 0.05
    op = ParallelBeamCT(24, angles=20)
    np.save(tmp_path / "s.npy", (0.02 * op.A(torch.from_numpy(square)[None, None])[0, 0]).numpy().astype(np.float32))
    r = run("ct", tmp_path / "s.npy", "--photons", "1e4", *common, "--out", tmp_path / "s_out.npy",
            "--report", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["noise"]["source"] == "photon counts"
    assert_user_error(run("ct", "--photons", "1e4", "--noise", "1%"), "--photons draws Poisson counts")
    assert_user_error(run("ct", "--weighting", "wls"), "--weighting applies to photon-count data")
    assert_user_error(run("ct", tmp_path / "s.npy", "--photons", "1e4", "--attenuation", "0.1"),
                      "--attenuation scales a phantom for a photon-count simulation")
    assert_user_error(run("ct", "--photons", "0"), "--photons must be a positive number")


def test_review_fixes_of_the_rotation_axis_session(tmp_path, phantom, tiny_denoiser, monkeypatch):
    """Review 2026-12-06 (seventeenth session): --from-skimage with --angle-range converted the
    columns for [0, 180); sinogram_from_skimage guessed the detector from the bin count (a
    circle=True sinogram of 64 bins was read as a full detector's of a 45 x 45 image); a checkpoint
    of a size whose rotation axis moved resumed in the new geometry."""
    from skimage.transform import radon

    from pnp_stable.operators.ct import sinogram_from_skimage

    with pytest.raises(TypeError):
        sinogram_from_skimage(np.zeros((64, 10)))  # the detector must be named
    angles = np.arange(30) * 3.0  # 30 views over [0, 90)
    np.save(tmp_path / "sk.npy", radon(phantom.astype(np.float64), theta=angles, circle=False).astype(np.float32))
    seen = _record_skimage_conversions(monkeypatch)
    r = run("ct", tmp_path / "sk.npy", "--from-skimage", "--angle-range", "90", "--denoiser", tiny_denoiser,
            "--max-iter", "1", "--quiet", "--out", tmp_path / "o.npy")
    assert r.exit_code == 0, r.output
    assert seen == [pytest.approx(list(angles))]
    info = restore._ct_operator_info
    assert info(ParallelBeamCT(64, angles=4))["rotation_axis"] == "image centre"  # G = 91: the axis moved
    assert "rotation_axis" not in info(ParallelBeamCT(128, angles=4))  # G = 182: it did not
    assert "rotation_axis" not in info(ParallelBeamCT(64, angles=4, detector="circle"))


def test_two_fan_views_weigh_their_own_step():
    """Review: the typical step of a scan of two views took the opening into its median (180 degrees
    for views 10 apart): each view weighed as if it stood for 95 degrees."""
    from pnp_stable.operators.fan_beam import redundancy_weights

    weights = redundancy_weights(np.array([0.0, 10.0]), np.deg2rad(np.array([-5.0, 0.0, 5.0])))
    assert weights.min() > 0 and weights.max() <= math.radians(10.0) + 1e-12
    # each view stands for its own 10-degree step: a line seen once weighs one
    assert weights == pytest.approx(np.full((3, 2), math.radians(10.0)))


def test_photon_count_review_fixes(tmp_path, tiny_denoiser):
    """Review 2026-12-06 of --photons: an integer sinogram file (read scaled to [0, 1]) was taken for
    line integrals; the observation of a WLS reconstruction was the weighted data; values above
    log(I0) were clamped without a word and values far below 0 gave a message about weights; I0 past
    int64 sampled nonsense; a tiny attenuation failed with a message about the noise level; a resume
    with other photon counts was told to pass a noise level, which --photons refuses."""
    from PIL import Image

    op = ParallelBeamCT(24, angles=20)
    square = np.pad(np.ones((12, 12)) * 0.6, 6)
    line_integrals = 0.05 * op.A(torch.from_numpy(square)[None, None])[0, 0].numpy()
    Image.fromarray((line_integrals * 10000).astype(np.uint16)).save(tmp_path / "s16.png")
    assert_user_error(run("ct", tmp_path / "s16.png", "--photons", "1e4"), "holds integer samples")
    np.save(tmp_path / "int.npy", (line_integrals * 1000).astype(np.int16))
    assert_user_error(run("ct", tmp_path / "int.npy", "--photons", "1e4"), "holds integer samples")
    assert_user_error(run("ct", "--photons", "1e20"), "at most 1e+15")
    Image.fromarray((square * 255).astype(np.uint8)).save(tmp_path / "phantom.png")
    assert_user_error(run("ct", tmp_path / "phantom.png", "--simulate", "--photons", "1e4", "--attenuation", "1e-9",
                          "--denoiser", tiny_denoiser), "needs a line integral between")

    y = torch.from_numpy(line_integrals).float()
    common = dict(photons=50.0, denoiser=str(tiny_denoiser), max_iter=1, progress=False)
    result = restore.reconstruct_ct(y, **common)
    assert torch.equal(result.observation[0], y)  # the sinogram, not W^(1/2) y
    assert not any("lie above log(I0)" in note for note in result.notes)  # y stays below log(50)
    assert float(y.max()) < math.log(50.0)
    high = y.clone()
    high[0, 0] = 10.0  # beyond log(50): fewer than one photon
    assert any("1 bins of the sinogram lie above log(I0)" in note
               for note in restore.reconstruct_ct(high, **common).notes)
    for value in (-800.0, -100.0, -3.0):  # beyond float range; weights beyond their range; 20 x I0 photons
        low = y.clone()
        low[0, 0] = value
        with pytest.raises(ValueError, match="post-log line integrals -log.I/I0. of 50 photons lie above that"):
            restore.reconstruct_ct(low, **common)
    state = tmp_path / "p.state"
    restore.reconstruct_ct(y, checkpoint=state, **{**common, "max_iter": 2, "photons": 1e4})
    with pytest.raises(ValueError, match="resume with the same --photons"):
        restore.reconstruct_ct(y, checkpoint=state, resume=True, **{**common, "max_iter": 3, "photons": 2e4})


def test_from_skimage_checks_the_size_before_converting(tmp_path, phantom):
    """Review: with --from-skimage a sinogram whose bins do not fit --size was refused by the
    conversion, in API words (detector='circle'), instead of naming --size."""
    from skimage.transform import radon

    np.save(tmp_path / "sk.npy", radon(phantom.astype(np.float64), theta=np.arange(20) * 9.0,
                                       circle=False).astype(np.float32))
    assert_user_error(run("ct", tmp_path / "sk.npy", "--from-skimage", "--size", "40"),
                      "but a 40x40 image needs 57 with the full detector; check --size")

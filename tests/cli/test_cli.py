"""The command line: every command, its error paths, and the no-argument demos."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_test_helpers import assert_user_error, run

from pnp_stable.cli.main import main


def test_help_is_fast_and_imports_neither_torch_nor_deepinv():
    code = ("import sys; from pnp_stable.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad=[m for m in ('torch','deepinv','numpy') if m in sys.modules]\nprint('BAD', bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "BAD []" in proc.stdout, proc.stdout + proc.stderr
    assert "deblur" in proc.stdout and "certify" in proc.stdout


def test_version_and_subcommand_help():
    assert run("--version").exit_code == 0
    for cmd in ("deblur", "ct", "denoise", "certify", "models", "train-denoiser"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output, cmd
        # click does not %-format help texts: an escaped percent sign would be shown doubled
        assert "%%" not in r.output, cmd


def test_usage_errors_are_one_line(camera_png):
    assert_user_error(run("deblur", camera_png, "--noise", "abc"), "not a number")
    assert_user_error(run("deblur", camera_png, "--noise", "3"), "above 1: levels are on the [0, 1] scale (try 3/255)")
    assert_user_error(run("deblur", camera_png, "--noise", "200%"), "(try e.g. 1% or 2.55/255)")
    assert_user_error(run("nope"), "No such command")


def test_deblur_error_paths(tmp_path, camera_png, tiny_denoiser):
    assert_user_error(run("deblur", tmp_path / "missing.png"), "file not found")
    assert_user_error(run("deblur", camera_png, "--kernel", "blob:3"), "kernel spec")
    assert_user_error(run("deblur", camera_png, "--kernel", "box:99", "--denoiser", tiny_denoiser), "larger than")
    nan = tmp_path / "nan.npy"
    arr = np.ones((32, 32), np.float32)
    arr[3, 3] = np.nan
    np.save(nan, arr)
    assert_user_error(run("deblur", nan, "--denoiser", tiny_denoiser), "NaN")
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (32, 32)).save(cmyk)
    assert_user_error(run("deblur", cmyk), "CMYK")
    assert_user_error(run("deblur", camera_png, "--out", camera_png, "--denoiser", tiny_denoiser), "overwrite")
    assert_user_error(run("deblur", camera_png, "--denoiser", "no-such-model"), "unknown denoiser")
    # nothing was written beside the input by any failing run
    assert sorted(p.name for p in camera_png.parent.iterdir()) == sorted(
        ["cam.png", "nan.npy", "c.jpg"])


def test_outputs_are_checked_before_any_work_and_never_collide(tmp_path, camera_png, tiny_denoiser, monkeypatch):
    import pnp_stable.restore as restore

    def must_not_run(*a, **k):
        raise AssertionError("the restoration started although an output was unusable")

    monkeypatch.setattr(restore, "deblur", must_not_run)
    base = ("deblur", camera_png, "--denoiser", tiny_denoiser)
    o = tmp_path / "o.png"
    assert_user_error(run(*base, "--out", o, "--plot", o), "--out and --plot name the same file")
    assert_user_error(run(*base, "--out", o, "--report", o), "--out and --report name the same file")
    assert_user_error(run(*base, "--out", o, "--checkpoint", o), "--out and --checkpoint name the same file")
    assert_user_error(run(*base, "--report", tmp_path / "r.json", "--plot", tmp_path / "r.json"),
                      "--report and --plot name the same file")
    for option, name in (("--out", "x.png"), ("--report", "r.json"), ("--plot", "p.png"), ("--checkpoint", "s")):
        assert_user_error(run(*base, option, tmp_path / "nodir" / name), f"output folder '{tmp_path / 'nodir'}' of "
                                                                          f"{option} does not exist")
        assert_user_error(run(*base, option, camera_png / name), "is not a folder")
    assert_user_error(run(*base, "--plot", tmp_path / "p.bmp"), "p.bmp: cannot plot to a .bmp file; use one of")
    assert_user_error(run(*base, "--out", tmp_path / "o.gif"), "--out o.gif: unsupported type .gif")
    assert_user_error(run("denoise", camera_png, "--sigma", "0.1", "--out", camera_png / "x.png"), "is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.png"]


def test_npy_images_integer_scaled_and_float_out_of_range_refused(tmp_path, tiny_denoiser):
    from skimage import data

    cam = data.camera()[200:248, 220:268]
    np.save(tmp_path / "int.npy", cam)  # uint8 samples in a .npy
    r = run("deblur", tmp_path / "int.npy", "--simulate", "--denoiser", tiny_denoiser, "--max-iter", "2")
    assert r.exit_code == 0 and "integer samples scaled from [0, 255] to [0, 1]" in r.output, r.output
    out = np.load(tmp_path / "int_restored.npy")
    assert 0.2 < out.mean() < 0.8  # on the image's scale, not clipped to 1
    np.save(tmp_path / "wide.npy", cam.astype(np.float32))  # floats 0..255
    assert_user_error(run("deblur", tmp_path / "wide.npy", "--denoiser", tiny_denoiser), "images must be scaled to [0, 1]")
    np.save(tmp_path / "centred.npy", cam.astype(np.float32) / 255 - 0.5)
    assert_user_error(run("denoise", tmp_path / "centred.npy", "--sigma", "0.1"), "holds values in [-0.")
    np.save(tmp_path / "big.npy", np.full((16, 16), 70000, np.int32))
    assert_user_error(run("deblur", tmp_path / "big.npy", "--denoiser", tiny_denoiser), "expected 8- or 16-bit")


def test_a_folder_is_checked_whole_before_the_first_image_is_restored(tmp_path, tiny_denoiser):
    from skimage import data

    folder = tmp_path / "in"
    folder.mkdir()
    cam = data.camera()[200:248, 220:268]
    Image.fromarray(cam).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image")
    Image.fromarray(cam).save(folder / "c.png")
    assert_user_error(run("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "1"), "cannot read b.png")
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png", "c.png"]  # nothing restored yet


def test_outputs_get_the_umask_permissions(tmp_path, camera_png, tiny_denoiser):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        r = run("deblur", camera_png, "--simulate", "--denoiser", tiny_denoiser, "--max-iter", "1", "--quiet",
                "--out", tmp_path / "o.png", "--report", tmp_path / "r.json", "--plot", tmp_path / "p.png",
                "--checkpoint", tmp_path / "s.state")
    finally:
        os.umask(previous)
    assert r.exit_code == 0, r.output
    for name in ("o.png", "r.json", "p.png", "s.state"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_out_of_memory_is_a_user_error(monkeypatch, camera_png, tiny_denoiser):
    import torch

    import pnp_stable.restore as restore

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(restore, "deblur", boom)
    r = run("deblur", camera_png, "--denoiser", tiny_denoiser)
    assert_user_error(r, "out of memory")
    assert not (camera_png.parent / "cam_restored.png").exists()


def test_deblur_simulate_round_trip_improves_psnr(tmp_path, camera_png):
    """With the shipped model, --simulate reports a PSNR above the blurred input's."""
    report = tmp_path / "r.json"
    plot = tmp_path / "r.png"
    r = run("deblur", camera_png, "--simulate", "--kernel", "gauss:1.6", "--noise", "2.55/255",
            "--max-iter", "8", "--report", report, "--plot", plot, "--quiet")
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output and "guaranteed" in r.output
    # the shipped model's alpha (0.9996) must not print as "1-averaged", a weaker claim
    stated = re.search(r"with ([0-9.]+)-averaged denoiser", r.output)
    assert stated and float(stated.group(1)) < 1, r.output
    rep = json.loads(report.read_text())
    assert rep["metrics"]["psnr"] > rep["metrics"]["psnr_input"]
    for key in ("options", "operator", "denoiser", "solver", "history", "noise"):
        assert key in rep
    assert rep["solver"]["guarantee"]["holds"] is True
    assert rep["solver"]["method"] == "admm"  # deblur's default (better than FB on deblur-quick)
    assert rep["operator"]["norm_kind"] == "exact"
    assert plot.stat().st_size > 0
    out = camera_png.parent / "cam_restored.png"
    assert read_depth(out) == 8


def read_depth(path):
    from pnp_stable.cli.images import read_image

    return read_image(path).bit_depth


def test_deblur_demo_without_arguments(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("deblur", "--denoiser", tiny_denoiser, "--max-iter", "3", "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "camera_restored.png").is_file()
    assert r.output.startswith("restored camera_restored.png  ")  # as the README shows it


def test_deblur_rgb_and_folder_and_estimated_noise(tmp_path, rgb_png, tiny_denoiser):
    r = run("deblur", rgb_png, "--denoiser", tiny_denoiser, "--max-iter", "3")
    assert r.exit_code == 0, r.output
    assert "opponent colour space" in r.output and "estimated" in r.output
    assert read_rgb_shape(rgb_png.parent / "rgb_restored.png") == (32, 32, 3)
    r = run("deblur", rgb_png, "--denoiser", tiny_denoiser, "--max-iter", "3", "--color", "per-channel",
            "--out", str(rgb_png.parent / "rgb_pc.png"))
    assert r.exit_code == 0, r.output
    assert "channel by channel" in r.output
    assert read_rgb_shape(rgb_png.parent / "rgb_pc.png") == (32, 32, 3)
    r = run("deblur", rgb_png, "--denoiser", tiny_denoiser, "--color", "ycbcr")
    assert r.exit_code == 2 and "ycbcr" in r.output
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((24, 24)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    r = run("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "2", "--noise", "0.02", "--quiet")
    assert r.exit_code == 0, r.output
    assert (folder / "0_restored.png").is_file() and (folder / "1_restored.png").is_file()


def test_boundary_auto_is_reflect_for_photographs_and_circular_for_simulations(tmp_path, camera_png, tiny_denoiser):
    common = ("--denoiser", tiny_denoiser, "--max-iter", "2", "--noise", "0.01")
    r = run("deblur", camera_png, *common, "--report", tmp_path / "real.json", "--out", tmp_path / "real.png")
    assert r.exit_code == 0 and "boundary: reflect" in r.output, r.output
    rep = json.loads((tmp_path / "real.json").read_text())
    assert rep["operator"]["boundary"] == "reflect" and rep["options"]["boundary"] == "auto"
    r = run("deblur", camera_png, *common, "--simulate", "--report", tmp_path / "sim.json", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and "boundary:" not in r.output, r.output
    assert json.loads((tmp_path / "sim.json").read_text())["operator"]["boundary"] == "circular"
    r = run("deblur", camera_png, *common, "--boundary", "circular", "--report", tmp_path / "c.json",
            "--out", tmp_path / "c.png")
    assert r.exit_code == 0 and json.loads((tmp_path / "c.json").read_text())["operator"]["boundary"] == "circular"


def read_rgb_shape(path):
    from pnp_stable.cli.images import read_image

    return read_image(path).data.shape


def test_ct_demo_and_errors(tmp_path, rgb_png, tiny_denoiser, monkeypatch):
    monkeypatch.chdir(tmp_path)
    phantom = tmp_path / "ph.png"
    from skimage import data, transform

    img = transform.resize(data.shepp_logan_phantom(), (32, 32), anti_aliasing=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(phantom)
    r = run("ct", phantom, "--simulate", "--angles", "20", "--denoiser", tiny_denoiser, "--max-iter", "3",
            "--report", tmp_path / "ct.json", "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ct.json").read_text())
    assert rep["operator"]["type"] == "ParallelBeamCT" and rep["metrics"]["input"] == "FBP"
    assert rep["solver"]["method"] == "admm"  # ct's default (+1.2 dB over FB on ct-quick)
    assert rep["solver"]["parameters"]["prox_error_ratio"] == 0.03  # a budgeted, certified CG prox
    assert rep["solver"]["guarantee"]["proven"] and "conjugate gradients" in rep["solver"]["guarantee"]["reason"]
    assert_user_error(run("ct", rgb_png, "--denoiser", tiny_denoiser), "RGB")
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((20, 30), np.float32))
    assert_user_error(run("ct", wide, "--simulate", "--denoiser", tiny_denoiser), "square")
    assert rep["noise"]["source"] == "default"  # 1 % of the sinogram's maximum, the simulation's default


def test_ct_sinogram_angles_layout_and_noise(tmp_path, tiny_denoiser):
    import torch
    from skimage import data, transform

    from pnp_stable.operators import ParallelBeamCT

    img = transform.resize(data.shepp_logan_phantom(), (32, 32), anti_aliasing=True).astype(np.float32)
    op = ParallelBeamCT(32, angles=12)
    sino = op.simulate(torch.from_numpy(img)[None, None], 0.5, seed=0)[0, 0].numpy()  # 46 detectors x 12 angles
    np.save(tmp_path / "sino.npy", sino)
    common = ("--denoiser", tiny_denoiser, "--max-iter", "2")
    assert_user_error(run("ct", tmp_path / "sino.npy", "--angles", "90", *common),
                      "sino.npy has 12 angles (columns; a sinogram is n_detectors x n_angles) but --angles is 90")
    r = run("ct", tmp_path / "sino.npy", *common, "--out", tmp_path / "r.png", "--report", tmp_path / "r.json")
    assert r.exit_code == 0 and "noise level estimated from the data: " in r.output, r.output
    assert "/255" not in r.output  # a sinogram's noise is in its own units
    assert read_depth(tmp_path / "r.png") == 16  # the reconstruction's depth, not the sinogram's
    assert json.loads((tmp_path / "r.json").read_text())["image"]["bit_depth"] is None  # a float sinogram
    np.save(tmp_path / "sinoT.npy", np.ascontiguousarray(sino.T))  # 12 x 46: angles as rows
    r = run("ct", tmp_path / "sinoT.npy", *common, "--size", "8", "--out", tmp_path / "t.npy")
    assert "if its rows are the angles, transpose it" in r.output, r.output
    clean = tmp_path / "phantom.npy"  # an image given without --simulate: piecewise constant, noise-free
    np.save(clean, data.shepp_logan_phantom()[::10, ::10].astype(np.float32))
    assert_user_error(run("ct", clean, *common), "or simulate (simulate=True, --simulate) if the data is an image to project")


def test_ct_sinogram_on_another_scale_keeps_its_values_in_npy_and_is_normalised_in_images(tmp_path, tiny_denoiser):
    import torch
    from skimage import data, transform

    from pnp_stable.operators import ParallelBeamCT

    img = transform.resize(data.shepp_logan_phantom(), (32, 32), anti_aliasing=True).astype(np.float32)
    op = ParallelBeamCT(32, angles=12)
    sino = op.simulate(torch.from_numpy(img * 50)[None, None], 25.0, seed=0)[0, 0].numpy()  # attenuation x 50
    np.save(tmp_path / "sino.npy", sino)
    common = ("ct", tmp_path / "sino.npy", "--denoiser", tiny_denoiser, "--max-iter", "3")
    values = run(*common, "--out", tmp_path / "r.npy", "--report", tmp_path / "r.json")
    assert values.exit_code == 0 and "the sinogram's FBP peaks near" in values.output, values.output
    scale = json.loads((tmp_path / "r.json").read_text())["operator"]["data_scale"]
    assert 20 < scale < 80 and np.load(tmp_path / "r.npy").max() > 20  # on the sinogram's scale, not clipped at 1
    image = run(*common, "--out", tmp_path / "r.png")
    divisor = float(re.search(r"r.png holds the reconstruction divided by ([0-9.e+]+)", image.output).group(1))
    # the larger of the data scale and the reconstruction's maximum: nothing saturates
    assert image.exit_code == 0 and divisor >= scale * (1 - 1e-3)
    assert divisor == pytest.approx(max(scale, float(np.load(tmp_path / "r.npy").max())), rel=1e-3)
    written = np.asarray(Image.open(tmp_path / "r.png"), dtype=np.float64) / 65535
    assert np.allclose(written, np.load(tmp_path / "r.npy") / divisor, atol=2 / 65535)


def test_ct_reads_a_scikit_image_sinogram_with_from_skimage(tmp_path):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize

    truth = resize(shepp_logan_phantom(), (48, 48), anti_aliasing=True)  # 68 detector bins: even
    sino = radon(truth, theta=np.linspace(0, 180, 30, endpoint=False), circle=False)
    np.save(tmp_path / "sk.npy", sino.astype(np.float32))
    psnr = {}
    for flag in ("", "--from-skimage"):
        out = tmp_path / f"r{flag}.npy"
        r = run("ct", tmp_path / "sk.npy", *([flag] if flag else []), "--noise", "0.05", "--max-iter", "20",
                "--out", out)
        assert r.exit_code == 0, r.output
        psnr[flag] = 10 * np.log10(1 / np.mean((np.clip(np.load(out), 0, 1) - truth) ** 2))
    assert "sinogram moved from skimage.transform.radon's rotation axis" in r.output
    assert psnr["--from-skimage"] > psnr[""] + 5, psnr  # measured 19.1 -> 33.9 dB at 128 x 128, 60 angles
    assert_user_error(run("ct", "--from-skimage"), "--from-skimage converts a sinogram")


def test_a_residual_increase_is_one_warning_line_and_quiet_leaves_it_to_the_summary(tmp_path, camera_png,
                                                                                     tiny_denoiser):
    # FB with tau = 8 > 2/||A||^2: the gradient step is expansive and the residual rises at once
    common = ("--simulate", "--denoiser", tiny_denoiser, "--max-iter", "4", "--solver", "fb", "--step", "8",
              "--no-accelerate", "--out", tmp_path / "fb.png")
    r = run("deblur", camera_png, *common)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "residual increased at iteration" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: FB fixed-point residual increased"), r.output
    assert "MonotonicityWarning" not in r.output and ".py:" not in r.output
    assert "warning: no convergence guarantee: tau = 8 exceeds" in r.output
    assert "guarantee: No convergence" not in r.output
    r = run("deblur", camera_png, *common, "--quiet")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [line for line in r.output.splitlines() if line.startswith("restored")]
    assert "residual increased" in r.output and "NO convergence guarantee" in r.output


def test_manual_parameters_replace_the_automatic_ones_and_the_guarantee_follows_them(tmp_path, camera_png,
                                                                                       tiny_denoiser):
    common = ("--simulate", "--denoiser", tiny_denoiser, "--max-iter", "3", "--quiet")
    r = run("deblur", camera_png, *common, "--sigma-den", "8/255", "--step", "4", "--report", tmp_path / "admm.json",
            "--out", tmp_path / "admm.png")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "admm.json").read_text())
    assert rep["solver"]["parameters"]["sigma_den"] == pytest.approx(8 / 255)
    assert rep["solver"]["parameters"]["step"] == 4.0 and rep["solver"]["parameters"]["automatic"] is None
    assert rep["options"]["sigma_den"] == pytest.approx(8 / 255) and rep["options"]["step"] == 4.0
    assert rep["solver"]["guarantee"]["holds"]  # ADMM: any gamma > 0
    # FB beyond 2/||A||^2 (= 2 for a normalised blur): the run goes on, and says the theorem does not apply
    r = run("deblur", camera_png, *common, "--solver", "fb", "--step", "2.5", "--report", tmp_path / "fb.json",
            "--out", tmp_path / "fb.png")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "fb.json").read_text())
    assert rep["solver"]["parameters"]["step"] == 2.5 and not rep["solver"]["guarantee"]["holds"]
    assert "NO convergence guarantee" in r.output
    assert_user_error(run("deblur", camera_png, *common, "--sigma-den", "3"), "above 1")
    assert_user_error(run("deblur", camera_png, *common, "--sigma-den", "x"), "--sigma-den")
    assert run("deblur", camera_png, *common, "--step", "0").exit_code == 2
    phantom = tmp_path / "ph.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(phantom)
    r = run("ct", phantom, *common, "--angles", "20", "--sigma-den", "0.05", "--report", tmp_path / "ct.json",
            "--out", tmp_path / "ct.png")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ct.json").read_text())["solver"]["parameters"]["sigma_den"] == 0.05


def test_tiled_denoising_restores_exactly_what_one_call_restores(tmp_path, camera_png, rgb_png, tiny_denoiser):
    common = ("--simulate", "--denoiser", tiny_denoiser, "--max-iter", "4", "--no-accelerate")
    outputs = {}
    for tile in ("0", "20"):
        r = run("deblur", camera_png, *common, "--tile", tile, "--report", tmp_path / f"t{tile}.json",
                "--out", tmp_path / f"t{tile}.npy")
        assert r.exit_code == 0, r.output
        outputs[tile] = np.load(tmp_path / f"t{tile}.npy")
        rep = json.loads((tmp_path / f"t{tile}.json").read_text())
        assert rep["options"]["tile"] == int(tile)
    assert "tiles of 20 px" in r.output and rep["denoiser"]["tiling"]["tiles"] == 16  # 64 = 3 x 20 + 4
    assert rep["solver"]["guarantee"]["holds"] and rep["denoiser"]["certified"]
    assert np.abs(outputs["0"] - outputs["20"]).max() < 1e-5
    r = run("denoise", rgb_png, "--sigma", "0.1", "--simulate", "--denoiser", tiny_denoiser, "--tile", "16",
            "--out", tmp_path / "rgb_tiled.npy")
    assert r.exit_code == 0 and "tiles of 16 px" in r.output, r.output
    r = run("denoise", rgb_png, "--sigma", "0.1", "--simulate", "--denoiser", tiny_denoiser,
            "--out", tmp_path / "rgb_whole.npy")  # 32 x 32: below the automatic threshold, one call
    assert r.exit_code == 0 and "tiles" not in r.output, r.output
    assert np.abs(np.load(tmp_path / "rgb_tiled.npy") - np.load(tmp_path / "rgb_whole.npy")).max() < 1e-5
    assert_user_error(run("deblur", camera_png, *common, "--tile", "-1"), "--tile")
    # a tile of a few pixels would be almost all margin (the reviewer's --tile 1 ran for minutes)
    assert_user_error(run("deblur", camera_png, *common, "--tile", "1"), "use 0 (never tile) or at least 16")


def test_checkpoint_and_resume_continue_the_same_solve(tmp_path, camera_png, tiny_denoiser):
    common = ("--simulate", "--denoiser", tiny_denoiser, "--no-accelerate", "--tol", "1e-9")
    state = tmp_path / "cam.state"
    r = run("deblur", camera_png, *common, "--max-iter", "6", "--out", tmp_path / "whole.npy")
    assert r.exit_code == 0, r.output
    r = run("deblur", camera_png, *common, "--max-iter", "3", "--checkpoint", state, "--out", tmp_path / "a.npy")
    assert r.exit_code == 0 and state.is_file(), r.output
    assert "--resume continues it" in r.output
    assert_user_error(run("deblur", camera_png, *common, "--checkpoint", state), "exists")
    r = run("deblur", camera_png, *common, "--max-iter", "6", "--checkpoint", state, "--resume", "--tile", "40",
            "--out", tmp_path / "b.npy", "--report", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["checkpoint"]["resumed_from_iteration"] == 3 and rep["solver"]["iterations"] == 6
    assert len(rep["history"]) == 7 and rep["solver"]["monotone"] and rep["solver"]["guarantee"]["holds"]
    assert np.abs(np.load(tmp_path / "b.npy") - np.load(tmp_path / "whole.npy")).max() < 1e-6  # tiled or not
    # what must not change
    assert_user_error(run("deblur", camera_png, *common, "--kernel", "box:5", "--checkpoint", state, "--resume"),
                      "another problem (different observation, operator)")
    assert_user_error(run("deblur", camera_png, *common, "--seed", "1", "--checkpoint", state, "--resume"),
                      "(different observation)")
    assert_user_error(run("deblur", camera_png, *common, "--solver", "fb", "--checkpoint", state, "--resume"),
                      "(different method)")
    assert_user_error(run("deblur", camera_png, *common, "--resume"), "--checkpoint")
    assert_user_error(run("deblur", camera_png, *common, "--checkpoint", tmp_path / "none.state", "--resume"),
                      "no checkpoint to resume")
    (tmp_path / "junk.state").write_text("junk")
    assert_user_error(run("deblur", camera_png, *common, "--checkpoint", tmp_path / "junk.state", "--resume"),
                      "junk.state is not a pnp-stable solver state")
    assert_user_error(run("deblur", camera_png, *common, "--checkpoint", camera_png, "--out", tmp_path / "c.png"),
                      "overwrite the input")
    phantom = tmp_path / "ph.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(phantom)
    ct = ("ct", phantom, "--simulate", "--angles", "20", "--denoiser", tiny_denoiser, "--no-accelerate", "--tol", "1e-9",
          "--max-iter", "2", "--checkpoint", tmp_path / "ct.state", "--quiet")
    assert run(*ct, "--out", tmp_path / "ct1.png").exit_code == 0
    r = run(*ct[:-4], "4", *ct[-3:], "--resume", "--out", tmp_path / "ct2.png", "--report", tmp_path / "ct.json")
    assert r.exit_code == 0, r.output  # --max-iter is the total: 4 continues a run stopped at 2
    assert json.loads((tmp_path / "ct.json").read_text())["solver"]["iterations"] == 4
    assert_user_error(run(*ct[:4], "30", *ct[5:], "--resume"), "observation, operator")
    for option in ("--report", "--plot"):  # ct protects its input like deblur does
        assert_user_error(run("ct", phantom, "--simulate", "--denoiser", tiny_denoiser, option, phantom),
                          "overwrite the input")


def test_a_stopped_folder_exits_130_and_resumes_where_it_stopped(tmp_path, camera_png, tiny_denoiser, monkeypatch):
    import shutil

    import pnp_stable.solvers as solvers

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(camera_png, folder / f"{name}.png")
    real = solvers.solve
    calls = []

    def stopped_during_the_second(*args, **kw):
        calls.append(1)
        result = real(*args, **kw)
        if len(calls) == 2:
            result.stopped_by = "interrupted"  # as a Ctrl-C inside the second image's solve returns
        return result

    monkeypatch.setattr(solvers, "solve", stopped_during_the_second)
    common = ("deblur", folder, "--simulate", "--denoiser", tiny_denoiser, "--max-iter", "2", "--no-accelerate",
              "--checkpoint", tmp_path / "s.state", "--report", tmp_path / "r.json")
    r = run(*common)
    assert r.exit_code == 130 and "interrupted: 1 more image(s) not restored" in r.output, r.output
    assert sorted(p.name for p in tmp_path.glob("s_*.state")) == ["s_a.state", "s_b.state"]
    assert (folder / "b_restored.png").is_file() and not (folder / "c_restored.png").exists()
    monkeypatch.setattr(solvers, "solve", real)
    r = run(*common, "--resume")
    assert r.exit_code == 0, r.output
    assert "a.png already restored (max_iter" in r.output
    assert not (folder / "a_restored_restored.png").exists()  # its own outputs are not inputs
    assert json.loads((tmp_path / "r_b.json").read_text())["checkpoint"]["resumed_from_iteration"] == 2
    # --max-iter is the total: b, stopped after its 2 iterations, ends there as the uninterrupted run does
    assert json.loads((tmp_path / "r_b.json").read_text())["solver"]["iterations"] == 2
    assert json.loads((tmp_path / "r_c.json").read_text())["checkpoint"]["resumed_from_iteration"] is None
    assert (tmp_path / "s_c.state").is_file()


@pytest.mark.parametrize("boundary", ["circular", "reflect"])  # a closed-form prox, a CG prox
def test_an_interrupted_restoration_saves_its_state_and_resumes_exactly(tmp_path, boundary):
    """Ctrl-C (or SIGTERM, which the CLI turns into it) inside a denoiser call: the last recorded
    iterate is saved, and resuming reaches bit for bit what an uninterrupted run reaches (with a CG
    prox too: the snapshot keeps T~ w_k and the CG warm start of the last recorded iterate, not the
    one the interrupted evaluation left)."""
    import os
    import signal

    import torch

    from pnp_stable.cli.errors import sigterm_as_interrupt
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser
    from pnp_stable.restore import deblur

    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    image = torch.rand(1, 24, 24)
    kw = dict(simulate=True, method="admm", denoiser=model, accelerate=False, tol=1e-12, progress=False,
              boundary=boundary)
    whole = deblur(image, "gauss:1.2", max_iter=8, **kw)

    calls = []

    def stop_on_the_fifth_call(module, args):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the call, as a real stop would

    handle = model.register_forward_pre_hook(stop_on_the_fifth_call)
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        cut = deblur(image, "gauss:1.2", max_iter=8, checkpoint=tmp_path / "s.state", **kw)
    handle.remove()
    assert cut.result.stopped_by == "interrupted" and cut.result.iterations == 3
    rest = deblur(image, "gauss:1.2", max_iter=8, checkpoint=tmp_path / "s.state", resume=True, **kw)
    assert rest.result.iterations == 8 and torch.equal(rest.image, whole.image)
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_denoise_and_certify_and_models(tmp_path, camera_png, rgb_png, tiny_denoiser):
    r = run("denoise", camera_png, "--sigma", "25/255", "--simulate", "--denoiser", tiny_denoiser)
    assert r.exit_code == 0, r.output
    assert (camera_png.parent / "cam_denoised.png").is_file()
    for mode, note in [("opponent", "opponent colour space"), ("per-channel", "channel by channel")]:
        out = tmp_path / f"rgb_{mode}.png"
        r = run("denoise", rgb_png, "--sigma", "0.1", "--simulate", "--denoiser", tiny_denoiser, "--color", mode,
                "--out", out)
        assert r.exit_code == 0 and note in r.output, r.output
        assert read_rgb_shape(out) == (32, 32, 3)
    r = run("certify", tiny_denoiser, "--json", "--size", "12", "--steps", "5", "--restarts", "1")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)  # the search's progress goes to stderr
    assert rep["certified"] and rep["averagedness"] < 1
    assert rep["empirical"]["lipschitz_lower_bound"] <= rep["lipschitz"] * (1 + 1e-4)
    assert rep["empirical"]["averagedness_violation"] <= 1e-4
    r = run("certify", tiny_denoiser, "--no-search")
    assert r.exit_code == 0 and "certified averagedness" in r.output
    r = run("certify", tiny_denoiser, "--rgb", "--json", "--size", "10", "--steps", "5", "--restarts", "1")
    assert r.exit_code == 0, r.output
    rgb = json.loads(r.stdout)
    assert "opponent" in rgb["denoiser"] and rgb["averagedness"] == rep["averagedness"]
    # the same two gradient-flow blocks, and only them (no rows of Nones for the colour transform)
    assert len(rep["blocks"]) == 2 and rgb["blocks"] == rep["blocks"]
    assert all(b["norm_certified"] > 0 and b["integrated_time"] > 0 for b in rgb["blocks"])
    assert rgb["empirical"]["averagedness_violation"] <= 1e-4
    r = run("models", "--json")
    assert r.exit_code == 0
    names = [m["name"] for m in json.loads(r.output)]
    assert "gray" in names


def test_train_denoiser_tiny_run_and_resume(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    args = ["train-denoiser", "--train", folder, "--run-dir", tmp_path / "run", "--preset", "tiny", "--steps", "6"]
    r = run(*args, "--stop-after", "3")
    assert r.exit_code == 0, r.output
    # an unfinished run says so, and how to go on
    assert "stopped (--stop-after) at step 3 of 6" in r.output and "--resume" in r.output
    r = run(*args, "--resume", "--time-limit", "0")  # out of time after the first step, checkpointed
    assert r.exit_code == 0 and "stopped (--time-limit) at step 4 of 6" in r.output, r.output
    for bad in ("-1", "nan"):
        assert_user_error(run(*args, "--resume", "--time-limit", bad), "--time-limit must be a non-negative number of "
                                                                        "minutes")
    r = run(*args)  # same run dir without --resume: refused, nothing overwritten
    assert r.exit_code == 2 and "error:" in r.output
    # an export that would replace the run's own checkpoint (or best.pt) is refused before training
    for name in ("checkpoint", "best"):
        assert_user_error(run(*args, "--resume", "--export", name, "--export-dir", tmp_path / "run"),
                          f"would replace the run's own {name}.pt")
    assert_user_error(run(*args, "--resume", "--export", "mini.pt", "--export-dir", tmp_path), "without the suffix")
    r = run(*args, "--resume", "--export", "mini", "--export-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert "trained 6 steps" in r.output
    assert (tmp_path / "mini.pt").is_file() and (tmp_path / "mini.json").is_file()
    # the finished run is exported (not best.pt), with the number of images it was trained on
    metadata = json.loads((tmp_path / "mini.json").read_text())
    assert metadata["training"]["steps"] == 6 and metadata["training"]["images"] == 3


def test_train_denoiser_refuses_a_shipped_name_and_a_changed_image_folder_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_MODELS", str(tmp_path / "user-models"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    args = ["train-denoiser", "--train", folder, "--run-dir", tmp_path / "run", "--preset", "tiny", "--steps", "6"]
    # load("gray") and --denoiser gray would still find the shipped model
    assert_user_error(run(*args, "--export", "gray"), "a shipped model has that name")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    r = run(*args, "--stop-after", "2")
    assert r.exit_code == 0, r.output
    (folder / "2.png").rename(folder / "zz.png")  # renamed: another list, other batches
    (folder / ".hidden.png").write_bytes(b"not an image")  # hidden files are no images (macOS ._x.png)
    assert_user_error(run(*args, "--resume"), "training images changed since the checkpoint: 1 added (zz.png); "
                                              "1 removed (2.png)")
    (folder / "zz.png").rename(folder / "2.png")
    r = run(*args, "--resume")
    assert r.exit_code == 0 and "trained 6 steps" in r.output, r.output


def test_exported_model_lands_in_the_user_folder_and_is_usable_by_name(tmp_path, monkeypatch, camera_png):
    user = tmp_path / "user-models"
    monkeypatch.setenv("PNP_STABLE_MODELS", str(user))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    r = run("train-denoiser", "--train", folder, "--run-dir", tmp_path / "run", "--preset", "tiny", "--steps", "2",
            "--export", "mine")
    assert r.exit_code == 0, r.output
    assert (user / "mine.pt").is_file() and "--denoiser mine" in r.output
    r = run("models")
    assert r.exit_code == 0 and "mine" in r.output and "user" in r.output and str(user) in r.output
    r = run("denoise", camera_png, "--sigma", "25/255", "--denoiser", "mine", "--out", tmp_path / "d.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d.png").is_file()


def test_a_colour_model_restores_rgb_images_as_they_are_and_refuses_gray_ones(tmp_path, monkeypatch, camera_png,
                                                                                rgb_png):
    import torch

    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    user = tmp_path / "user-models"
    monkeypatch.setenv("PNP_STABLE_MODELS", str(user))
    torch.manual_seed(0)
    gray = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    cert = gray.certificate()
    save_denoiser(gray, user / "tint.pt", {"channels": 3, "color": {"mode": "opponent", "chroma_scale": 3.0},
                                           "cbsd68_psnr": {"25": 21.5},
                                           "certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}})
    (user / "tint.json").write_text(json.dumps({"channels": 3, "kind": "certified", "cbsd68_psnr": {"25": 21.5}}))
    r = run("denoise", rgb_png, "--sigma", "0.1", "--simulate", "--denoiser", "tint", "--out", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    assert "opponent colour space with the gray denoiser" not in r.output  # no second wrapping
    assert read_rgb_shape(tmp_path / "c.png") == (32, 32, 3)
    assert_user_error(run("denoise", camera_png, "--sigma", "0.1", "--denoiser", "tint"), "3-channel")
    r = run("models")
    assert r.exit_code == 0 and "C -/21.50/-" in r.output, r.output


def test_the_api_tasks_have_the_command_line_defaults():
    """A script calling pnp_stable.deblur / reconstruct_ct gets what the command would give."""
    import inspect

    import click

    from pnp_stable import restore

    context = click.Context(main)
    for command, task in (("deblur", restore.deblur), ("ct", restore.reconstruct_ct), ("denoise", restore.denoise)):
        defaults = {p.name: p.default for p in main.get_command(context, command).params}
        signature = inspect.signature(task).parameters
        for option, argument in (("solver", "method"), ("max_iter", "max_iter"), ("tol", "tol"),
                                 ("accelerate", "accelerate"), ("seed", "seed"), ("device", "device"),
                                 ("color", "color"), ("boundary", "boundary")):
            if option in defaults and argument in signature:
                assert signature[argument].default == defaults[option], (command, option)


def test_denoise_takes_noise_or_sigma_and_writes_a_report(tmp_path, camera_png, tiny_denoiser):
    report = tmp_path / "d.json"
    common = ("denoise", camera_png, "--simulate", "--denoiser", tiny_denoiser, "--quiet")
    by_noise = run(*common, "--noise", "25/255", "--out", tmp_path / "a.png", "--report", report)
    assert by_noise.exit_code == 0, by_noise.output
    assert by_noise.output.startswith(f"denoised {tmp_path / 'a.png'}  PSNR ")
    assert "noise level 25.00/255" in by_noise.output
    rep = json.loads(report.read_text())
    assert rep["command"] == "denoise" and rep["noise"] == {"sigma": 25 / 255, "source": "given"}
    assert 19 < rep["metrics"]["psnr_input"] < 23 and rep["denoiser"]["certified"] is True  # noise std 0.098
    assert f"PSNR {rep['metrics']['psnr']:.2f} dB (input {rep['metrics']['psnr_input']:.2f})" in by_noise.output
    by_sigma = run(*common, "--sigma", "25/255", "--out", tmp_path / "b.png")
    assert by_sigma.exit_code == 0, by_sigma.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    assert_user_error(run("denoise", camera_png, "--noise", "25"), "above 1")


def test_denoise_estimates_the_noise_level_and_takes_a_folder(tmp_path, tiny_denoiser):
    from skimage import data

    clean = data.camera()[100:196, 150:246].astype(np.float64) / 255
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i, sigma in enumerate((10 / 255, 30 / 255)):
        noisy = clean + sigma * np.random.default_rng(i).standard_normal(clean.shape)
        np.save(folder / f"n{i}.npy", noisy.astype(np.float32))
    r = run("denoise", folder, "--denoiser", tiny_denoiser, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    for i, sigma in enumerate((10 / 255, 30 / 255)):
        rep = json.loads((tmp_path / f"r_n{i}.json").read_text())
        assert rep["noise"]["source"] == "estimated" and abs(rep["noise"]["sigma"] / sigma - 1) < 0.15, rep["noise"]
        assert (folder / f"n{i}_denoised.npy").is_file()
    assert "noise level estimated from the image" in r.output
    # a level outside the denoiser's trained range is said to be an extrapolation
    r = run("denoise", folder / "n0.npy", "--noise", "1/255", "--denoiser", "gray", "--out", tmp_path / "o.npy")
    assert r.exit_code == 0 and "below the range the denoiser was trained for (5 to 50/255)" in r.output, r.output
    assert_user_error(run("denoise", folder, "--out", tmp_path / "x.png", "--denoiser", tiny_denoiser),
                      "--out names one file")


def test_denoise_without_an_image_runs_the_demo(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("denoise", "--denoiser", tiny_denoiser, "--report", "d.json")
    assert r.exit_code == 0, r.output
    assert "demo: scikit-image's camera" in r.output and (tmp_path / "camera_denoised.png").is_file()
    rep = json.loads((tmp_path / "d.json").read_text())
    assert rep["noise"] == {"sigma": 25 / 255, "source": "default"} and rep["options"]["simulate"] is True


def test_ct_reconstructs_every_sinogram_of_a_folder(tmp_path, tiny_denoiser):
    import torch
    from skimage import data, transform

    from pnp_stable.operators import ParallelBeamCT

    img = transform.resize(data.shepp_logan_phantom(), (32, 32), anti_aliasing=True).astype(np.float32)
    op = ParallelBeamCT(32, angles=12)
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(2):
        np.save(folder / f"s{i}.npy", op.simulate(torch.from_numpy(img)[None, None], 0.5, seed=i)[0, 0].numpy())
    common = ("ct", folder, "--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet", "--noise", "0.5")
    r = run(*common, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    for i in range(2):
        assert np.load(folder / f"s{i}_reconstructed.npy").shape == (32, 32)
        rep = json.loads((tmp_path / f"r_s{i}.json").read_text())
        assert rep["command"] == "ct" and rep["options"]["noise"] == "0.5" and rep["options"]["size"] is None
    # checked whole first: a slice whose angles disagree with --angles, an RGB image
    for p in folder.glob("*_reconstructed.npy"):
        p.unlink()
    np.save(folder / "s2.npy", np.zeros((46, 20), np.float32))
    assert_user_error(run(*common, "--angles", "12"), "s2.npy has 20 angles")
    (folder / "s2.npy").unlink()
    Image.fromarray(np.zeros((46, 12, 3), np.uint8)).save(folder / "s3.png")
    assert_user_error(run(*common), "s3.png is an RGB image")
    assert not list(folder.glob("*_reconstructed.*"))


def test_ct_demo_writes_the_phantoms_reconstruction(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("ct", "--denoiser", tiny_denoiser, "--max-iter", "1", "--angles", "10")
    assert r.exit_code == 0, r.output
    assert "demo: Shepp-Logan phantom (256x256), 10 angles" in r.output
    assert (tmp_path / "shepp_logan_reconstructed.png").is_file()


def test_ct_demo_names_a_curved_or_offset_fan_detector(tmp_path, tiny_denoiser, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("ct", "--denoiser", tiny_denoiser, "--max-iter", "1", "--angles", "6", "--geometry", "fan",
            "--detector-shape", "curved", "--detector-offset", "0.25", "--report", "ct.json")
    assert r.exit_code == 0, r.output
    assert "6 fan-beam views over 360 degrees (curved detector, shifted 0.25 cell)" in r.output
    operator = json.loads((tmp_path / "ct.json").read_text())["operator"]
    assert operator["detector_shape"] == "curved" and operator["detector_offset"] == 0.25


def test_certify_rgb_of_a_colour_model_says_to_drop_the_flag():
    assert_user_error(run("certify", "color", "--rgb", "--no-search"), "already a colour (RGB) model")

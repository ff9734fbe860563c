"""Review findings on the command line: folder destinations, resume, unwritable outputs, divergence,
and inputs that used to escape as tracebacks. Each user error is one line with exit code 2."""

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cli_test_helpers import assert_user_error, run


def _folder(tmp_path, camera_png, names):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        shutil.copy(camera_png, folder / name)
    return folder


@pytest.mark.parametrize("option", ["--plot", "--report", "--checkpoint"])
def test_a_folder_never_writes_a_per_image_output_over_an_input(tmp_path, camera_png, tiny_denoiser, option):
    folder = _folder(tmp_path, camera_png, ["a.png"])
    suffix = {"--plot": ".png", "--report": ".json", "--checkpoint": ".state"}[option]
    victim = folder / f"p_a{suffix}"
    if suffix == ".png":
        Image.fromarray(np.full((16, 16), 7, np.uint8)).save(victim)
    else:  # not an image: not an input either; make one that is
        victim = folder / "p_a.png"
        Image.fromarray(np.full((16, 16), 7, np.uint8)).save(victim)
        suffix = ".png"
    before = victim.read_bytes()
    r = run("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "1", option, folder / f"p{suffix}")
    # a solver state named like an image is refused as such, before its per-image names are formed
    assert_user_error(r, "a solver state is no image" if option == "--checkpoint" else
                      "refusing to overwrite the input p_a.png")
    assert victim.read_bytes() == before
    assert not (folder / "a_restored.png").exists()


def test_two_images_with_the_same_stem_are_refused_before_any_work(tmp_path, camera_png, tiny_denoiser):
    folder = _folder(tmp_path, camera_png, ["a.png"])
    np.save(folder / "a.npy", np.asarray(Image.open(camera_png), np.float32) / 255)
    r = run("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "1", "--report", tmp_path / "r.json")
    assert_user_error(r, "a.npy and a.png would both write --report")
    assert sorted(p.name for p in folder.iterdir()) == ["a.npy", "a.png"]


def test_a_folder_checks_every_image_against_the_kernel_first(tmp_path, camera_png, tiny_denoiser):
    folder = _folder(tmp_path, camera_png, ["a.png"])
    Image.fromarray(np.full((20, 20), 100, np.uint8)).save(folder / "b.png")
    r = run("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "1", "--kernel", "box:25")
    assert_user_error(r, "b.png (20x20) is smaller than the kernel")
    assert not (folder / "a_restored.png").exists()


def test_a_folder_resume_checks_finished_images_against_the_options(tmp_path, camera_png, tiny_denoiser):
    folder = _folder(tmp_path, camera_png, ["a.png", "b.png"])
    common = ("deblur", folder, "--denoiser", tiny_denoiser, "--max-iter", "2", "--noise", "0.02",
              "--checkpoint", tmp_path / "s.state")
    r = run(*common)
    assert r.exit_code == 0, r.output
    # an image stopped at --max-iter: the hint says what a folder --resume does with it
    assert "a folder --resume keeps a.png as it is" in r.output
    assert "the same command with --resume continues it" not in r.output
    restored = (folder / "a_restored.png").read_bytes()
    r = run(*common, "--resume", "--kernel", "box:3")
    assert r.exit_code == 2 and "written for another problem (different operator)" in r.output, r.output
    r = run(*common, "--resume")
    assert r.exit_code == 0 and "a.png already restored (max_iter" in r.output, r.output
    assert (folder / "a_restored.png").read_bytes() == restored  # kept as it was
    # without --resume, existing states are refused before the first image
    assert_user_error(run(*common), "checkpoint")


def test_an_unwritable_destination_is_refused_before_the_solve(tmp_path, camera_png, tiny_denoiser, monkeypatch):
    import tempfile

    real = tempfile.mkstemp
    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(*args, **kw):  # root may write anywhere: simulate a read-only file system
        if str(kw.get("dir", "")) == str(locked):
            raise PermissionError(13, "Read-only file system")
        return real(*args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "o.png"
    r = run("deblur", camera_png, "--denoiser", tiny_denoiser, "--max-iter", "1", "--out", out,
            "--report", locked / "r.json")
    assert_user_error(r, "cannot write --report")
    assert not out.exists()


def test_a_diverged_solve_writes_nothing_and_says_why(tmp_path, camera_png, tiny_denoiser):
    out = tmp_path / "o.png"
    r = run("deblur", camera_png, "--denoiser", tiny_denoiser, "--solver", "fb", "--step", "1e30", "--sigma-den", "0.05",
            "--max-iter", "3", "--noise", "0.02", "--out", out, "--report", tmp_path / "r.json",
            "--checkpoint", tmp_path / "s.state", "--quiet")
    assert_user_error(r, "the iteration diverged")
    assert "no convergence guarantee" in r.output and "cast" not in r.output
    # nor a state file: a resume would only diverge again from it
    assert not out.exists() and not (tmp_path / "r.json").exists() and not (tmp_path / "s.state").exists()


def test_an_overflowing_admm_step_is_named(camera_png, tiny_denoiser):
    assert_user_error(run("deblur", camera_png, "--denoiser", tiny_denoiser, "--step", "1e300"),
                      "--step 1e+300 is too large: it overflows")


@pytest.mark.parametrize("option", ["--noise", "--sigma-den"])
def test_levels_whose_square_underflows_are_refused_by_name(camera_png, tiny_denoiser, option):
    assert_user_error(run("deblur", camera_png, "--denoiser", tiny_denoiser, option, "1e-300"),
                      f"{option} 1e-300 is too small")


def test_the_parameter_rule_refuses_an_underflowing_level():
    from pnp_stable.solvers.parameters import ParameterRule, choose_parameters

    with pytest.raises(ValueError, match="too small"):
        choose_parameters("admm", "noise_level", ParameterRule(weight=0.4, exponent=1.7), 1e-300, 1.0)


@pytest.mark.parametrize("spec", ["box:inf", "gauss:1,inf", "motion-random:inf", "box:nan", "box:1e300",
                                  "gauss:1e300"])
def test_kernel_specs_with_non_finite_or_huge_parameters(camera_png, spec):
    r = run("deblur", camera_png, "--kernel", spec)
    assert_user_error(r, "")
    assert spec in r.output or "too large" in r.output
    assert len(r.output) < 300


def test_kernel_files_that_escaped_as_tracebacks(tmp_path, camera_png):
    (tmp_path / "empty.npy").write_bytes(b"")
    assert_user_error(run("deblur", camera_png, "--kernel", tmp_path / "empty.npy"), "empty.npy: it is empty")
    np.save(tmp_path / "c.npy", np.ones((3, 3), complex))
    assert_user_error(run("deblur", camera_png, "--kernel", tmp_path / "c.npy"), "c.npy holds complex128")
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    assert_user_error(run("deblur", camera_png, "--kernel", tmp_path / "s.npy"), "s.npy holds <U1")


def test_images_over_pillows_limit_are_refused(tmp_path, camera_png, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2 x 100: Pillow raises its bomb error
    assert_user_error(run("deblur", camera_png), "larger than Pillow's image size limit")
    assert_user_error(run("deblur", camera_png, "--kernel", camera_png), "too large to read")


def _png16(path, image, colour, truncate=False):
    h, w = image.shape[:2]
    raw = b"".join(b"\x00" + np.ascontiguousarray(image[i].astype(">u2")).tobytes() for i in range(h))

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    data = zlib.compress(raw)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
           + chunk(b"IDAT", data[: len(data) // 2] if truncate else data) + chunk(b"IEND", b""))
    path.write_bytes(png)


def test_corrupt_16_bit_rgb_png_is_one_line(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65535, (16, 16, 3)).astype(np.uint16)
    _png16(tmp_path / "t.png", rgb, 2, truncate=True)
    assert_user_error(run("deblur", tmp_path / "t.png"), "cannot read t.png: corrupt or truncated PNG data")


def test_16_bit_gray_alpha_png_is_read_as_16_bit_gray(tmp_path):
    from pnp_stable.cli.images import read_image

    gray = np.random.default_rng(0).integers(0, 65535, (16, 16)).astype(np.uint16)
    _png16(tmp_path / "la.png", np.dstack([gray, np.full_like(gray, 60000)]), 4)
    loaded = read_image(tmp_path / "la.png")
    assert loaded.data.shape == (16, 16) and loaded.bit_depth == 16
    assert "alpha channel ignored" in loaded.notes
    np.testing.assert_allclose(loaded.data, gray / 65535.0, atol=1e-6)


def test_a_uint16_npy_is_on_the_16_bit_scale(tmp_path):
    from pnp_stable.cli.images import read_image

    np.save(tmp_path / "u.npy", np.full((16, 16), 200, np.uint16))
    loaded = read_image(tmp_path / "u.npy")
    np.testing.assert_allclose(loaded.data, 200 / 65535.0)
    assert any("[0, 65535]" in n and "uint16" in n for n in loaded.notes)


def test_models_lists_bad_user_metadata_as_an_error_line_and_json_is_valid(tmp_path, tiny_denoiser):
    folder = tmp_path / "models"
    folder.mkdir()
    bad = {"certificate": "x", "sigma_range_255": ["x"], "bsd68_psnr": {"15": "x"}, "lipschitz": float("nan")}
    for i, (key, value) in enumerate(bad.items()):
        shutil.copy(tiny_denoiser, folder / f"m{i}.pt")
        meta = {"name": f"m{i}", "format": "pnp-stable-denoiser/1", "kind": "certified", "channels": 1,
                "certificate": {"lipschitz": 1.0, "averagedness": float("inf")}, key: value}
        (folder / f"m{i}.json").write_text(json.dumps(meta))
    env = {"PNP_STABLE_MODELS": str(folder)}
    r = run("models", env=env)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert sum("unreadable metadata" in line for line in r.output.splitlines()) >= 3, r.output
    r = run("models", "--json", env=env)
    assert r.exit_code == 0 and "NaN" not in r.output and "Infinity" not in r.output
    json.loads(r.output)


def test_cpu_allocation_failures_are_out_of_memory():
    from pnp_stable.cli.errors import _is_out_of_memory

    assert _is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: "
                                          "can't allocate memory: you tried to allocate 68719476736 bytes."))


def test_certify_size_is_capped():
    r = run("certify", "--size", "4096")
    assert r.exit_code == 2 and "4096" in r.output


def test_the_kernel_and_denoiser_files_are_inputs_no_output_replaces(tmp_path, camera_png, tiny_denoiser):
    """Review 2026-12-06: --out/--report/--plot were checked against the image, a mask and an angles
    file, not against the --kernel file or a --denoiser file: `--report model.pt` replaced a trained
    model with JSON, exit code 0."""
    kernel = tmp_path / "kern.npy"
    np.save(kernel, np.outer(np.hanning(7), np.hanning(7)) / np.outer(np.hanning(7), np.hanning(7)).sum())
    model = tmp_path / "model.pt"
    shutil.copy(tiny_denoiser, model)
    mat = tmp_path / "k.mat"
    from scipy.io import savemat

    savemat(mat, {"kernels": np.stack([np.load(kernel)] * 2)})
    before = {p: p.read_bytes() for p in (kernel, model, mat)}
    common = ("deblur", camera_png, "--denoiser", model, "--max-iter", "1", "--noise", "2/255")
    assert_user_error(run(*common, "--kernel", kernel, "--out", kernel), "refusing to overwrite the input kern.npy")
    assert_user_error(run(*common, "--kernel", kernel, "--report", model), "refusing to overwrite the input model.pt")
    assert_user_error(run(*common, "--kernel", f"{mat}#1", "--report", mat), "refusing to overwrite the input k.mat")
    assert_user_error(run("denoise", camera_png, "--denoiser", model, "--noise", "10/255", "--report", model),
                      "refusing to overwrite the input model.pt")
    assert all(p.read_bytes() == content for p, content in before.items())


def test_a_kernel_file_inside_the_folder_is_no_image_to_restore(tmp_path, camera_png, tiny_denoiser):
    folder = _folder(tmp_path, camera_png, ["a.png"])
    psf = np.outer(np.hanning(11), np.hanning(11))
    Image.fromarray((psf / psf.max() * 255).astype(np.uint8)).save(folder / "psf.png")
    r = run("deblur", folder, "--kernel", folder / "psf.png", "--denoiser", tiny_denoiser, "--max-iter", "1",
            "--noise", "2/255")
    assert r.exit_code == 0, r.output
    assert "psf.png is an input of the others (--kernel), not an image to restore" in r.output
    assert (folder / "a_restored.png").exists() and not (folder / "psf_restored.png").exists()


def test_a_pipe_given_as_the_image_or_the_mask_is_refused_not_waited_on(tmp_path, camera_png):
    import os

    pipe_png, pipe_npy = tmp_path / "pipe.png", tmp_path / "pipe.npy"
    os.mkfifo(pipe_png)
    os.mkfifo(pipe_npy)
    assert_user_error(run("deblur", pipe_png, "--noise", "2/255"), "pipe.png is not a regular file")
    assert_user_error(run("inpaint", camera_png, "--missing", pipe_npy), "pipe.npy is not a regular file")


def test_option_values_that_slipped_through_are_named(tmp_path, camera_png):
    assert_user_error(run("inpaint", camera_png, "--simulate", "--observed", "nan"),
                      "--observed must be a fraction in (0, 1], got nan")
    assert_user_error(run("deblur", camera_png, "--seed", "99999999999999999999"), "--seed")
    assert_user_error(run("ct", camera_png, "--simulate", "--size", "64"),
                      "--size is a sinogram's image size; a phantom (--simulate, the demo) has its own")
    assert_user_error(run("train-denoiser", "--train", camera_png, "--run-dir", tmp_path / "run"),
                      "is a file, not a folder of images")


def test_an_unwritable_default_output_is_not_called_out(tmp_path, camera_png, monkeypatch):
    """Review 2026-12-06: "cannot write --out ..." when no --out was given (the default name beside
    the input, in a folder that cannot be written)."""
    import pnp_stable.fileio as fileio

    image = camera_png
    monkeypatch.setattr(fileio, "tempfile", type("T", (), {"mkstemp": staticmethod(
        lambda **kw: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))}))
    r = run("deblur", image, "--noise", "2/255")
    assert_user_error(r, "cannot write the output")
    assert "--out" not in r.output

"""`pnp-stable superres` and `pnp-stable inpaint`: outputs, reports, the mask file, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from cli_test_helpers import assert_user_error, run


def test_help_lists_the_new_commands():
    r = run("--help")
    assert r.exit_code == 0 and "superres" in r.output and "inpaint" in r.output


def test_superres_writes_factor_times_the_size(tmp_path, camera_png, tiny_denoiser):
    out, report = tmp_path / "big.png", tmp_path / "r.json"
    r = run("superres", camera_png, "--factor", "3", "--noise", "0.01", "--denoiser", tiny_denoiser,
            "--max-iter", "3", "--out", out, "--report", report, "--quiet")
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (192, 192)
    rep = json.loads(report.read_text())
    assert rep["command"] == "superres" and rep["operator"]["factor"] == 3
    assert rep["operator"]["kernel"] == "gauss:1.5" and rep["operator"]["boundary"] == "reflect"
    assert rep["solver"]["guarantee"]["holds"] is True


def test_superres_simulation_reports_against_bicubic(tmp_path, camera_png, tiny_denoiser):
    r = run("superres", camera_png, "--simulate", "--kernel", "box:2", "--denoiser", tiny_denoiser, "--max-iter", "3",
            "--out", tmp_path / "o.png", "--quiet")
    assert r.exit_code == 0, r.output
    assert "(bicubic " in r.stdout and Image.open(tmp_path / "o.png").size == (64, 64)


def test_superres_default_output_name(tmp_path, camera_png, tiny_denoiser):
    r = run("superres", camera_png, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "1", "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cam_superres.png").is_file()


@pytest.mark.parametrize("args, fragment", [
    (("--kernel", "gauss:-1"), "gaussian sigma must be a positive number"),
    (("--factor", "1"), "--factor"),
    (("--noise", "3"), "above 1"),
])
def test_superres_user_errors(camera_png, tiny_denoiser, args, fragment):
    assert_user_error(run("superres", camera_png, "--denoiser", tiny_denoiser, *args), fragment)


def test_superres_refuses_a_folder(tmp_path, tiny_denoiser):
    assert_user_error(run("superres", tmp_path, "--denoiser", tiny_denoiser, "--noise", "0.01"),
                      "restores one image at a time")


def _mask(tmp_path, size=(64, 64), box=(slice(10, 30), slice(20, 50)), name="mask.png"):
    m = np.zeros(size, np.uint8)
    m[box] = 255
    path = tmp_path / name
    Image.fromarray(m).save(path)
    return path


def test_inpaint_with_a_mask_file(tmp_path, camera_png, tiny_denoiser):
    mask = _mask(tmp_path)
    report = tmp_path / "r.json"
    r = run("inpaint", camera_png, "--missing", mask, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "3",
            "--report", report, "--quiet")
    assert r.exit_code == 0, r.output
    out = tmp_path / "cam_inpainted.png"
    assert Image.open(out).size == (64, 64)
    rep = json.loads(report.read_text())
    assert rep["operator"]["type"] == "Inpainting"
    assert rep["operator"]["observed_fraction"] == pytest.approx(1 - 20 * 30 / 64**2)
    assert rep["options"]["missing"] == str(mask)


def test_inpaint_never_overwrites_the_mask(tmp_path, camera_png, tiny_denoiser):
    mask = _mask(tmp_path)
    before = mask.read_bytes()
    for option in ("--out", "--plot"):
        r = run("inpaint", camera_png, "--missing", mask, "--noise", "0.01", "--denoiser", tiny_denoiser, option, mask)
        assert_user_error(r, "refusing to overwrite the input mask.png")
    assert mask.read_bytes() == before


def test_inpaint_simulation_at_random(tmp_path, camera_png, tiny_denoiser):
    r = run("inpaint", camera_png, "--simulate", "--observed", "0.3", "--denoiser", tiny_denoiser, "--max-iter", "3",
            "--out", tmp_path / "o.png")
    assert r.exit_code == 0, r.output
    assert "(fill " in r.stdout and "kept with probability 0.3" in r.output


@pytest.mark.parametrize("args, fragment", [
    ((), "needs its missing pixels: --missing MASK"),
    (("--missing", "nothere.png"), "nothere.png"),
    (("--noise", "-1"), "--noise"),
])
def test_inpaint_user_errors(camera_png, tiny_denoiser, args, fragment):
    assert_user_error(run("inpaint", camera_png, "--denoiser", tiny_denoiser, *args), fragment)


def test_inpaint_refuses_a_mask_of_another_size(tmp_path, camera_png, tiny_denoiser):
    mask = _mask(tmp_path, size=(32, 32), box=(slice(0, 4), slice(0, 4)))
    assert_user_error(run("inpaint", camera_png, "--missing", mask, "--noise", "0.01", "--denoiser", tiny_denoiser),
                      "mask has shape (1, 32, 32)")


# -- review findings -----------------------------------------------------------------------------

def test_an_rgb_or_palette_mask_of_a_gray_image_is_one_mask(tmp_path, camera_png, tiny_denoiser):
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:30] = 255
    Image.fromarray(np.stack([m] * 3, axis=-1)).save(tmp_path / "rgb_mask.png")
    Image.fromarray(m).convert("P").save(tmp_path / "palette_mask.png")
    for mask in ("rgb_mask.png", "palette_mask.png"):
        report = tmp_path / f"{mask}.json"
        r = run("inpaint", camera_png, "--missing", tmp_path / mask, "--noise", "0.01", "--denoiser", tiny_denoiser,
                "--max-iter", "1", "--report", report, "--out", tmp_path / f"o_{mask}", "--quiet")
        assert r.exit_code == 0, r.output
        assert json.loads(report.read_text())["operator"]["mask_channels"] == 1


def test_a_boolean_npy_mask_is_read(tmp_path, camera_png, tiny_denoiser):
    m = np.zeros((64, 64), bool)
    m[:8] = True
    np.save(tmp_path / "m.npy", m)
    report = tmp_path / "r.json"
    r = run("inpaint", camera_png, "--missing", tmp_path / "m.npy", "--noise", "0.01", "--denoiser", tiny_denoiser,
            "--max-iter", "1", "--report", report, "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads(report.read_text())["operator"]["observed_fraction"] == pytest.approx(56 / 64)


@pytest.mark.parametrize("zero", ["0", "0.00", "0e0", "0.0%", "0.000/255"])
def test_every_spelling_of_zero_noise_is_noise_free(tmp_path, camera_png, tiny_denoiser, zero):
    r = run("inpaint", camera_png, "--missing", _mask(tmp_path), "--noise", zero, "--denoiser", tiny_denoiser,
            "--max-iter", "1")
    assert r.exit_code == 0, r.output
    assert "no noise: the regularisation is balanced against the 8-bit rounding level" in r.output


def test_a_fraction_that_keeps_no_pixel_is_named(camera_png, tiny_denoiser):
    assert_user_error(run("inpaint", camera_png, "--simulate", "--observed", "1e-6", "--denoiser", tiny_denoiser),
                      "observed_fraction 1e-06 kept no pixel of the 64x64 image")


def test_the_mask_notes_and_an_empty_mask_are_said(tmp_path, camera_png, tiny_denoiser):
    la = np.zeros((64, 64, 2), np.uint8)
    la[..., 1] = 255
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    r = run("inpaint", camera_png, "--missing", tmp_path / "la.png", "--noise", "0.01", "--denoiser", tiny_denoiser,
            "--max-iter", "1")
    assert r.exit_code == 0, r.output
    assert "note: la.png: " in r.output and "alpha" in r.output
    assert "the mask marks no pixel missing: this restoration only denoises the image" in r.output


@pytest.mark.parametrize("command, tag", [("superres", "superres"), ("inpaint", "inpainted"), ("ct", "reconstructed"),
                                          ("deblur", "restored")])
def test_the_help_names_each_commands_outputs(command, tag):
    text = " ".join(run(command, "--help").output.split())
    assert f"<stem>_{tag}.<ext>" in text
    assert ("with a folder" in text) == (command == "deblur")



def test_a_numeric_npy_mask_means_nonzero_is_missing(tmp_path, camera_png, tiny_denoiser):
    # as in the API: a 0/1 uint16 or a label array is not rescaled (and thresholded) like an image
    for name, values in (("u16.npy", np.uint16(1)), ("labels.npy", np.int32(300)), ("soft.npy", np.float32(0.3))):
        m = np.zeros((64, 64), type(values))
        m[:8] = values
        np.save(tmp_path / name, m)
        report = tmp_path / f"{name}.json"
        r = run("inpaint", camera_png, "--missing", tmp_path / name, "--noise", "0.01", "--denoiser", tiny_denoiser,
                "--max-iter", "1", "--report", report, "--out", tmp_path / f"{name}.png", "--quiet")
        assert r.exit_code == 0, r.output
        assert json.loads(report.read_text())["operator"]["observed_fraction"] == pytest.approx(56 / 64)


@pytest.mark.parametrize("bad", ["0/0", "0/abc", "-0.01"])
def test_bad_zero_like_noise_levels_are_refused(camera_png, tiny_denoiser, bad):
    assert_user_error(run("inpaint", camera_png, "--simulate", "--noise", bad, "--denoiser", tiny_denoiser), "--noise")


def test_inpaint_simulates_with_a_given_mask(tmp_path, camera_png, tiny_denoiser):
    report = tmp_path / "r.json"
    r = run("inpaint", camera_png, "--simulate", "--missing", _mask(tmp_path), "--denoiser", tiny_denoiser,
            "--max-iter", "1", "--report", report, "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads(report.read_text())
    assert rep["operator"]["observed_fraction"] == pytest.approx(1 - 20 * 30 / 64**2) and "psnr" in rep["metrics"]
    assert rep["noise"] == {"sigma": pytest.approx(0.29 / 255, rel=0.02), "source": "default", "raised_from": 0.0}

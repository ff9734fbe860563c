"""`pnp-stable superres` and `pnp-stable inpaint`: outputs, reports, the mask file, one-line errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pnp_stable.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert fragment in lines[0], result.output


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
    assert (tmp_path / "cam.png").exists()


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

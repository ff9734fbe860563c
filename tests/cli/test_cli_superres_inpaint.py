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


def _images(folder, names, size=(40, 40)):
    folder.mkdir()
    for i, name in enumerate(names):
        Image.fromarray((np.random.default_rng(i).random(size) * 255).astype(np.uint8)).save(folder / name)
    return folder


def test_superres_restores_every_image_of_a_folder(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png", "b.png"])
    r = run("superres", folder, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet",
            "--report", tmp_path / "r.json", "--checkpoint", tmp_path / "s.state")
    assert r.exit_code == 0, r.output
    for stem in "ab":
        assert Image.open(folder / f"{stem}_superres.png").size == (80, 80)
        rep = json.loads((tmp_path / f"r_{stem}.json").read_text())
        assert rep["input"] == str(folder / f"{stem}.png") and rep["options"]["checkpoint"] == str(tmp_path / f"s_{stem}.state")
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_superres.png", "b.png", "b_superres.png"]
    # a rerun leaves the earlier outputs out of the inputs, and --resume keeps the finished images
    r = run("superres", folder, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "2",
            "--checkpoint", tmp_path / "s.state", "--resume")
    assert r.exit_code == 0 and "a.png already restored (max_iter" in r.output, r.output
    assert not (folder / "a_superres_superres.png").exists()
    assert_user_error(run("superres", folder, "--out", tmp_path / "o.png", "--denoiser", tiny_denoiser),
                      "--out names one file")


def test_inpaint_a_folder_with_one_mask_for_every_image(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "frames", ["f1.png", "f2.png"], size=(64, 64))
    mask = _mask(tmp_path, name="dead.png")
    before = mask.read_bytes()
    r = run("inpaint", folder, "--missing", mask, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "2",
            "--quiet", "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert (folder / "f1_inpainted.png").is_file() and (folder / "f2_inpainted.png").is_file()
    assert json.loads((tmp_path / "r_f2.json").read_text())["options"]["missing"] == str(mask)
    assert mask.read_bytes() == before


def test_inpaint_a_folder_with_a_mask_per_image(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "scans", ["a.png", "b.jpg"], size=(64, 64))
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks, name="a.png")
    np.save(masks / "b.npy", np.eye(64, dtype=bool))
    common = ("inpaint", folder, "--missing", masks, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "2",
              "--quiet")
    r = run(*common, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r_a.json").read_text())["options"]["missing"] == str(masks / "a.png")
    assert json.loads((tmp_path / "r_b.json").read_text())["options"]["missing"] == str(masks / "b.npy")
    b = np.asarray(Image.open(folder / "b_inpainted.jpg"), np.float64)
    assert b.shape == (64, 64)
    # each image's own mask, checked whole before the first solve: a missing one, one of another size
    for p in folder.glob("*_inpainted.*"):
        p.unlink()
    (masks / "b.npy").unlink()
    assert_user_error(run(*common), "no mask for b.jpg in")
    np.save(masks / "b.npy", np.eye(32, dtype=bool))
    assert_user_error(run(*common), "b.jpg: the missing-pixel mask has shape (1, 32, 32)")
    _mask(masks, name="b.png")
    assert_user_error(run(*common), "2 masks for b.jpg")
    assert not list(folder.glob("*_inpainted.*"))  # nothing restored before the refusal


def test_inpaint_refuses_the_images_folder_as_its_masks(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png"], size=(64, 64))
    assert_user_error(run("inpaint", folder, "--missing", folder, "--denoiser", tiny_denoiser),
                      "--missing names the folder of the images")
    assert_user_error(run("inpaint", folder / "a.png", "--missing", folder, "--denoiser", tiny_denoiser),
                      "holds a.png itself")


def test_a_folder_never_writes_over_a_mask(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png", "p_a.png"], size=(64, 64))
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks, name="a.png")
    victim = _mask(masks, name="p_a.png")
    before = victim.read_bytes()
    common = ("inpaint", folder, "--missing", masks, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "1")
    # a's plot, masks/p_a.png, would be p_a.png's mask
    assert_user_error(run(*common, "--plot", masks / "p.png"), "refusing to overwrite the input p_a.png")
    assert victim.read_bytes() == before and not list(folder.glob("*_inpainted.png"))
    r = run(*common, "--plot", masks / "x.png", "--quiet")
    assert r.exit_code == 0, r.output
    assert victim.read_bytes() == before and (masks / "x_a.png").is_file() and (masks / "x_p_a.png").is_file()


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
    assert "with a folder" in text  # every image command takes one



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


def test_nan_may_mark_the_missing_pixels_of_a_float_image(tmp_path, camera_png, tiny_denoiser):
    import tifffile

    image = np.asarray(Image.open(camera_png), np.float32) / 255
    missing = np.zeros(image.shape, bool)
    missing[10:20, 5:30] = True
    image[missing] = np.nan
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", image)
    tifffile.imwrite(folder / "b.tif", image)
    np.save(tmp_path / "holes.npy", missing)
    common = ("--missing", tmp_path / "holes.npy", "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "2",
              "--quiet")
    r = run("inpaint", folder / "a.npy", *common)
    assert r.exit_code == 0, r.output
    assert np.isfinite(np.load(folder / "a_inpainted.npy")).all()
    (folder / "a_inpainted.npy").unlink()
    r = run("inpaint", folder, *common)
    assert r.exit_code == 0, r.output
    assert np.isfinite(np.load(folder / "a_inpainted.npy")).all() and (folder / "b_inpainted.tif").is_file()
    # a NaN the mask does not cover is refused, for one image and before the first of a folder
    smaller = missing.copy()
    smaller[19] = False
    np.save(tmp_path / "holes.npy", smaller)
    for p in folder.glob("*_inpainted.*"):
        p.unlink()
    assert_user_error(run("inpaint", folder / "a.npy", *common), "NaN or infinite values where the mask marks no")
    assert_user_error(run("inpaint", folder, *common), "a.npy contains NaN or infinite values where its mask")
    assert not list(folder.glob("*_inpainted.*"))
    # without a mask (a random one) and in the other commands, NaN is refused as before
    assert_user_error(run("inpaint", folder / "a.npy", "--simulate", "--denoiser", tiny_denoiser), "contains NaN")
    assert_user_error(run("deblur", folder / "a.npy", "--denoiser", tiny_denoiser), "a.npy contains NaN")


# -- review findings (folders) ----------------------------------------------------------------------

def test_a_shared_mask_inside_the_images_folder_is_not_restored(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "frames", ["f1.png", "f2.png"], size=(64, 64))
    mask = _mask(folder, name="dead.png")
    r = run("inpaint", folder, "--missing", mask, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "1")
    assert r.exit_code == 0, r.output
    assert "dead.png is an input of the others (--missing), not an image to restore" in r.output
    assert sorted(p.name for p in folder.glob("*_inpainted.png")) == ["f1_inpainted.png", "f2_inpainted.png"]


def test_each_image_gets_its_own_mask_and_its_notes_once(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "scans", ["a.png", "b.png"], size=(64, 64))
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks, name="a.png", box=(slice(0, 8), slice(0, 8)))  # 64 pixels missing
    _mask(masks, name="b.png", box=(slice(0, 16), slice(0, 16)))  # 256
    r = run("inpaint", folder, "--missing", masks, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "1",
            "--quiet", "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    for stem, holes in (("a", 64), ("b", 256)):
        rep = json.loads((tmp_path / f"r_{stem}.json").read_text())
        assert rep["operator"]["observed_fraction"] == pytest.approx(1 - holes / 4096)
    # one RGBA mask for three images: its note (its alpha read as the mask) is said once, not once per read
    shared = tmp_path / "shared.png"
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[10:20, 10:20] = 255
    Image.fromarray(rgba).save(shared)
    more = _images(tmp_path / "more", ["x.png", "y.png", "z.png"], size=(64, 64))
    r = run("inpaint", more, "--missing", shared, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "1")
    assert r.exit_code == 0, r.output
    assert r.output.count("note: shared.png: its alpha channel marks the missing pixels") == 1


def test_a_per_channel_mask_is_refused_before_the_first_image_in_per_channel_mode(tmp_path, tiny_denoiser):
    folder = tmp_path / "rgb"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / name)
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks, size=(32, 32), box=(slice(0, 4), slice(0, 4)), name="a.png")
    per_channel = np.zeros((32, 32, 3), np.uint8)
    per_channel[:4, :4, 0] = 255
    Image.fromarray(per_channel).save(masks / "b.png")
    r = run("inpaint", folder, "--missing", masks, "--noise", "0", "--color", "per-channel", "--max-iter", "1")
    assert_user_error(r, "b.png: its mask marks each colour channel apart")
    assert not list(folder.glob("*_inpainted.png"))


def test_a_folder_of_one_image_uses_per_image_names(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "one", ["only.png"])
    r = run("superres", folder, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "1", "--quiet",
            "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r_only.json").is_file() and not (tmp_path / "r.json").exists()


def test_a_resumed_folder_reports_the_iteration_cap_asked_for(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png"])
    common = ("superres", folder, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "2", "--quiet",
              "--checkpoint", tmp_path / "s.state", "--report", tmp_path / "r.json")
    assert run(*common).exit_code == 0
    r = run(*common, "--resume")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r_a.json").read_text())
    assert rep["options"]["max_iter"] == 2 and rep["solver"]["iterations"] == 2  # kept as it was


def test_ctrl_c_between_two_images_names_those_left(tmp_path, tiny_denoiser, monkeypatch):
    import pnp_stable.cli.folders as folders

    folder = _images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    real, calls = folders.restore_image, []

    def interrupted_at_the_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(folders, "restore_image", interrupted_at_the_second)
    r = run("denoise", folder, "--noise", "0.1", "--denoiser", tiny_denoiser, "--quiet")
    assert r.exit_code == 130 and "interrupted: 2 more image(s) not restored" in r.output, r.output
    assert (folder / "a_denoised.png").is_file() and not (folder / "b_denoised.png").exists()


def test_a_simulation_keeps_the_values_under_its_mask(tmp_path, camera_png, tiny_denoiser):
    mask = _mask(tmp_path)
    report = tmp_path / "r.json"
    r = run("inpaint", camera_png, "--simulate", "--missing", mask, "--noise", "0", "--denoiser", tiny_denoiser,
            "--max-iter", "2", "--quiet", "--report", report, "--out", tmp_path / "o.png")
    assert r.exit_code == 0, r.output
    restored = np.asarray(Image.open(tmp_path / "o.png"), np.float64) / 255
    truth = np.asarray(Image.open(camera_png), np.float64) / 255
    expected = 10 * np.log10(1 / np.mean((restored - truth) ** 2))
    assert json.loads(report.read_text())["metrics"]["psnr"] == pytest.approx(expected, abs=0.05)  # 8-bit output


# -- review findings (a user's) ------------------------------------------------------------------------

def test_a_folder_refuses_an_image_the_denoiser_cannot_take_before_the_first(tmp_path, tiny_denoiser):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((np.random.default_rng(1).random((32, 32)) * 255).astype(np.uint8)).save(folder / "b.png")
    r = run("denoise", folder, "--denoiser", "color", "--noise", "0.04")
    assert_user_error(r, "b.png: the denoiser expects 3-channel images but the image has 1")
    assert not list(folder.glob("*_denoised.png"))


def test_superres_checks_every_image_against_the_kernel_first(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png"], size=(64, 64))
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(folder / "b.png")
    r = run("superres", folder, "--kernel", "gauss:2,25", "--noise", "0", "--denoiser", tiny_denoiser)
    assert_user_error(r, "b.png (16x16 restored by 2) is smaller than the kernel (25x25")
    assert not list(folder.glob("*_superres.png"))


def test_inpaint_checks_first_that_each_noise_level_can_be_estimated(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png", "b.png"], size=(64, 64))
    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "a.npy", np.zeros((64, 64), bool))
    checker = np.zeros((64, 64), bool)
    checker[::2, ::2] = True  # no 2x2 block fully observed
    np.save(masks / "b.npy", checker)
    r = run("inpaint", folder, "--missing", masks, "--denoiser", tiny_denoiser, "--max-iter", "1")
    assert_user_error(r, "b.png: its mask (b.npy) leaves no 2x2 block fully observed")
    assert not list(folder.glob("*_inpainted.png"))
    r = run("inpaint", folder, "--missing", masks, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "1",
            "--quiet")
    assert r.exit_code == 0, r.output


def test_a_folder_resume_without_any_state_is_refused(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png", "b.png"])
    r = run("superres", folder, "--noise", "0.01", "--denoiser", tiny_denoiser, "--checkpoint", tmp_path / "typo.state",
            "--resume")
    assert_user_error(r, "no checkpoint to resume: none of the folder's states")
    assert not list(folder.glob("*_superres.png"))


def test_mask_files_named_exactly_and_a_single_channel_npy(tmp_path, tiny_denoiser):
    folder = _images(tmp_path / "in", ["a.png"], size=(64, 64))
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(folder / "a.tif")
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks, name="a.png")
    _mask(masks, name="a.tif")
    r = run("inpaint", folder, "--missing", masks, "--noise", "0", "--denoiser", tiny_denoiser, "--max-iter", "1",
            "--quiet")
    assert r.exit_code == 0, r.output  # a.png's mask is a.png, a.tif's a.tif
    hw1 = np.zeros((64, 64, 1), bool)
    hw1[5:9, 5:9] = True
    np.save(tmp_path / "hw1.npy", hw1)
    r = run("inpaint", folder / "a.png", "--missing", tmp_path / "hw1.npy", "--noise", "0", "--denoiser", tiny_denoiser,
            "--max-iter", "1", "--quiet", "--out", tmp_path / "o.png")
    assert r.exit_code == 0, r.output


def test_quiet_prints_the_summary_line_only_even_with_a_checkpoint(tmp_path, camera_png, tiny_denoiser):
    r = run("superres", camera_png, "--noise", "0.01", "--denoiser", tiny_denoiser, "--max-iter", "1", "--quiet",
            "--checkpoint", tmp_path / "s.state")
    assert r.exit_code == 0 and len([line for line in r.output.splitlines() if line.strip()]) == 1, r.output


def test_a_mask_painted_on_a_transparent_layer_is_read_by_its_alpha(tmp_path):
    """Strokes on a transparent layer: the colours under full transparency are often white, which
    would mark every pixel missing; a partly transparent alpha is the mask (opaque: missing)."""
    from pnp_stable.cli.cmd_inpaint import _read_mask

    layer = np.zeros((16, 20, 4), dtype=np.uint8)
    layer[..., :3] = 255  # white, fully transparent
    layer[4:8, 5:9] = (200, 30, 30, 255)  # an opaque red stroke
    Image.fromarray(layer).save(tmp_path / "layer.png")
    mask = _read_mask(tmp_path / "layer.png", quiet=True)
    assert mask.shape == (16, 20) and mask.sum() == 16 and mask[4:8, 5:9].all()
    opaque = layer.copy()
    opaque[..., 3] = 255  # an ordinary opaque mask: its white pixels are missing, as before
    opaque[4:8, 5:9, :3] = 0
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    assert int(np.asarray(_read_mask(tmp_path / "opaque.png", quiet=True)).sum()) == 3 * (16 * 20 - 16)
    margin = opaque.copy()
    margin[:2, :, 3] = 0  # a black-and-white mask with a transparent margin keeps its colours
    Image.fromarray(margin).save(tmp_path / "margin.png")
    by_colour = np.asarray(_read_mask(tmp_path / "margin.png", quiet=True))
    assert by_colour.shape == (3, 16, 20) and not by_colour[:, 4:8, 5:9].any() and by_colour[:, 10:].all()

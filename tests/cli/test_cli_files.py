"""User errors about files and run settings: each is one line ``error: ...`` with exit code 2.

Covers ``train-denoiser``'s ``--set``, ``--run-dir`` and ``--resume`` checks (which happen before
any data is read), and unreadable ``.pt`` files given to ``certify``, ``denoise`` and ``deblur``:
the message names the file in a few words, never PyTorch's paragraphs on ``weights_only``.
"""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_test_helpers import assert_user_error, run


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def train(images, run_dir, *options):
    return run("train-denoiser", "--train", images, "--run-dir", run_dir, "--preset", "tiny", *options)


@pytest.mark.parametrize("setting, fragment", [
    ("foo=1", "unknown configuration key 'foo' (valid keys: "),
    ("lrr=1", "unknown configuration key 'lrr' (did you mean lr?)"),
    ("lr=abc", "invalid value for lr: 'abc' (expected a number)"),
    ("model.width=abc", "invalid value for model.width: 'abc' (expected an integer)"),
    ("model.wdth=4", "unknown configuration key 'model.wdth' (did you mean model.width?)"),
    ("run_dir=elsewhere", "run_dir has its own option, --run-dir"),
])
def test_train_denoiser_bad_set_is_one_line(tmp_path, images, setting, fragment):
    assert_user_error(train(images, tmp_path / "run", "--set", setting), fragment)
    assert not (tmp_path / "run").exists()


def test_train_denoiser_nested_set_still_works(tmp_path, images):
    r = train(images, tmp_path / "run", "--steps", "1", "--set", "model.width=6", "--set", "lr=5e-3")
    assert r.exit_code == 0, r.output
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["config"]["model"]["width"] == 6 and state["config"]["lr"] == 5e-3


def test_train_denoiser_refuses_a_file_as_run_dir(tmp_path, images):
    taken = tmp_path / "some_existing_file.png"
    taken.write_bytes(b"not a folder")
    assert_user_error(train(images, taken), "some_existing_file.png is a file, not a folder")
    assert taken.read_bytes() == b"not a folder"


def test_train_denoiser_resume_without_checkpoint_fails_before_training(tmp_path, images):
    """--resume means "continue": with nothing to continue it is an error, not a new run."""
    (tmp_path / "r1").mkdir()
    assert_user_error(train(images, tmp_path / "r1", "--resume"), f"no checkpoint to resume in {tmp_path / 'r1'}")
    assert list((tmp_path / "r1").iterdir()) == []  # no log, no checkpoint: nothing started
    assert_user_error(train(images, tmp_path / "r2", "--resume"), "no checkpoint to resume")
    assert not (tmp_path / "r2").exists()


@pytest.fixture(params=["random bytes", "pickled object", "plain pickle", "png"])
def bad_model(request, tmp_path, camera_png):
    """A file given where a denoiser is expected that torch cannot load (weights-only)."""
    if request.param == "png":
        return camera_png  # an existing file: read as a file, not looked up as a model name
    path = tmp_path / "rand.pt"
    if request.param == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif request.param == "plain pickle":  # protocol 4: torch would add a warning line about it
        path.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    else:
        # a path object: a class weights-only loading does not allow (torch's long refusal)
        torch.save({"format": "pnp-stable-denoiser/1", "config": Path("x")}, path)
    return path


def test_certify_an_unreadable_file(bad_model):
    assert_user_error(run("certify", bad_model, "--no-search"),
                      f"{bad_model} is not a pnp-stable denoiser file (it could not be read as one)")


def test_denoise_with_an_unreadable_denoiser(tmp_path, camera_png, bad_model):
    assert_user_error(run("denoise", camera_png, "--sigma", "0.1", "--denoiser", bad_model, "--out", tmp_path / "o.png"),
                      "is not a pnp-stable denoiser file")
    assert not (tmp_path / "o.png").exists()


def test_deblur_resume_from_an_unreadable_state(tmp_path, camera_png, tiny_denoiser):
    garbage = tmp_path / "garbage.state"  # an image's bytes under a state's name
    garbage.write_bytes(camera_png.read_bytes())
    assert_user_error(run("deblur", camera_png, "--noise", "0.01", "--denoiser", tiny_denoiser, "--checkpoint", garbage,
                          "--resume", "--out", tmp_path / "o.png"),
                      f"{garbage} is not a pnp-stable solver state (it could not be read as one)")


def test_a_folder_names_the_image_files_of_types_it_does_not_read(tmp_path, tiny_denoiser):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = Image.fromarray((np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8))
    image.save(folder / "a.png")
    image.save(folder / "b.webp")
    image.save(folder / "c.bmp")
    (folder / "notes.txt").write_text("not an image")
    r = run("denoise", folder, "--noise", "10/255", "--denoiser", tiny_denoiser)
    assert r.exit_code == 0, r.output
    assert "skipped 2 image files of a type not read (PNG, JPG, TIF and .npy are): b.webp, c.bmp" in r.output
    assert "notes.txt" not in r.output and (folder / "a_denoised.png").is_file()
    quiet = run("denoise", folder, "--noise", "10/255", "--denoiser", tiny_denoiser, "--quiet")
    assert "skipped" not in quiet.output


def test_a_folder_of_unread_types_only_names_them_in_its_error(tmp_path, tiny_denoiser):
    folder = tmp_path / "webps"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a.webp")
    assert_user_error(run("denoise", folder, "--noise", "10/255", "--denoiser", tiny_denoiser),
                      "it holds 1 image file of a type not read (PNG, JPG, TIF and .npy are): a.webp")


def test_an_rgb_file_with_equal_channels_is_restored_as_gray_and_written_as_rgb(tmp_path):
    """A black-and-white photograph saved as RGB: the gray denoiser, a third of the work of the
    colour model (whose chroma planes would be zeros), and an RGB file back."""
    gray = (np.random.default_rng(4).random((24, 20)) * 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    r = run("denoise", tmp_path / "rgb.png", "--noise", "10/255", "--report", tmp_path / "r.json")
    assert r.exit_code == 0 and "three colour channels are equal: restored as a gray image" in r.output, r.output
    assert run("denoise", tmp_path / "g.png", "--noise", "10/255").exit_code == 0
    out = np.asarray(Image.open(tmp_path / "rgb_denoised.png"))
    assert out.shape == (24, 20, 3)
    np.testing.assert_array_equal(out[..., 0], np.asarray(Image.open(tmp_path / "g_denoised.png")))
    assert (out == out[..., :1]).all()
    import json

    assert json.loads((tmp_path / "r.json").read_text())["image"]["shape"] == [3, 24, 20]

"""``pnp-stable train-classifier``: a tiny run on synthetic idx files, its outputs, and every error path."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli_test_helpers import assert_user_error

from pnp_stable.cli.main import main

TINY = ["--widths", "4,8", "--blocks", "1", "--epochs", "1", "--batch-size", "16", "--threads", "1", "--quiet"]


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(folder, prefix, n, seed):
    # class k = faint noise + a bright patch at a class-specific place (learnable in a few steps)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 12, 12)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 1 + 2 * (k // 2), 2 + 5 * (k % 2)
        images[i, r:r + 3, c:c + 3] = 230
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))


@pytest.fixture
def fmnist(tmp_path):
    """A Fashion-MNIST-layout folder of synthetic gzip'd idx files (12x12 images, 10 classes)."""
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    _write_split(folder, "train", 64, 0)
    _write_split(folder, "t10k", 24, 1)
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)  # --threads sets the process-wide value


def run(*args):
    return CliRunner().invoke(main, ["train-classifier", *[str(a) for a in args]])


def test_help_lists_options_and_examples():
    result = run("--help")
    assert result.exit_code == 0
    for text in ("Example", "--data", "--pgd-eps", "--certified-eps", "--resume", "--report"):
        assert text in result.output
    listing = CliRunner().invoke(main, ["--help"])
    assert "train-classifier" in listing.output


def test_tiny_run_writes_model_report_and_plot(tmp_path, fmnist):
    run_dir, report, plot = tmp_path / "run", tmp_path / "out" / "r.json", tmp_path / "out" / "p.png"
    result = run("--data", fmnist, *TINY, "--run-dir", run_dir, "--pgd-eps", "0.1,0.5", "--pgd-steps", "3",
                 "--eval-size", "8", "--report", report, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "trained nonexpansive on fashion_mnist: 1 epoch, 64 images" in result.output
    assert "certified L = 1" in result.output
    assert "clean" in result.output and "certified@0.5" in result.output and "l2-PGD (3 steps, 8 images, clean " in result.output
    assert {p.name for p in run_dir.iterdir()} >= {"checkpoint.pt", "model.pt", "history.json", "config.json"}
    assert plot.stat().st_size > 1000
    r = json.loads(report.read_text())
    assert r["data"]["dataset"] == "fashion_mnist" and r["data"]["train_images"] == 64
    assert r["data"]["class_names"][0] == "T-shirt/top"
    assert r["model"]["certified_lipschitz"] <= 1 + 1e-6
    assert r["training"]["config"]["loss"] == "hinge" and r["training"]["config"]["margin"] == 1.0
    assert len(r["training"]["history"]) == 1
    assert r["test"]["n_examples"] == 24 and 0 <= r["test"]["certified_accuracy"] <= r["test"]["clean_accuracy"]
    assert r["pgd"]["eps"] == [0.1, 0.5] and r["pgd"]["pgd"]["steps"] == 3 and r["pgd"]["n_examples"] == 8
    for pgd_acc, cert_acc in zip(r["pgd"]["pgd_accuracy"], r["pgd"]["certified_accuracy"]):
        assert cert_acc <= pgd_acc <= r["pgd"]["clean_accuracy"]

    # the run exists: refused without --resume, only re-evaluated with it (a finished run is not retrained)
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", run_dir), "already holds a training run")
    again = run("--data", fmnist, *TINY, "--run-dir", run_dir, "--resume", "--no-eval")
    assert again.exit_code == 0, again.output
    assert "1 epoch" in again.output and "clean" not in again.output
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", run_dir, "--resume", "--lr", "0.01"),
                      "different configuration (lr)")
    # --resume where there is nothing to resume (a mistyped --run-dir): refused, nothing created
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "typo", "--resume"),
                      "no checkpoint to resume in")
    assert not (tmp_path / "typo").exists()


def test_max_substeps_caps_every_block_and_keeps_the_certificate(tmp_path, fmnist):
    report = tmp_path / "r.json"
    result = run("--data", fmnist, *TINY, "--max-substeps", "1", "--run-dir", tmp_path / "run", "--report", report)
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert r["training"]["config"]["model"]["max_substeps"] == 1
    assert r["model"]["certified_lipschitz"] <= 1 + 1e-6
    from pnp_stable.classify import load_classifier
    from pnp_stable.layers import GradientFlowBlock
    model = load_classifier(tmp_path / "run" / "model.pt")
    blocks = [m for m in model.modules() if isinstance(m, GradientFlowBlock)]
    assert blocks and all(b.max_substeps == 1 and b.substeps() == 1 for b in blocks)


def test_stage_activation_is_built_recorded_and_certified(tmp_path, fmnist):
    report = tmp_path / "r.json"
    result = run("--data", fmnist, *TINY, "--stage-activation", "maxmin", "--run-dir", tmp_path / "run",
                 "--report", report)
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert r["training"]["config"]["model"]["stage_activation"] == "maxmin"
    assert r["model"]["certified_lipschitz"] <= 1 + 1e-6
    from pnp_stable.classify import load_classifier
    from pnp_stable.classify.certified_layers import MaxMin
    model = load_classifier(tmp_path / "run" / "model.pt")
    assert sum(isinstance(m, MaxMin) for m in model.modules()) == 2  # after the lift and the one transition


def test_resnet_with_explicit_dataset_and_subsets(tmp_path, fmnist):
    report = tmp_path / "r.json"
    result = run("--data", fmnist, "--dataset", "mnist", "--model", "resnet", *TINY, "--train-size", "32",
                 "--test-size", "10", "--run-dir", tmp_path / "rn", "--report", report)
    assert result.exit_code == 0, result.output
    assert "trained resnet on mnist: 1 epoch, 32 images" in result.output and "test (10 images)" in result.output
    r = json.loads(report.read_text())
    assert r["training"]["config"]["loss"] == "ce" and r["model"]["certified_lipschitz"] > 1
    assert r["data"]["class_names"][0] == "0" and r["pgd"] is None


def test_missing_and_unrecognised_data_folders(tmp_path):
    assert_user_error(run("--data", tmp_path / "absent", *TINY), "data folder not found")
    assert_user_error(run("--data", tmp_path / "absent", "--dataset", "fashion-mnist", *TINY), "data folder not found")
    (tmp_path / "empty").mkdir()
    assert_user_error(run("--data", tmp_path / "empty", *TINY), "cannot tell the dataset format")
    # on the command line the kind is named with --dataset (the library's advice names its argument)
    undetected = run("--data", tmp_path / "empty", *TINY)
    assert_user_error(undetected, "pass --dataset fashion-mnist, mnist, cifar10 or folder")
    assert "explicitly" not in undetected.output
    assert_user_error(run("--data", tmp_path / "empty", "--dataset", "cifar10", *TINY), "missing CIFAR-10 batch files")
    assert not (tmp_path / "runs").exists()


def test_bad_idx_files(tmp_path, fmnist):
    path = fmnist / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run"), "corrupt or truncated gzip")
    path.write_bytes(_idx(np.zeros(5, np.uint8))[:-2])  # header says 5 labels, 3 present (uncompressed)
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run"), "idx header declares shape (5,)")
    path.unlink()
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run"), "missing train-labels-idx1-ubyte")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, fragment", [
    (["--pgd-eps", "0.1,abc"], "not a comma-separated list"),
    (["--pgd-eps", "-0.5"], "must be a finite number >= 0"),
    (["--pgd-eps", "inf"], "must be a finite number >= 0"),  # NaN "adversarial" images
    (["--certified-eps", "nan"], "--certified-eps must be a finite radius"),
    (["--widths", "8,,16"], "has an empty entry"),
    (["--image-size", "32 x 32"], "not a size"),
    (["--image-size", "99999x99999"], "at most 4096 pixels per side"),
    (["--widths", "8,0"], "must be a finite number >= 1"),
    (["--max-substeps", "-1"], "--max-substeps"),
    (["--stage-activation", "maxmin", "--widths", "3,4"], "every width must be even"),
    (["--stage-activation", "tanh"], "--stage-activation"),
    (["--epochs", "0"], "--epochs"),
    (["--model", "vgg"], "--model"),
    (["--image-size", "3x"], "not a size"),
    (["--device", "tpu"], "--device"),
    (["--plot", "p.png"], "--plot needs an attack"),
    (["--plot", "p.png", "--pgd-eps", "0.5", "--no-eval"], "--plot needs an attack"),
    # refused before training, not after it (the format used to be checked when the plot was drawn)
    (["--plot", "p.xyz", "--pgd-eps", "0.5"], "cannot plot to a .xyz file; use one of"),
    (["--plot", "plot", "--pgd-eps", "0.5"], "cannot plot to a file without a suffix"),
    # Fashion-MNIST is never resized: the option used to be ignored without a word
    (["--image-size", "32"], "--image-size resizes image folders only"),
])
def test_bad_options_are_one_line_errors(tmp_path, fmnist, options, fragment):
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run", *options), fragment)
    assert not (tmp_path / "run").exists()


def test_unwritable_destinations_are_refused_before_training(tmp_path, fmnist, monkeypatch):
    import pnp_stable.classify

    monkeypatch.setattr(pnp_stable.classify, "train_classifier", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "file").write_text("x")
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "file"),
                      f"--run-dir {tmp_path / 'file'} is a file, not a folder")
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "file" / "run"),
                      f"{tmp_path / 'file'} is a file, not a folder")
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run", "--report",
                          tmp_path / "file" / "deep" / "r.json"), f"{tmp_path / 'file'} is a file, not a folder")
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run", "--report", tmp_path),
                      "is a directory")  # click's own check
    assert_user_error(run("--data", fmnist, *TINY, "--run-dir", tmp_path / "run", "--pgd-eps", "0.5",
                          "--plot", tmp_path / "file" / "p.png"), f"{tmp_path / 'file'} is a file, not a folder")
    assert not (tmp_path / "run").exists()


def test_data_is_required():
    result = run("--epochs", "1")
    assert result.exit_code == 2 and "--data" in result.output and "Traceback" not in result.output


def _image_folder(root, classes, per_class=6, size=8):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
            pixels[k:k + 3, k:k + 3] = 230
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_splits(tmp_path):
    _image_folder(tmp_path / "flat", ["cat", "dog"])
    result = run("--data", tmp_path / "flat", *TINY[:-1], "--widths", "4", "--run-dir", tmp_path / "r1")
    assert result.exit_code == 0, result.output
    assert "detected as image_folder" in result.output and "measured on the training images" in result.output
    assert "trained nonexpansive on image_folder: 1 epoch, 12 images" in result.output

    _image_folder(tmp_path / "split" / "train", ["cat", "dog"])
    assert_user_error(run("--data", tmp_path / "split", *TINY, "--run-dir", tmp_path / "r2"),
                      "has a train/ sub-folder but no test/ one")
    _image_folder(tmp_path / "split" / "test", ["cat", "dog", "eel"], per_class=2)
    assert_user_error(run("--data", tmp_path / "split", "--dataset", "folder", *TINY, "--run-dir", tmp_path / "r2"),
                      "different classes (2 vs 3)")
    assert not (tmp_path / "r2").exists()


def test_init_from_fine_tunes_a_trained_model_and_rejects_a_missing_one(tmp_path, fmnist):
    first = run("--data", fmnist, *TINY, "--run-dir", tmp_path / "a")
    assert first.exit_code == 0, first.output
    report = tmp_path / "r.json"
    tuned = run("--data", fmnist, *TINY, "--margin", "0.5", "--init-from", tmp_path / "a" / "model.pt",
                "--run-dir", tmp_path / "b", "--report", report)
    assert tuned.exit_code == 0, tuned.output
    config = json.loads(report.read_text())["training"]["config"]
    assert config["init_from"] == str(tmp_path / "a" / "model.pt") and config["margin"] == 0.5
    missing = run("--data", fmnist, *TINY, "--init-from", tmp_path / "nope.pt", "--run-dir", tmp_path / "c")
    assert missing.exit_code == 2 and "model file not found" in missing.output
    assert "Traceback" not in missing.output and len(missing.output.strip().splitlines()) <= 2
    # a file that is no torch file: one short line, not PyTorch's weights_only explanation
    (tmp_path / "junk.pt").write_bytes(b"\x80junk")
    assert_user_error(run("--data", fmnist, *TINY, "--init-from", tmp_path / "junk.pt", "--run-dir", tmp_path / "d"),
                      "junk.pt is not a pnp-stable classifier (it could not be read as one)")


def test_outputs_that_are_inputs_or_the_runs_own_files_are_refused(tmp_path, fmnist, monkeypatch):
    import pnp_stable.classify

    monkeypatch.setattr(pnp_stable.classify, "train_classifier", lambda *a, **k: pytest.fail("trained"))
    base = ("--data", fmnist, *TINY, "--pgd-eps", "0.5")
    image = fmnist / "t10k-images-idx3-ubyte.gz"
    before = image.read_bytes()
    assert_user_error(run(*base, "--run-dir", tmp_path / "run", "--report", image), "is inside the --data folder")
    assert_user_error(run(*base, "--run-dir", tmp_path / "run", "--plot", fmnist / "p.png"), "inside the --data folder")
    assert_user_error(run(*base, "--run-dir", fmnist / "run"), "overlap: the run's files would change the dataset")
    assert_user_error(run(*base, "--run-dir", tmp_path / "run", "--report", tmp_path / "run" / "model.pt"),
                      "is one of the run's own files")
    assert_user_error(run(*base, "--run-dir", tmp_path / "run", "--report", tmp_path / "same.png",
                          "--plot", tmp_path / "same.png"), "--report and --plot name the same file")
    (tmp_path / "init.pt").write_bytes(b"model")
    assert_user_error(run(*base, "--run-dir", tmp_path / "run", "--init-from", tmp_path / "init.pt",
                          "--report", tmp_path / "init.pt"), "is the --init-from model")
    assert image.read_bytes() == before and not (tmp_path / "run").exists()

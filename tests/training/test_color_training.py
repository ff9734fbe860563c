"""Training a gray model for its job inside the opponent-colour denoiser (``color="opponent"``)."""

import json

import pytest
import torch
import torch.nn.functional as F

from pnp_stable.denoisers import OpponentColorDenoiser, load
from pnp_stable.denoisers.models import build_denoiser
from pnp_stable.layers import certificate_of
from pnp_stable.protocols import denoiser_channels
from pnp_stable.training import export_denoiser, preset, train_denoiser
from pnp_stable.training.checkpoint import load_checkpoint
from pnp_stable.training.data import PatchSampler, training_image_paths
from pnp_stable.verification import empirical_averagedness_violation


def color_config(folder, run_dir, **overrides):
    return preset("tiny", [str(folder)], str(run_dir), val_dir=None, color="opponent", **overrides)


@pytest.fixture
def rgb_folder(make_images, tmp_path):
    return make_images(tmp_path / "train", mode="RGB")


def test_the_objective_is_the_colour_denoisers_on_rgb_patches(rgb_folder, tmp_path):
    config = color_config(rgb_folder, tmp_path / "run", steps=1)
    result = train_denoiser(config)
    # the first loss, recomputed: the same initial gray model inside the colour denoiser, the
    # same RGB batch; a loop that trained the gray model on gray patches would differ
    torch.manual_seed(config.seed)
    gray = build_denoiser(config.model).train()
    sampler = PatchSampler(training_image_paths(config.train_dirs), 3, config.patch_size,
                           (config.sigma_min, config.sigma_max))
    clean, noisy, sigma = sampler.batch(config.batch_size, 0, config.seed)
    # with autograd on, as in training (the power method steps only then)
    expected = F.mse_loss(OpponentColorDenoiser(gray)(noisy, sigma), clean).detach()
    assert clean.shape[1] == 3
    assert result.losses[0] == pytest.approx(float(expected), rel=1e-5)


def test_colour_training_learns_validates_on_rgb_and_exports_a_gray_model(rgb_folder, make_images, tmp_path):
    val = make_images(tmp_path / "val", count=2, seed=7, mode="RGB")
    config = color_config(rgb_folder, tmp_path / "run", steps=30, val_every=30, sigma_min=0.02, sigma_max=0.2)
    config.val_dir = str(val)
    result = train_denoiser(config)
    assert sum(result.losses[-5:]) < 0.7 * sum(result.losses[:5])
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r for r in records if r["event"] == "val"][-1]["psnr"]["25"] > 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["model"]["channels"] == 1

    path = export_denoiser(tmp_path / "run" / "checkpoint.pt", "tiny-color", dest_dir=tmp_path / "export")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["training"]["color"] == "opponent"
    assert meta["color"] == {"mode": "opponent", "chroma_scale": 3.0} and meta["channels"] == 3
    # load() gives the denoiser the weights were trained in: RGB in, the gray model's certificate
    colour = load(path).double()
    assert isinstance(colour, OpponentColorDenoiser) and not colour.training
    assert denoiser_channels(colour) == 3 and denoiser_channels(colour.gray) == 1
    assert colour.metadata["name"] == "tiny-color"
    cert = certificate_of(colour)
    assert cert.averagedness == pytest.approx(meta["certificate"]["averagedness"], rel=1e-9) and cert.averagedness < 1
    fn = lambda x: colour(x, 0.1)  # noqa: E731
    assert empirical_averagedness_violation(fn, cert.averagedness, (3, 7, 6), restarts=1, steps=25, n_pairs=8) <= 1e-9


def test_colour_training_config_errors(rgb_folder, tmp_path):
    with pytest.raises(ValueError, match="color must be"):
        preset("tiny", [str(rgb_folder)], str(tmp_path), color="rgb")
    with pytest.raises(ValueError, match="trains a gray model"):
        color_config(rgb_folder, tmp_path, model={"channels": 3})


def test_a_colour_model_records_cbsd68_numbers_and_refuses_gray_ones(rgb_folder, tmp_path):
    train_denoiser(color_config(rgb_folder, tmp_path / "run", steps=2))
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(ValueError, match="measured on CBSD68"):
        export_denoiser(checkpoint, "c", dest_dir=tmp_path / "export", bsd68_dir=str(rgb_folder), empirical_check=False)
    gray_numbers = {"psnr": {"25": 27.0}, "images": 68, "protocol": "denoise-bsd68"}
    with pytest.raises(ValueError, match="denoise-cbsd68"):
        export_denoiser(checkpoint, "c", dest_dir=tmp_path / "export", bsd68_result=gray_numbers, empirical_check=False)
    path = export_denoiser(checkpoint, "c", dest_dir=tmp_path / "export", empirical_check=False,
                           bsd68_result={**gray_numbers, "protocol": "denoise-cbsd68"})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["cbsd68_psnr"] == {"25": 27.0} and "bsd68_psnr" not in meta


def test_export_merges_the_numbers_of_several_benchmark_files(rgb_folder, tmp_path, capsys):
    from pnp_stable.training.export import main

    train_denoiser(color_config(rgb_folder, tmp_path / "run", steps=2))

    def bench_file(name, psnr, images=68, protocol="denoise-cbsd68"):
        path = tmp_path / name
        path.write_text(json.dumps({"protocol": protocol, "results": {"c": {"psnr": psnr, "images": images}}}))
        return f"{path}:c"

    s25, s15_50 = bench_file("a.json", {"25": 29.9}), bench_file("b.json", {"15": 32.5, "50": 26.6})
    args = [str(tmp_path / "run" / "checkpoint.pt"), "c", "--dest", str(tmp_path / "export"), "--no-empirical-check"]
    assert main([*args, "--bsd68-json", s25, "--bsd68-json", s15_50]) == 0
    meta = json.loads((tmp_path / "export" / "c.json").read_text())
    assert meta["cbsd68_psnr"] == {"25": 29.9, "15": 32.5, "50": 26.6} and meta["cbsd68_images"] == 68
    capsys.readouterr()
    assert main([*args, "--bsd68-json", s25, "--bsd68-json", bench_file("d.json", {"15": 1.0}, images=10)]) == 2
    assert "images 10 differs from 68" in capsys.readouterr().err
    assert main([*args, "--bsd68-json", f"{tmp_path / 'a.json'}:nope"]) == 2
    assert main([*args, "--bsd68-json", bench_file("g.json", {"25": 27.9}, protocol="denoise-bsd68")]) == 2
    assert "denoise-cbsd68" in capsys.readouterr().err

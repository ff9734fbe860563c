"""Weight averaging of sibling runs: the mean of the weights, a certified export, refusals."""

import json

import pytest
import torch

from pnp_stable.denoisers import build_denoiser, load
from pnp_stable.training import export_denoiser, preset, train_denoiser
from pnp_stable.training.average import average_checkpoints, main
from pnp_stable.training.checkpoint import load_checkpoint, save_checkpoint
from pnp_stable.training.config import TrainConfig
from pnp_stable.verification import empirical_averagedness_violation


def _run(image_folder, run_dir, **overrides):
    config = preset("tiny", [str(image_folder)], str(run_dir), **{"val_dir": None, **overrides})
    return train_denoiser(config).checkpoint


@pytest.fixture
def siblings(image_folder, make_images, tmp_path):
    """Two continuations (seeds 1, 2) of one 6-step run, validated on a folder of their own."""
    start = _run(image_folder, tmp_path / "start", steps=6)
    val = make_images(tmp_path / "val", count=2, seed=9)
    runs = [_run(image_folder, tmp_path / f"sibling{seed}", steps=8, seed=seed, init_from=str(start),
                 val_dir=str(val), certified_finetune_steps=3)
            for seed in (1, 2)]
    return runs


def test_average_is_the_mean_of_the_weights_and_records_its_inputs(siblings):
    a, b = (load_checkpoint(p) for p in siblings)
    state = average_checkpoints(siblings)
    key = "network.1.linear.weight"
    assert not torch.equal(a["model"][key], b["model"][key])
    assert torch.allclose(state["model"][key], (a["model"][key] + b["model"][key]) / 2, atol=1e-7)
    assert [s["seed"] for s in state["averaged_from"]] == [1, 2]
    config = TrainConfig.from_dict(a["config"])
    assert all((s["patch_size"], s["batch_size"]) == (config.patch_size, config.batch_size)
               for s in state["averaged_from"])
    assert state["elapsed"] == pytest.approx(a["elapsed"] + b["elapsed"])
    assert state["init_from_record"] == a["init_from_record"] == b["init_from_record"]
    assert state["init_from_record"]["steps"] == 6  # the common start, carried into the export
    assert "optimizer" not in state  # not resumable: export it or start a run from it


def test_averaging_a_run_with_itself_changes_nothing(siblings):
    state = average_checkpoints([siblings[0], siblings[0]])
    original = load_checkpoint(siblings[0])
    for key, value in original["model"].items():
        if not key.endswith(("norm_estimate", "power_vector")):  # the power method is re-run
            assert torch.equal(state["model"][key], value), key


def test_restated_counts_and_estimates_follow_the_averaged_weights(siblings):
    state = average_checkpoints(siblings)
    model = build_denoiser(TrainConfig.from_dict(state["config"]).model)
    model.load_state_dict(state["model"])
    for block in model.flow_blocks:
        # both inputs ended in certified fine-tuning (frozen counts): so does the average, with
        # the counts its own certified norms require, and a power estimate below that bound
        assert int(block.fixed_substeps) == block.required_substeps(block.nu(certified=True))
        assert 0 < float(block.linear.norm_estimate) <= block.linear.certified_norm() * (1 + 1e-6)


def test_exported_average_is_certified_and_says_what_it_averages(siblings, tmp_path):
    out = tmp_path / "soup.pt"
    assert main([str(out), *map(str, siblings)]) == 0
    exported = export_denoiser(out, "soup", dest_dir=tmp_path / "export")
    metadata = json.loads(exported.with_suffix(".json").read_text())
    assert [s["seed"] for s in metadata["training"]["averaged_from"]] == [1, 2]
    assert metadata["training"]["seed"] == [1, 2]  # not the first input's seed alone
    patch = TrainConfig.from_dict(load_checkpoint(siblings[0])["config"]).patch_size
    assert metadata["training"]["patch_size"] == [patch, patch]
    assert metadata["training"]["best_validation"] is None  # no --validate: no validation to state
    assert metadata["empirical_check"]["averagedness_violation"] <= 1e-5
    model = load(exported).double()
    alpha = model.certificate().averagedness
    assert alpha < 1
    # alpha-averaged (alpha < 1) implies 1-Lipschitz: one search checks both constants
    violation = empirical_averagedness_violation(lambda x: model(x, 0.1), alpha, (1, 12, 12), restarts=1, steps=15,
                                                 n_pairs=6)
    assert violation <= 1e-9


def test_validate_reports_every_input_and_the_average(siblings, tmp_path, capsys):
    assert main([str(tmp_path / "soup.pt"), *map(str, siblings), "--validate"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["validation"]) == {*map(str, siblings), "average"}
    for record in report["validation"].values():
        assert set(record) == {"15", "25", "50", "mean"} and 5 < record["mean"] < 60
    for path in siblings:  # the same evaluation as the run's own last validation record
        log = [json.loads(line) for line in (path.parent / "log.jsonl").read_text().splitlines()]
        last = [r for r in log if r["event"] == "val"][-1]
        assert last["step"] == 8
        assert report["validation"][str(path)]["25"] == pytest.approx(last["psnr"]["25"], abs=1e-9)
    # the average's validation travels with it into the export, as a run's best validation does
    average = report["validation"]["average"]
    exported = export_denoiser(tmp_path / "soup.pt", "soup", dest_dir=tmp_path / "export", empirical_check=False)
    best = json.loads(exported.with_suffix(".json").read_text())["training"]["best_validation"]
    assert best["step"] == 8 and best["mean_psnr"] == pytest.approx(average["mean"], abs=1e-12)
    assert best["psnr"] == pytest.approx({k: v for k, v in average.items() if k != "mean"}, abs=1e-12)


def test_refusals(siblings, image_folder, tmp_path, capsys):
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(siblings[:1])
    stranger = _run(image_folder, tmp_path / "stranger", steps=4, seed=5)  # from scratch, another seed
    with pytest.raises(ValueError, match="another point"):
        average_checkpoints([siblings[0], stranger])
    wider = _run(image_folder, tmp_path / "wider", steps=2, model={"width": 6})
    with pytest.raises(ValueError, match="architecture"):
        average_checkpoints([siblings[0], wider])

    # one init_from path, but another file behind it when the second run started
    changed = load_checkpoint(siblings[1])
    changed["init_from_record"] = {**changed["init_from_record"], "steps": 99}
    save_checkpoint(tmp_path / "changed.pt", changed)
    with pytest.raises(ValueError, match="another version"):
        average_checkpoints([siblings[0], tmp_path / "changed.pt"])

    before = siblings[0].read_bytes()
    assert main([str(siblings[0]), *map(str, siblings)]) == 2  # never overwrite an input
    assert siblings[0].read_bytes() == before
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"keep")
    assert main([str(existing), *map(str, siblings)]) == 2
    assert existing.read_bytes() == b"keep"
    assert main([str(tmp_path / "x.pt"), str(siblings[0]), str(tmp_path / "missing.pt")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)

"""End-to-end training on synthetic images: learning, exact resume, export with a certificate."""

import json

import pytest
import torch

from pnp_stable.denoisers import load
from pnp_stable.layers import certificate_of
from pnp_stable.training import export_denoiser, preset, train_denoiser
from pnp_stable.training.checkpoint import load_checkpoint
from pnp_stable.verification import empirical_averagedness_violation


def tiny_config(image_folder, run_dir, **overrides):
    return preset("tiny", [str(image_folder)], str(run_dir), val_dir=None, **overrides)


def test_loss_decreases_and_validation_is_logged(image_folder, make_images, tmp_path):
    val = make_images(tmp_path / "val", count=2, seed=7)
    config = tiny_config(image_folder, tmp_path / "run", steps=30, val_every=30)
    config.val_dir = str(val)
    result = train_denoiser(config)
    assert result.step == 30
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.7 * first
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val_records = [r for r in records if r["event"] == "val"]
    assert val_records and val_records[-1]["averagedness"] < 1
    assert set(val_records[-1]["psnr"]) == {"15", "25", "50"}
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()


def test_weighted_training_learns_and_changes_the_objective(image_folder, tmp_path):
    plain = train_denoiser(tiny_config(image_folder, tmp_path / "plain", steps=20))
    weighted = train_denoiser(tiny_config(image_folder, tmp_path / "weighted", steps=20,
                                          loss_weighting="inverse_sigma"))
    assert weighted.losses[0] != plain.losses[0]  # same batch, same weights, another objective
    assert sum(weighted.losses[-5:]) < 0.7 * sum(weighted.losses[:5])

    exported = export_denoiser(tmp_path / "weighted" / "checkpoint.pt", "weighted", dest_dir=tmp_path / "export",
                               empirical_check=False)
    metadata = json.loads(exported.with_suffix(".json").read_text())
    assert metadata["training"]["loss_weighting"] == "inverse_sigma"


def test_resume_reproduces_the_uninterrupted_run(image_folder, tmp_path):
    straight = train_denoiser(tiny_config(image_folder, tmp_path / "straight", steps=8), stop_after=6)
    train_denoiser(tiny_config(image_folder, tmp_path / "split", steps=8), stop_after=5)
    resumed = train_denoiser(tiny_config(image_folder, tmp_path / "split", steps=8, resume=True), stop_after=1)
    assert resumed.step == 6
    assert resumed.losses[0] == straight.losses[5]  # the same next step, bit for bit
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


def test_existing_run_is_never_overwritten(image_folder, tmp_path):
    train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=2))
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=2))
    # the changed fields named, the architecture's with the others
    with pytest.raises(ValueError, match=r"changed settings: model\.width \(4 -> 5\), lr \("):
        train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=4, resume=True, model={"width": 5}, lr=0.5))


def test_certified_finetune_runs_with_certified_step_counts(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path / "run", steps=4, certified_finetune_steps=2)
    train_denoiser(config)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    frozen = [int(v) for k, v in state["model"].items() if k.endswith("fixed_substeps")]
    assert frozen and all(n >= 1 for n in frozen)


@pytest.mark.parametrize("architecture", [{}, {"input_injection": True, "time_conditioning": True}])
def test_export_certificate_holds_under_adversarial_search(image_folder, tmp_path, architecture):
    config = tiny_config(image_folder, tmp_path / "run", steps=15, sigma_min=0.02, sigma_max=0.2,
                         model={"init_scale": 1.5, **architecture})
    train_denoiser(config)
    path = export_denoiser(tmp_path / "run" / "checkpoint.pt", "tiny-test", dest_dir=tmp_path / "export")
    meta = json.loads((tmp_path / "export" / "tiny-test.json").read_text())
    model = load(path).double()
    assert not model.training
    cert = certificate_of(model)
    assert cert.averagedness == pytest.approx(meta["certificate"]["averagedness"], rel=1e-9)
    assert meta["certificate"]["substeps"] == [b.substeps() for b in model.flow_blocks]
    assert meta["sigma_range_255"] == pytest.approx([0.02 * 255, 0.2 * 255])
    assert meta["empirical_check"]["averagedness_violation"] <= 1e-5  # float32 search at export
    assert meta["training"]["steps"] == 15 and meta["date"] and meta["architecture"]["width"] == 4
    if architecture:  # the injection head was trained, not left at its zero-weight start
        assert meta["architecture"]["input_injection"]
        assert float(model.injection_embedding.mlp[-1].weight.detach().abs().max()) > 0
    search = dict(restarts=1, steps=25, n_pairs=8)
    fn = lambda x: model(x, 0.1)  # noqa: E731
    # alpha-averaged (alpha < 1) implies 1-Lipschitz: one search checks both constants
    assert empirical_averagedness_violation(fn, cert.averagedness, (1, 7, 6), **search) <= 1e-9


def test_config_errors(image_folder, tmp_path):
    with pytest.raises(ValueError, match="0-255"):
        tiny_config(image_folder, tmp_path, sigma_min=5, sigma_max=50)
    with pytest.raises(ValueError, match="optimizer"):
        tiny_config(image_folder, tmp_path, optimizer="sgd")
    with pytest.raises(ValueError, match="preset"):
        preset("huge", [str(image_folder)], str(tmp_path))
    with pytest.raises(ValueError, match="also a training folder"):
        train_denoiser(preset("tiny", [str(image_folder)], str(tmp_path / "r"), val_dir=str(image_folder)))


def test_unreadable_checkpoint_is_one_short_line(tmp_path):
    """(pnp_stable.fileio.read_torch_file, tested on every kind of unreadable file in test_fileio.py.)"""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == f"{path} is not a pnp-stable training checkpoint (it could not be read as one)"
    with pytest.raises(ValueError, match="^cannot read .*: Is a directory$"):
        load_checkpoint(tmp_path)


def test_sigterm_stops_cleanly_with_a_resumable_checkpoint(image_folder, tmp_path):
    import os
    import signal
    import threading

    config = tiny_config(image_folder, tmp_path / "run", steps=100000, checkpoint_every=100000)
    log = tmp_path / "run" / "log.jsonl"
    done = threading.Event()

    def terminate_once_training():
        while not done.wait(0.05):
            if log.exists() and '"train"' in log.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=terminate_once_training)
    watcher.start()
    try:
        result = train_denoiser(config)
    finally:
        done.set()
        watcher.join()
    assert 0 < result.step < 100000
    assert load_checkpoint(result.checkpoint)["step"] == result.step
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored
    resumed = train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=100000, resume=True), stop_after=2)
    assert resumed.step == result.step + 2


def test_time_limit_stops_with_a_resumable_checkpoint(image_folder, tmp_path):
    stopped = train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=6), time_limit=0.0)
    assert stopped.step == 1  # the limit is checked after each step: one step, then out
    assert load_checkpoint(stopped.checkpoint)["step"] == 1
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "time_limit" in events
    finished = train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=6, resume=True), time_limit=3600.0)
    assert finished.step == 6
    with pytest.raises(ValueError, match="time_limit"):
        train_denoiser(tiny_config(image_folder, tmp_path / "other", steps=2), time_limit=-1.0)


def test_init_from_copies_matching_weights_and_adds_new_heads(image_folder, tmp_path):
    train_denoiser(tiny_config(image_folder, tmp_path / "base", steps=3))
    base = load_checkpoint(tmp_path / "base" / "checkpoint.pt")["model"]
    config = tiny_config(image_folder, tmp_path / "more", steps=1, lr=1e-12, lr_min=0.0, warmup_steps=1,
                         init_from=str(tmp_path / "base" / "checkpoint.pt"), model={"time_conditioning": True})
    train_denoiser(config)
    grown = load_checkpoint(tmp_path / "more" / "checkpoint.pt")["model"]
    assert any(k.startswith("time_embedding") for k in grown)
    for key, value in base.items():
        if key.endswith("weight") and "network" in key:
            torch.testing.assert_close(grown[key], value, rtol=0, atol=1e-9)
    start = json.loads((tmp_path / "more" / "log.jsonl").read_text().splitlines()[0])
    assert start["initialised_from"]["fresh"] and start["initialised_from"]["copied"] > 0
    # the export states the whole history, not only the warm restart's own steps
    exported = export_denoiser(tmp_path / "more" / "checkpoint.pt", "grown", dest_dir=tmp_path / "export",
                               empirical_check=False)
    lineage = json.loads(exported.with_suffix(".json").read_text())["training"]["init_from"]
    assert lineage["path"] == str(tmp_path / "base" / "checkpoint.pt") and lineage["steps"] == 3
    assert lineage["wall_hours"] >= 0 and "init_from" not in lineage
    with pytest.raises(ValueError, match="log.jsonl is not a pnp-stable checkpoint or model file to initialise from "
                                         r"\(it could not be read as one\)$"):
        train_denoiser(tiny_config(image_folder, tmp_path / "bad", init_from=str(tmp_path / "base" / "log.jsonl")))


def test_init_from_an_exported_model_restarts_the_power_method_it_left_out(image_folder, tmp_path):
    """Exported files carry no power vectors: training from one runs the power method's warm-up,
    so its first steps see the norms the export saw, not a one-iteration guess from a random vector."""
    train_denoiser(tiny_config(image_folder, tmp_path / "base", steps=3))
    exported = export_denoiser(tmp_path / "base" / "checkpoint.pt", "base", dest_dir=tmp_path / "export",
                               empirical_check=False)
    stored = torch.load(exported, weights_only=True)["state_dict"]
    assert not any(k.endswith("power_vector") for k in stored)
    train_denoiser(tiny_config(image_folder, tmp_path / "more", steps=1, lr=1e-12, lr_min=0.0, warmup_steps=1,
                               init_from=str(exported)))
    state = load_checkpoint(tmp_path / "more" / "checkpoint.pt")["model"]
    reference = load(exported)
    for index, block in enumerate(reference.flow_blocks, start=1):
        converged = block.linear.estimate_norm(n_iter=500, tol=1e-9)
        key = f"network.{index}.linear.norm_estimate"
        assert float(state[key]) == pytest.approx(converged, rel=1e-2), key
    # the export of the continued run carries the exported starting point's own history
    continued = export_denoiser(tmp_path / "more" / "checkpoint.pt", "more", dest_dir=tmp_path / "export",
                                empirical_check=False)
    lineage = json.loads(continued.with_suffix(".json").read_text())["training"]["init_from"]
    assert lineage["path"] == str(exported) and lineage["name"] == "base" and lineage["steps"] == 3
    assert lineage["wall_hours"] >= 0 and lineage["date"]


def test_lineage_is_taken_at_the_start_and_survives_overwriting_the_parent(image_folder, tmp_path):
    """The shipping cycle continues ``pretrained/NAME.pt`` and exports the result as NAME, over
    its own starting point: the lineage must still name the parent, however often it is exported,
    and a resume after the overwrite must not re-read the file either."""
    dest = tmp_path / "pretrained"
    train_denoiser(tiny_config(image_folder, tmp_path / "base", steps=3))
    parent = export_denoiser(tmp_path / "base" / "checkpoint.pt", "gray", dest_dir=dest, empirical_check=False)
    config = dict(steps=2, lr=1e-12, lr_min=0.0, warmup_steps=1, init_from=str(parent))
    train_denoiser(tiny_config(image_folder, tmp_path / "more", **config), stop_after=1)
    record = load_checkpoint(tmp_path / "more" / "checkpoint.pt")["init_from_record"]
    assert record["path"] == str(parent) and record["name"] == "gray" and record["steps"] == 3

    export_denoiser(tmp_path / "more" / "checkpoint.pt", "gray", dest_dir=dest, empirical_check=False)  # overwrites
    assert load_checkpoint(tmp_path / "more" / "checkpoint.pt")["init_from_record"] == record
    train_denoiser(tiny_config(image_folder, tmp_path / "more", resume=True, **config))
    assert load_checkpoint(tmp_path / "more" / "checkpoint.pt")["init_from_record"] == record
    lineages = []
    for _ in range(2):  # the second export reads a pretrained/gray.pt that is the run's own result
        exported = export_denoiser(tmp_path / "more" / "checkpoint.pt", "gray", dest_dir=dest, empirical_check=False)
        lineages.append(json.loads(exported.with_suffix(".json").read_text())["training"]["init_from"])
    assert lineages[0] == lineages[1] == record
    start = json.loads((tmp_path / "more" / "log.jsonl").read_text().splitlines()[0])
    assert start["starting_point"] == record
    # a run continued from this one states the whole chain, down to the first run
    train_denoiser(tiny_config(image_folder, tmp_path / "third", steps=1, lr=1e-12, lr_min=0.0, warmup_steps=1,
                               init_from=str(tmp_path / "more" / "checkpoint.pt")))
    chain = load_checkpoint(tmp_path / "third" / "checkpoint.pt")["init_from_record"]
    assert chain["steps"] == 2 and chain["init_from"] == record


def test_init_from_a_finetuned_model_learns_with_adaptive_substeps_again(image_folder, tmp_path):
    train_denoiser(tiny_config(image_folder, tmp_path / "base", steps=4, certified_finetune_steps=2))
    base = load_checkpoint(tmp_path / "base" / "checkpoint.pt")["model"]
    assert all(int(v) > 0 for k, v in base.items() if k.endswith("fixed_substeps"))  # frozen by fine-tuning
    config = tiny_config(image_folder, tmp_path / "more", steps=4, certified_finetune_steps=1,
                         init_from=str(tmp_path / "base" / "checkpoint.pt"))
    train_denoiser(config, stop_after=1)
    state = load_checkpoint(tmp_path / "more" / "checkpoint.pt")["model"]
    assert all(int(v) == 0 for k, v in state.items() if k.endswith("fixed_substeps"))
    train_denoiser(tiny_config(image_folder, tmp_path / "more", steps=4, certified_finetune_steps=1, resume=True,
                               init_from=str(tmp_path / "base" / "checkpoint.pt")))
    state = load_checkpoint(tmp_path / "more" / "checkpoint.pt")["model"]
    assert all(int(v) > 0 for k, v in state.items() if k.endswith("fixed_substeps"))  # its own fine-tuning


def test_export_records_calibrated_pnp_rules_that_the_solvers_use(image_folder, tmp_path):
    from pnp_stable.solvers.parameters import rule_for
    from pnp_stable.training.export import main as export_main

    train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=2))
    fb = tmp_path / "fb.json"
    fb.write_text(json.dumps({"method": "fb", "images": ["a"], "crop": 64, "kernels": ["k"],
                              "best": {"0.01": {}, "0.03": {}},
                              "rule": {"weight": 0.3, "exponent": 2.0, "sigma_ratio": 1.0, "gamma_scale": 1.0}}))
    admm = tmp_path / "admm.json"
    admm.write_text(json.dumps({"method": "admm", "best": {"0.01": {}},
                                "rule": {"weight": 2.0, "exponent": 2.5, "sigma_ratio": 4.0, "gamma_scale": 1.0}}))
    dest = tmp_path / "export"
    args = [str(tmp_path / "run" / "checkpoint.pt"), "calibrated", "--dest", str(dest), "--no-empirical-check"]
    assert export_main(args + ["--pnp-rule", f"fb={fb}", "--pnp-rule", f"admm={admm}"]) == 0
    model = load(dest / "calibrated.pt")
    assert rule_for(model, "noise_level", "fb").weight == 0.3
    admm_rule = rule_for(model, "noise_level", "drs")  # DRS shares the ADMM calibration
    assert (admm_rule.weight, admm_rule.exponent, admm_rule.sigma_ratio) == (2.0, 2.5, 4.0)
    meta = json.loads((dest / "calibrated.json").read_text())
    assert meta["pnp_parameter_calibration"]["fb"]["noise_levels"] == [0.01, 0.03]

    ct = tmp_path / "ct.json"
    ct.write_text(json.dumps({"method": "fb", "problem": "ct", "angles": [60, 180], "best": {"0.0003": {}},
                              "noise_relative": [0.001, 0.01],
                              "source": "bench/calibrate_ct_rule.py on Mayo train slices",
                              "rule": {"weight": 1.5, "exponent": 1.0, "sigma_ratio": 1.0, "gamma_scale": 1.0}}))
    ct_dest = tmp_path / "export-ct"
    ct_args = [args[0], "calibrated", "--dest", str(ct_dest), "--no-empirical-check"]
    assert export_main(ct_args + ["--pnp-rule", f"fb={fb}", "--pnp-rule", f"ct:fb={ct}"]) == 0
    model = load(ct_dest / "calibrated.pt")
    assert rule_for(model, "noise_level", "fb").weight == 0.3
    assert rule_for(model, "noise_level", "fb", problem="blur").weight == 0.3  # no rule of its own
    assert (rule_for(model, "noise_level", "fb", problem="ct").weight,
            rule_for(model, "noise_level", "fb", problem="ct").exponent) == (1.5, 1.0)
    assert rule_for(model, "noise_level", "admm", problem="ct").weight == 1.0  # no CT ADMM rule: the default
    meta = json.loads((ct_dest / "calibrated.json").read_text())
    assert meta["pnp_parameter_calibration"]["ct"]["fb"]["angles"] == [60, 180]
    assert meta["pnp_parameter_calibration"]["ct"]["fb"]["noise_relative"] == [0.001, 0.01]
    assert export_main(ct_args + ["--pnp-rule", f"fb={ct}"]) == 2  # a CT rule is not the generic one
    assert export_main(ct_args + ["--pnp-rule", f"ct:fb={fb}"]) == 2  # nor a blur rule a CT one

    # a calibration made after export: --replace-rules writes the model again, weights byte for byte
    follow = tmp_path / "follow.json"
    follow.write_text(json.dumps({"method": "admm", "best": {"0.01": {}, "0.03": {}}, "images": ["b"],
                                  "rule": {"weight": 0.4, "exponent": 1.7, "sigma_ratio": 0.05, "sigma_exponent": 0.0,
                                           "gamma_scale": 1.0}}))
    source_bytes = (ct_dest / "calibrated.pt").read_bytes()
    replaced_dest = tmp_path / "export-replaced"
    assert export_main([str(ct_dest / "calibrated.pt"), "recalibrated", "--dest", str(replaced_dest),
                        "--replace-rules", "--pnp-rule", f"admm={follow}"]) == 0
    assert (ct_dest / "calibrated.pt").read_bytes() == source_bytes  # the input is untouched
    before, after = load(ct_dest / "calibrated.pt"), load(replaced_dest / "recalibrated.pt")
    stored = [torch.load(f, weights_only=True) for f in (ct_dest / "calibrated.pt", replaced_dest / "recalibrated.pt")]
    assert stored[0]["config"] == stored[1]["config"] and stored[0]["state_dict"].keys() == stored[1]["state_dict"].keys()
    assert all(torch.equal(v, stored[1]["state_dict"][k]) for k, v in stored[0]["state_dict"].items())
    assert after.certificate().averagedness == before.certificate().averagedness
    assert (rule_for(after, "noise_level", "admm").sigma_ratio, rule_for(after, "noise_level", "admm").sigma_exponent) == (0.05, 0.0)
    assert rule_for(after, "noise_level", "fb").weight == 0.3  # the rules not replaced are kept
    assert rule_for(after, "noise_level", "fb", problem="ct").weight == 1.5
    meta = json.loads((replaced_dest / "recalibrated.json").read_text())
    assert meta["name"] == "recalibrated" and meta["rules_updated"]["replaced"] == ["admm"]
    assert meta["pnp_parameter_calibration"]["admm"]["images"] == ["b"]
    assert meta["pnp_parameter_calibration"]["fb"]["noise_levels"] == [0.01, 0.03]
    assert {k: v for k, v in meta.items() if k not in ("name", "rules_updated", "pnp_parameter_rule",
                                                     "pnp_parameter_calibration")} == \
        {k: v for k, v in json.loads((ct_dest / "calibrated.json").read_text()).items()
         if k not in ("name", "pnp_parameter_rule", "pnp_parameter_calibration")}
    carried_dest = tmp_path / "export-carried"  # a model carrying the replaced rules says when they changed
    assert export_main([str(ct_dest / "calibrated.pt"), "carrier", "--dest", str(carried_dest), "--replace-rules",
                        "--pnp-rules-from", str(replaced_dest / "recalibrated.pt")]) == 0
    carried = json.loads((carried_dest / "carrier.json").read_text())
    assert carried["pnp_parameter_rule"]["admm"]["sigma_exponent"] == 0.0
    assert carried["pnp_parameter_calibration"]["admm"]["carried_from"]["rules_updated"]["date"] == \
        meta["rules_updated"]["date"]
    assert sorted(carried["rules_updated"]["replaced"]) == ["admm", "ct:fb", "fb"]
    replace_args = [str(ct_dest / "calibrated.pt"), "calibrated", "--dest", str(ct_dest), "--replace-rules"]
    assert export_main(replace_args + ["--pnp-rule", f"admm={follow}"]) == 2  # never over its input
    assert export_main(replace_args[:2] + ["--dest", str(replaced_dest), "--replace-rules"]) == 2  # no rule given
    assert export_main(replace_args[:2] + ["--dest", str(replaced_dest), "--replace-rules", "--bsd68", "x",
                                           "--pnp-rule", f"admm={follow}"]) == 2
    assert (ct_dest / "calibrated.pt").read_bytes() == source_bytes

    assert export_main(args + ["--pnp-rule", f"admm={fb}"]) == 2  # a rule of another method
    assert export_main(args + ["--pnp-rule", "pgd=x.json"]) == 2
    assert export_main(args + ["--pnp-rule", f"fb={tmp_path / 'missing.json'}"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": "fb", "rule": {"weight": -1.0}}))
    assert export_main(args + ["--pnp-rule", f"fb={bad}"]) == 2


def test_validation_logs_the_blocks_time_conditioning_switched_off(image_folder, make_images, tmp_path):
    """An idle block (tau ~ 0 at every trained sigma) is named in the validation record."""
    base_config = tiny_config(image_folder, tmp_path / "base", steps=1, model={"time_conditioning": True})
    train_denoiser(base_config)
    state = load_checkpoint(tmp_path / "base" / "checkpoint.pt")
    head = [k for k in state["model"] if k.startswith("time_embedding.mlp.") and k.endswith(".bias")][-1]
    state["model"][head][1] = -30.0  # block 1 off at every sigma
    state["model"][head.replace(".bias", ".weight")][1].zero_()
    torch.save(state, tmp_path / "idle.pt")
    val = make_images(tmp_path / "val", count=2, seed=7)
    config = tiny_config(image_folder, tmp_path / "run", steps=2, val_every=2, lr=1e-12, lr_min=0.0, warmup_steps=1,
                         init_from=str(tmp_path / "idle.pt"), model={"time_conditioning": True})
    config.val_dir = str(val)
    train_denoiser(config)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["idle_blocks"] for r in records if r["event"] == "val"] == [[1]]


def _checkpoint_with_an_idle_block(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path / "run", steps=1, model={"time_conditioning": True, "blocks": 3})
    train_denoiser(config)
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    head = [k for k in state["model"] if k.startswith("time_embedding.mlp.") and k.endswith(".bias")][-1]
    state["model"][head][1] = -30.0
    state["model"][head.replace(".bias", ".weight")][1].zero_()
    torch.save(state, path)
    return path


def test_export_leaves_out_idle_blocks_unless_asked_to_keep_them(image_folder, tmp_path):
    from pnp_stable.training.export import main as export_main

    checkpoint = _checkpoint_with_an_idle_block(image_folder, tmp_path)
    path = export_denoiser(checkpoint, "lean", dest_dir=tmp_path / "export", empirical_check=False)
    lean = load(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert lean.config.blocks == 2 and meta["architecture"]["blocks"] == 2
    assert meta["pruned_idle_blocks"]["blocks"] == [1] and not meta["pruned_idle_blocks"]["kept"]
    assert meta["pruned_idle_blocks"]["max_output_change"] < 1e-6
    assert len(meta["certificate"]["substeps"]) == 2
    full = load(export_denoiser(checkpoint, "full", dest_dir=tmp_path / "export", empirical_check=False,
                                prune_idle=False))
    assert full.config.blocks == 3
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert float((lean(x, 0.1) - full(x, 0.1)).abs().max()) < 1e-6
    assert export_main([str(checkpoint), "kept", "--dest", str(tmp_path / "export"), "--no-empirical-check",
                        "--keep-idle"]) == 0
    assert load(tmp_path / "export" / "kept.pt").config.blocks == 3


def test_export_carries_the_rules_of_the_model_a_warm_restart_began_from(image_folder, tmp_path):
    from pnp_stable.denoisers import save_denoiser
    from pnp_stable.training.export import main as export_main

    train_denoiser(tiny_config(image_folder, tmp_path / "run", steps=1))
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    rule = {"weight": 0.3, "exponent": 2.0, "sigma_ratio": 1.0, "gamma_scale": 1.0}
    rules = {"fb": rule, "ct": {"fb": {**rule, "weight": 0.6}}}
    calibrations = {"fb": {"images": ["a"]}, "ct": {"fb": {"images": ["b"]}}}
    start = build_start_model()
    save_denoiser(start, tmp_path / "start.pt", metadata={"name": "start", "pnp_parameter_rule": rules,
                                                          "pnp_parameter_calibration": calibrations})
    assert export_main([checkpoint, "cont", "--dest", str(tmp_path), "--no-empirical-check",
                        "--pnp-rules-from", str(tmp_path / "start.pt")]) == 0
    meta = json.loads((tmp_path / "cont.json").read_text())
    assert meta["pnp_parameter_rule"] == rules
    assert meta["pnp_parameter_calibration"]["fb"]["carried_from"]["name"] == "start"
    assert meta["pnp_parameter_calibration"]["ct"]["fb"]["carried_from"]["name"] == "start"
    assert meta["pnp_parameter_calibration"]["fb"]["images"] == ["a"]
    assert load(tmp_path / "start.pt").metadata["pnp_parameter_calibration"] == calibrations  # source untouched
    assert export_main([checkpoint, "none", "--dest", str(tmp_path), "--no-empirical-check",
                        "--pnp-rules-from", checkpoint]) == 2


def build_start_model():
    """A one-block certified model in eval mode with frozen counts, to save as an exported file."""
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser

    model = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=8, power_size=8)).eval()
    model.freeze_substeps()
    return model


def test_a_run_folder_in_use_by_another_training_is_refused(image_folder, tmp_path):
    """Two trainings started in one run folder both ran, interleaving log.jsonl (600 records for
    300 steps) and keeping the last writer's checkpoint (review of 2026-12-06)."""
    from pnp_stable.fileio import exclusive_use

    run = tmp_path / "run"
    with exclusive_use(run, "run folder"):
        with pytest.raises(ValueError, match="is in use by another process"):
            train_denoiser(tiny_config(image_folder, run, steps=2))
    assert not run.exists()
    assert train_denoiser(tiny_config(image_folder, run, steps=2)).step == 2


def test_a_folder_with_an_earlier_runs_files_but_no_checkpoint_is_not_reused(image_folder, tmp_path):
    """A run killed before its first checkpoint leaves log.jsonl (and maybe best.pt): a new run there
    overwrote best.pt and appended a second start to the log (review of 2026-12-06)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"event": "start"}\n')
    with pytest.raises(ValueError, match="holds an earlier run's log.jsonl but no checkpoint"):
        train_denoiser(tiny_config(image_folder, run, steps=2))

import json
import re
import signal

import pytest
import torch

import pnp_stable.classify.training as training_module
from pnp_stable.classify import ClassifierConfig, TrainConfig, load_classifier, train_classifier

TINY_MODEL = {"widths": [4, 8], "blocks_per_stage": [1, 1]}


def tiny_config(tmp_path, **kw):
    values = dict(dataset="mnist", output_dir=str(tmp_path / "run"), model=dict(TINY_MODEL), epochs=1,
                  batch_size=16, lr=5e-3, progress=False, seed=3)
    values.update(kw)
    return TrainConfig(**values)


def test_one_epoch_run_from_idx_files(tmp_path, mnist_folder):
    config = tiny_config(tmp_path, data_path=str(mnist_folder), epochs=2, loss="hinge", margin=0.3)
    result = train_classifier(config)
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "model.pt", "history.json", "config.json"}
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history == result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.certified_lipschitz <= 1.0 + 1e-6
    model = load_classifier(result.model_path)
    assert model.config.image_size == (12, 12) and model.config.num_classes == 10
    assert model.class_names[0] == "0"
    x = torch.rand(3, 1, 12, 12)
    torch.testing.assert_close(model(x), result.model(x))
    assert json.loads((out / "config.json").read_text())["loss"] == "hinge"


def test_learns_separable_synthetic_data(tmp_path, make_data):
    train, test = make_data(256, seed=0), make_data(64, seed=1)
    config = tiny_config(tmp_path, epochs=3, logit_scale=8.0)
    result = train_classifier(config, train, test)
    assert result.history[-1]["test_accuracy"] >= 0.9  # four classes: chance is 0.25


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path, make_data, monkeypatch):
    train, test = make_data(96), make_data(16, seed=1)
    reference = train_classifier(tiny_config(tmp_path / "a", epochs=2), train, test)

    calls = {"n": 0}
    real_loss = training_module.classification_loss

    def interrupting_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # Ctrl-C mid-way through the second epoch (6 batches per epoch)
            signal.raise_signal(signal.SIGINT)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training_module, "classification_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_config(tmp_path / "b", epochs=2), train, test)
    state = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)  # the interrupted step was finished
    assert not (tmp_path / "b" / "run" / "model.pt").exists()
    monkeypatch.setattr(training_module, "classification_loss", real_loss)
    resumed = train_classifier(tiny_config(tmp_path / "b", epochs=2), train, test)
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in reference.history])


def test_sigterm_is_deferred_and_saved_like_ctrl_c(tmp_path, make_data, monkeypatch):
    # `timeout`, `kill` and batch schedulers stop a run with SIGTERM: it too must finish the step,
    # save and stop, rather than lose everything since the last periodic checkpoint
    train, test = make_data(96), make_data(16, seed=1)

    class Killed(Exception):
        pass

    def die(signum, frame):  # what an unhandled SIGTERM amounts to: the run ends where it is
        raise Killed

    previous = signal.signal(signal.SIGTERM, die)
    calls = {"n": 0}
    real_loss = training_module.classification_loss

    def terminating_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:
            signal.raise_signal(signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training_module, "classification_loss", terminating_loss)
    try:
        with pytest.raises(KeyboardInterrupt):
            train_classifier(tiny_config(tmp_path, epochs=2), train, test)
        assert signal.getsignal(signal.SIGTERM) is die  # the caller's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)


def test_finished_run_is_not_retrained_and_changed_config_is_refused(tmp_path, make_data, monkeypatch):
    train, test = make_data(32), make_data(8, seed=1)
    first = train_classifier(tiny_config(tmp_path, epochs=1), train, test)
    monkeypatch.setattr(training_module, "classification_loss", lambda *a, **k: pytest.fail("retrained"))
    again = train_classifier(tiny_config(tmp_path, epochs=1, progress=True), train, test)
    assert again.history == first.history
    with pytest.raises(ValueError, match=r"different configuration \(lr\)"):
        train_classifier(tiny_config(tmp_path, lr=1e-2), train, test)


def test_a_corrupt_checkpoint_is_one_short_error(tmp_path, make_data):
    """Resuming from a checkpoint torch cannot read names the file in one line, without PyTorch's
    long explanation of ``weights_only`` loading."""
    train, test = make_data(32), make_data(8, seed=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"checkpoint.pt is not a pnp-stable classifier checkpoint \(it could not be "
                                         r"read as one\)$") as refused:
        train_classifier(tiny_config(tmp_path), train, test)
    assert "weights_only" not in str(refused.value)


def test_checkpoint_from_before_an_option_existed_resumes_as_its_default(tmp_path, make_data, monkeypatch):
    train, test = make_data(32), make_data(8, seed=1)
    first = train_classifier(tiny_config(tmp_path, epochs=1), train, test)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    # as written before stage_activation existed
    assert state["model_config"].pop("stage_activation") == "none"
    assert state["train_config"]["model"].pop("stage_activation") == "none"
    torch.save(state, path)
    monkeypatch.setattr(training_module, "classification_loss", lambda *a, **k: pytest.fail("retrained"))
    again = train_classifier(tiny_config(tmp_path, epochs=1), train, test)
    assert again.history == first.history
    with pytest.raises(ValueError, match=r"different configuration \(model\)"):
        train_classifier(tiny_config(tmp_path, model={**TINY_MODEL, "stage_activation": "maxmin"}), train, test)


def test_resnet_and_augmented_colour_run(tmp_path, make_data):
    train, test = make_data(32, channels=3, size=8), make_data(8, channels=3, size=8, seed=1)
    config = tiny_config(tmp_path, dataset="cifar10", model={**TINY_MODEL, "architecture": "resnet"})
    assert config.augment is None  # on by default for CIFAR
    result = train_classifier(config, train, test)
    assert result.model.config.in_channels == 3 and result.certified_lipschitz > 1.0


@pytest.mark.parametrize("options, message", [
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"epochs": 0}, "epochs and batch_size must be >= 1"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"loss": "mse"}, "unknown loss 'mse'"),
    ({"margin": -0.1}, "margin must be >= 0"),
    ({"warmup_fraction": 1.0}, "warmup_fraction must lie in"),
    ({"train_size": 0}, "train_size must be positive"),
    ({"model": {"widths": [0]}}, "widths must be a non-empty list"),
])
def test_config_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **options)


def test_missing_data_path_and_device(tmp_path):
    with pytest.raises(ValueError, match="data_path is required"):
        train_classifier(tiny_config(tmp_path))
    with pytest.raises(ValueError, match="data folder not found"):
        train_classifier(tiny_config(tmp_path, data_path=str(tmp_path / "absent")))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            training_module.resolve_device("cuda")
    with pytest.raises(ValueError, match="'mps' is not supported"):
        training_module.resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        training_module.resolve_device("gpu0")


def test_config_dict_roundtrip(tmp_path):
    config = tiny_config(tmp_path)
    again = TrainConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict() and isinstance(again.model, ClassifierConfig)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"optimizer": "sgd"})


def test_outputs_get_the_umask_permissions_not_mkstemps_0600(tmp_path, make_data):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        train_classifier(tiny_config(tmp_path, epochs=1), make_data(16), make_data(8, seed=1))
    finally:
        os.umask(previous)
    for name in ("checkpoint.pt", "model.pt", "history.json", "config.json"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


def test_init_from_starts_a_new_run_from_trained_weights(tmp_path, make_data):
    train, test = make_data(64), make_data(16, seed=1)
    source = train_classifier(tiny_config(tmp_path / "a", epochs=2, logit_scale=8.0), train, test)
    # a vanishing learning rate leaves the weights where they start: those of the source model
    warm = train_classifier(tiny_config(tmp_path / "b", lr=1e-12, seed=7, init_from=str(source.model_path)),
                            train, test)
    cold = train_classifier(tiny_config(tmp_path / "c", lr=1e-12, seed=7), train, test)
    x = torch.rand(5, *train.image_shape)
    torch.testing.assert_close(warm.model(x), source.model(x))
    assert not torch.allclose(cold.model(x), source.model(x), atol=1e-3)
    assert warm.history[0]["test_accuracy"] == pytest.approx(source.history[-1]["test_accuracy"])
    assert json.loads((tmp_path / "b" / "run" / "config.json").read_text())["init_from"] == str(source.model_path)


def test_init_from_keeps_the_source_input_shift_through_a_subset_and_a_resume(tmp_path, make_data):
    train, test = make_data(64), make_data(16, seed=1)
    source = train_classifier(tiny_config(tmp_path / "a", epochs=2, logit_scale=8.0), train, test)
    config = dict(lr=1e-12, train_size=24, init_from=str(source.model_path))  # another subset: another mean
    assert train.subset(24, seed=3).channel_mean() != train.channel_mean()
    warm = train_classifier(tiny_config(tmp_path / "b", **config), train, test)
    x = torch.rand(5, *train.image_shape)
    torch.testing.assert_close(warm.model(x), source.model(x))
    assert load_classifier(warm.model_path).config.input_mean == source.model.config.input_mean
    again = train_classifier(tiny_config(tmp_path / "b", **config), train, test)  # resumed from its checkpoint
    assert len(again.history) == 1 and again.model.config.input_mean == source.model.config.input_mean


def test_init_from_rejects_another_layout(tmp_path, make_data):
    train, test = make_data(32), make_data(8, seed=1)
    source = train_classifier(tiny_config(tmp_path / "a"), train, test)
    wider = tiny_config(tmp_path / "b", model={**TINY_MODEL, "widths": [4, 12]}, init_from=str(source.model_path))
    with pytest.raises(ValueError, match=r"another layout \(widths\)"):
        train_classifier(wider, train, test)
    with pytest.raises(ValueError, match="model file not found"):
        train_classifier(tiny_config(tmp_path / "c", init_from=str(tmp_path / "absent.pt")), train, test)


@pytest.mark.parametrize("field, value, fragment", [
    ("lr", float("inf"), "lr must be positive"),
    ("margin", float("nan"), "margin must be >= 0"),
    ("margin", float("inf"), "margin must be >= 0"),
    ("image_size", (0, 3), "image_size must be (H, W)"),
    ("device", "tpu", "device must be 'auto', 'cpu' or 'cuda'"),
])
def test_train_config_refuses_non_finite_and_unknown_values_at_once(field, value, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        TrainConfig(dataset="fashion_mnist", **{field: value})


def test_resume_refuses_changed_data(tmp_path, make_data):
    """data_path may move between runs, the data may not: another set would continue this run's
    trajectory (review of 2026-12-06: an edited training image was resumed silently)."""
    train, test = make_data(48), make_data(16, seed=1)
    train_classifier(tiny_config(tmp_path, epochs=1), train, test)
    edited = make_data(48)
    edited.images[0] = 255 - edited.images[0]
    with pytest.raises(ValueError, match="training or test images changed since the checkpoint"):
        train_classifier(tiny_config(tmp_path, epochs=1), edited, test)
    assert train_classifier(tiny_config(tmp_path, epochs=1), make_data(48), test).history  # the same data: resumed

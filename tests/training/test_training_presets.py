"""Presets build valid configurations; the script entry point turns user errors into exit code 2."""

import pytest

from pnp_stable.denoisers import build_denoiser
from pnp_stable.layers import certificate_of
from pnp_stable.training import PRESETS, preset
from pnp_stable.training.run import check_run_dir, main, parse_overrides, parse_set_options


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_its_model(name, tmp_path):
    config = preset(name, ["images"], str(tmp_path))
    model = build_denoiser(config.model)
    if config.model.width > 32:
        return  # certifying random 64 -> 128 kernels (flat symbols, the slow case) takes seconds
    cert = certificate_of(model)
    if config.model.kind == "certified":
        assert cert is not None and cert.averagedness is not None and cert.averagedness < 1
    else:
        assert cert is None
    assert config.sigma_max <= 1.0


def test_overrides_reach_model_and_run_fields(tmp_path):
    overrides = parse_overrides(["steps=7", "model.width=6", "val_dir=somewhere", "lr=0.5"])
    assert overrides == {"steps": 7, "model": {"width": 6}, "val_dir": "somewhere", "lr": 0.5}
    config = preset("tiny", ["images"], str(tmp_path), **overrides)
    assert config.steps == 7 and config.model.width == 6 and config.model.hidden == 8
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])


def test_script_user_errors_exit_2(tmp_path, capsys, image_folder):
    assert main(["--preset", "nope", "--train", str(image_folder), "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--train", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err


def test_script_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, capsys, image_folder, monkeypatch):
    """Ctrl-C in the script entry point, arriving in the middle of a step (inside Adam's update):
    the step is finished and checkpointed, no traceback, exit 130, and the same command with
    --resume continues from the step it was stopped on."""
    import os
    import signal

    import torch

    run_dir = tmp_path / "r"
    original_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_interrupt)
    argv = ["--preset", "tiny", "--train", str(image_folder), "--run-dir", str(run_dir), "--set", "steps=6",
            "--set", "progress=false"]
    assert main(argv) == 130
    assert "--resume" in capsys.readouterr().err
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == 3  # the interrupted step, completed
    monkeypatch.setattr(torch.optim.Adam, "step", original_step)
    assert main(argv + ["--resume"]) == 0
    assert torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["step"] == 6


@pytest.mark.parametrize("overrides, message", [
    ({"foo": 1}, "unknown configuration key 'foo' (valid keys: amp, batch_size, "),
    ({"lrr": 1}, "unknown configuration key 'lrr' (did you mean lr"),
    ({"model": {"wdth": 4}}, "unknown configuration key 'model.wdth' (did you mean model.width?)"),
    ({"lr": "abc"}, "invalid value for lr: 'abc' (expected a number)"),
    ({"steps": 2.5}, "invalid value for steps: 2.5 (expected an integer)"),
    ({"amp": "yes"}, "invalid value for amp: 'yes' (expected true or false)"),
    ({"val_limit": "all"}, "invalid value for val_limit: 'all' (expected an integer or null)"),
    ({"val_sigmas": [0.1, "a"]}, "invalid value for val_sigmas: [0.1, 'a'] (expected a JSON list of numbers)"),
    ({"model": {"width": "wide"}}, "invalid value for model.width: 'wide' (expected an integer)"),
    ({"model": 3}, "invalid value for model: 3"),
])
def test_bad_override_keys_and_values_are_one_line_errors(tmp_path, overrides, message):
    """A wrong key names nearby fields (or all of them), a wrong value names the key, the value and
    the expected type; before this check they were TypeErrors ("unexpected keyword argument",
    "'>' not supported between 'str' and 'int')."""
    with pytest.raises(ValueError) as refused:
        preset("tiny", ["images"], str(tmp_path), **overrides)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_overrides_of_the_right_type_pass(tmp_path):
    """An int is a float, null an optional value, a JSON list a tuple; nested keys still work."""
    config = preset("tiny", ["images"], str(tmp_path), **parse_overrides(
        ["lr=1", "val_limit=null", "val_sigmas=[0.1, 0.2]", "amp=false", "model.width=6", "optimizer=adamw"]))
    assert config.lr == 1 and config.val_limit is None and config.val_sigmas == (0.1, 0.2) and not config.amp
    assert config.model.width == 6 and config.optimizer == "adamw"


def test_set_options_refuse_fields_with_options_of_their_own():
    assert parse_set_options(["model.width=48"]) == {"model": {"width": 48}}
    with pytest.raises(ValueError, match="--set run_dir=...: run_dir has its own option, --run-dir"):
        parse_set_options(["run_dir=elsewhere"])
    with pytest.raises(ValueError, match="--resume"):
        parse_set_options(["resume=true"])


def test_run_dir_is_checked_before_training(tmp_path):
    """A file as run directory, or a resume with nothing to resume, fail at once with one line."""
    (tmp_path / "file.png").write_bytes(b"png")
    with pytest.raises(ValueError, match="file.png is a file, not a folder"):
        check_run_dir(tmp_path / "file.png", resume=False)
    with pytest.raises(ValueError, match="run directory .*file.png/run: .*file.png is a file, not a folder"):
        check_run_dir(tmp_path / "file.png" / "run", resume=False)  # it failed only when the loop made it
    check_run_dir(tmp_path / "new", resume=False)  # a new run: fine, created by the loop
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="^no checkpoint to resume in .*empty$"):
        check_run_dir(tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="no checkpoint to resume"):
        check_run_dir(tmp_path / "absent", resume=True)
    (tmp_path / "empty" / "checkpoint.pt").write_bytes(b"")
    check_run_dir(tmp_path / "empty", resume=True)


def test_script_refuses_bad_sets_and_run_dirs_with_exit_2(tmp_path, capsys, image_folder):
    base = ["--preset", "tiny", "--train", str(image_folder)]
    assert main([*base, "--run-dir", str(tmp_path / "r"), "--set", "foo=1"]) == 2
    assert "unknown configuration key 'foo'" in capsys.readouterr().err
    assert main([*base, "--run-dir", str(tmp_path / "r"), "--set", "lr=abc"]) == 2
    assert "invalid value for lr: 'abc'" in capsys.readouterr().err
    assert main([*base, "--run-dir", str(tmp_path / "r"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started

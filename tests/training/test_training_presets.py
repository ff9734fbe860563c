"""Presets build valid configurations; the script entry point turns user errors into exit code 2."""

import pytest

from pnp_stable.denoisers import build_denoiser
from pnp_stable.layers import certificate_of
from pnp_stable.training import PRESETS, preset
from pnp_stable.training.run import main, parse_overrides


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
    """Ctrl-C in the script entry point: the loop's checkpoint is on disk, no traceback, exit 130,
    and the same command with --resume continues from the step it was stopped on."""
    import torch

    run_dir = tmp_path / "r"
    original_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_interrupt)
    argv = ["--preset", "tiny", "--train", str(image_folder), "--run-dir", str(run_dir), "--set", "steps=6",
            "--set", "progress=false"]
    assert main(argv) == 130
    assert "--resume" in capsys.readouterr().err
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == 2
    monkeypatch.setattr(torch.optim.Adam, "step", original_step)
    assert main(argv + ["--resume"]) == 0
    assert torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["step"] == 6

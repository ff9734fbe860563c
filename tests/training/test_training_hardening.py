"""Training, export and model loading under abuse: signals mid-step, divergence, failed exports,
crafted model files, wide images, bad configurations, changed resumes (one test per defect)."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnp_stable.training import export_denoiser, preset, train_denoiser
from pnp_stable.training import loop as loop_module
from pnp_stable.training.checkpoint import load_checkpoint


def _images(folder, count=3, size=(40, 36), rgb=False, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = (*size, 3) if rgb else size
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


@pytest.fixture
def images(tmp_path):
    return _images(tmp_path / "train")


def tiny(images, run_dir, **overrides):
    return preset("tiny", [str(images)], str(run_dir), **overrides)


def _states_equal(a, b):
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["step"] == b["step"]


def _interrupt_at(monkeypatch, call, times=1):
    """Send SIGINT ``times`` times from inside block 0's forward pass of training step ``call``:
    after its power method has advanced, i.e. mid-step."""
    build = loop_module.build_denoiser
    count = {"n": 0}

    def build_with_interrupt(config):
        model = build(config)

        def hook(module, args, output):
            if module.training and torch.is_grad_enabled():
                count["n"] += 1
                if count["n"] == call:
                    for _ in range(times):
                        os.kill(os.getpid(), signal.SIGINT)

        model.flow_blocks[0].register_forward_hook(hook)
        return model

    monkeypatch.setattr(loop_module, "build_denoiser", build_with_interrupt)


# 1. Ctrl-C -------------------------------------------------------------------------------------

def test_ctrl_c_mid_step_finishes_the_step_and_resumes_exactly(images, tmp_path, monkeypatch):
    straight = train_denoiser(tiny(images, tmp_path / "straight", steps=5))
    assert straight.stopped is None and straight.finished
    _interrupt_at(monkeypatch, call=3)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    stopped = train_denoiser(tiny(images, tmp_path / "split", steps=5, checkpoint_every=100))
    assert stopped.stopped == "interrupted" and stopped.step == 3 and not stopped.finished
    assert load_checkpoint(stopped.checkpoint)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    monkeypatch.undo()
    train_denoiser(tiny(images, tmp_path / "split", steps=5, resume=True))
    _states_equal(load_checkpoint(tmp_path / "straight" / "checkpoint.pt"),
                  load_checkpoint(tmp_path / "split" / "checkpoint.pt"))


def test_second_ctrl_c_aborts_without_a_mid_step_checkpoint_and_the_log_is_cut_back(images, tmp_path,
                                                                                   monkeypatch):
    train_denoiser(tiny(images, tmp_path / "straight", steps=5, log_every=1))
    _interrupt_at(monkeypatch, call=4, times=2)
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(tiny(images, tmp_path / "split", steps=5, checkpoint_every=2, log_every=1))
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 2  # the last step boundary
    monkeypatch.undo()
    train_denoiser(tiny(images, tmp_path / "split", steps=5, checkpoint_every=2, log_every=1, resume=True))
    _states_equal(load_checkpoint(tmp_path / "straight" / "checkpoint.pt"),
                  load_checkpoint(tmp_path / "split" / "checkpoint.pt"))
    records = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5]  # step 3 once
    assert [r["discarded_records"] for r in records if r["event"] == "resume"] == [2]  # train 3 + aborted


# 2. divergence ---------------------------------------------------------------------------------

def test_diverging_run_stops_before_it_runs_the_substeps(images, tmp_path, monkeypatch):
    from pnp_stable.layers.blocks import GradientFlowBlock

    integrate = GradientFlowBlock._integrate
    largest = {"n": 0}

    def recorded(self, x, n, *args, **kwargs):
        # the oracle: without the check this is asked for ~1e9 sub-steps (and eats all memory)
        assert n <= loop_module.MAX_TRAINING_SUBSTEPS, f"{n} sub-steps run"
        largest["n"] = max(largest["n"], n)
        return integrate(self, x, n, *args, **kwargs)

    monkeypatch.setattr(GradientFlowBlock, "_integrate", recorded)
    with pytest.raises(ValueError, match=r"^training diverged at step \d+: block \d would take \d+ sub-steps .*"
                                         r"lower the learning rate"):
        train_denoiser(tiny(images, tmp_path / "run", steps=30, lr=1e3, grad_clip=0.0))
    assert largest["n"] >= 1
    assert loop_module.MAX_TRAINING_SUBSTEPS == 10_000


# 3. export validates before it writes ----------------------------------------------------------

def test_a_model_that_fails_validation_leaves_no_file_and_the_previous_one_untouched(images, tmp_path):
    from pnp_stable.training.export import write_model

    train_denoiser(tiny(images, tmp_path / "run", steps=2))
    good = export_denoiser(tmp_path / "run" / "checkpoint.pt", "m", dest_dir=tmp_path / "out", empirical_check=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    from pnp_stable.denoisers import load

    model = load(good)
    bad = {**model.metadata, "certificate": {**model.metadata["certificate"], "averagedness": 1e-3}}
    with pytest.raises(ValueError) as refused:
        write_model(model, good, bad)
    assert str(good) in str(refused.value) and ".m." not in str(refused.value)  # names the target
    with pytest.raises(ValueError):
        write_model(model, tmp_path / "out" / "fresh.pt", bad)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # no temporaries either


def test_export_of_nan_weights_is_one_line_and_writes_nothing(images, tmp_path):
    from pnp_stable.training.checkpoint import save_checkpoint
    from pnp_stable.training.export import main as export_main

    train_denoiser(tiny(images, tmp_path / "run", steps=2))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    key = next(k for k in state["model"] if k.endswith("bias"))
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", state)
    assert export_main([str(tmp_path / "nan.pt"), "nanx", "--dest", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# 4. train-denoiser --export ----------------------------------------------------------------------

def _cli(*args):
    from pnp_stable.cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_export_records_the_validation_folder_under_a_neutral_key(images, tmp_path):
    val = _images(tmp_path / "val", count=2, seed=5)
    r = _cli("train-denoiser", "--train", images, "--val", val, "--run-dir", tmp_path / "run", "--preset", "tiny",
             "--steps", "2", "--export", "m", "--export-dir", tmp_path / "out")
    assert r.exit_code == 0, r.output
    metadata = json.loads((tmp_path / "out" / "m.json").read_text())
    assert "bsd68_psnr" not in metadata
    assert metadata["validation_dir"] == str(val) and set(metadata["validation_psnr"]) == {"15", "25", "50"}


def test_cli_colour_run_exports(tmp_path):
    train, val = _images(tmp_path / "train", rgb=True), _images(tmp_path / "val", count=2, rgb=True, seed=3)
    r = _cli("train-denoiser", "--train", train, "--val", val, "--run-dir", tmp_path / "run", "--preset", "tiny",
             "--steps", "2", "--set", "color=opponent", "--export", "c", "--export-dir", tmp_path / "out")
    assert r.exit_code == 0, r.output
    metadata = json.loads((tmp_path / "out" / "c.json").read_text())
    assert metadata["channels"] == 3 and len(metadata["validation_psnr"]) == 3


def test_cli_interrupted_run_is_not_exported_and_exits_130(images, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, call=2)
    r = _cli("train-denoiser", "--train", images, "--run-dir", tmp_path / "run", "--preset", "tiny", "--steps", "5",
             "--export", "m", "--export-dir", tmp_path / "out")
    assert r.exit_code == 130, r.output
    assert "--resume" in r.output and not (tmp_path / "out" / "m.pt").exists()


def test_cli_steps_and_set_steps_must_agree(images, tmp_path):
    r = _cli("train-denoiser", "--train", images, "--run-dir", tmp_path / "run", "--preset", "tiny", "--steps", "5",
             "--set", "steps=6")
    assert r.exit_code == 2 and "disagree" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# 5. crafted model files ------------------------------------------------------------------------

@pytest.fixture
def model_file(tmp_path):
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    model.freeze_substeps()
    cert = model.certificate()
    path = tmp_path / "ok.pt"
    save_denoiser(model, path, {"certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}})
    return path


@pytest.mark.parametrize("tamper, message", [
    (lambda p: p.update(config=None), "its config is NoneType"),
    (lambda p: p["config"].update(width="4"), "its config describes no model"),
    (lambda p: p.pop("state_dict"), "holds no state_dict"),
    (lambda p: p.update(metadata="hello"), "its metadata is str"),
    (lambda p: p["metadata"].update(certificate="yes"), "certificate is str"),
    (lambda p: p["metadata"]["certificate"].update(averagedness="0.5"), "averagedness is '0.5'"),
])
def test_crafted_model_files_are_one_line_errors(model_file, tmp_path, tamper, message):
    from pnp_stable.denoisers import load

    payload = torch.load(model_file, weights_only=True)
    tamper(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=f"^{path} is not a valid pnp-stable denoiser file: .*{message}"):
        load(path)
    r = _cli("certify", path, "--no-search")
    assert r.exit_code == 2 and "Traceback" not in r.output and message in r.output


def test_a_truncated_model_file_says_so(model_file, tmp_path):
    from pnp_stable.denoisers import load

    path = tmp_path / "cut.pt"
    path.write_bytes(model_file.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"is not a \(complete\) pnp-stable denoiser file"):
        load(path)


# 6. wide images --------------------------------------------------------------------------------

def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from pnp_stable.training.data import PatchSampler, read_image

    ramp = np.linspace(0, 1, 40 * 40).reshape(40, 40)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "w16.png")
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "f.tif")
    Image.fromarray((ramp * 2).astype(np.float32), mode="F").save(tmp_path / "big.tif")
    for name in ("w16.png", "f.tif"):
        read = read_image(tmp_path / name, 1)
        assert read.shape == (40, 40, 1) and np.allclose(read[..., 0], ramp, atol=1e-4), name
    assert read_image(tmp_path / "w16.png", 3).shape == (40, 40, 3)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        read_image(tmp_path / "big.tif", 1)
    clean, _, _ = PatchSampler([tmp_path / "w16.png"], 1, 40, (0.1, 0.1), augment=False).batch(1, 0)
    assert torch.allclose(clean[0, 0].double(), torch.from_numpy(ramp), atol=1e-4)


# 7. configuration checks -----------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"val_sigmas": []}, "val_sigmas is empty"),
    ({"val_crop": 0}, "val_crop must be a positive"),
    ({"val_limit": -1}, "val_limit must be a positive"),
    ({"lr": float("nan")}, "finite learning rates"),
    ({"lr": float("inf")}, "finite learning rates"),
    ({"lr": 1e-3, "lr_min": 1e-2}, "lr_min <= lr"),
    ({"seed": 2**63}, "seed must be a 64-bit integer"),
    ({"grad_clip": float("nan")}, "grad_clip"),
    ({"grad_clip": -1.0}, "grad_clip"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"num_threads": -2}, "num_threads"),
    ({"model": {"power_size": 2}}, "power_size must be at least"),
])
def test_bad_configurations_are_refused(images, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(images, tmp_path / "run", **overrides)


def test_a_large_seed_trains(images, tmp_path):
    assert train_denoiser(tiny(images, tmp_path / "run", steps=1, seed=2**40)).step == 1


# 8. resume with changed settings -----------------------------------------------------------------

def test_resume_refuses_changes_that_break_exactness_and_logs_the_others(images, tmp_path):
    train_denoiser(tiny(images, tmp_path / "run", steps=4), stop_after=2)
    with pytest.raises(ValueError, match=r"^cannot resume .* with changed settings: lr \(0.01 -> 0.02\), "
                                         r"seed \(0 -> 1\)"):
        train_denoiser(tiny(images, tmp_path / "run", steps=4, resume=True, seed=1, lr=0.02))
    with pytest.raises(ValueError, match="patch_size"):
        train_denoiser(tiny(images, tmp_path / "run", steps=4, resume=True, patch_size=20))
    with pytest.raises(ValueError, match="already at step 2"):
        train_denoiser(tiny(images, tmp_path / "run", steps=1, resume=True))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["seed"] == 0  # untouched
    result = train_denoiser(tiny(images, tmp_path / "run", steps=6, resume=True))
    assert result.step == 6
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["changed"] for r in records if r["event"] == "resume"] == [{"steps": [4, 6]}]


# 9. small things -------------------------------------------------------------------------------

def test_script_errors_are_one_line(images, tmp_path, capsys):
    from pnp_stable.training.export import main as export_main
    from pnp_stable.training.run import main as run_main

    base = ["--preset", "tiny", "--train", str(images)]
    assert run_main(base + ["--run-dir", str(tmp_path / "a"), "--set", f"init_from={tmp_path / 'missing.pt'}"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert run_main(base + ["--run-dir", str(tmp_path / "b"), "--stop-after", "0"]) == 2
    assert "--stop-after" in capsys.readouterr().err and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="stop_after"):
        train_denoiser(tiny(images, tmp_path / "c"), stop_after=0)
    assert export_main([str(tmp_path / "missing.pt"), "x", "--dest", str(tmp_path / "out")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_only_rank_0_prints_the_result(images, tmp_path, capsys, monkeypatch):
    from pnp_stable.training import run as run_module

    def fake_train(config, stop_after=None, time_limit=None):
        return loop_module.TrainResult(tmp_path, 1, tmp_path / "checkpoint.pt", None, None, planned_steps=1, rank=1)

    monkeypatch.setattr(loop_module, "train_denoiser", fake_train)
    assert run_module.main(["--preset", "tiny", "--train", str(images), "--run-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out == ""


# --- a user's own data and exports (review of 2026-12-06) ---


def test_a_stack_of_images_is_refused_not_trained_on_its_first_frame(tmp_path):
    from pnp_stable.training.data import read_image

    frames = [Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match="holds 3 images"):
        read_image(tmp_path / "stack.tif", 1)


def test_the_bsds500_val_split_is_refused_however_it_is_named(tmp_path, monkeypatch):
    from pnp_stable.training.data import training_image_paths

    val = _images(tmp_path / "bsds" / "images" / "val")
    (tmp_path / "link").symlink_to(val)
    monkeypatch.chdir(val)
    for spelling in (".", str(tmp_path / "link"), str(val)):
        with pytest.raises(ValueError, match="BSDS500 val split"):
            training_image_paths([spelling])


def test_an_empty_folder_names_its_subfolders_and_hidden_files_are_no_images(tmp_path):
    from pnp_stable.training.data import list_images

    _images(tmp_path / "top" / "sub")
    (tmp_path / "top" / "._im0.png").write_bytes(b"\0\0")  # a macOS resource fork
    with pytest.raises(ValueError, match="subfolders are not searched"):
        list_images(tmp_path / "top")
    assert [p.name for p in list_images(tmp_path / "top" / "sub")] == ["im0.png", "im1.png", "im2.png"]


def test_set_options_merge_an_architecture_object_and_refuse_a_scalar_model():
    from pnp_stable.training.run import parse_overrides

    assert parse_overrides(["model.width=6", 'model={"blocks": 3}']) == {"model": {"width": 6, "blocks": 3}}
    with pytest.raises(ValueError, match="expects a JSON object"):
        parse_overrides(["model=3", "model.width=4"])


def test_a_shortened_preset_names_the_phase_that_no_longer_fits(images, tmp_path):
    with pytest.raises(ValueError, match=r"preset gray-cpu-deep's certified_finetune_steps \(300\) is more than "
                                         r"steps=100: set it too"):
        preset("gray-cpu-deep", [str(images)], str(tmp_path / "run"), steps=100)
    with pytest.raises(ValueError, match=r"warmup_steps \(200\) is more than steps=150"):
        preset("gray-cpu", [str(images)], str(tmp_path / "run"), steps=150, certified_finetune_steps=0)
    assert preset("gray-cpu", [str(images)], str(tmp_path / "run"), steps=150, warmup_steps=10,
                  certified_finetune_steps=0).steps == 150


def test_an_export_never_replaces_a_training_checkpoint(images, tmp_path):
    from pnp_stable.training.export import main as export_main

    train_denoiser(tiny(images, tmp_path / "run", steps=2))
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="is the checkpoint being exported"):
        export_denoiser(checkpoint, "checkpoint", dest_dir=tmp_path / "run", empirical_check=False)
    train_denoiser(tiny(images, tmp_path / "other", steps=2))
    with pytest.raises(ValueError, match="is a training checkpoint"):  # another run's
        export_denoiser(checkpoint, "checkpoint", dest_dir=tmp_path / "other", empirical_check=False)
    assert checkpoint.read_bytes() == before
    (tmp_path / "file").write_text("x")
    assert export_main([str(checkpoint), "m", "--dest", str(tmp_path / "file"), "--no-empirical-check"]) == 2


def test_the_export_script_says_when_a_run_has_not_finished(images, tmp_path, capsys):
    from pnp_stable.training.export import main as export_main

    train_denoiser(tiny(images, tmp_path / "run", steps=4), stop_after=1)
    assert export_main([str(tmp_path / "run" / "checkpoint.pt"), "early", "--dest", str(tmp_path / "out"),
                        "--no-empirical-check"]) == 0
    assert "is at step 1 of 4: the run has not finished" in capsys.readouterr().err


def test_a_stop_while_the_data_are_read_leaves_no_run_behind(images, tmp_path, monkeypatch):
    from pnp_stable.training import data as data_module

    original = data_module.PatchSampler.__init__

    def interrupted(self, *args, **kwargs):
        original(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the images load

    monkeypatch.setattr(loop_module.PatchSampler, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(tiny(images, tmp_path / "run", steps=4))
    assert not (tmp_path / "run").exists()


def test_unusable_data_leave_no_run_folder_behind(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        train_denoiser(tiny(tmp_path / "empty", tmp_path / "run", steps=2))
    assert not (tmp_path / "run").exists()


def test_a_training_checkpoint_given_as_a_denoiser_says_to_export_it(images, tmp_path):
    from pnp_stable.denoisers import load

    train_denoiser(tiny(images, tmp_path / "run", steps=1))
    with pytest.raises(ValueError, match="is a training checkpoint, not a denoiser: export it first"):
        load(tmp_path / "run" / "checkpoint.pt")


def test_npy_arrays_are_training_images_as_the_commands_read_them(tmp_path):
    from pnp_stable.training.data import list_images, read_image, to_unit_range

    rng = np.random.default_rng(0)
    gray8 = (rng.random((20, 24)) * 255).astype(np.uint8)
    np.save(tmp_path / "a.npy", gray8)
    np.save(tmp_path / "b.npy", (rng.random((20, 24)) * 65535).astype(np.uint16))
    np.save(tmp_path / "c.npy", rng.random((20, 24, 3)).astype(np.float32))
    assert [p.name for p in list_images(tmp_path)] == ["a.npy", "b.npy", "c.npy"]
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy", 1)[..., 0], gray8)
    wide = to_unit_range(torch.from_numpy(read_image(tmp_path / "b.npy", 1)))
    assert wide.dtype == torch.float32 and 0 <= float(wide.min()) and float(wide.max()) <= 1
    assert read_image(tmp_path / "c.npy", 1).shape == (20, 24, 1)  # luma of an RGB array
    assert read_image(tmp_path / "a.npy", 3).shape == (20, 24, 3)
    np.save(tmp_path / "d.npy", rng.random((20, 24)) * 255)  # floats on another scale
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        read_image(tmp_path / "d.npy", 1)
    np.save(tmp_path / "e.npy", np.zeros((4, 20, 24)))
    with pytest.raises(ValueError, match="expected H x W or H x W x 3"):
        read_image(tmp_path / "e.npy", 1)


def test_a_16_bit_rgb_png_keeps_its_16_bits(tmp_path):
    from pnp_stable.png16 import write_rgb16_png
    from pnp_stable.training.data import read_image

    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 65535).astype(np.uint16)
    write_rgb16_png(str(tmp_path / "a.png"), rgb)
    read = read_image(tmp_path / "a.png", 3)
    assert read.dtype == np.float32
    np.testing.assert_allclose(read, rgb / 65535.0, atol=1e-7)  # Pillow gave the high bytes only
    gray = read_image(tmp_path / "a.png", 1)[..., 0]
    np.testing.assert_allclose(gray, (rgb / 65535.0).astype(np.float32) @ np.float32([0.299, 0.587, 0.114]),
                               atol=1e-6)


def test_a_zip_archive_named_npy_is_refused_in_one_line(tmp_path):
    from pnp_stable.training.data import read_image

    np.savez(tmp_path / "a.npz", x=np.zeros((4, 4)))
    (tmp_path / "a.npz").rename(tmp_path / "a.npy")
    with pytest.raises(ValueError, match="a zip archive"):
        read_image(tmp_path / "a.npy", 1)


def test_a_bad_init_from_leaves_no_run_folder(images, tmp_path):
    with pytest.raises((ValueError, FileNotFoundError)):
        train_denoiser(tiny(images, tmp_path / "run", steps=2, init_from=str(tmp_path / "missing.pt")))
    assert not (tmp_path / "run").exists()

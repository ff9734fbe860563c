"""bench/train_gray_budgeted.py: a run sized from a probe, exported and measured, on CPU with the tiny preset."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_loader import load_bench_script  # noqa: E402

budgeted = load_bench_script("train_gray_budgeted")


def test_plan_fits_the_allowance_and_scales_the_phases():
    plan = budgeted.plan_steps(train_seconds=600.0, seconds_per_step=0.5, slowdown=2.0)
    assert plan["steps"] == 600
    assert plan["warmup_steps"] == 30 and plan["certified_finetune_steps"] == 60 and plan["val_every"] == 600
    assert budgeted.plan_steps(1.0, 10.0, 1.5)["steps"] == 20  # never a degenerate schedule


def test_budgeted_run_trains_exports_and_measures(write_images_root, tmp_path):
    out = tmp_path / "out"
    code = budgeted.main(["--data", str(write_images_root), "--out", str(out), "--preset", "tiny", "--device", "cpu",
                          "--minutes", "0.12", "--reserve-minutes", "0.04", "--probe-steps", "8",
                          "--set", "model.power_size=8"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["steps_done"] <= summary["plan"]["steps"]
    meta = json.loads((out / "gray-budgeted.json").read_text())
    assert meta["certificate"]["lipschitz"] <= 1.0 and meta["certificate"]["averagedness"] < 1
    bench = json.loads((out / "bsd68.json").read_text())
    assert set(bench["results"]["gray-budgeted"]["psnr"]) == {"15", "25", "50"}
    assert (out / "run" / "checkpoint.pt").exists() and not (out / "run" / "best.pt").exists()


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    assert budgeted.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--minutes", "1"]) == 2
    assert "data folder not found" in capsys.readouterr().err


@pytest.fixture
def write_images_root(tmp_path, make_images):
    root = tmp_path / "data" / "denoising"
    make_images(root / "bsds500" / "images" / "train", count=4)
    make_images(root / "bsd68", count=2, seed=5)
    return tmp_path / "data"

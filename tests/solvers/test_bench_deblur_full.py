"""bench/bench_deblur_full.py: full-size problems, per-noise summaries, and an exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench_loader import load_bench_script


def _layout(root):
    """Two non-square BSD68 stand-ins and two kernels, laid out like ../shared/data."""
    bsd68 = root / "denoising" / "bsd68"
    bsd68.mkdir(parents=True)
    yy, xx = np.mgrid[0:30, 0:40]
    for i, name in enumerate(["test001", "test002"]):
        img = 128 + 90 * np.sin(xx / (4 + i)) * np.cos(yy / 5)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(bsd68 / f"{name}.png")
    (root / "kernels" / "npy").mkdir(parents=True)
    np.save(root / "kernels" / "npy" / "box3.npy", np.full((3, 3), 1 / 9))
    np.save(root / "kernels" / "npy" / "bar5.npy", np.full((1, 5), 1 / 5))


def test_the_protocol_constants_are_design_md_s():
    bench = load_bench_script("bench_deblur_full")
    assert bench.FULL_IMAGES == tuple(f"test{i:03d}" for i in range(1, 11))
    assert sorted(bench.FULL_KERNELS) == sorted([f"levin_{i}" for i in range(1, 9)] + ["uniform_9x9",
                                                                                      "gaussian_25x25_sigma1.6"])
    assert bench.FULL_NOISE_LEVELS == pytest.approx((2.55 / 255, 7.65 / 255))


def test_full_size_runs_summarised_per_noise_level_and_an_interrupted_run_resumes_exactly(tmp_path, capsys):
    bench = load_bench_script("bench_deblur_full")
    data = tmp_path / "data"
    _layout(data)
    out = tmp_path / "full.json"
    common = ["--data", str(data), "--denoiser", "random-certified", "--images", "test001", "test002",
              "--kernels", "box3", "bar5", "--noise-levels", "0.01", "0.03", "--max-iter", "3", "--device", "cpu"]
    assert bench.main([*common, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["complete"] and report["planned"] == 8 and len(report["runs"]) == 8
    assert report["protocol"] == "deblur-full (subset)"
    assert all(r["shape"] == [30, 40] for r in report["runs"])  # full images, no crop
    assert set(report["summary"]) == {"0.01", "0.03"} and all(s["runs"] == 4 for s in report["summary"].values())
    assert report["summary"]["0.03"]["mean_psnr"] < report["summary"]["0.01"]["mean_psnr"]
    assert all(r["proven"] for r in report["runs"])

    # stopped after five problems: --resume solves the other three, the same as the uninterrupted run
    partial = {**report, "runs": report["runs"][:5], "complete": False}
    out.write_text(json.dumps(partial))
    assert bench.main([*common, "--json", str(out), "--resume"]) == 0
    resumed = json.loads(out.read_text())
    assert resumed["complete"] and resumed["runs"][:5] == report["runs"][:5]
    key = ("noise", "image", "kernel", "psnr", "iterations")
    assert [[r[k] for k in key] for r in resumed["runs"]] == [[r[k] for k in key] for r in report["runs"]]

    capsys.readouterr()
    assert bench.main([*common[:-2], "--device", "cpu", "--tol", "1e-3", "--json", str(out), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert bench.main([*common, "--resume"]) == 2
    assert bench.main([*common[:4], "--images", "test009", *common[7:], "--json", str(tmp_path / "x.json")]) == 2
    assert "test009 not found" in capsys.readouterr().err

"""bench/bench_denoiser_throughput.py: a run on a tiny saved model writes a consistent JSON."""

import json
import math

import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser
from bench_loader import load_bench_script


def test_throughput_bench_on_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    path = tmp_path / "tiny.pt"
    save_denoiser(model, path, {"channels": 1})
    out = tmp_path / "t.json"
    bench = load_bench_script("bench_denoiser_throughput")
    assert bench.main([str(path), "--sizes", "16", "24", "--repeats", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [r["size"] for r in rows] == [16, 24] and all(r["model"] == "tiny" for r in rows)
    for r in rows:
        assert r["seconds_per_call"] > 0 and r["certified"]
        assert abs(r["mpixel_per_s"] - r["size"] ** 2 / 1e6 / r["seconds_per_call"]) < 1e-9
        assert r["substeps_per_call"] == sum(b.substeps() for b in model.flow_blocks)
    assert bench.main([str(tmp_path / "absent.pt")]) == 2


def test_throughput_bench_counts_time_adapted_and_full_time_substeps(tmp_path, constant_time_scale):
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8, init_scale=4.0,
                                          time_conditioning=True)).eval()
    tau = constant_time_scale(model, 0.25)
    full = model.freeze_substeps()
    assert min(full) >= 4
    path = tmp_path / "timed.pt"
    save_denoiser(model, path, {"channels": 1})
    bench = load_bench_script("bench_denoiser_throughput")
    counts = {}
    for flag in ([], ["--full-time-substeps"]):
        out = tmp_path / f"t{len(flag)}.json"
        assert bench.main([str(path), "--sizes", "12", "--repeats", "1", "--json", str(out), *flag]) == 0
        row = json.loads(out.read_text())["results"][0]
        counts[row["substep_rule"]] = row["substeps_per_call"]
    assert counts == {"time-adapted": sum(math.ceil(tau * n) for n in full), "full-time": sum(full)}
    assert counts["time-adapted"] < counts["full-time"]

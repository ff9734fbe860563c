"""bench/bench_inexact_prox.py end to end on a tiny CT problem (the photographs need ../shared)."""

import json

from bench_loader import load_bench_script


def test_a_budgeted_prox_costs_fewer_cg_iterations_and_keeps_the_verdicts(tmp_path):
    bench = load_bench_script("bench_inexact_prox")
    out = tmp_path / "inexact.json"
    assert bench.main(["--ratios", "0", "0.3", "--ct-size", "32", "--angles", "12", "--images", "0",
                       "--max-iter", "8", "--threads", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    exact, budgeted = (record["summary"][k] for k in ("0.0", "0.3"))
    assert budgeted["cg_iterations"] < exact["cg_iterations"]
    for s in (exact, budgeted):
        assert s["runs"] == 1 and s["monotone"] == 1 and s["proven"] == 1
    assert abs(budgeted["psnr"] - exact["psnr"]) < 0.5
    assert record["benchmark"] == "inexact_prox" and "command" in record

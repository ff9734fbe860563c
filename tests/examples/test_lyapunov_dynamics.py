"""Example 3 (Lyapunov-stable dynamics): smoke run; dV/dt <= -mu V holds on and off the data."""

import json

import torch

from example_loader import load_example

EXAMPLE = "lyapunov_dynamics"
FILES = {"phase_portraits.png", "lyapunov_decay.png", "training_losses.png", "summary.md", "results.json"}


def test_quick_run_outputs_and_decay_guarantee(quick_run):
    _, results, out = quick_run
    assert {p.name for p in out.iterdir()} == FILES
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["decay_condition_margin_trained"] <= 1e-12
    assert results["decay_condition_margin_untrained"] <= 1e-12
    assert results["decay_condition_points"] > 40000
    assert results["far_worst_V_ratio_over_exp_bound"] <= 1 + 1e-3  # RK4 error only
    assert set(results["models"]) == {"stable (Kolter-Manek)", "baseline (no projection)"}
    assert "dV/dt <= -mu V" in (out / "summary.md").read_text()


def test_true_system_is_damped_and_rollout_is_accurate():
    ex = load_example(EXAMPLE)
    field = ex.duffing_field(0.5)
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    traj = ex.rollout(field, x0, 0.1, 100, substeps=10)

    def energy(x):
        return 0.5 * x[..., 1] ** 2 + 0.5 * x[..., 0] ** 2 + 0.25 * x[..., 0] ** 4

    e = energy(traj[0])
    assert bool((e[1:] <= e[:-1] + 1e-12).all()) and float(e[-1]) < 0.1 * float(e[0])
    coarse = ex.rollout(field, x0, 0.1, 100, substeps=5)
    assert float((coarse - traj).abs().max()) < 1e-6  # RK4 converged at the data resolution

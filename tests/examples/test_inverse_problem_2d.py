"""Example 1 (ill-conditioned 2-D inverse problem): smoke run and the guarantees it reports."""

import json
import math

import torch

from example_loader import load_example

EXAMPLE = "inverse_problem_2d"
FILES = {"data.png", "reconstructions.png", "training_losses.png", "tikhonov_tau.png", "summary.md", "results.json"}


def test_quick_run_writes_figures_summary_and_consistent_numbers(quick_run):
    _, results, out = quick_run
    assert {p.name for p in out.iterdir()} == FILES  # nothing else, no temporaries
    assert all((out / f).stat().st_size > 0 for f in FILES)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    summary = (out / "summary.md").read_text()
    budgets = results["budgets"]
    assert [b["budget"] for b in budgets] == ["L*/3", "L*", "3L*"]
    for b in budgets:
        assert f"{b['tikhonov_test_mse']:.4g}" in summary and f"{b['invnet_test_mse']:.4g}" in summary
        # the certified bound respects the budget, and nothing found exceeds it
        assert b["invnet_certified_lipschitz"] <= b["cap"] * (1 + 1e-12)
        assert b["invnet_empirical_lipschitz"] <= b["invnet_certified_lipschitz"] * (1 + 1e-9)
        assert b["tikhonov_lipschitz"] <= b["cap"] * (1 + 1e-9)
    # above L* the Lipschitz constraint is inactive: the best Tikhonov is tau* itself
    assert budgets[1]["tikhonov_tau"] == budgets[2]["tikhonov_tau"] == results["tau_star"]
    assert math.isclose(budgets[1]["cap"], results["L_star"])


def test_tikhonov_lipschitz_formulas():
    ex = load_example(EXAMPLE)
    a = ex.forward_matrix(0.25)
    sv = torch.linalg.svdvals(a)
    torch.testing.assert_close(sv, torch.tensor([2.25, 0.25], dtype=torch.float64))
    for tau in (1e-3, 0.05, 2.0):
        norm = float(torch.linalg.matrix_norm(ex.tikhonov_operator(a, tau), ord=2))
        assert math.isclose(ex.tikhonov_lipschitz(sv, tau), norm, rel_tol=1e-12)
    for cap in (0.5, 1.0, 3.0):
        tau = ex.smallest_tau_with_lipschitz(sv, cap)
        assert math.isclose(ex.tikhonov_lipschitz(sv, tau), cap, rel_tol=1e-12)
    assert ex.smallest_tau_with_lipschitz(sv, 10.0) == 0.0  # 1 / sigma_min = 4 < 10: no regularisation needed


def test_invnet_certificate_is_the_clamped_scale_times_the_layer_certificates():
    ex = load_example(EXAMPLE)
    torch.manual_seed(0)
    net = ex.InvNet(cap=2.0).double().eval()
    with torch.no_grad():
        net.scale.fill_(50.0)  # the clamp, not the optimiser, is what enforces the budget
        for block in list(net.body)[1:-1]:
            block.linear.weight.mul_(3.0)
            block.bias.normal_()
    cert = net.certificate()
    assert cert.lipschitz == 2.0 * net.body.certificate().lipschitz <= 2.0
    assert net.body.certificate().averagedness is not None  # P N E is averaged, not only 1-Lipschitz
    found = ex.empirical_lipschitz_lower_bound(net, quick=True, seed=0)
    assert 0.0 < found <= cert.lipschitz * (1 + 1e-9)
    # the same search does see the unclamped scale: the bound is not vacuous
    unclamped = ex.empirical_lipschitz_lower_bound(lambda y: net.scale * net.body(y), quick=True, seed=0)
    assert unclamped > cert.lipschitz

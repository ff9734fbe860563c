"""Example 2 (vanishing gradients): smoke run; the Hamiltonian Jacobian norm never drops below 1."""

import json

import torch

from example_loader import load_example

EXAMPLE = "vanishing_gradients"
FILES = {"jacobian_norms.png", "first_layer_gradients.png", "training_losses.png", "decision_regions.png",
         "summary.md", "results.json"}


def test_quick_run_outputs_and_jacobian_guarantee(quick_run):
    _, results, out = quick_run
    assert {p.name for p in out.iterdir()} == FILES
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    models = results["models"]
    assert set(models) == {"MLP-12", "MLP-2", "ResNet-12", "Hamiltonian-12"}
    ham = models["Hamiltonian-12"]
    assert ham["jacobian_norm_min_over_training"] >= 1.0 - 1e-5  # float32 during training
    assert results["hamiltonian_min_jacobian_norm_float64"] >= 1.0
    assert results["hamiltonian_symplectic_defect"] < 1e-10
    # the phenomenon the example is about: at initialisation the deep tanh MLP's Jacobian collapses
    assert models["MLP-12"]["jacobian_norm_mean_initial"] < 0.05
    assert models["MLP-12"]["first_layer_grad_initial"] < 0.01 * ham["first_layer_grad_initial"]
    summary = (out / "summary.md").read_text()
    for name, m in models.items():
        assert name in summary and f"{m['test_accuracy']:.4g}" in summary


def test_data_is_two_balanced_spirals_embedded_isometrically():
    ex = load_example(EXAMPLE)
    q = ex.embedding(0)
    torch.testing.assert_close(q.T @ q, torch.eye(2), atol=1e-6, rtol=0)
    plane, label = ex.swiss_roll(2000, torch.Generator().manual_seed(0))
    assert plane.shape == (2000, 2) and set(label.tolist()) == {0, 1}
    assert 0.4 < float(label.float().mean()) < 0.6
    assert float(plane.norm(dim=1).max()) < 1.2

"""Training with learned spline activations: the optimiser's steps are projected back into the
set the slopes must stay in (and, as a negative control, they leave it without the projection)."""

import torch

from pnp_stable.layers import MonotoneLinearSpline, uniform_knots
from pnp_stable.training import loop, preset, train_denoiser
from pnp_stable.training.checkpoint import load_checkpoint


def spline_run(image_folder, run_dir):
    config = preset("tiny", [str(image_folder)], str(run_dir), val_dir=None, steps=6, lr=5e-2,
                    model={"spline_knots": 3, "spline_spacing": 0.05})
    state = load_checkpoint(train_denoiser(config).checkpoint)["model"]
    return torch.stack([v for k, v in state.items() if k.endswith("raw_slopes")])


def test_projection_keeps_raw_slopes_in_range_during_training(image_folder, tmp_path):
    raw = spline_run(image_folder, tmp_path / "run")
    initial = MonotoneLinearSpline(1, uniform_knots(3, 0.05)).raw_slopes.detach()
    assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    assert float((raw - initial).abs().max()) > 1e-3  # the slopes did learn


def test_without_the_projection_the_optimiser_pushes_slopes_out(image_folder, tmp_path, monkeypatch):
    """Negative control for the test above."""
    monkeypatch.setattr(loop, "_project_parameters", lambda model: None)
    raw = spline_run(image_folder, tmp_path / "run")
    assert float(raw.min()) < 0.0 or float(raw.max()) > 1.0

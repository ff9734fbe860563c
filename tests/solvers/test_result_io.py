"""Result files (JSON, plot) and argument validation of ``solve``."""

from __future__ import annotations

import json

import pytest
import torch

from pnp_stable.solvers import solve
from solver_toys import FFTBlur, GaussianSmoother, SigmaSmoother, gaussian_kernel

SIZE = 16


@pytest.fixture(scope="module")
def run():
    op = FFTBlur(gaussian_kernel(3, 0.8), (SIZE, SIZE))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    y = op.simulate(x, 0.01, seed=0)
    result = solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), method="admm", step=1.0, tol=1e-8, max_iter=200,
                   x_true=x, metrics=("psnr", "ssim"), progress=False)
    return op, x, y, result


def test_history_rows_carry_per_image_metrics(run):
    *_, result = run
    row = result.history[-1]
    assert len(row["residual"]) == 2 and len(row["psnr"]) == 2 and len(row["ssim"]) == 2
    assert all(0 < s <= 1 for s in result.history[0]["ssim"])
    assert row["time"] >= result.history[0]["time"] >= 0
    assert result.history[0]["update"] == ["start", "start"]


def test_json_round_trip_and_no_leftovers(run, tmp_path):
    *_, result = run
    path = tmp_path / "run.json"
    result.to_json(path)
    loaded = json.loads(path.read_text())
    assert loaded["guarantee"]["holds"] is True and loaded["method"] == "admm"
    assert len(loaded["history"]) == len(result.history)
    assert loaded["final_residuals"] == pytest.approx(result.final_residuals())
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # the temporary file was renamed


def test_plot_writes_an_image_atomically(run, tmp_path):
    *_, result = run
    path = tmp_path / "residual.png"
    figure = result.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_ylabel() for ax in figure.axes] == ["residual", "PSNR (dB)"]
    assert result.plot().axes[0].get_yscale() == "log"  # no path: the figure only, for a notebook
    assert [p.name for p in tmp_path.iterdir()] == ["residual.png"]
    with pytest.raises(ValueError, match=r"residual.txt: cannot plot to a \.txt file; use one of .*\.png"):
        result.plot(tmp_path / "residual.txt")
    with pytest.raises(ValueError, match="does not exist"):
        result.to_json(tmp_path / "missing" / "run.json")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "pgd"}, "unknown method"),
        ({"accelerate": "nesterov"}, "accelerate"),
        ({"max_iter": -1}, "max_iter"),
        ({"metrics": ("lpips",)}, "unknown metrics"),
        ({"x0": torch.zeros(2, 1, SIZE + 1, SIZE, dtype=torch.float64)}, "x0 has shape"),
        ({"step": -1.0}, "positive"),
        ({"step": float("nan")}, "step must be a positive number"),
        ({"sigma_den": float("nan")}, "sigma_den must be a finite non-negative number, got nan$"),
        ({"noise_level": [0.01, 0.03]}, r"noise_level must be a .*: one for the whole batch, whose images share"),
        ({"noise_level": torch.tensor([0.01, 0.03])}, "one for the whole batch"),
        ({"sigma_den": -0.1}, "sigma_den must be a finite non-negative number, got -0.1$"),
        ({"x0": torch.full((2, 1, SIZE, SIZE), float("nan"), dtype=torch.float64)}, "x0 contains NaN"),
    ],
)
def test_invalid_arguments_raise_one_line_errors(run, kwargs, message):
    op, _, y, _ = run
    args = {"method": "fb", "progress": False, "max_iter": 1, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), **args)
    assert "\n" not in str(info.value)


def test_bad_observations_and_denoiser_outputs_are_named(run):
    op, _, y, _ = run
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    bad = y.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        solve(bad, op, smoother, progress=False)

    class Cropping(torch.nn.Module):
        def forward(self, x):
            return x[..., :-1, :-1]

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ValueError, match=r"returned shape \(2, 1, 15, 15\) for an input of shape \(2, 1, 16, 16\)"):
        solve(y, op, Cropping(), max_iter=1, progress=False)
    with pytest.raises(ValueError, match="the denoiser Pair returned a tuple"):
        solve(y, op, Pair(), max_iter=1, progress=False)


def test_resuming_with_another_observation_is_refused(run):
    op, _, y, _ = run
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    first = solve(y, op, smoother, max_iter=2, progress=False)
    with pytest.raises(ValueError, match="cannot resume: y differs from the observation"):
        solve(2 * y, op, smoother, max_iter=2, resume=first, progress=False)
    again = solve(y.clone(), op, smoother, max_iter=2, resume=first, progress=False)  # equal values: accepted
    assert again.iterations == 4


def test_a_metric_name_alone_and_a_short_repr(run):
    op, x, y, _ = run
    result = solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), max_iter=2, x_true=x, metrics="ssim", progress=False)
    assert "ssim" in result.history[-1]
    # FB on a toy operator rests on its own norm claim
    assert repr(result) == "SolveResult(fb, x (2, 1, 16, 16), 2 it, max_iter, monotone, guaranteed if assumptions hold)"


def test_dtype_mismatch_and_non_operator_are_refused(run):
    op, _, y, _ = run
    with pytest.raises(ValueError, match="convert one of them"):
        solve(y.float(), op, GaussianSmoother(1.0, (SIZE, SIZE)).double(), progress=False)
    with pytest.raises(ValueError, match="not a forward operator"):
        solve(y, object(), GaussianSmoother(1.0, (SIZE, SIZE)), progress=False)


def test_state_files_resume_exactly_and_snapshots_are_resumable(run, tmp_path):
    from pnp_stable.solvers import load_solve_state, save_solve_state

    op, x, y, _ = run
    D = GaussianSmoother(1.0, (SIZE, SIZE))
    snapshots = []
    whole = solve(y, op, D, method="admm", step=1.0, tol=1e-12, max_iter=12, x_true=x, progress=False,
                  checkpoint=snapshots.append, checkpoint_every=0.0)
    assert [s.iterations for s in snapshots] == list(range(12))  # one per recorded iterate while running
    assert all(s.stopped_by == "checkpoint" for s in snapshots)
    path = tmp_path / "run.state"
    save_solve_state(path, snapshots[5], {"problem": {"id": 1}})
    loaded, meta = load_solve_state(path)
    assert meta == {"problem": {"id": 1}} and loaded.iterations == 5 and loaded.guarantee == whole.guarantee
    assert [p.name for p in tmp_path.iterdir()] == ["run.state"]  # atomic: no temporary file left
    rest = solve(y, op, D, method="admm", tol=1e-12, max_iter=7, x_true=x, progress=False, resume=loaded)
    assert rest.iterations == 12 and torch.equal(rest.x, whole.x)  # no acceleration: exactly the same run
    assert [r["residual"] for r in rest.history] == [r["residual"] for r in whole.history]
    # the final result is a state too
    save_solve_state(path, whole)
    again, _ = load_solve_state(path)
    assert torch.equal(again.state, whole.state) and again.history == whole.history
    (tmp_path / "bad.state").write_bytes(b"not a state")
    with pytest.raises(ValueError, match=r"bad.state is not a pnp-stable solver state \(it could not be read as one\)"):
        load_solve_state(tmp_path / "bad.state")
    torch.save({"format": "something else"}, tmp_path / "other.state")
    with pytest.raises(ValueError, match="not a pnp-stable solver state"):
        load_solve_state(tmp_path / "other.state")


class Halver(torch.nn.Module):
    """A map without tensors (as a TV prox is): told apart from another one by its class."""

    def forward(self, x):
        return 0.5 * x


def test_a_solve_is_resumed_only_with_its_own_denoiser(run):
    """Another map would continue this one's iterates and residual history, and the guarantee would
    be stated for both (review of 2026-12-06: a run with an uncertified denoiser resumed with a
    certified one read 'proven')."""
    op, x, y, _ = run
    first = solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), max_iter=2, progress=False)
    with pytest.raises(ValueError, match="cannot resume: the denoiser differs"):
        solve(y, op, GaussianSmoother(2.0, (SIZE, SIZE)), max_iter=2, resume=first, progress=False)
    with pytest.raises(ValueError, match="cannot resume: the denoiser differs"):  # no tensors: told by its class
        solve(y, op, torch.nn.Identity(), max_iter=2, resume=solve(y, op, Halver(), max_iter=1, progress=False),
              progress=False)
    assert solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), max_iter=2, resume=first, progress=False).iterations == 4


def test_an_empty_batch_and_a_zero_noise_estimate_are_named(run):
    op, _, y, _ = run
    smoother = SigmaSmoother(1.0, (SIZE, SIZE))  # takes a noise level: the rule needs one
    with pytest.raises(ValueError, match=r"y is an empty batch \(shape \(0, 1, 16, 16\)\)"):
        solve(y[:0], op, smoother, method="fb", progress=False)
    with pytest.raises(ValueError, match="the noise level estimated from y is 0 .*pass noise_level="):
        solve(torch.full_like(y, 0.5), op, smoother, method="fb", max_iter=1, progress=False)


def test_a_batch_of_different_noise_levels_is_warned_of_the_shared_parameters(run):
    op, x, _, _ = run
    x = torch.full_like(x, 0.5)  # flat: the estimates are the levels
    y = torch.cat([op.simulate(x[:1], 0.01, seed=0), op.simulate(x[1:], 0.05, seed=1)])
    smoother = SigmaSmoother(1.0, (SIZE, SIZE))
    with pytest.warns(UserWarning, match=r"different estimated noise levels .* one parameter choice serves them"):
        solve(y, op, smoother, method="fb", max_iter=1, progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # alike levels: no warning
        solve(torch.cat([op.simulate(x[:1], 0.03, seed=0), op.simulate(x[1:], 0.03, seed=1)]), op, smoother,
              method="fb", max_iter=1, progress=False)


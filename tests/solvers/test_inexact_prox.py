"""A CG data prox must be exact enough for the monitored residual to stay monotone near convergence.

Regression: with a CG tolerance relative to ``||rhs||`` of 1e-5 (the old float32 default), the warm
start already met the test near convergence, the prox returned a stale solution, and the fixed-point
residual of ADMM rose (4 of 6 runs of this configuration at steps 1 / 5 / 20). The CG now runs in
float64 to 1e-10.
"""

import warnings

import pytest
import torch
from skimage import data

from pnp_stable.denoisers import DenoiserConfig, build_denoiser
from pnp_stable.operators import Blur
from pnp_stable.solvers import solve


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    scene = torch.from_numpy(data.camera()[100:164, 200:264].astype("float32") / 255)[None, None]
    # a photograph: the scene goes on beyond the frame, so the observation is the 'valid' part
    y = Blur("gauss:1.6", (1, 64, 64), boundary="valid").simulate(scene, 0.01, seed=0)
    return model, y


def _violations(model, y, boundary, step, cg_tol=None):
    op = Blur("gauss:1.6", tuple(y.shape[1:]), boundary=boundary, cg_tol=cg_tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = solve(y, op, model, method="admm", step=step, sigma_den=0.05, progress=False, max_iter=200,
                       tol=1e-7)
    assert result.x.dtype == torch.float32  # the problem stays float32; only the CG runs in float64
    return sum(result.monotonicity_violations), result


@pytest.mark.parametrize("boundary", ["zero", "reflect"])
def test_admm_with_a_cg_prox_is_monotone_to_tight_tolerances(problem, boundary):
    model, y = problem
    for step in (1.0, 5.0):
        count, result = _violations(model, y, boundary, step)
        assert count == 0 and result.converged
        assert not result.guarantee.proven and "float64" in result.guarantee.assumptions[0]


def test_a_prox_tolerance_relative_to_the_rhs_breaks_monotonicity(problem):
    """The negative control: the test above would catch the old prox."""
    model, y = problem
    assert all(_violations(model, y, b, s, cg_tol=1e-5)[0] >= 1 for b in ("zero", "reflect") for s in (1.0, 5.0))


def test_an_increase_under_a_conditional_guarantee_names_the_assumption(problem):
    from pnp_stable.solvers import MonotonicityWarning

    model, y = problem
    op = Blur("gauss:1.6", tuple(y.shape[1:]), boundary="zero", cg_tol=1e-4)  # a prox far from exact
    with pytest.warns(MonotonicityWarning, match=r"holds if its assumptions do: one of them \(prox_data of Blur"):
        solve(y, op, model, method="admm", step=1.0, sigma_den=0.05, progress=False, max_iter=200, tol=1e-7)

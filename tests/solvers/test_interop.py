"""deepinv interop: same fixed point as deepinv's PGD, our pieces inside deepinv, adapters verified."""

from __future__ import annotations


import pytest
import torch
from skimage import data
from skimage.transform import resize

from pnp_stable.layers import certificate_of
from pnp_stable.solvers import ProximalDenoiser, as_operator, solve
from pnp_stable.solvers.interop import to_deepinv_denoiser, to_deepinv_physics
from solver_toys import FFTBlur, declared_norm_only, GaussianSmoother, certified_network, closed_form_fixed_point, gaussian_kernel

dinv = pytest.importorskip("deepinv")
SIZE = 32


@pytest.fixture(scope="module")
def problem():
    x = torch.tensor(resize(data.camera() / 255.0, (SIZE, SIZE), anti_aliasing=True), dtype=torch.float64)[None, None]
    physics = dinv.physics.BlurFFT(img_size=(1, SIZE, SIZE), filter=gaussian_kernel(5, 1.0)[None, None])
    g = torch.Generator().manual_seed(0)
    y = physics.A(x) + 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return physics, x, y


def test_fb_reaches_the_fixed_point_of_deepinv_pgd(problem):
    physics, _, y = problem
    net = certified_network()
    ours = solve(y, physics, net, method="fb", step=1.5, tol=1e-10, max_iter=2000, progress=False)
    assert ours.converged and ours.guarantee.holds
    pgd = dinv.optim.PGD(
        prior=dinv.optim.prior.PnP(denoiser=to_deepinv_denoiser(net)),
        data_fidelity=dinv.optim.data_fidelity.L2(),
        stepsize=1.5,
        max_iter=ours.iterations + 50,
        early_stop=False,
    )
    with torch.no_grad():
        theirs = pgd(y, physics)
    assert float((theirs - ours.x).norm() / ours.x.norm()) < 1e-4


def test_relaxed_wrapper_states_the_relaxed_certificate_and_computes_it():
    net = certified_network()
    wrapped = to_deepinv_denoiser(net, relaxation=0.5)
    assert isinstance(wrapped, dinv.models.Denoiser)
    assert certificate_of(wrapped).averagedness == pytest.approx(0.5 * certificate_of(net).averagedness)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(wrapped(x, 0.1), 0.5 * x + 0.5 * net(x))


def test_our_operator_inside_deepinv_admm_reaches_the_closed_form():
    op = FFTBlur(gaussian_kernel(5, 1.0), (SIZE, SIZE))
    x = torch.rand(1, 1, SIZE, SIZE, dtype=torch.float64)
    y = op.simulate(x, 0.01, seed=0)
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    physics = to_deepinv_physics(op)
    assert isinstance(physics, dinv.physics.LinearPhysics)
    admm = dinv.optim.ADMM(
        prior=dinv.optim.prior.PnP(denoiser=to_deepinv_denoiser(smoother)),
        data_fidelity=dinv.optim.data_fidelity.L2(),
        stepsize=0.7,
        max_iter=300,
        early_stop=False,
    )
    with torch.no_grad():
        out = admm(y, physics)
    expected = closed_form_fixed_point(op, smoother, y, 0.7)
    assert float((out - expected).norm() / expected.norm()) < 1e-8


def test_physics_adapter_norm_is_an_inflated_estimate(problem):
    physics, _, y = problem
    op = as_operator(physics, y, margin=0.05)
    assert op.norm_kind == "estimated"
    assert op.norm() == pytest.approx(1.05 * op.norm_estimate)
    assert op.norm_estimate == pytest.approx(1.0, abs=1e-3)  # a normalised kernel has ||A|| = 1
    assert op.prox_is_exact  # BlurFFT has a closed-form prox_l2
    assert "safety margin" in op.norm_statement()


def test_wrong_adjoint_is_refused(problem):
    _, _, y = problem
    broken = dinv.physics.LinearPhysics(A=lambda x: torch.roll(x, 1, -1), A_adjoint=lambda v: torch.roll(v, 1, -1))
    with pytest.raises(ValueError, match="not the adjoint"):
        solve(y, broken, GaussianSmoother(1.0, (SIZE, SIZE)), method="fb", max_iter=1, progress=False)


def test_tv_declared_prox_in_admm_is_conditional_and_monotone(problem):
    physics, x, y = problem
    tv = ProximalDenoiser(dinv.models.TVDenoiser(n_it_max=50, crit=1e-8), name="TVDenoiser", inexact="by Chambolle-Pock")
    result = solve(y, physics, tv, method="admm", noise_level=0.01, tol=0, max_iter=40, progress=False, x_true=x)
    assert result.guarantee.holds and not result.guarantee.proven
    assert any("declared by the user" in a for a in result.guarantee.assumptions)
    assert result.parameters["strength_kind"] == "prox_weight"
    assert result.monotone


def test_tv_warm_start_is_declared_and_restored_around_rejected_candidates(problem):
    from pnp_stable.solvers.denoiser_adapter import warm_start_hooks

    physics, x, y = problem
    tv = ProximalDenoiser(dinv.models.TVDenoiser(n_it_max=50, crit=1e-8), name="TVDenoiser", warm_start=("x2", "u2", "restart"))
    save, restore = warm_start_hooks(tv)
    tv(y, 0.01)
    snapshot = save()
    tv(2 * y, 0.01)
    assert not torch.equal(tv.module.x2, snapshot["x2"])
    restore(snapshot)
    assert torch.equal(tv.module.x2, snapshot["x2"]) and tv.module.restart is False
    assert warm_start_hooks(ProximalDenoiser(dinv.models.TVDenoiser())) is not None  # no attributes: empty snapshots
    assert warm_start_hooks(GaussianSmoother(1.0, (SIZE, SIZE))) is None

    fresh = dict(name="TVDenoiser", warm_start=("x2", "u2", "restart"))
    kwargs = dict(method="admm", noise_level=0.01, tol=0, max_iter=40, progress=False)
    plain = solve(y, physics, ProximalDenoiser(dinv.models.TVDenoiser(n_it_max=50, crit=1e-8), **fresh), **kwargs)
    never = solve(y, physics, ProximalDenoiser(dinv.models.TVDenoiser(n_it_max=50, crit=1e-8), **fresh), **kwargs,
                  accelerate="anderson", anderson_decrease=1e-12, anderson_backoff=0)
    assert sum(never.anderson["rejected"]) > 0 and torch.equal(never.x, plain.x)


def _downsampling(padding: str, size: int = 16):
    filt = gaussian_kernel(5, 1.0)[None, None]
    return dinv.physics.Downsampling(img_size=(1, size, size), filter=filt, factor=2, padding=padding, device="cpu")


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_a_physics_whose_prox_falls_back_to_cg_is_an_assumption_not_a_proof(padding):
    """deepinv's Downsampling overrides prox_l2 but runs its iterative least-squares solver unless the
    padding is circular: ADMM used to be reported *proven* on that inexact prox."""
    physics = _downsampling(padding)
    g = torch.Generator().manual_seed(0)
    y = physics.A(torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64))
    op = as_operator(physics, y)
    assert not op.prox_is_exact
    smoother = GaussianSmoother(1.0, (16, 16))
    res = solve(y, physics, smoother, method="admm", step=1.0, max_iter=2, progress=False)
    assert res.guarantee.holds and not res.guarantee.proven
    assert any("least-squares solver" in a for a in res.guarantee.assumptions)
    exact = solve(y, _downsampling("circular"), smoother, method="admm", step=1.0, max_iter=2, progress=False)
    assert exact.guarantee.proven  # the circular closed form passes the optimality probe


def test_a_closed_form_prox_that_is_not_the_prox_is_caught_by_the_probe():
    class WrongProx(dinv.physics.Denoising):
        def prox_l2(self, z, y, gamma, **kwargs):
            return super().prox_l2(z, y, gamma, **kwargs) * (1 + 1e-4)

    y = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    res = solve(y, WrongProx(), GaussianSmoother(1.0, (8, 8)), method="drs", step=1.0, max_iter=2, progress=False)
    assert res.guarantee.holds and not res.guarantee.proven
    assert any("not the exact prox" in a for a in res.guarantee.assumptions)
    ok = solve(y, dinv.physics.Denoising(), GaussianSmoother(1.0, (8, 8)), method="drs", step=1.0, max_iter=2,
               progress=False)
    assert ok.guarantee.proven


def test_our_operator_seen_as_a_deepinv_physics_keeps_its_exact_norm():
    op = FFTBlur(gaussian_kernel(3, 1.0), (6, 7))
    y = op.A(torch.rand(1, 1, 6, 7, dtype=torch.float64))
    physics = to_deepinv_physics(op)
    assert physics is not op and as_operator(physics, y) is op
    res = solve(y, physics, certified_network(), method="fb", max_iter=2, progress=False)
    assert declared_norm_only(res.guarantee) and res.guarantee.constants["norm_kind"] == "exact"

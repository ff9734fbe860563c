"""Convergence, monitoring, acceleration, batches and resumption of ``solve``."""

from __future__ import annotations

import warnings

import pytest
import torch
from skimage import data
from skimage.transform import resize

from pnp_stable.layers.certificates import Certificate
from pnp_stable.solvers import MonotonicityWarning, ResidualMonitor, SafeguardedAnderson, solve
from solver_toys import FFTBlur, declared_norm_only, GaussianSmoother, certified_network, closed_form_fixed_point, gaussian_kernel

SIZE = 32


def _image(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(resize(data.camera() / 255.0, (SIZE, SIZE), anti_aliasing=True), dtype=dtype)[None, None]


@pytest.fixture(scope="module")
def blur_problem():
    op = FFTBlur(gaussian_kernel(5, 1.0), (SIZE, SIZE))
    x = _image()
    return op, x, op.simulate(x, 0.01, seed=0)


def _residuals(result, image: int = 0) -> list[float]:
    return [row["residual"][image] for row in result.history if row["residual"][image] is not None]


@pytest.mark.parametrize("method", ["fb", "admm", "drs"])
@pytest.mark.parametrize("relaxation", [None, 0.7])
def test_linear_firmly_nonexpansive_denoiser_reaches_the_closed_form(blur_problem, method, relaxation):
    op, _, y = blur_problem
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    step = 1.2
    result = solve(y, op, smoother, method=method, step=step, relaxation=relaxation, tol=1e-11, max_iter=4000, progress=False)
    expected = closed_form_fixed_point(op, smoother, y, step, 1.0 if relaxation is None else relaxation)
    assert result.converged
    assert declared_norm_only(result.guarantee) if method == "fb" else result.guarantee.proven
    assert float((result.x - expected).norm() / expected.norm()) < 1e-8
    r = _residuals(result)
    assert all(b < a for a, b in zip(r, r[1:])), "the residual of an averaged linear map must decrease strictly"
    assert result.monotone


@pytest.mark.parametrize("method", ["fb", "admm"])
def test_certified_network_residual_is_monotone_on_blur(blur_problem, method):
    op, x, y = blur_problem
    net = certified_network()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonotonicityWarning)
        result = solve(y, op, net, method=method, step=1.0 if method == "admm" else None, tol=1e-9, max_iter=600,
                       x_true=x, progress=False)
    assert declared_norm_only(result.guarantee) if method == "fb" else result.guarantee.proven
    assert result.monotone and result.converged
    r = _residuals(result)
    assert r[-1] < 1e-6 * r[0]
    if method == "admm":
        assert result.parameters["relaxation"] < 1.0  # the random net is averaged, not firmly non-expansive
    assert "psnr" in result.history[0]


@pytest.mark.parametrize("method", ["fb", "admm"])
def test_certified_network_residual_is_monotone_on_ct(method):
    dinv = pytest.importorskip("deepinv")
    from skimage.data import shepp_logan_phantom

    x = torch.tensor(resize(shepp_logan_phantom(), (SIZE, SIZE)), dtype=torch.float32)[None, None]
    physics = dinv.physics.Tomography(angles=16, img_width=SIZE, circle=False, normalize=True)
    clean = physics.A(x)
    g = torch.Generator().manual_seed(0)
    y = clean + 0.01 * clean.abs().max() * torch.randn(clean.shape, generator=g)
    net = certified_network(dtype=torch.float32)
    result = solve(y, physics, net, method=method, step=1.0 if method == "admm" else None, tol=1e-5, max_iter=300,
                   progress=False)
    assert result.guarantee.holds and not result.guarantee.proven  # estimated norm / iterative prox
    assert result.monotone and result.converged


class _ExpansiveSmoother(GaussianSmoother):
    """Gain 1.3 > 1: expansive. Optionally lies about its constants."""

    def __init__(self, lie: bool) -> None:
        super().__init__(1.0, (SIZE, SIZE), gain=1.3)
        self.lie = lie

    def certificate(self):
        return Certificate(1.0, 0.5) if self.lie else None


def test_expansive_denoiser_has_no_guarantee_and_the_increase_is_reported(blur_problem):
    op, _, y = blur_problem
    with pytest.warns(MonotonicityWarning) as caught:
        result = solve(y, op, _ExpansiveSmoother(lie=False), method="fb", max_iter=60, tol=0, progress=False)
    assert len([w for w in caught if issubclass(w.category, MonotonicityWarning)]) == 1  # warned once
    assert not result.guarantee.holds and "no certificate" in result.guarantee.reason
    assert not result.monotone
    assert result.monotonicity_violations[0] > 10
    assert result.first_violation[0] is not None
    assert any(row["increase"][0] for row in result.history)


def test_a_false_certificate_is_caught_by_the_monitor(blur_problem):
    op, _, y = blur_problem
    with pytest.warns(MonotonicityWarning, match="certificate is contradicted"):
        result = solve(y, op, _ExpansiveSmoother(lie=True), method="fb", max_iter=60, tol=0, progress=False)
    assert result.guarantee.holds  # the (false) constants support it ...
    assert not result.monotone  # ... and the monitor shows they are false


def test_monitor_tolerance_ignores_rounding_and_counts_real_increases():
    monitor = ResidualMonitor(1, torch.float32, tol=0.0)
    eps = torch.finfo(torch.float32).eps
    monitor.update(0, [0], [1e-3], [1.0])
    monitor.update(1, [0], [1e-3 + 10 * eps], [1.0])  # rounding-level wiggle at ||w|| = 1
    assert monitor.monotone
    with pytest.warns(MonotonicityWarning):
        monitor.update(2, [0], [1.1e-3], [1.0])
    assert monitor.violations == [1]
    strict = ResidualMonitor(1, torch.float64, tol=0.0)
    strict.update(0, [0], [1e-3], [1.0])
    with pytest.warns(MonotonicityWarning):
        strict.update(1, [0], [1e-3 + 1e-12], [1.0])
    assert not strict.monotone


def test_monitor_allows_exactly_the_certified_errors_of_two_evaluations():
    monitor = ResidualMonitor(1, torch.float64, tol=0.0)
    monitor.update(0, [0], [1e-3], [1.0], errors=[2e-4])
    monitor.update(1, [0], [1e-3 + 2e-4 + 1e-4 - 1e-9], [1.0], errors=[1e-4])  # within err_0 + err_1
    assert monitor.monotone
    with pytest.warns(MonotonicityWarning):
        monitor.update(2, [0], [1.3e-3 + 1e-4 + 1e-9 + 1e-6], [1.0], errors=[0.0])  # beyond err_1 + err_2
    assert monitor.violations == [1]


def test_anderson_safeguard_refuses_insufficient_decrease():
    aa = SafeguardedAnderson(1, memory=3, decrease=0.9)
    aa.first_residual[0] = 1.0
    assert not aa.acceptable(0, candidate_residual=0.95, current_residual=1.0)
    assert aa.acceptable(0, candidate_residual=0.5, current_residual=1.0)
    assert aa.accepted == [1] and aa.rejected == [1]


@pytest.mark.parametrize("method", ["fb", "admm", "drs"])
def test_anderson_never_ends_above_plain_iterations(blur_problem, method):
    op, _, y = blur_problem
    net = certified_network()
    step = 1.0 if method != "fb" else None
    for n in (3, 8, 20, 40):
        plain = solve(y, op, net, method=method, step=step, max_iter=n, tol=0, progress=False)
        fast = solve(y, op, net, method=method, step=step, max_iter=n, tol=0, accelerate="anderson", progress=False)
        assert _residuals(fast)[-1] <= _residuals(plain)[-1] * (1 + 1e-9), (method, n)
        accelerated = _residuals(fast)
        assert all(b <= a * (1 + 1e-9) for a, b in zip(accelerated, accelerated[1:]))
        assert fast.monotone


def test_anderson_reduces_iterations(blur_problem):
    op, _, y = blur_problem
    net = certified_network()
    plain = solve(y, op, net, method="admm", step=1.0, tol=1e-8, max_iter=1000, progress=False)
    fast = solve(y, op, net, method="admm", step=1.0, tol=1e-8, max_iter=1000, accelerate="anderson", progress=False)
    assert fast.converged and plain.converged
    assert fast.evaluations < plain.evaluations / 2
    assert float((fast.x - plain.x).norm() / plain.x.norm()) < 1e-5


def test_batch_images_stop_independently_and_match_single_solves(blur_problem):
    op, x, y = blur_problem
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    fixed = closed_form_fixed_point(op, smoother, y, 1.9)
    y2 = torch.cat([y, op.simulate(x.flip(-1), 0.01, seed=1)])
    x0 = torch.cat([fixed, op.A_adjoint(y2[1:])])
    batch = solve(y2, op, smoother, method="fb", x0=x0, tol=1e-10, max_iter=2000, progress=False)
    single = solve(y2[1:], op, smoother, method="fb", tol=1e-10, max_iter=2000, progress=False)
    assert batch.converged_per_image == [True, True]
    assert batch.iterations_per_image[0] == 0 and batch.iterations_per_image[1] == single.iterations
    assert batch.history[1]["residual"][0] is None  # image 0 stopped, image 1 continued
    assert torch.allclose(batch.x[1:], single.x, rtol=0, atol=1e-12)
    assert torch.allclose(batch.x[:1], fixed, rtol=0, atol=1e-9)


def test_resume_continues_exactly(blur_problem):
    op, _, y = blur_problem
    net = certified_network()
    straight = solve(y, op, net, method="admm", step=1.0, tol=0, max_iter=30, progress=False)
    first = solve(y, op, net, method="admm", step=1.0, tol=0, max_iter=12, progress=False)
    resumed = solve(y, op, net, method="admm", tol=0, max_iter=18, progress=False, resume=first)
    assert resumed.iterations == straight.iterations == 30
    assert [row["iteration"] for row in resumed.history] == list(range(31))
    assert torch.allclose(resumed.x, straight.x, rtol=0, atol=1e-12)
    assert _residuals(resumed) == pytest.approx(_residuals(straight), rel=1e-9)


def test_callback_stops_and_interrupt_returns_a_partial_result(blur_problem):
    op, _, y = blur_problem
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    stopped = solve(y, op, smoother, method="fb", tol=0, max_iter=100, progress=False, callback=lambda info: info["iteration"] == 4)
    assert stopped.stopped_by == "callback" and stopped.iterations == 4

    def interrupt(info):
        if info["iteration"] == 3:
            raise KeyboardInterrupt

    partial = solve(y, op, smoother, method="fb", tol=0, max_iter=100, progress=False, callback=interrupt)
    assert partial.stopped_by == "interrupted" and partial.iterations == 3


def test_inference_mode_and_modes_restored(blur_problem):
    op, _, y = blur_problem
    net = certified_network().train()
    result = solve(y, op, net, method="fb", tol=1e-6, max_iter=50, progress=False)
    assert net.training and all(m.training for m in net.modules())
    assert not result.x.requires_grad
    # the certificate describes the eval-mode computation that ran (the toy operator's norm is its own claim)
    assert declared_norm_only(result.guarantee)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_follows_y(blur_problem):
    op, _, y = blur_problem
    net = certified_network().cuda()
    result = solve(y.cuda(), op, net, method="fb", tol=1e-6, max_iter=50, progress=False)
    assert result.x.is_cuda and result.monotone


def test_rejected_extrapolations_fall_back_to_the_plain_iterates(blur_problem):
    op, _, y = blur_problem
    net = certified_network()
    plain = solve(y, op, net, method="fb", max_iter=10, tol=0, progress=False)
    # a decrease factor no extrapolation can meet: every proposal is rejected
    guarded = solve(y, op, net, method="fb", max_iter=10, tol=0, accelerate="anderson", anderson_decrease=1e-12,
                    progress=False)
    assert sum(guarded.anderson["accepted"]) == 0 and sum(guarded.anderson["rejected"]) > 0
    assert torch.allclose(guarded.x, plain.x, rtol=0, atol=1e-13)
    assert guarded.evaluations == plain.evaluations + sum(guarded.anderson["rejected"])
    assert all(row["update"][0] in ("start", "plain") for row in guarded.history)


# -- aliasing, per-image stopping and resumption (regressions) -----------------------------------


def _batch_with_a_solved_image(op, x):
    """Image 0 is a constant whose noise-free measurement is a fixed point of A^T y for FB: it stops at k = 0."""
    constant = torch.full_like(x, 0.5)
    return torch.cat([op.A(constant), op.simulate(x, 0.01, seed=0)])


@pytest.mark.parametrize("method", ["fb", "admm", "drs"])
@pytest.mark.parametrize("accelerate", [None, "anderson"])
def test_identity_operator_measurements_are_never_modified(method, accelerate):
    # Identity.A_adjoint returns y itself: the default start A^T y must not become a live view of y
    from pnp_stable.operators import Identity

    op = Identity()
    x = _image()
    y = _batch_with_a_solved_image(op, x)
    y_before = y.clone()
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    step = None if method == "fb" else 0.5
    batch = solve(y, op, smoother, method=method, step=step, tol=1e-8, max_iter=60, accelerate=accelerate,
                  progress=False)
    assert torch.equal(y, y_before)
    assert batch.monotone
    single = solve(y[1:], op, smoother, method=method, step=step, tol=1e-8, max_iter=60, accelerate=accelerate,
                   progress=False)
    assert batch.iterations_per_image[1] == single.iterations
    assert torch.allclose(batch.x[1:], single.x, rtol=0, atol=1e-12)


def test_callback_snapshots_are_not_overwritten_by_later_iterations(blur_problem):
    op, x, _ = blur_problem
    y = _batch_with_a_solved_image(op, x)
    smoother = GaussianSmoother(1.0, (SIZE, SIZE))
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(info):
        seen[info["iteration"]] = (info["x"], info["state"])

    result = solve(y, op, smoother, method="admm", step=0.5, tol=1e-12, max_iter=8, callback=keep, progress=False)
    assert result.iterations_per_image == [0, 8]  # image 0 stopped: later updates touch image 1 only
    early = solve(y, op, smoother, method="admm", step=0.5, tol=1e-12, max_iter=3, progress=False)
    assert torch.equal(seen[3][0], early.x) and torch.equal(seen[3][1], early.state)
    assert torch.equal(seen[8][0], result.x)


def test_resuming_a_converged_result_returns_it_unchanged(blur_problem):
    op, _, y = blur_problem
    net = certified_network()
    done = solve(y, op, net, method="fb", tol=1e-6, max_iter=300, progress=False)
    assert done.converged
    again = solve(y, op, net, method="fb", tol=1e-6, max_iter=300, progress=False, resume=done)
    assert again.converged and again.stopped_by == "converged"
    assert again.iterations == done.iterations and again.evaluations == done.evaluations
    assert torch.equal(again.x, done.x) and torch.equal(again.state, done.state)
    assert _residuals(again) == _residuals(done)
    assert again.parameters["automatic"] == done.parameters["automatic"]


@pytest.mark.parametrize("method", ["fb", "admm"])
def test_resume_in_a_batch_keeps_the_rows_of_images_that_stopped_at_the_cut(blur_problem, method):
    op, x, y = blur_problem
    y3 = torch.cat([y, op.simulate(x.flip(-1) * 0.5, 0.05, seed=1), op.simulate(x.flip(-2), 0.02, seed=2)])
    net = certified_network()
    step = None if method == "fb" else 1.0
    straight = solve(y3, op, net, method=method, step=step, tol=1e-6, max_iter=300, progress=False)
    cut = min(straight.iterations_per_image)  # one image converges exactly at the last iteration of the first call
    assert cut < straight.iterations
    first = solve(y3, op, net, method=method, step=step, tol=1e-6, max_iter=cut, progress=False)
    resumed = solve(y3, op, net, method=method, tol=1e-6, max_iter=300, progress=False, resume=first)
    assert resumed.iterations_per_image == straight.iterations_per_image
    assert resumed.converged_per_image == straight.converged_per_image
    for i in range(3):
        assert _residuals(resumed, i) == pytest.approx(_residuals(straight, i), rel=1e-9), i
    assert torch.allclose(resumed.x, straight.x, rtol=0, atol=1e-12)
    assert resumed.parameters["automatic"] == straight.parameters["automatic"]


class _InterruptOnSingleImage(torch.nn.Module):
    """Wraps a denoiser; raises KeyboardInterrupt the first time it sees a sub-batch of one image."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.armed = False

    def forward(self, x):
        if self.armed and x.shape[0] == 1:
            self.armed = False
            raise KeyboardInterrupt
        return self.net(x)

    def certificate(self):
        from pnp_stable.layers import certificate_of

        return certificate_of(self.net)


def test_an_interrupt_between_anderson_and_plain_updates_leaves_the_last_recorded_iterate(blur_problem, monkeypatch):
    op, x, y = blur_problem
    y2 = torch.cat([y, op.simulate(x.flip(-1), 0.01, seed=1)])
    original = SafeguardedAnderson.acceptable
    accepted_for_image_0: list[bool] = []

    def image_1_always_rejected(self, i, candidate_residual, current_residual, **kwargs):
        ok = original(self, i, candidate_residual, current_residual if i == 0 else 0.0, **kwargs)
        if i == 0:
            accepted_for_image_0.append(ok)
        return ok

    monkeypatch.setattr(SafeguardedAnderson, "acceptable", image_1_always_rejected)
    den = _InterruptOnSingleImage(certified_network())
    den.armed = True  # the first lone-image call is image 1's plain step right after image 0 took an Anderson step
    partial = solve(y2, op, den, method="fb", tol=0, max_iter=50, accelerate="anderson", progress=False)
    assert partial.stopped_by == "interrupted" and accepted_for_image_0[-1]  # image 0 had an accepted point ...
    assert partial.anderson["accepted"][0] == sum(accepted_for_image_0[:-1])  # ... that was never committed
    reference = solve(y2, op, den, method="fb", tol=0, max_iter=partial.iterations, accelerate="anderson",
                      progress=False)
    assert torch.equal(partial.state, reference.state) and torch.equal(partial.x, reference.x)


@pytest.mark.parametrize("method", ["fb", "admm", "drs"])
def test_anderson_in_a_batch_matches_single_solves(blur_problem, method):
    op, x, y = blur_problem
    y3 = torch.cat([y, op.simulate(x.flip(-1) * 0.5, 0.05, seed=1), op.simulate(x.flip(-2), 0.02, seed=2)])
    net = certified_network()
    step = None if method == "fb" else 1.0
    batch = solve(y3, op, net, method=method, step=step, tol=1e-6, max_iter=300, accelerate="anderson", progress=False)
    assert len(set(batch.iterations_per_image)) > 1  # images stop at different iterations
    for i in range(3):
        single = solve(y3[i:i + 1], op, net, method=method, step=step, tol=1e-6, max_iter=300, accelerate="anderson",
                       progress=False)
        assert batch.iterations_per_image[i] == single.iterations
        assert torch.allclose(batch.x[i:i + 1], single.x, rtol=0, atol=1e-10)


def test_rejections_back_off_and_every_rejection_costs_one_evaluation(blur_problem):
    op, _, y = blur_problem
    net = certified_network()
    plain = solve(y, op, net, method="fb", max_iter=40, tol=0, progress=False)
    eager = solve(y, op, net, method="fb", max_iter=40, tol=0, accelerate="anderson", anderson_decrease=1e-12,
                  anderson_backoff=0, progress=False)
    patient = solve(y, op, net, method="fb", max_iter=40, tol=0, accelerate="anderson", anderson_decrease=1e-12,
                    progress=False)
    assert eager.anderson["rejected"][0] == 38  # a proposal at every iteration once two pairs are stored
    assert 0 < patient.anderson["rejected"][0] <= 8  # pauses of 1, 2, 4, 8, 8, ... iterations
    for run in (eager, patient):
        assert run.evaluations == plain.evaluations + run.anderson["rejected"][0]
        assert torch.allclose(run.x, plain.x, rtol=0, atol=1e-13)


class _WarmStartedSmoother(GaussianSmoother):
    """A denoiser with memory: its output depends on its previous call (like a warm-started inner solver)."""

    def __init__(self, hooks: bool) -> None:
        super().__init__(1.0, (SIZE, SIZE))
        self.memory = 0.0
        if hooks:
            self.warm_start_state = lambda: self.memory
            self.restore_warm_start = lambda m: setattr(self, "memory", m)

    def forward(self, x):
        out = super().forward(x) + 1e-3 * self.memory
        self.memory = float(x.mean())
        return out

    def certificate(self):
        return None


def test_rejected_candidates_leave_a_warm_started_denoiser_on_the_plain_trajectory(blur_problem):
    op, _, y = blur_problem
    kwargs = dict(method="fb", max_iter=30, tol=0, progress=False)
    plain = solve(y, op, _WarmStartedSmoother(hooks=False), **kwargs)
    rejected = dict(accelerate="anderson", anderson_decrease=1e-12, anderson_backoff=0)
    restored = solve(y, op, _WarmStartedSmoother(hooks=True), **kwargs, **rejected)
    disturbed = solve(y, op, _WarmStartedSmoother(hooks=False), **kwargs, **rejected)
    assert sum(restored.anderson["rejected"]) > 0
    assert torch.equal(restored.x, plain.x)
    assert not torch.allclose(disturbed.x, plain.x, rtol=0, atol=1e-9)  # what the hooks prevent

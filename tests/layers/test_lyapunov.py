"""Kolter-Manek stable dynamics: dV/dt <= -mu V everywhere, for trained and untrained models."""

import math

import pytest
import torch
from torch import nn

from pnp_stable.layers import InputConvexNetwork, LyapunovFunction, StableDynamics
from pnp_stable.layers.lyapunov import smooth_relu

MU = 0.5


@pytest.fixture(autouse=True)
def _single_thread():
    """These tensors are tiny: a second thread only adds synchronisation, costly on shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def mlp(n: int, hidden: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n))


def make_dynamics(n: int = 2, equilibrium=None, seed: int = 0) -> StableDynamics:
    torch.manual_seed(seed)
    v = LyapunovFunction(n, equilibrium=equilibrium, eps=1e-2, hidden=16, depth=3)
    return StableDynamics(mlp(n), v, decay_rate=MU).double()


def decay_violation(dyn: StableDynamics, x: torch.Tensor) -> torch.Tensor:
    """``(dV/dt + mu V)`` normalised by the size of the terms it is made of (<= rounding if it holds)."""
    with torch.no_grad():  # grad V is still taken inside, under enable_grad
        v, dv = dyn.lyapunov_derivative(x)
        _, grad = dyn.lyapunov.value_and_gradient(x)
        scale = grad.norm(dim=-1) * dyn.nominal_field(x).norm(dim=-1) + dyn.decay_rate * v + 1e-300
    return (dv + dyn.decay_rate * v) / scale


def convexity_gap(g, n: int, seed: int = 0) -> float:
    """Largest ``g(t x + (1-t) y) - t g(x) - (1-t) g(y)`` over random triples (<= 0 if convex)."""
    gen = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(4096, n, generator=gen, dtype=torch.float64)
    y = 3 * torch.randn(4096, n, generator=gen, dtype=torch.float64)
    t = torch.rand(4096, 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        return float((g(t * x + (1 - t) * y) - t[:, 0] * g(x) - (1 - t[:, 0]) * g(y)).max())


def test_smooth_relu_is_c1_convex_and_zero_on_the_negatives():
    t = torch.linspace(-1, 1, 2001, dtype=torch.float64, requires_grad=True)
    y = smooth_relu(t, 0.3)
    (d,) = torch.autograd.grad(y.sum(), t)
    y = y.detach()
    assert float(y[t <= 0].abs().max()) == 0.0
    assert float((d[1:] - d[:-1]).min()) >= 0  # non-decreasing derivative: convex
    assert float((d[1:] - d[:-1]).abs().max()) < 0.01  # no jump in the derivative: C^1
    torch.testing.assert_close(y[-1], torch.tensor(1 - 0.15, dtype=torch.float64))


def test_icnn_is_convex_for_any_parameters_and_the_check_has_teeth(monkeypatch):
    torch.manual_seed(0)
    g = InputConvexNetwork(3, hidden=16, depth=3).double()
    with torch.no_grad():  # an optimiser could push the raw hidden weights anywhere
        for raw in g.hidden_raw:
            raw.normal_(0, 2)
        g.output_raw.normal_(0, 2)
    assert all(float(u.detach().min()) >= 0 for u in g.hidden_weights())
    assert convexity_gap(g, 3) <= 1e-10
    # without the non-negativity the same parameters give a visibly non-convex function
    monkeypatch.setattr(g, "hidden_weights", lambda: list(g.hidden_raw))
    monkeypatch.setattr(g, "output_weights", lambda: g.output_raw)
    assert convexity_gap(g, 3) > 1e-3


@pytest.mark.parametrize("equilibrium", [None, [0.5, -1.0]])
def test_lyapunov_function_is_positive_definite_with_the_minimiser_at_the_equilibrium(equilibrium):
    dyn = make_dynamics(equilibrium=equilibrium)
    V = dyn.lyapunov
    x_star = V.equilibrium
    x = x_star + 2 * torch.randn(2000, 2, dtype=torch.float64)
    v, grad0 = V.value_and_gradient(x_star.unsqueeze(0))
    # exactly zero up to the rounding of g(x*) - g(x*) evaluated in two batch shapes
    assert float(v.abs().max()) <= 1e-24 and float(grad0.abs().max()) <= 1e-12
    with torch.no_grad():
        vx = V(x)
    floor = V.eps * (x - x_star).pow(2).sum(-1)
    assert bool((vx >= floor * (1 - 1e-12)).all()) and bool((vx > 0).all())
    assert convexity_gap(V, 2) <= 1e-10
    with torch.no_grad():
        f_star = dyn(x_star.unsqueeze(0))
    assert float(f_star.abs().max()) <= 1e-12  # the equilibrium of V is an equilibrium of f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decay_condition_holds_on_random_points_for_untrained_models(seed):
    dyn = make_dynamics(seed=seed)
    x = 3 * torch.randn(5000, 2, dtype=torch.float64)
    assert float(decay_violation(dyn, x).max()) <= 1e-12
    # the projection is doing the work: the raw nominal field violates the condition somewhere
    with torch.no_grad():
        v, grad = dyn.lyapunov.value_and_gradient(x)
        raw = (grad * dyn.nominal_field(x)).sum(-1) + MU * v
    assert float(raw.max()) > 0


def test_decay_condition_holds_after_training_towards_an_unstable_field():
    dyn = make_dynamics(seed=3)
    opt = torch.optim.Adam(dyn.parameters(), lr=1e-2)
    for _ in range(30):  # target x' = +x: every step pulls towards instability
        x = 2 * torch.randn(256, 2, dtype=torch.float64)
        loss = (dyn(x) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = 3 * torch.randn(5000, 2, dtype=torch.float64)
    assert float(decay_violation(dyn, x).max()) <= 1e-12


def test_trajectories_decay_at_rate_mu():
    """RK4 on the learned field: V(x(t)) <= V(x(0)) exp(-mu t) up to the integration error.

    The projection is active on most of the path, so V decays at exactly the rate mu there and
    the RK4 error (~3e-5 relative at dt = 0.02) is what the tolerance must absorb.
    """
    dyn = make_dynamics(seed=4)
    x = 3 * torch.randn(64, 2, dtype=torch.float64)
    dt, steps = 0.02, 100
    with torch.no_grad():
        v0 = dyn.lyapunov(x)
        for k in range(1, steps + 1):
            k1 = dyn(x)
            k2 = dyn(x + dt / 2 * k1)
            k3 = dyn(x + dt / 2 * k2)
            k4 = dyn(x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            if k % 10 == 0:
                vt = dyn.lyapunov(x)
                assert bool((vt <= v0 * math.exp(-MU * k * dt) * (1 + 1e-3)).all())

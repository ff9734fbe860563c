"""Symplectic-Euler Hamiltonian layers: Jacobians are symplectic, so their norm is >= 1."""

import pytest
import torch

from pnp_stable.layers import HamiltonianNetwork, SymplecticEulerLayer, dense_block, symplectic_defect

TOL = 1e-10  # float64 rounding through a dozen layers


@pytest.fixture(autouse=True)
def _single_thread():
    """These tensors are tiny: a second thread only adds synchronisation, costly on shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def jacobians(f, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians ``df/dx`` of a map acting row-wise on ``B x n``."""
    return torch.func.vmap(torch.func.jacrev(f))(x).detach()


def randomise(net: torch.nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("scale,step", [(0.1, 0.1), (1.0, 0.5), (3.0, 1.0), (1.0, -2.0)])
def test_network_jacobian_is_symplectic_with_norm_at_least_one(activation, scale, step):
    net = HamiltonianNetwork(half_dim=2, hidden=6, depth=12, step=step, activation=activation).double()
    randomise(net, scale, seed=int(10 * scale))
    x = 2 * torch.randn(64, 4, dtype=torch.float64)
    jac = jacobians(net, x)
    assert symplectic_defect(jac) < TOL
    sv = torch.linalg.svdvals(jac)  # descending
    assert float(sv[:, 0].min()) >= 1.0 - TOL
    # singular values pair up as (s, 1/s); the SVD resolves the small one only to ~eps * s_max
    pairing_error = (sv * sv.flip(-1) - 1).abs().amax(-1)
    assert bool((pairing_error <= 1e-12 * sv[:, 0] ** 2).all())


def test_sensitivity_to_every_intermediate_state_does_not_vanish():
    """``||d x_L / d x_j|| >= 1`` for every j, with weights that make a tanh MLP's Jacobian tiny."""
    torch.manual_seed(1)
    net = HamiltonianNetwork(half_dim=2, hidden=4, depth=12, step=0.2).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    states = [x]
    with torch.no_grad():
        for layer in net:
            states.append(layer(states[-1]))
    for j in range(len(net)):
        tail = torch.nn.Sequential(*list(net)[j:])
        norms = torch.linalg.matrix_norm(jacobians(tail, states[j]), ord=2)
        assert float(norms.min()) >= 1.0 - TOL


def test_the_check_catches_a_broken_update_order_and_a_contractive_block():
    """The two assertions above are not vacuous: they fail for the maps they must exclude."""
    torch.manual_seed(2)
    layer = SymplecticEulerLayer(2, 6, step=0.5).double()
    randomise(layer, 1.0, seed=3)

    def explicit_euler(x):  # both halves read the *old* state
        p, q = x[..., :2], x[..., 2:]
        return torch.cat([p - layer._kick_p(q), q + layer._drift_q(p)], -1)

    x = torch.randn(16, 4, dtype=torch.float64)
    assert symplectic_defect(jacobians(layer, x)) < TOL
    assert symplectic_defect(jacobians(explicit_euler, x)) > 1e-3

    contractive = dense_block(4, 4, activation="tanh", time=1.0).double().eval()
    with torch.no_grad():
        contractive.linear.weight.copy_(torch.eye(4, dtype=torch.float64) + 0.1 * torch.randn(4, 4, dtype=torch.float64))
    norms = torch.linalg.matrix_norm(jacobians(contractive, x), ord=2)
    assert float(norms.max()) < 1.0 - 1e-3


def test_inverse_is_exact_and_shapes_are_checked():
    net = HamiltonianNetwork(half_dim=3, hidden=5, depth=6, step=0.7).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net.inverse(net(x)), x, rtol=0, atol=1e-12)
        torch.testing.assert_close(net(net.inverse(x)), x, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        net(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError):
        SymplecticEulerLayer(2, 3, activation="no-such-activation")

"""Certificates against random pairs and adversarial search — and proof the search can fail."""

import pytest
import torch

from pnp_stable.layers import CertifiedSequential, Lift, Projection, conv_block, dense_block
from pnp_stable.verification import empirical_averagedness_violation, empirical_lipschitz

SEARCH = dict(restarts=2, steps=40, n_pairs=16)
TOL = 1e-9  # float64 rounding


def make(kind, integrator, activation="relu"):
    if kind == "dense":
        return dense_block(6, 9, integrator=integrator, activation=activation, time=2.0).double().eval(), [(6,)]
    # one odd, non-square size: the certificate bounds the convolution at every size
    return conv_block(2, 3, integrator=integrator, activation=activation, time=1.0).double().eval(), [(2, 7, 6)]


def perturb(block, scale):
    with torch.no_grad():
        block.linear.weight.mul_(scale).add_(0.1 * torch.randn_like(block.linear.weight))
        if block.bias is not None:
            block.bias.normal_()


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
def test_block_certificate_never_exceeded(kind, integrator):
    activation = "relu" if integrator != "heun" else "leaky_relu"
    block, shapes = make(kind, integrator, activation)
    for stage in ("initial", "perturbed"):
        if stage == "perturbed":
            n0 = block.substeps()
            perturb(block, 2.0)  # random perturbation, grown until it forces more sub-steps
            while block.substeps() <= n0:
                perturb(block, 1.5)
            assert block.substeps() > n0
        cert = block.certificate()
        assert cert.averagedness is not None and cert.lipschitz <= 1.0
        for shape in shapes:
            lip = empirical_lipschitz(block, shape, **SEARCH)
            assert lip <= cert.lipschitz + TOL
            assert lip > 0.5  # the search did explore expansive directions
            viol = empirical_averagedness_violation(block, cert.averagedness, shape, **SEARCH)
            assert viol <= TOL


def test_network_certificate_never_exceeded():
    net = CertifiedSequential(Lift(1, 3), *[conv_block(3, 4, time=2.0) for _ in range(3)], Projection(3, 1))
    net = net.double().eval()
    cert = net.certificate()
    for shape in [(1, 6, 6), (1, 10, 8)]:
        assert empirical_lipschitz(net, shape, **SEARCH) <= cert.lipschitz + TOL
        assert empirical_averagedness_violation(net, cert.averagedness, shape, **SEARCH) <= TOL


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_search_catches_a_broken_configuration(kind):
    """Force h * nu = 3 > 2: the certificate says so, and the same search finds expansion."""
    block, shapes = make(kind, "euler")
    if kind == "conv":
        block = conv_block(4, 4, time=1.0).double().eval()  # square A: the expansive region exists
        shapes = [(4, 8, 8)]
    block.fixed_substeps.fill_(1)
    block.time.fill_(3.0 / block.nu())
    cert = block.certificate()
    assert cert.averagedness is None and cert.lipschitz == pytest.approx(2.0)
    assert empirical_lipschitz(block, shapes[0], restarts=4, steps=150) > 1.05
    # the averagedness inequality with any alpha < 1 is violated as well
    assert empirical_averagedness_violation(block, 0.99, shapes[0], restarts=4, steps=150) > 1e-3


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_capped_block_certificate_never_exceeded(kind):
    """max_substeps: past the cap the step stays admissible, so the certificate still holds."""
    block, shapes = make(kind, "euler")
    block.max_substeps = 1
    while block.required_substeps(block.nu()) <= 3:
        perturb(block, 1.5)
    cert = block.certificate()
    assert block.substeps() == 1 and cert.averagedness is not None
    for shape in shapes:
        assert empirical_lipschitz(block, shape, **SEARCH) <= cert.lipschitz + TOL
        assert empirical_averagedness_violation(block, cert.averagedness, shape, **SEARCH) <= TOL

import math
import random

import pytest
import torch

from pnp_stable.layers import (
    INTEGRATORS,
    Certificate,
    CertifiedSequential,
    Lift,
    Projection,
    compose,
    conv_block,
    convex_combination,
    euler_step_certificate,
    format_upper_bound,
    make_firmly_nonexpansive,
    relax,
)
from pnp_stable.layers.integrators import program_is_convex


def averaged_matrix(n, alpha, seed):
    """Symmetric matrix with spectrum in [1 - 2 alpha, 1]: exactly alpha-averaged."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.linspace(1 - 2 * alpha, 1, n, dtype=torch.float64)
    return q @ torch.diag(lam) @ q.T


def check_averaged(T, alpha, n, trials=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, n, generator=g, dtype=torch.float64)
    tx = x @ T.T
    lhs = tx.pow(2).sum(1)
    rhs = x.pow(2).sum(1) - (1 - alpha) / alpha * (x - tx).pow(2).sum(1)
    return float((lhs - rhs).max())


def test_composition_formula_matches_combettes_yamada():
    for a1, a2 in [(0.3, 0.6), (0.5, 0.5), (0.9, 0.99), (0.0, 0.7)]:
        c = compose([Certificate(1.0, a1), Certificate(1.0, a2)])
        expected = (a1 + a2 - 2 * a1 * a2) / (1 - a1 * a2)
        assert c.averagedness == pytest.approx(expected, rel=1e-12)


def test_composition_is_valid_and_sharp_on_linear_maps():
    a1, a2 = 0.6, 0.8
    T1, T2 = averaged_matrix(6, a1, 1), averaged_matrix(6, a2, 2)
    alpha = compose([Certificate(1, a1), Certificate(1, a2)]).averagedness
    assert check_averaged(T2 @ T1, alpha, 6) <= 1e-10
    # a slightly smaller constant is violated for commuting maps sharing the worst eigenvector
    D1 = torch.diag(torch.tensor([1 - 2 * a1, 1.0], dtype=torch.float64))
    D2 = torch.diag(torch.tensor([1 - 2 * a2, 1.0], dtype=torch.float64))
    prod_alpha = (1 - float((D2 @ D1)[0, 0])) / 2  # the product is exactly this averaged
    assert prod_alpha <= alpha + 1e-12


def test_convex_combination_and_relaxation():
    c = convex_combination([(0.25, Certificate(1, 0.8)), (0.75, Certificate.identity())])
    assert c.averagedness == pytest.approx(0.2)
    T = averaged_matrix(5, 0.8, 3)
    assert check_averaged(0.25 * T + 0.75 * torch.eye(5, dtype=torch.float64), 0.2, 5) <= 1e-10
    r = Certificate(1, 0.8).relaxed(1.2)
    assert r.averagedness == pytest.approx(0.96)
    with pytest.raises(ValueError):
        convex_combination([(0.5, Certificate(1, 0.1)), (0.6, Certificate(1, 0.1))])


def test_euler_step_certificate():
    assert euler_step_certificate(1.0).averagedness == 0.5
    broken = euler_step_certificate(3.0)
    assert broken.averagedness is None and broken.lipschitz == 2.0
    edge = euler_step_certificate(2.0)
    assert edge.averagedness is None and edge.lipschitz == 1.0


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_integrator_programs_are_convex_and_have_claimed_order(name):
    integ = INTEGRATORS[name]
    assert program_is_convex(integ.program)
    # order check on x' = -x (exact solution exp(-t)): error ratio when halving h ~ 2^order
    field = lambda z: -z  # noqa: E731
    errs = []
    for n in (8, 16):
        x = torch.ones(1, dtype=torch.float64)
        for _ in range(n):
            x = integ.step(x, 1.0 / n, field)
        errs.append(abs(float(x) - math.exp(-1)))
    assert math.log2(errs[0] / errs[1]) == pytest.approx(integ.order, abs=0.3)


def test_integrator_certificates_hold_on_linear_gradient_flows():
    """For V(x) = 1/2 x^T Q x the step is a matrix; check its averagedness exactly."""
    for name, integ in INTEGRATORS.items():
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            a = torch.randn(6, 6, generator=g, dtype=torch.float64)
            Q = a @ a.T
            nu = float(torch.linalg.eigvalsh(Q)[-1])
            h = 2 * integ.radius * 0.97 / nu
            M = integ.step(torch.eye(6, dtype=torch.float64), h, lambda z: -z @ Q)
            cert = integ.certificate(h, nu)
            assert cert.averagedness is not None
            assert check_averaged(M.T, cert.averagedness, 6) <= 1e-9, name


def test_relax_and_make_firmly_nonexpansive():
    blk = conv_block(2, 3, time=1.5).double().eval()
    alpha = blk.certified_averagedness()
    assert alpha is not None and 0 < alpha < 1
    r = relax(blk, 0.5)
    assert r.certified_averagedness() == pytest.approx(0.5 * alpha)
    f = make_firmly_nonexpansive(blk)
    assert f.certificate().firmly_nonexpansive
    if alpha > 0.5:
        assert f.certified_averagedness() == pytest.approx(0.5)
        assert f.t == pytest.approx(1 / (2 * alpha))
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(f(x), (1 - f.t) * x + f.t * blk(x))


def test_make_firmly_nonexpansive_refuses_uncertified():
    with pytest.raises(ValueError, match="no certified averagedness"):
        make_firmly_nonexpansive(torch.nn.Identity())


def test_lift_projection_sandwich_keeps_constants_and_mismatch_does_not():
    blocks = [conv_block(4, 6, time=1.0) for _ in range(3)]
    inner = compose([b.certificate() for b in blocks])
    net = CertifiedSequential(Lift(1, 4), *blocks, Projection(4, 1)).eval()
    c = net.certificate()
    assert c.averagedness == pytest.approx(inner.averagedness) and c.lipschitz == 1.0
    assert len(c.details) == 3
    bad = CertifiedSequential(Lift(1, 4), *blocks, Projection(4, 2)).eval()
    assert bad.certificate().averagedness is None
    x = torch.randn(2, 1, 9, 9)
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_uncertified_layer_makes_bound_infinite():
    net = CertifiedSequential(conv_block(2, 2), torch.nn.Conv2d(2, 2, 3, padding=1)).eval()
    c = net.certificate()
    assert math.isinf(c.lipschitz) and c.averagedness is None


def test_ten_block_network_reports_alpha_below_one():
    net = CertifiedSequential(Lift(1, 8), *[conv_block(8, time=1.0) for _ in range(10)], Projection(8, 1)).eval()
    c = net.certificate()
    assert c.lipschitz == 1.0 and c.averagedness is not None and c.averagedness < 1.0


@pytest.mark.parametrize("value, digits, text", [
    (0.9995853855757888, 3, "0.9996"),   # "1" would claim only non-expansiveness
    (0.99936932290918, 3, "0.9994"),
    (0.5003155375477126, 3, "0.501"),    # rounded up: never below the proven constant
    (0.5, 3, "0.5"),
    (0.07, 3, "0.07"),                   # no spurious digit from binary representation
    (1.0, 3, "1"),
    (2.0004, 3, "2.01"),
    (1 - 1e-12, 3, "0.999999999999"),
    (0.0, 3, "0"),
])
def test_format_upper_bound_never_understates_and_keeps_averagedness_below_one(value, digits, text):
    assert format_upper_bound(value, digits) == text
    assert float(text) >= value and (value >= 1 or float(text) < 1)


def test_format_upper_bound_on_random_constants():
    rng = random.Random(0)
    for _ in range(2000):
        value = 1 - 10 ** rng.uniform(-9, 0)
        text = format_upper_bound(value)
        assert value <= float(text) < 1, (value, text)

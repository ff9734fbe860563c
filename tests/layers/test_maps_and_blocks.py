import math

import pytest
import torch

from pnp_stable.layers import ConvMap, DenseMap, GradientFlowBlock, conv_block, dense_block


def inner(a, b):
    return float((a * b).sum().detach())


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(padding_mode="circular"), dict(stride=2), dict(stride=2, padding_mode="circular"),
     dict(dilation=2), dict(groups=2), dict(kernel_size=5, stride=2), dict(kernel_size=4, stride=2, padding=1)],
)
@pytest.mark.parametrize("size", [(9, 9), (8, 11)])
def test_conv_map_adjoint(kw, size):
    m = ConvMap(4, 6, **{"kernel_size": 3, **kw}).double()
    if kw.get("padding_mode") == "circular" and kw.get("stride", 1) > 1 and any(n % kw["stride"] for n in size):
        size = tuple(n + n % kw["stride"] for n in size)  # refused otherwise (see test_norms)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    ax = m(x)
    z = torch.randn_like(ax)
    lhs, rhs = inner(ax, z), inner(x, m.adjoint(z, x))
    assert lhs == pytest.approx(rhs, rel=1e-10)
    assert m.adjoint(z, x).shape == x.shape


def test_dense_map_adjoint():
    m = DenseMap(5, 7).double()
    x, z = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    assert inner(m(x), z) == pytest.approx(inner(x, m.adjoint(z)), rel=1e-12)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_block_field_is_minus_gradient_of_convex_potential(activation):
    """One Euler step equals x - h grad V(x) with V(x) = sum g(Ax + b), g' = s (autograd check)."""
    blk = conv_block(3, 5, activation=activation, time=0.3, substeps=1).double().eval()
    with torch.no_grad():
        blk.bias.normal_()
    g = {
        "relu": lambda t: 0.5 * torch.relu(t) ** 2,
        "leaky_relu": lambda t: 0.5 * torch.relu(t) ** 2 + 0.005 * torch.relu(-t) ** 2,
        "tanh": lambda t: torch.log(torch.cosh(t)),
    }[activation]
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    V = g(blk.linear(x) + blk.bias.view(1, -1, 1, 1)).sum()
    (grad,) = torch.autograd.grad(V, x)
    with torch.no_grad():
        out = blk(x)
    torch.testing.assert_close(out, x.detach() - 0.3 * grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("integrator,radius", [("euler", 1.0), ("heun", 1.0), ("rk4", 6.0)])
def test_adaptive_substeps_rule(integrator, radius):
    blk = conv_block(3, 4, time=2.5, integrator=integrator, margin=0.05).eval()
    assert blk.integrator.radius == radius
    nu = blk.nu(certified=True)
    n = blk.substeps()
    assert n == max(1, math.ceil(2.5 * nu / (2 * radius * 0.95)))
    h = 2.5 / n
    assert h * nu <= 2 * radius * 0.95 * (1 + 1e-12)
    # weights are never rescaled: bigger weights mean more steps
    w0 = blk.linear.weight.detach().clone()
    with torch.no_grad():
        blk.linear.weight.mul_(4.0)
    assert blk.substeps() > n or n * 16 <= 1
    torch.testing.assert_close(blk.linear.weight.detach(), 4 * w0)


def test_training_uses_one_power_iteration_per_step_eval_uses_certified():
    blk = conv_block(3, 4, time=1.0)
    x = torch.randn(1, 3, 8, 8)
    blk.train()
    blk(x).sum().backward()
    est = float(blk.linear.norm_estimate)
    assert 0 < est <= blk.linear.certified_norm()
    v0 = blk.linear.power_vector.clone()
    blk(x)
    assert not torch.equal(v0, blk.linear.power_vector)  # one more iteration happened
    blk.eval()
    v1 = blk.linear.power_vector.clone()
    with torch.no_grad():
        blk(x)
    assert torch.equal(v1, blk.linear.power_vector)  # evaluation does not touch the estimate
    assert blk.last_substeps == blk.required_substeps(blk.nu(certified=True))


def test_freeze_substeps_survives_state_dict():
    blk = conv_block(2, 3, time=3.0)
    n = blk.freeze_substeps()
    other = conv_block(2, 3, time=1.0)
    other.load_state_dict(blk.state_dict())
    assert other.substeps() == n and float(other.time) == 3.0


def test_dense_block_shapes_and_bias_shift():
    blk = dense_block(4, 6).eval()
    x = torch.randn(5, 4)
    shift = torch.randn(5, 6)
    with torch.no_grad():
        a, b = blk(x), blk(x, bias_shift=shift)
    assert a.shape == b.shape == x.shape and not torch.allclose(a, b)


def test_invalid_block_arguments():
    with pytest.raises(ValueError):
        conv_block(2, time=0.0)
    with pytest.raises(ValueError):
        conv_block(2, margin=1.0)
    with pytest.raises(ValueError):
        conv_block(2, integrator="rk45")
    with pytest.raises(ValueError):
        conv_block(2, activation="gelu")
    with pytest.raises(ValueError, match="monotone"):
        GradientFlowBlock(DenseMap(2, 2), activation=torch.nn.GELU())


def _grow_until(blk, substeps):
    with torch.no_grad():
        while blk.required_substeps(blk.nu(certified=True)) <= substeps:
            blk.linear.weight.mul_(1.5)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
def test_max_substeps_caps_cost_and_keeps_every_step_admissible(integrator):
    blk = conv_block(3, 4, time=2.0, integrator=integrator, max_substeps=2).double().eval()
    _grow_until(blk, 2)
    nu = blk.nu(certified=True)
    assert blk.substeps() == 2
    h = blk.step_size()
    assert h * nu == pytest.approx(blk.step_budget)  # the admissible maximum, not T / n
    cert = blk.certificate()
    assert cert.lipschitz <= 1.0 and cert.averagedness is not None
    detail = cert.details[-1]
    assert detail["substeps"] == 2 and detail["integrated_time"] == pytest.approx(2 * h) and 2 * h < 2.0
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        blk(x)
    assert blk.last_substeps == 2


def test_max_substeps_changes_nothing_below_the_cap():
    torch.manual_seed(0)
    capped = conv_block(3, 4, time=1.0, max_substeps=50).double().eval()
    plain = conv_block(3, 4, time=1.0).double().eval()
    plain.load_state_dict(capped.state_dict())
    assert capped.substeps() == plain.substeps() < 50
    x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(capped(x), plain(x), rtol=0, atol=0)


def test_capped_step_is_differentiable_in_the_norm():
    """With ReLU, no bias and a capped step h = c / ||A||^2, the block is invariant to scaling A:
    the gradient has no radial component. A step treated as a constant would have one."""
    torch.manual_seed(1)
    blk = conv_block(3, 6, time=4.0, bias=False, max_substeps=1).double().train()
    _grow_until(blk, 1)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    blk(x)  # settle the power vector, then freeze it for the comparison
    blk.linear.norm_estimate.fill_(blk.linear.certified_norm())
    w = blk.linear.weight
    with torch.no_grad():
        blk.linear.estimate_norm(n_iter=50)
    loss = (blk(x) - 1.0).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, w)
    radial = float((grad * w.detach()).sum()) / (float(grad.norm()) * float(w.detach().norm()))
    assert abs(radial) < 1e-4
    assert float(grad.norm()) > 0


def test_freeze_substeps_respects_the_cap():
    blk = conv_block(2, 3, time=3.0, max_substeps=1).eval()
    _grow_until(blk, 1)
    assert blk.freeze_substeps() == 1
    assert blk.step_size() * blk.nu() == pytest.approx(blk.step_budget)
    with pytest.raises(ValueError):
        conv_block(2, max_substeps=-1)


def test_certified_norm_cache_follows_the_convolutions_structure():
    """The bound depends on stride and dilation as much as on the weights: changing either after
    a bound was cached (all taps of a stride-2 kernel on one polyphase component once dilated by 2)
    must not return the old bound (review of 2026-12-06: 5.03 returned for a norm of 9.05)."""
    from pnp_stable.layers.linear_maps import ConvMap

    conv = ConvMap(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    strided = conv.certified_norm()
    conv.dilation = 2
    conv.padding = 2
    dilated = conv.certified_norm()
    fresh = ConvMap(1, 1, 3, stride=2, dilation=2)
    with torch.no_grad():
        fresh.weight.fill_(1.0)
    assert dilated == fresh.certified_norm() and dilated > 1.7 * strided

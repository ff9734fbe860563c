import math

import pytest
import torch

from pnp_stable.classify.certified_layers import (
    Flatten,
    InputShift,
    MaxMin,
    NormalizedConv2d,
    NormalizedLinear,
    NormPreservingAvgPool2d,
    NormPreservingGlobalPool,
)


def operator_norm(layer, shape, iterations=300):
    """||J|| of the (affine) layer on inputs of ``shape`` by power iteration with autograd adjoints."""
    x0 = torch.zeros(shape, dtype=torch.float64)
    u = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    base = layer(x0).detach()
    estimate = 0.0
    for _ in range(iterations):
        u = (u / u.norm()).requires_grad_(True)
        v = layer(u) - base
        estimate = float(v.detach().norm())
        (u,) = torch.autograd.grad(v, u, v.detach())
        u = u.detach()
    return estimate


@pytest.mark.parametrize("stride, size", [(1, 5), (1, 16), (2, 9), (2, 16)])
def test_normalized_conv_is_one_lipschitz_at_every_size(stride, size):
    layer = NormalizedConv2d(3, 5, kernel_size=3, stride=stride).double()
    with torch.no_grad():
        layer.map.weight.mul_(37.0)  # the scale of W must not matter
        layer.bias.fill_(2.0)
    layer.eval()
    norm = operator_norm(layer, (1, 3, size, size))
    assert norm <= 1.0 + 1e-9
    assert layer.certificate().lipschitz == pytest.approx(1.0)
    if stride == 1 and size == 16:
        assert norm > 0.9  # and not vacuously small: the bound is nearly attained


def test_unnormalized_weight_would_fail_the_same_check():
    # the check above can fail: the raw convolution of the same weights is far from 1-Lipschitz
    layer = NormalizedConv2d(3, 5).double().eval()
    with torch.no_grad():
        layer.map.weight.mul_(37.0)
    raw = lambda x: torch.nn.functional.conv2d(x, layer.map.weight, None, 1, 1)  # noqa: E731
    assert operator_norm(raw, (1, 3, 16, 16)) > 2.0


def test_training_mode_divisor_is_a_differentiable_estimate():
    layer = NormalizedConv2d(4, 6, stride=2)
    layer.train()
    for _ in range(3):
        sigma = layer.divisor()
    assert isinstance(sigma, torch.Tensor) and sigma.requires_grad
    (g,) = torch.autograd.grad(sigma, layer.map.weight)
    assert float(g.abs().sum()) > 0
    # the power estimate is a lower bound of the certified bound used in evaluation
    assert float(sigma.detach()) <= layer.map.certified_norm() * (1 + 1e-6)
    assert float(sigma.detach()) >= 0.9 * layer.map.certified_norm()
    with torch.no_grad():  # no autograd: the certified divisor, even in training mode
        assert layer.divisor() == layer.map.certified_norm()


def test_normalized_linear():
    layer = NormalizedLinear(20, 7).double()
    with torch.no_grad():
        layer.map.weight.mul_(9.0)
    layer.eval()
    w = (layer.map.weight / layer.divisor()).detach()
    assert float(torch.linalg.matrix_norm(w, ord=2)) <= 1.0 + 1e-12
    assert float(torch.linalg.matrix_norm(w, ord=2)) > 1.0 - 1e-6
    layer.train()
    sigma = layer.divisor()
    assert sigma.requires_grad and float(sigma.detach()) <= layer.map.certified_norm() * (1 + 1e-9)


@pytest.mark.parametrize("layer, shape", [
    (NormPreservingAvgPool2d(2), (2, 3, 8, 8)),
    (NormPreservingAvgPool2d(3), (2, 3, 7, 8)),  # trailing rows/columns dropped: still <= 1
    (NormPreservingGlobalPool(), (2, 3, 5, 7)),
    (Flatten(), (2, 3, 4, 4)),
    (InputShift((0.5, 0.2, 0.1)), (2, 3, 4, 4)),
    (MaxMin(), (2, 4, 3, 5)),
])
def test_fixed_layers_have_exact_constants(layer, shape):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    layer = layer.double()
    ratio = (layer(x) - layer(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= layer.certificate().lipschitz + 1e-12
    # a constant difference (on the pooled grid) attains the constant: it is exact, not loose
    h, w = shape[-2:]
    k = getattr(layer, "kernel_size", 1)
    d = torch.zeros(shape, dtype=torch.float64)
    d[..., : h - h % k if not isinstance(layer, NormPreservingGlobalPool) else h,
      : w - w % k if not isinstance(layer, NormPreservingGlobalPool) else w] = 1.0
    assert float((layer(x + d) - layer(x)).norm() / d.norm()) == pytest.approx(1.0)


def test_pool_constants_match_plain_average_pool():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(NormPreservingAvgPool2d(2)(x), 2 * torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(NormPreservingGlobalPool()(x), x.sum(dim=(-2, -1)) / math.sqrt(16))


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        NormalizedConv2d(1, 2, kernel_size=4)


def test_maxmin_sorts_channel_pairs_and_preserves_norms():
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    y = MaxMin()(x)
    a, b = x[:, :3], x[:, 3:]
    torch.testing.assert_close(y, torch.cat((torch.maximum(a, b), torch.minimum(a, b)), dim=1))
    torch.testing.assert_close(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1))
    assert not torch.equal(y, x)  # a nonlinearity, not the identity
    with pytest.raises(ValueError, match="even number of channels"):
        MaxMin()(torch.zeros(1, 3, 2, 2))

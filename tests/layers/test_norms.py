import math

import pytest
import torch
import torch.nn.functional as F

from pnp_stable.layers import ConvMap, DenseMap, conv_spectral_norm_bound, conv_symbol_norm_on_grid, dense_spectral_norm
from pnp_stable.layers.norms import power_iteration


def orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return torch.linalg.matrix_exp(a - a.T)  # exp of a skew matrix is orthogonal


def conv_matrix(weight, size, stride=1, dilation=1, groups=1, padding=None):
    """The explicit matrix of a zero-padded convolution on ``size x size`` images."""
    k = weight.shape[-1]
    padding = dilation * (k - 1) // 2 if padding is None else padding
    ci = weight.shape[1] * groups
    n = ci * size * size
    eye = torch.eye(n, dtype=torch.float64).reshape(n, ci, size, size)
    out = F.conv2d(eye, weight.double(), None, stride, padding, dilation, groups)
    return out.reshape(n, -1).T


# --- dense -----------------------------------------------------------------------------------
def test_dense_identity_and_scaled_identity():
    assert dense_spectral_norm(torch.eye(7)) == pytest.approx(1.0, rel=1e-8)
    assert dense_spectral_norm(5 * torch.eye(7)) == pytest.approx(5.0, rel=1e-8)


def test_dense_orthogonal_is_one():
    assert dense_spectral_norm(orthogonal(9)) == pytest.approx(1.0, rel=1e-8)


def test_dense_matches_numpy_svd_and_bounds_power_estimates():
    w = torch.randn(13, 8, dtype=torch.float64)
    exact = float(torch.linalg.svdvals(w)[0])
    cert = dense_spectral_norm(w)
    assert exact <= cert <= exact * (1 + 1e-8)
    m = DenseMap(8, 13).double()
    m.weight.data.copy_(w)
    for n_iter in (1, 3, 10, 200):
        assert m.estimate_norm(n_iter) <= cert


# --- convolutions ----------------------------------------------------------------------------
def test_conv_identity_kernels():
    w = torch.zeros(4, 4, 3, 3)
    w[:, :, 1, 1] = torch.eye(4)
    assert conv_spectral_norm_bound(w) == pytest.approx(1.0, rel=6e-3)
    assert conv_spectral_norm_bound(w) >= 1.0
    assert conv_spectral_norm_bound(5 * w) == pytest.approx(5.0, rel=6e-3)
    assert conv_spectral_norm_bound(5 * w[:, :, 1:2, 1:2]) == pytest.approx(5.0, rel=1e-8)  # 1x1: exact


def test_conv_orthogonal_channel_mixing_is_one():
    w = torch.zeros(6, 6, 3, 3, dtype=torch.float64)
    w[:, :, 1, 1] = orthogonal(6)
    assert 1.0 <= conv_spectral_norm_bound(w) <= 1.0 + 6e-3


@pytest.mark.parametrize("seed", range(4))
def test_conv_bound_tight_against_fine_symbol_grid(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    grid = conv_symbol_norm_on_grid(w, 256)  # exact norm of the 256x256 circular convolution
    cert = conv_spectral_norm_bound(w)
    assert grid <= cert
    assert cert <= grid * (1 + 5e-3) / math.cos(2 * math.pi / 256)  # tolerance + grid resolution


@pytest.mark.parametrize(
    "shape,stride,dilation,groups",
    [((4, 3, 3, 3), 1, 1, 1), ((6, 2, 5, 5), 1, 1, 1), ((4, 3, 3, 3), 2, 1, 1), ((4, 4, 4, 4), 2, 1, 1),
     ((4, 3, 3, 3), 1, 2, 1), ((4, 2, 3, 3), 1, 1, 2), ((6, 3, 3, 3), 2, 2, 1)],
)
@pytest.mark.parametrize("size", [5, 8, 11])
def test_conv_bound_holds_for_explicit_zero_padded_matrices(shape, stride, dilation, groups, size):
    g = torch.Generator().manual_seed(size)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    k = shape[-1]
    if dilation * (k - 1) >= size:
        pytest.skip("kernel larger than image")
    mat = conv_matrix(w, size, stride, dilation, groups, padding=dilation * (k - 1) // 2)
    exact = float(torch.linalg.svdvals(mat)[0])
    assert exact <= conv_spectral_norm_bound(w, stride, dilation, groups)


def test_strided_bound_tight_against_large_circular_power_method():
    w = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    m = ConvMap(3, 8, 4, stride=2, padding=1, power_size=64).double()
    m.weight.data.copy_(w)
    est = m.estimate_norm(n_iter=2000, tol=1e-10)
    cert = conv_spectral_norm_bound(w, stride=2)
    assert est <= cert <= est * 1.02


def test_reflect_padding_is_refused():
    with pytest.raises(ValueError, match="not certifiable"):
        ConvMap(2, 2, 3, padding_mode="reflect")


@pytest.mark.parametrize("stride,padding_mode", [(1, "zeros"), (1, "circular"), (2, "zeros")])
def test_certified_bound_dominates_every_power_estimate(stride, padding_mode):
    m = ConvMap(3, 5, 3, stride=stride, padding_mode=padding_mode, power_size=16)
    cert = m.certified_norm()
    for n_iter in (1, 5, 50, 500):
        assert m.estimate_norm(n_iter) <= cert * (1 + 1e-6)
    # and the zero-padded operator at a concrete size, iterated to convergence
    x = torch.randn(1, 3, 20, 20)
    est, _ = power_iteration(m, lambda v: m.adjoint(v, x), x, n_iter=500, tol=1e-9)
    assert est <= cert * (1 + 1e-6)


def test_power_vector_is_module_state_and_warm_starts():
    m = ConvMap(3, 4, 3, power_size=12)
    m.estimate_norm(n_iter=300, tol=1e-9)
    state = m.state_dict()
    assert "power_vector" in state and "norm_estimate" in state
    fresh = ConvMap(3, 4, 3, power_size=12)
    fresh.load_state_dict(state)
    # warm start from a converged vector: a single iteration reproduces the converged estimate
    assert fresh.estimate_norm(n_iter=1) == pytest.approx(float(state["norm_estimate"]), rel=1e-5)


def test_certified_norm_cache_follows_weight_updates():
    m = ConvMap(2, 2, 3)
    a = m.certified_norm()
    with torch.no_grad():
        m.weight.mul_(2.0)
    assert m.certified_norm() == pytest.approx(2 * a, rel=1.2e-2)


def test_certified_conv_bounds_are_memoised_by_value_never_stale(monkeypatch):
    from pnp_stable.layers import norms

    monkeypatch.setattr(norms, "_BOUND_CACHE", type(norms._BOUND_CACHE)())
    monkeypatch.setattr(norms, "_BOUND_CACHE_SIZE", 3)
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    first = conv_spectral_norm_bound(w)
    assert conv_spectral_norm_bound(w.clone()) == first and len(norms._BOUND_CACHE) == 1  # same values: reused
    with torch.no_grad():
        w[0, 0, 1, 1] += 0.5  # changed in place: another operator, another bound
    changed = conv_spectral_norm_bound(w)
    assert changed != first and len(norms._BOUND_CACHE) == 2
    strided = conv_spectral_norm_bound(w, stride=2)  # the arguments are part of the key
    norms._BOUND_CACHE.clear()
    assert conv_spectral_norm_bound(w) == changed and conv_spectral_norm_bound(w, stride=2) == strided
    for scale in (2.0, 3.0, 4.0):
        conv_spectral_norm_bound(w * scale)
    assert len(norms._BOUND_CACHE) == 3  # least recently used entries are dropped


# --- attacks on the certificate (each failed before its fix) ----------------------------------
def explicit_matrix(m, shape):
    """The matrix of the map ``m`` on inputs of ``shape`` (C x H x W), column by column."""
    n = math.prod(shape)
    with torch.no_grad():
        return m(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1).T


@pytest.mark.parametrize("stride", [2, 3])
def test_strided_circular_map_refuses_sizes_that_are_not_multiples_of_the_stride(stride):
    # On a 1x1 or odd-sized torus the wrap mixes the polyphase components: the all-ones 3x3 kernel
    # with stride 2 has norm 9 on a 1x1 image against a certified 5.02 (stride 3: 9 against 3).
    m = ConvMap(1, 1, 3, stride=stride, padding_mode="circular").double()
    with torch.no_grad():
        m.weight.fill_(1.0)
    cert = m.certified_norm()
    for n in (1, 3, 5, 7):
        if n % stride:
            with pytest.raises(ValueError, match="multiples"):
                m(torch.zeros(1, 1, n, n, dtype=torch.float64))
            with pytest.raises(ValueError, match="multiples"):
                m.adjoint(torch.zeros(1, 1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, n, n, dtype=torch.float64))
    g = torch.Generator().manual_seed(stride)
    for ci, co in ((1, 1), (2, 3)):
        m = ConvMap(ci, co, 3, stride=stride, padding_mode="circular").double()
        with torch.no_grad():
            m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
        cert = m.certified_norm()
        for n1, n2 in ((stride, stride), (stride, 2 * stride), (3 * stride, 2 * stride)):
            exact = float(torch.linalg.svdvals(explicit_matrix(m, (ci, n1, n2)))[0])
            assert exact <= cert


@pytest.mark.parametrize("padding", [0, 2, 3])
def test_circular_map_needs_the_same_padding(padding):
    # padding 2 with a 3x3 kernel repeats rows of the circular convolution: 1.99x the bound on 2x2
    with pytest.raises(ValueError, match="circular padding needs"):
        ConvMap(1, 1, 3, padding=padding, padding_mode="circular")
    ConvMap(1, 1, 5, padding=2, padding_mode="circular")  # the same padding, given as a number


def test_circular_bound_holds_on_tiny_tori():
    # a circular pad as large as the image (1x1, 2x2 with a 5x5 or dilated kernel) aliases the
    # symbol onto a coarse grid: still below its supremum
    g = torch.Generator().manual_seed(0)
    for kw in (dict(kernel_size=3), dict(kernel_size=5), dict(kernel_size=3, dilation=2)):
        m = ConvMap(2, 2, **kw, padding_mode="circular").double()
        with torch.no_grad():
            m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
        cert = m.certified_norm()
        span = m.dilation * (m.kernel_size - 1) // 2
        for n in range(max(1, span), 6):
            assert float(torch.linalg.svdvals(explicit_matrix(m, (2, n, n)))[0]) <= cert


def test_non_finite_weights_have_no_bound():
    # an all-inf 1x1 kernel gave a bound of 0: the certificate of the identity for a NaN map
    for w in (torch.full((2, 2, 1, 1), float("inf")), torch.full((2, 2, 3, 3), float("nan"))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            conv_spectral_norm_bound(w)
    with pytest.raises(ValueError, match="NaN or infinite"):
        dense_spectral_norm(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize("exponent", [-76, -74, 0, 40, 70])
def test_conv_bound_is_scale_invariant_far_from_unit_weights(exponent):
    # weights of 2^-76 made the complex64 Gram matrices subnormal: the third kernel below got a
    # bound 0.47 % *below* its exact norm (seed 16's 1x3 kernel at 2^-74: 0.12 %)
    for seed in (4, 16):
        g = torch.Generator().manual_seed(seed)
        for shape in ((2, 2, 1, 3), (1, 1, 1, 3), (2, 2, 3, 3)):
            w = torch.randn(*shape, generator=g, dtype=torch.float64)
            grid = conv_symbol_norm_on_grid(w, 128)
            scale = 2.0 ** exponent
            cert = conv_spectral_norm_bound(w * scale) / scale
            assert grid <= cert <= grid * (1 + 5e-3) / math.cos(2 * math.pi / 128)


def test_certified_norm_sees_writes_through_data():
    # ``p.data.mul_`` bypasses the version counter the cache was keyed on: the old (10x smaller)
    # bound was returned, and a block with h nu = 200 certified as averaged
    for m in (ConvMap(2, 2, 3), DenseMap(3, 4)):
        a = m.certified_norm()
        m.weight.data.mul_(10.0)
        assert m.certified_norm() >= 10 * a * (1 - 1e-2)
        m.weight.data = m.weight.data / 10.0
        assert m.certified_norm() == pytest.approx(a, rel=1e-2)

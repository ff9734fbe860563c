"""Identity, Inpainting and Downsample: adjoints, exact/certified norms, proxes, errors."""

import numpy as np
import pytest
import torch
from operator_test_helpers import explicit_matrix, relative_adjoint_error

from pnp_stable.operators import Downsample, Identity, Inpainting, kernels
from pnp_stable.protocols import ForwardOperator


def _prox_residual(op, p, z, y, gamma):
    g = torch.as_tensor(gamma, dtype=p.dtype).reshape(-1, 1, 1, 1)
    grad = g * op.A_adjoint(op.A(p) - y) + (p - z)
    return float(grad.norm() / (g * op.A_adjoint(y) + z).norm())


def _operators():
    mask = torch.rand(11, 9, generator=torch.Generator().manual_seed(0)) < 0.6
    return {
        "identity": lambda: Identity(),
        "identity-shaped": lambda: Identity((3, 11, 9)),
        "inpainting-gray": lambda: Inpainting(mask),
        "inpainting-rgb": lambda: Inpainting.random((3, 11, 9), 0.5, seed=1),
        "inpainting-weights": lambda: Inpainting(torch.linspace(-1.5, 1.0, 99).reshape(11, 9)),
        "decimate-divisible": lambda: Downsample(2, None, (12, 10)),
        "decimate-odd": lambda: Downsample(3, None, (11, 9)),
        "sr-circular-exact": lambda: Downsample(2, kernels.gaussian(1.0, 5), (12, 10)),
        "sr-circular-odd": lambda: Downsample(2, kernels.gaussian(1.0, 5), (11, 9)),
        "sr-reflect": lambda: Downsample(3, "box:3", (12, 9), boundary="reflect"),
        "sr-zero-even-kernel": lambda: Downsample(2, kernels.motion_random(6, 3), (12, 10), boundary="zero"),
        "sr-valid": lambda: Downsample(2, "gauss:1.0", (12, 11), boundary="valid"),
    }


OPERATORS = _operators()


def _input_shape(name, op):
    if name.startswith("identity") or name.startswith("inpainting"):
        return (11, 9)
    return op.image_hw


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("channels, batch", [(1, 1), (3, 2)])
def test_adjointness(name, channels, batch):
    op = OPERATORS[name]()
    if getattr(op, "channels", None) not in (None, channels) or (name == "identity-shaped" and channels != 3):
        pytest.skip("operator built for another channel count")
    x = torch.randn(batch, channels, *_input_shape(name, op))
    assert relative_adjoint_error(op, x) < 1e-5
    assert float(op.adjointness_test(u=x)) < 1e-5
    assert isinstance(op, ForwardOperator)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_norm_against_explicit_matrix(name):
    op = OPERATORS[name]()
    channels = op.channels if getattr(op, "channels", None) else 1
    if name == "identity-shaped":
        channels = 3
    shape = (channels, *_input_shape(name, op))
    exact = float(torch.linalg.matrix_norm(explicit_matrix(op.A, shape), ord=2))
    assert op.norm() >= exact * (1 - 1e-12)
    if op.norm_kind == "exact":
        assert op.norm() == pytest.approx(exact, rel=1e-8)
    else:
        assert op.norm_kind == "certified"
        assert op.norm() <= exact * 1.01  # Collatz-Wielandt stops at a 1e-3 gap


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-5), (torch.float64, 1e-9)])
def test_prox_optimality(name, dtype, tol):
    op = OPERATORS[name]()
    channels = 3 if name in ("identity-shaped", "inpainting-rgb") else 1
    x = torch.rand(2, channels, *_input_shape(name, op), dtype=dtype)
    y = op.simulate(x, 0.05, seed=0)
    z = torch.rand_like(x)
    for gamma in (0.5, 30.0, torch.tensor([0.2, 5.0], dtype=dtype)):
        p = op.prox_data(z, y, gamma)
        assert _prox_residual(op, p, z, y, gamma) < tol
    expected = "closed-form" if op.norm_kind == "exact" else "cg"
    assert op.last_prox_info.method == expected


def test_downsample_matches_deepinv_downsampling():
    from deepinv.physics import Downsampling

    k = kernels.gaussian(1.0, 5)
    ours = Downsample(2, k, (1, 12, 10))
    theirs = Downsampling(img_size=(1, 12, 10), filter=torch.tensor(k, dtype=torch.float32)[None, None], factor=2, padding="circular")
    x = torch.randn(2, 1, 12, 10)
    torch.testing.assert_close(ours.A(x), theirs.A(x), rtol=1e-5, atol=1e-5)
    y = torch.randn(2, 1, 6, 5)
    torch.testing.assert_close(ours.A_adjoint(y), theirs.A_adjoint(y), rtol=1e-5, atol=1e-5)


def test_inpainting_semantics():
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    op = Inpainting(mask)
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    torch.testing.assert_close(op.A(x), x * mask)
    # observed pixels move towards y, missing ones keep z
    z, y = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    torch.testing.assert_close(op.prox_data(z, y, 1.0), torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]]))
    rand = Inpainting.random((20, 20), 0.3, seed=4)
    assert torch.equal(rand.mask, Inpainting.random((20, 20), 0.3, seed=4).mask)
    assert 0.15 < float(rand.mask.mean()) < 0.45


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Inpainting(torch.ones(2, 2, 2, 2)), "mask must have shape"),
        (lambda: Inpainting(torch.tensor([[float("nan")]])), "NaN"),
        (lambda: Inpainting([[1, 0]]), "numpy array or torch tensor"),
        (lambda: Inpainting.random((4, 4), 0.0), "observed_fraction"),
        (lambda: Downsample(0, None, (8, 8)), "factor"),
        (lambda: Downsample(1.5, None, (8, 8)), "factor"),
        (lambda: Downsample(9, None, (8, 8)), "exceeds"),
        (lambda: Downsample(2, None, (8, 8), boundary="wrap"), "boundary"),
        (lambda: Downsample(2, np.ones((9, 9)), (8, 8)), "larger than"),
        (lambda: Identity((8,)), "image_shape"),
    ],
)
def test_construction_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_call_errors():
    inpaint = Inpainting(torch.ones(3, 4, 4))
    down = Downsample(2, "box:2", (4, 6))
    identity = Identity((1, 4, 4))
    cases = [
        (lambda: inpaint.A(torch.rand(1, 1, 4, 4)), "channels"),
        (lambda: inpaint.A(torch.rand(1, 3, 5, 4)), "spatial size"),
        (lambda: down.A(torch.rand(1, 1, 4, 4)), "spatial size"),
        (lambda: down.A_adjoint(torch.rand(1, 1, 3, 3)), "spatial size"),
        (lambda: identity.A(torch.rand(1, 2, 4, 4)), "built for"),
        (lambda: identity.prox_data(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), float("inf")), "gamma"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_the_super_resolution_prox_keeps_float32_accuracy_at_a_large_gamma():
    """The closed-form prox works on the misfit ``A z - y``: the textbook Woodbury form subtracts
    two terms of size gamma |y| and lost ~gamma * 6e-8 relative accuracy in float32, which near
    convergence made the monitored residual of an averaged ADMM map rise (super-resolution at noise
    0.002: gamma ~ 325, 36 increases in 300 iterations)."""
    op = Downsample(2, "gauss:1.0", (1, 64, 64))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    y = op.A(x)
    z = x + 1e-3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    gamma = torch.tensor(325.0, dtype=torch.float64)
    exact = op.prox_data(z, y, gamma)
    assert _prox_residual(op, exact, z, y, gamma) < 1e-9  # the float64 reference is the prox
    got = op.prox_data(z.float(), y.float(), gamma.float()).double()
    # ... and in float32 the error is the rounding of the result, not gamma times it
    assert (got - exact).abs().max() < 1e-6
    # negative control: the textbook form in float32 is two orders of magnitude off
    r = z.float() + gamma.float() * op.A_adjoint(y.float())
    gain = op._low_resolution_gain(torch.float32, r.device)
    inner = torch.fft.ifft2(torch.fft.fft2(op.A(r)) / (1 + gamma.float() * gain)).real
    textbook = (r - gamma.float() * op.A_adjoint(inner)).double()
    assert (textbook - exact).abs().max() > 1e-5

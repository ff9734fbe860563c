"""Blur: adjointness, agreement with deepinv, norm exactness/validity, prox optimality, errors."""

import warnings

import numpy as np
import pytest
import torch
from operator_test_helpers import explicit_matrix, relative_adjoint_error

from pnp_stable.operators import Blur, ProxConvergenceWarning, kernels
from pnp_stable.protocols import ForwardOperator

BOUNDARIES = ["circular", "reflect", "replicate", "zero", "valid"]
SHAPES = [(1, 1, 12, 12), (2, 3, 11, 9), (3, 1, 13, 10)]  # gray, RGB + batch + odd, batch + odd


def _kernel(name: str) -> np.ndarray:
    return {
        "gauss": kernels.gaussian(1.0, 5),
        "motion-even": kernels.motion_random(6, seed=2),  # even size: padded to 7x7
        "signed": np.array([[0.0, -0.5, 0.0], [-0.5, 3.0, -0.5], [0.0, -0.5, 0.0]]),
    }[name]


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", ["gauss", "motion-even"])
def test_adjointness_float32(boundary, shape, kernel):
    op = Blur(_kernel(kernel), shape[1:], boundary=boundary)
    x = torch.randn(shape)
    assert relative_adjoint_error(op, x) < 1e-5


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_deepinv_adjointness_test_accepts_ours(boundary):
    op = Blur(_kernel("gauss"), (3, 10, 11), boundary=boundary)
    assert float(op.adjointness_test(img_size=(3, 10, 11), num_samples=4)) < 1e-5
    assert isinstance(op, ForwardOperator)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_matches_deepinv_spatial_convolution(boundary):
    import deepinv.physics.functional as dF

    op = Blur(_kernel("motion-even"), (2, 14, 13), boundary=boundary)
    x = torch.randn(2, 2, 14, 13, dtype=torch.float64)
    reference = dF.conv2d(x, op.filter.double(), padding="constant" if boundary == "zero" else boundary)
    torch.testing.assert_close(op.A(x), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", ["gauss", "motion-even"])
def test_circular_matches_deepinv_blurfft(kernel):
    from deepinv.physics import BlurFFT

    k = _kernel(kernel)
    ours = Blur(k, (3, 16, 15), boundary="circular")
    theirs = BlurFFT(img_size=(3, 16, 15), filter=torch.tensor(k, dtype=torch.float32)[None, None])
    x = torch.randn(2, 3, 16, 15)
    torch.testing.assert_close(ours.A(x), theirs.A(x), rtol=1e-5, atol=1e-5)
    y = torch.randn(2, 3, 16, 15)
    torch.testing.assert_close(ours.A_adjoint(y), theirs.A_adjoint(y), rtol=1e-5, atol=1e-5)


def test_circular_norm_is_exact():
    op = Blur(_kernel("motion-even"), (1, 9, 8), boundary="circular")
    matrix = explicit_matrix(op.A, (1, 9, 8))
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert op.norm_kind == "exact"
    assert op.norm() == pytest.approx(exact, rel=1e-8)
    assert op.norm() >= exact


@pytest.mark.parametrize("boundary", ["reflect", "replicate", "zero", "valid"])
@pytest.mark.parametrize("kernel", ["gauss", "motion-even", "signed"])
def test_certified_norm_bounds_explicit_matrix(boundary, kernel):
    op = Blur(_kernel(kernel), (1, 9, 10), boundary=boundary)
    matrix = explicit_matrix(op.A, (1, 9, 10))
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    bound = op.norm_bound()
    assert op.norm_kind == "certified" and bound.kind == "certified"
    assert op.norm() >= exact * (1 - 1e-12)
    if bound.lower is not None:
        assert bound.lower <= exact * (1 + 1e-9)
    if boundary in ("reflect", "replicate") and kernel != "signed":
        # Collatz-Wielandt is tight for non-negative kernels (stops at a 1e-3 gap)
        assert op.norm() <= exact * 1.002
    elif boundary in ("zero", "valid"):  # circulant maxima never exceed sup |symbol| <= sum |k|
        assert op.norm() <= np.abs(op.kernel).sum() * (1 + 1e-8)
    else:  # signed kernel, bound from |k|: valid, and not absurdly loose here
        assert op.norm() <= exact * 1.1


def test_reflect_and_replicate_norms_exceed_one_for_a_normalised_kernel():
    # the reason norm() must not assume ||A|| <= sum(k) = 1 for these boundaries
    k = _kernel("motion-even")
    for boundary in ("reflect", "replicate"):
        op = Blur(k, (1, 8, 8), boundary=boundary)
        exact = float(torch.linalg.matrix_norm(explicit_matrix(op.A, (1, 8, 8)), ord=2))
        assert exact > 1.0 + 1e-3
        assert op.norm() >= exact


def _prox_gradient_residual(op, p, z, y, gamma):
    g = torch.as_tensor(gamma, dtype=p.dtype).reshape(-1, 1, 1, 1)
    grad = g * op.A_adjoint(op.A(p) - y) + (p - z)
    scale = (g * op.A_adjoint(y) + z).norm()
    return float(grad.norm() / scale)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-5), (torch.float64, 1e-9)])
def test_prox_optimality(boundary, dtype, tol):
    op = Blur(_kernel("gauss"), (2, 12, 11), boundary=boundary)
    x = torch.rand(3, 2, 12, 11, dtype=dtype)
    y = op.simulate(x, 0.05, seed=1)
    z = torch.rand_like(x)
    for gamma in (0.3, 40.0, torch.tensor([0.1, 1.0, 10.0], dtype=dtype)):
        p = op.prox_data(z, y, gamma)
        assert _prox_gradient_residual(op, p, z, y, gamma) < tol
        assert op.last_prox_info.all_converged


def test_circular_prox_matches_linear_solve():
    op = Blur(_kernel("motion-even"), (1, 7, 8), boundary="circular")
    matrix = explicit_matrix(op.A, (1, 7, 8))
    z, y = torch.randn(1, 1, 7, 8, dtype=torch.float64), torch.randn(1, 1, 7, 8, dtype=torch.float64)
    gamma = 2.5
    solution = torch.linalg.solve(gamma * matrix.T @ matrix + torch.eye(56, dtype=torch.float64), gamma * matrix.T @ y.reshape(-1) + z.reshape(-1))
    torch.testing.assert_close(op.prox_data(z, y, gamma).reshape(-1), solution)
    assert op.last_prox_info.method == "closed-form"


def test_cg_prox_warm_start_and_non_convergence_report():
    op = Blur(_kernel("gauss"), (1, 16, 16), boundary="reflect")
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    y, z = op.A(x), torch.rand(2, 1, 16, 16, dtype=torch.float64)
    op.prox_data(z, y, 20.0)
    cold = op.last_prox_info.iterations
    assert cold > 2
    op.prox_data(z, y, 20.0)  # same problem: the warm start is already the solution
    assert op.last_prox_info.iterations == 0
    fresh = Blur(_kernel("gauss"), (1, 16, 16), boundary="reflect")
    with pytest.warns(ProxConvergenceWarning, match="CG stopped after 2 iterations"):
        fresh.prox_data(z, y, 20.0, tol=1e-14, max_iter=2)
    info = fresh.last_prox_info
    assert not info.all_converged and info.iterations == 2 and min(info.relative_residuals) > 1e-14


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_an_inexact_cg_prox_certifies_its_error(dtype):
    """``max_error`` per image: the reported bound is at most the budget (or the rounding floor), and
    the distance to the exact prox (a dense solve) is at most the reported bound."""
    op = Blur(_kernel("gauss"), (1, 9, 10), boundary="reflect")
    matrix = explicit_matrix(op.A, (1, 9, 10))
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 9, 10, generator=gen, dtype=torch.float64)
    y = op.A(x) + 0.01 * torch.randn(3, 1, 9, 10, generator=gen, dtype=torch.float64)
    z = torch.rand(3, 1, 9, 10, generator=gen, dtype=torch.float64)
    gamma = 30.0
    y, z = y.to(dtype).to(torch.float64), z.to(dtype).to(torch.float64)  # the prox of the inputs it gets
    system = gamma * matrix.T @ matrix + torch.eye(90, dtype=torch.float64)
    exact = torch.linalg.solve(system, (gamma * matrix.T @ y.reshape(3, -1).T + z.reshape(3, -1).T)).T
    budgets = torch.tensor([1e-1, 1e-3, 0.0], dtype=torch.float64)
    result = op.prox_data(z.to(dtype), y.to(dtype), gamma, max_error=budgets)
    info = op.last_prox_info
    assert info.method == "cg" and info.all_converged and len(info.error_bounds) == 3
    # the rounding floor: CG's default tolerance, relative to each image's right-hand side (a floor
    # relative to ||z|| failed when a run stopped at 1e-10 ||rhs||, 13 % above it)
    rhs_norms = (gamma * matrix.T @ y.reshape(3, -1).T + z.reshape(3, -1).T).norm(dim=0)
    for i in range(3):
        distance = float((result[i].to(torch.float64).reshape(-1) - exact[i]).norm())
        rounding = float(torch.finfo(dtype).eps) * float(exact[i].norm())
        assert distance <= info.error_bounds[i] + rounding, (i, distance, info.error_bounds[i])
        floor = 1e-10 * float(rhs_norms[i]) + float(torch.finfo(dtype).eps) * float(z[i].norm())
        assert info.error_bounds[i] <= max(float(budgets[i]), floor), (i, info.error_bounds[i], floor)
    assert info.error_bounds[0] > info.error_bounds[2]  # the budget was used, not ignored
    with pytest.raises(ValueError, match="max_error"):
        op.prox_data(z, y, gamma, max_error=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="max_error"):
        op.prox_data(z, y, gamma, max_error=-1.0)
    circular = Blur(_kernel("gauss"), (1, 9, 10), boundary="circular")
    circular.prox_data(z, y, gamma, max_error=1.0)
    assert circular.last_prox_info.error_bounds == (0.0, 0.0, 0.0)  # a closed form is exact


def test_closed_form_prox_is_differentiable():
    op = Blur(_kernel("gauss"), (1, 8, 8))
    z = torch.rand(1, 1, 8, 8, requires_grad=True)
    op.prox_data(z, torch.rand(1, 1, 8, 8), 1.0).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_channel_agnostic_shape_and_dtypes():
    op = Blur("gauss:1.0", (10, 12))
    for channels in (1, 3):
        for dtype in (torch.float32, torch.float64):
            out = op.A(torch.rand(2, channels, 10, 12, dtype=dtype))
            assert out.shape == (2, channels, 10, 12) and out.dtype == dtype
    assert Blur("box:3", (10, 12), boundary="valid").A(torch.rand(1, 1, 10, 12)).shape == (1, 1, 8, 10)


def test_simulate_is_deterministic_and_leaves_global_rng_alone():
    op = Blur("gauss:1.0", (1, 16, 16))
    x = torch.rand(1, 1, 16, 16)
    state = torch.get_rng_state()
    a, b = op.simulate(x, 0.1, seed=5), op.simulate(x, 0.1, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, op.simulate(x, 0.1, seed=6))
    noise = op.simulate(torch.zeros(4, 1, 16, 16), 0.5, seed=0)
    assert float(noise.std()) == pytest.approx(0.5, rel=0.1)
    assert torch.equal(op.simulate(x, 0.0), op.A(x))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Blur(np.ones((9, 9)) / 81, (8, 8)), "larger than"),
        (lambda: Blur(np.ones((3, 3)) / 9, (8, 8), boundary="mirror"), "boundary must be one of"),
        (lambda: Blur(np.ones((3, 3)) / 9, (8,)), "image_shape"),
        (lambda: Blur(np.ones((3, 3)) / 9, (8, 0)), "image_shape"),
        (lambda: Blur(np.array([[np.nan]]), (8, 8)), "NaN"),
        (lambda: Blur("nonsense:3", (8, 8)), "kernel spec"),
        (lambda: Blur(np.ones((3, 3)), (8, 8), cg_tol=0), "cg_tol"),
    ],
)
def test_construction_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_call_errors():
    op = Blur("box:3", (3, 8, 8), boundary="reflect")
    good = torch.rand(1, 3, 8, 8)
    cases = [
        (lambda: op.A(torch.rand(3, 8, 8)), "batch, channels"),
        (lambda: op.A(torch.rand(1, 3, 8, 9)), "spatial size"),
        (lambda: op.A(torch.rand(1, 1, 8, 8)), "channels"),
        (lambda: op.A(good.to(torch.int64)), "float32 or float64"),
        (lambda: op.A(good.half()), "float32 or float64"),
        (lambda: op.A_adjoint(torch.rand(1, 3, 7, 8)), "spatial size"),
        (lambda: op.A(good, filter=torch.ones(1, 1, 3, 3)), "does not accept"),
        (lambda: op.prox_data(good, torch.rand(1, 3, 7, 8), 1.0), "y has shape"),
        (lambda: op.prox_data(good * float("nan"), good, 1.0), "NaN"),
        (lambda: op.prox_data(good, good, -1.0), "gamma"),
        (lambda: op.prox_data(good, good, torch.ones(2)), "one value per image"),
        (lambda: op.simulate(good, -0.1), "noise_level"),
        (lambda: op.simulate(good, 0.1, seed=1.5), "seed"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_deepinv_solver_uses_our_prox():
    from deepinv.optim.data_fidelity import L2

    op = Blur("gauss:1.0", (1, 12, 12), boundary="zero")
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    y = op.A(x)
    z = torch.rand_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProxConvergenceWarning)
        out = L2().prox(z, y, op, gamma=3.0)
    assert op.last_prox_info is not None and op.last_prox_info.method == "cg"
    torch.testing.assert_close(out, op.prox_data(z, y, 3.0))


def test_cg_reuses_adjoint_of_unchanged_data_and_stays_exact():
    op = Blur(_kernel("gauss"), (1, 12, 12), boundary="zero")
    calls = []
    original = op.A_adjoint

    def counting_adjoint(v, **kwargs):
        calls.append(v)
        return original(v, **kwargs)

    op.A_adjoint = counting_adjoint
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    y = op.A(x)
    z = torch.rand_like(x)
    gammas = (0.5, 8.0, 2.0)  # the warm start carries A^T A x over a change of gamma
    solutions = [op.prox_data(z, y, gamma) for gamma in gammas]
    assert len([v for v in calls if v is y]) == 1  # A^T y computed once for the three proxes
    for gamma, p in zip(gammas, solutions):
        assert _prox_gradient_residual(op, p, z, y, gamma) < 1e-9
    y.mul_(2.0)  # in place: the cached A^T y is stale and must not be used
    p = op.prox_data(z, y, 3.0)
    assert _prox_gradient_residual(op, p, z, y, 3.0) < 1e-9
    twin = y.clone()  # equal content, another tensor: recomputed, same answer
    torch.testing.assert_close(op.prox_data(z, twin, 3.0), p)


def test_a_gamma_that_overflows_in_the_data_precision_is_named_so():
    op = Blur("gauss:1.0", (1, 16, 16))
    y = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"got 1e\+300 \(it overflows to infinity in float32\)"):
        op.prox_data(y, y, 1e300)
    with pytest.raises(ValueError, match=r"non-negative, got -1.0$"):
        op.prox_data(y, y, -1.0)


def test_a_reflect_blur_norm_bound_is_cached_and_a_tampered_entry_is_not_read(tmp_path, monkeypatch):
    """A large image's certified bound takes minutes: it is read back from the disk cache for the
    same kernel, size and boundary, but never an entry that understates the norm."""
    import json

    from pnp_stable.operators.cache import cache_dir

    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "cache"))
    first = Blur("gauss:1.2", (40, 36), boundary="reflect").norm_bound()
    assert not first.details.get("cached")
    files = list((cache_dir() / "blur-norms").glob("*.json"))
    assert len(files) == 1
    again = Blur("gauss:1.2", (40, 36), boundary="reflect").norm_bound()
    assert again.details.get("cached") and again.value == first.value and again.lower == first.lower
    assert not Blur("gauss:1.2", (40, 38), boundary="reflect").norm_bound().details.get("cached")
    entry = json.loads(files[0].read_text())
    entry["result"].update(upper=1.0, lower=0.9)  # below a power-method lower bound (the norm is 1.013)
    files[0].write_text(json.dumps(entry))
    recomputed = Blur("gauss:1.2", (40, 36), boundary="reflect").norm_bound()
    assert not recomputed.details.get("cached") and recomputed.value == first.value

"""The batched CG solver and the on-disk cache, on their own."""

import os

import pytest
import torch

from pnp_stable.operators.cache import cache_dir, load_entry, store_entry
from pnp_stable.operators.cg import batched_conjugate_gradient


def _spd_batch(conditions, n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    mats = []
    for cond in conditions:
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        eig = torch.logspace(0, torch.log10(torch.tensor(float(cond))), n, dtype=torch.float64)
        mats.append(q @ torch.diag(eig) @ q.T)
    return torch.stack(mats)


def test_per_image_convergence_matches_direct_solve():
    mats = _spd_batch([2.0, 1e4])
    rhs = torch.randn(2, 1, 5, 6, dtype=torch.float64)

    def apply(v):
        return (mats @ v.reshape(2, 30, 1)).reshape(v.shape)

    x, info, m_x = batched_conjugate_gradient(apply, rhs, [torch.zeros_like(rhs)], tol=1e-12, max_iter=500)
    torch.testing.assert_close(m_x, apply(x))
    expected = torch.linalg.solve(mats, rhs.reshape(2, 30, 1)).reshape(rhs.shape)
    torch.testing.assert_close(x, expected, rtol=1e-8, atol=1e-10)
    assert info.all_converged and max(info.relative_residuals) <= 1e-12
    # the well-conditioned image must not be degraded by iterating on with the hard one
    assert info.iterations <= 500


def test_best_initial_guess_is_used_and_zero_rhs():
    mats = _spd_batch([10.0, 10.0])
    rhs = torch.randn(2, 1, 5, 6, dtype=torch.float64)

    def apply(v):
        return (mats @ v.reshape(2, 30, 1)).reshape(v.shape)

    solution = torch.linalg.solve(mats, rhs.reshape(2, 30, 1)).reshape(rhs.shape)
    calls = []

    def counted(v):
        calls.append(1)
        return apply(v)

    _, exact_start, _ = batched_conjugate_gradient(counted, rhs, [torch.zeros_like(rhs), (solution, apply(solution))], tol=1e-10, max_iter=100)
    assert len(calls) == 1  # a guess given with its product is not multiplied again
    assert exact_start.iterations == 0 and exact_start.all_converged
    mixed = torch.stack([solution[0], torch.zeros_like(solution[1])])
    _, info, _ = batched_conjugate_gradient(apply, rhs, [torch.zeros_like(rhs), mixed], tol=1e-10, max_iter=100)
    assert info.all_converged
    x0, info0, _ = batched_conjugate_gradient(apply, torch.zeros_like(rhs), [torch.ones_like(rhs)], tol=1e-10, max_iter=100)
    assert info0.all_converged and float(x0.abs().max()) < 1e-8


def test_non_convergence_is_reported_truthfully():
    mats = _spd_batch([1e6])
    rhs = torch.randn(1, 1, 5, 6, dtype=torch.float64)

    def apply(v):
        return (mats @ v.reshape(1, 30, 1)).reshape(v.shape)

    x, info, _ = batched_conjugate_gradient(apply, rhs, [torch.zeros_like(rhs)], tol=1e-12, max_iter=3)
    true_residual = float((rhs - apply(x)).norm() / rhs.norm())
    assert not info.all_converged and info.iterations == 3
    assert info.relative_residuals[0] == pytest.approx(true_residual, rel=1e-6)
    with pytest.raises(ValueError, match="initial guess"):
        batched_conjugate_gradient(apply, rhs, [], tol=1e-6, max_iter=3)


def test_cache_location_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "override"))
    assert cache_dir() == tmp_path / "override"
    monkeypatch.delenv("PNP_STABLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "pnp-stable"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "pnp-stable"


def test_cache_round_trip_is_atomic_and_keyed(monkeypatch, tmp_path):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path))
    description = {"what": "test", "size": 3}
    assert load_entry("ns", description) is None
    path = store_entry("ns", description, {"value": 1.5})
    assert path is not None and path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    assert load_entry("ns", description) == {"value": 1.5}
    assert load_entry("ns", {"what": "test", "size": 4}) is None
    # a file whose stored description differs (hash collision, manual edit) is not trusted
    text = path.read_text().replace('"size": 3', '"size": 5')
    path.write_text(text)
    assert load_entry("ns", description) is None


def test_unwritable_cache_is_not_an_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("PNP_STABLE_CACHE", str(blocker))
    assert store_entry("ns", {"a": 1}, {"b": 2}) is None
    assert os.path.isfile(blocker)


def test_mixed_precision_refinement_reaches_the_float64_tolerance_with_float32_products():
    from pnp_stable.operators.cg import batched_conjugate_gradient, refined_conjugate_gradient

    torch.manual_seed(0)
    n = 40
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    matrix = q @ torch.diag(torch.logspace(0, 3, n, dtype=torch.float64)) @ q.T  # SPD, condition 1e3
    coarse_calls = []

    def fine(v):
        return (v.reshape(v.shape[0], -1) @ matrix).reshape(v.shape)

    def coarse(v):
        coarse_calls.append(v.dtype)
        return (v.reshape(v.shape[0], -1) @ matrix.float()).reshape(v.shape)

    rhs = torch.randn(3, 1, 5, 8, dtype=torch.float64)
    rhs[1] = 0.0  # a zero right-hand side: exactly 0
    x, info, m_x = refined_conjugate_gradient(fine, coarse, rhs, [torch.zeros_like(rhs)], tol=1e-11, max_iter=500,
                                              coarse_dtype=torch.float32)
    exact, _, _ = batched_conjugate_gradient(fine, rhs, [torch.zeros_like(rhs)], tol=1e-13, max_iter=500)
    assert info.all_converged and max(info.relative_residuals) <= 1e-11
    assert torch.allclose(x, exact, atol=1e-10, rtol=0) and torch.equal(x[1], torch.zeros_like(x[1]))
    assert torch.allclose(m_x, fine(x)) and set(coarse_calls) == {torch.float32}
    # a float32 CG alone stops far above that tolerance
    _, alone, _ = batched_conjugate_gradient(coarse, rhs.float(), [torch.zeros_like(rhs.float())], tol=1e-11,
                                             max_iter=500)
    assert not alone.all_converged
    # the iteration cap holds and non-convergence is reported, not hidden
    _, capped, _ = refined_conjugate_gradient(fine, coarse, rhs, [torch.zeros_like(rhs)], tol=1e-11, max_iter=5,
                                              coarse_dtype=torch.float32)
    assert capped.iterations <= 5 and not capped.all_converged


def test_preconditioned_cg_matches_the_direct_solve_and_an_exact_preconditioner_takes_one_step():
    mats = _spd_batch([1e3, 1e5])
    rhs = torch.randn(2, 1, 5, 6, dtype=torch.float64)

    def apply(v):
        return (mats @ v.reshape(2, 30, 1)).reshape(v.shape)

    inverse = torch.linalg.inv(mats)
    diagonal = torch.diagonal(mats, dim1=1, dim2=2)

    def jacobi(v):
        return (v.reshape(2, 30) / diagonal).reshape(v.shape)

    def exact(v):
        return (inverse @ v.reshape(2, 30, 1)).reshape(v.shape)

    expected = torch.linalg.solve(mats, rhs.reshape(2, 30, 1)).reshape(rhs.shape)
    plain = batched_conjugate_gradient(apply, rhs, [torch.zeros_like(rhs)], tol=1e-11, max_iter=500)
    for precondition in (jacobi, exact):
        x, info, _ = batched_conjugate_gradient(apply, rhs, [torch.zeros_like(rhs)], tol=1e-11, max_iter=500,
                                                precondition=precondition)
        assert info.all_converged and max(info.relative_residuals) <= 1e-11
        torch.testing.assert_close(x, expected, rtol=1e-7, atol=1e-9)
    assert info.iterations <= 2 < plain[1].iterations  # the exact inverse: one step (plus rounding)


def test_cg_prox_accepts_inference_tensors():
    """Under ``torch.inference_mode`` a measurement made there (e.g. a solver's sub-batch ``y[idx]``)
    has no version counter: the cached ``A^T y`` must not need one (it used to raise)."""
    from pnp_stable.operators import Blur

    op = Blur([[0.2, 0.5, 0.3], [0.1, 0.6, 0.1]], (1, 5, 6), boundary="zero")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64)
    y_normal = torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64)
    expected = op.prox_data(z, y_normal, 0.7)
    with torch.inference_mode():
        y = y_normal[[1]]  # an inference tensor
        assert y.is_inference()
        first = op.prox_data(z[[1]], y, 0.7)
        y.mul_(2.0)  # an in-place change is not seen by a version counter: nothing may be cached
        second = op.prox_data(z[[1]], y, 0.7)
    assert torch.allclose(first, expected[[1]], atol=1e-12)
    redo = op.prox_data(z[[1]], 2.0 * y_normal[[1]], 0.7)
    assert torch.allclose(second, redo, atol=1e-12)

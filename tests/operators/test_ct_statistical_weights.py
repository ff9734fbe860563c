"""Statistical weights of the CT operators (``W^(1/2) A``, weighted least squares) and the
photon-count (Poisson) data of ``reconstruct_ct``: exact adjoint, certified norm of the weighted
matrix, FBP of weighted data, the cache key, errors; the counts' statistics and the white weighted
noise they give."""

import math

import numpy as np
import pytest
import torch
from operator_test_helpers import explicit_matrix

from pnp_stable import restore
from pnp_stable.operators import FanBeamCT, ParallelBeamCT


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "cache"))


def _weights(op, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 4.0, (op.n_detectors, len(op.angles_deg)))


@pytest.mark.parametrize("make", [lambda: ParallelBeamCT(9, angles=7), lambda: ParallelBeamCT(8, angles=5, detector="circle"),
                                  lambda: FanBeamCT(8, angles=[0.0, 40.0, 130.0, 250.0], n_detectors=15)])
def test_weighted_operator_is_root_weights_times_a_with_exact_adjoint_and_certified_norm(make):
    plain = make()
    weights = _weights(plain)
    weighted = plain.with_statistical_weights(weights)
    assert weighted.has_statistical_weights and not plain.has_statistical_weights
    assert type(weighted) is type(plain) and weighted.geometry()["angles_deg"] == plain.geometry()["angles_deg"]
    x = torch.rand(2, 1, plain.image_size, plain.image_size, dtype=torch.float64)
    root = torch.tensor(np.sqrt(weights))
    assert torch.allclose(weighted.A(x), root * plain.A(x), rtol=1e-12, atol=1e-12)
    y = torch.rand(2, 1, plain.n_detectors, len(plain.angles_deg), dtype=torch.float64)
    lhs, rhs = float((weighted.A(x) * y).sum()), float((x * weighted.A_adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    matrix = explicit_matrix(weighted.A, (1, plain.image_size, plain.image_size))
    assert float(matrix.min()) >= 0.0  # the Collatz-Wielandt certificate's premise survives the weights
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert exact <= weighted.norm() <= exact * (1 + 1e-5)
    assert weighted.norm() != pytest.approx(plain.norm(), rel=1e-3)  # its own cache entry
    assert weighted.geometry() != plain.geometry()
    # the FBP takes the operator's (weighted) data: the same image as the plain FBP of plain data
    assert torch.allclose(weighted.fbp(weighted.A(x)), plain.fbp(plain.A(x)), atol=1e-10)
    assert torch.allclose(weighted.statistical_weighting(plain.A(x)), weighted.A(x), atol=1e-12)
    assert plain.with_statistical_weights(None).has_statistical_weights is False


def test_weight_errors():
    op = ParallelBeamCT(8, angles=4)
    good = np.ones((op.n_detectors, 4))
    for bad, message in ((good[:-1], "must have the sinogram's shape"), (good * 0, "finite and positive"),
                         (good * np.nan, "finite and positive"), (-good, "finite and positive"),
                         ("heavy", "array of positive numbers")):
        with pytest.raises(ValueError, match=message):
            op.with_statistical_weights(bad)
    assert op.with_statistical_weights(torch.ones(1, 1, op.n_detectors, 4)).has_statistical_weights


def test_photon_counts_give_post_log_data_whose_weighted_noise_is_white():
    """The simulation's counts are Poisson around ``I0 e^-(mu A x)``; the post-log data's variance is
    ``1 / (mu^2 I)``, so the residual at the truth, weighted by the counts, has one level in bins of
    few and of many photons, where the unweighted one differs by their ratio."""
    n = 48
    phantom = torch.zeros(1, 1, n, n, dtype=torch.float64)
    phantom[..., 8:40, 12:36] = 1.0
    op = ParallelBeamCT(n, angles=90)
    notes = []
    y, counts, mu = restore._photon_count_simulation(op, phantom, 2e4, None, seed=3, notes=notes)
    clean = op.A(phantom)
    assert mu * float(clean.max()) == pytest.approx(restore.PHOTON_SIMULATION_PEAK_LINE_INTEGRAL)
    assert "Poisson counts of 20000 photons per bin" in notes[0]
    expected = 2e4 * torch.exp(-mu * clean)
    assert float((counts - expected).mean() / expected.mean()) == pytest.approx(0.0, abs=2e-3)
    residual = (y - clean) * mu * counts.sqrt()  # standardised: unit variance in every bin
    few, many = counts < 0.1 * 2e4, counts > 0.9 * 2e4
    assert int(few.sum()) > 300 and int(many.sum()) > 300
    for region in (few, many):
        assert float(residual[region].std()) == pytest.approx(1.0, rel=0.08)
    raw = (y - clean)
    assert float(raw[few].std()) > 3 * float(raw[many].std())
    # the reconstruction's weighted data: y times sqrt(I / mean I), white at 1 / (mu sqrt(mean I))
    weighted_op, weighted_y, level = restore._photon_count_weighting(op, y, counts, mu, "wls", [])
    assert level == pytest.approx(1 / (mu * math.sqrt(float(counts.mean()))))
    white = weighted_y - weighted_op.A(phantom)
    for region in (few, many):
        assert float(white[region].std()) == pytest.approx(level, rel=0.08)
    plain_op, plain_y, rms = restore._photon_count_weighting(op, y, counts, mu, "none", [])
    assert plain_op is op and plain_y is y
    assert rms == pytest.approx(float(((y - clean) ** 2).mean().sqrt()), rel=0.05)


def test_weights_review_fixes():
    """Review: bfloat16 weights raised a TypeError; weights whose square roots leave float32's range
    passed; with normalize=True the weighted data were not divided by the norm as A is."""
    op = ParallelBeamCT(8, angles=4)
    shape = (op.n_detectors, 4)
    assert op.with_statistical_weights(torch.ones(shape, dtype=torch.bfloat16)).has_statistical_weights
    for extreme in (1e300, 1e-300):
        with pytest.raises(ValueError, match="statistical_weights must lie in"):
            op.with_statistical_weights(np.full(shape, extreme))
    weights = _weights(op)
    unit = ParallelBeamCT(8, angles=4, normalize=True, statistical_weights=weights)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    sinogram = ParallelBeamCT(8, angles=4).A(x)
    assert torch.allclose(unit.statistical_weighting(sinogram), unit.A(x), atol=1e-12)
    assert torch.allclose(unit.fbp(unit.statistical_weighting(sinogram)), ParallelBeamCT(8, angles=4).fbp(sinogram),
                          atol=1e-10)

"""An error every view of a detector bin shares (a measured flat field's own noise: rings), whitened
by the CT operators' ``shared_variance`` (generalized least squares) and modelled by
``reconstruct_ct(weighting="gls")``: the whitening is exact, the adjoint exact, the certified norm
still an upper bound, the flat's variance what repeated flats show, and the reconstruction of a
one-frame flat better than weighted least squares with a monotone residual."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from operator_test_helpers import explicit_matrix

from pnp_stable import restore
from pnp_stable.operators import FanBeamCT, ParallelBeamCT
from scipy.fft import dct

from pnp_stable.transmission import RING_PERIOD_BINS, flat_field_correction, ring_covariance


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "cache"))


def _whitening_matrix(op):
    """The map the operator applies to a sinogram (``T W^(1/2)``), as a matrix on its entries."""
    shape = (op.n_detectors, len(op.angles_deg))
    units = torch.eye(shape[0] * shape[1], dtype=torch.float64).reshape(-1, 1, *shape)
    return op.statistical_weighting(units).reshape(units.shape[0], -1).T.numpy()


@pytest.mark.parametrize("make", [lambda **k: ParallelBeamCT(9, angles=7, **k),
                                  lambda **k: FanBeamCT(8, angles=[0.0, 40.0, 130.0, 250.0], n_detectors=15, **k)])
def test_the_whitening_is_exact_with_an_exact_adjoint_and_a_certified_norm(make):
    plain = make()
    bins, views = plain.n_detectors, len(plain.angles_deg)
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.05, 4.0, (bins, views))
    variance = rng.uniform(0.0, 3.0, bins)
    variance[2] = 0.0  # a bin without a shared error keeps its weighted least squares
    factor = rng.standard_normal((bins, 3))
    covariance = factor @ factor.T  # errors correlated across the bins, of rank 3
    wls = plain.with_statistical_weights(weights)
    for shared, per_bin in ((variance, np.diag(variance)), (covariance, covariance)):
        op = plain.with_statistical_weights(weights, shared_variance=shared)
        assert op.has_shared_error and not wls.has_shared_error and wls.shared_variance_digest is None
        # the norm cache's key is the weights' (the bound of W^(1/2) A); a checkpoint's adds the digest
        assert op.geometry() == wls.geometry() and wls.norm() > 0 and op.norm_bound().details["cached"]
        # the sinogram's covariance: each value's own 1 / W, plus the shared error in every view of its bin
        full = np.diag(1.0 / weights.ravel()) + np.kron(per_bin, np.ones((views, views)))
        whitening = _whitening_matrix(op)
        np.testing.assert_allclose(whitening @ full @ whitening.T, np.eye(bins * views), atol=1e-9)
    x = torch.rand(2, 1, plain.image_size, plain.image_size, dtype=torch.float64)
    y = torch.rand(2, 1, plain.n_detectors, len(plain.angles_deg), dtype=torch.float64)
    assert torch.allclose(plain.with_statistical_weights(weights, shared_variance=variance).A(x)[..., 2, :],
                          wls.A(x)[..., 2, :], atol=1e-12)
    matrix_shape = (1, plain.image_size, plain.image_size)
    for shared in (variance, covariance):  # each of the forward, transpose and inverse maps, both forms
        op = plain.with_statistical_weights(weights, shared_variance=shared)
        lhs, rhs = float((op.A(x) * y).sum()), float((x * op.A_adjoint(y)).sum())
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
        exact = float(torch.linalg.matrix_norm(explicit_matrix(op.A, matrix_shape), ord=2))
        bound = op.norm_bound()
        assert exact <= bound.value and bound.value == pytest.approx(wls.norm(), rel=1e-9)
        assert bound.lower is None and bound.kind == "certified"
        # the FBP undoes the whitening and the weights; the data map is the operator's
        assert torch.allclose(op.fbp(op.A(x)), plain.fbp(plain.A(x)), atol=1e-10)
        assert torch.allclose(op.statistical_weighting(plain.A(x)), op.A(x), atol=1e-12)
        unit = make(normalize=True, statistical_weights=weights, shared_variance=shared)
        assert unit.norm() == pytest.approx(1.0) and torch.allclose(unit.A(x), op.A(x) / wls.norm(), atol=1e-12)


def test_shared_variance_errors():
    op = ParallelBeamCT(8, angles=4)
    bins = op.n_detectors
    skew = np.triu(np.ones((bins, bins)))
    for bad, message in ((np.ones(bins - 1), "one value per detector bin"),
                         (-np.ones(bins), "finite and non-negative"),
                         (np.full(bins, np.nan), "finite and non-negative"),
                         ("loud", "array of non-negative numbers"),
                         (skew, "finite and symmetric"), (-np.eye(bins), "positive semi-definite"),
                         (np.eye(bins + 1), "one value per detector bin")):
        with pytest.raises(ValueError, match=message):
            op.with_statistical_weights(None, shared_variance=bad)
    # without statistical weights the views weigh alike
    alike = op.with_statistical_weights(None, shared_variance=np.ones(op.n_detectors))
    assert alike.has_shared_error and not alike.has_statistical_weights


BINS, VIEWS, GAIN, DARK = 64, 90, 2.0, 50.0


def _transmission(rng, frames: int, photons: float = 400.0):
    """Raw readings of a smooth object (line integrals up to 2) and ``frames`` flat frames."""
    s = np.linspace(-1, 1, BINS)[:, None]
    p = 2.0 * np.clip(1 - (s / 0.7) ** 2, 0, None) * np.ones((1, VIEWS))
    incident = photons * (0.5 + 0.5 * np.exp(-s[:, 0] ** 2))
    raw = GAIN * rng.poisson(incident[:, None] * np.exp(-p)) + DARK
    flat = GAIN * rng.poisson(incident[:, None] * np.ones((1, frames))) + DARK
    return p, raw, flat, incident


def test_the_flats_variance_is_what_repeated_flats_show_and_its_exposures_can_be_told():
    rng = np.random.default_rng(1)
    draws = [flat_field_correction(*_transmission(rng, 3)[1:3], DARK, gain=GAIN) for _ in range(300)]
    # a bin's error, shared by its views: the deviation of its views' mean line integral over the draws
    means = np.stack([d.line_integrals.numpy()[:, 0] for d in draws])  # view 0 of every bin (the error's carrier)
    p, _, _, incident = _transmission(rng, 1)
    predicted = draws[0].flat_variance.numpy()
    np.testing.assert_allclose(predicted, 1.0 / (3 * incident), rtol=0.15)  # its own counts, read off the flat
    per_view = 1.0 / (incident * np.exp(-p[:, 0]))  # each view's own Poisson variance
    measured = means.var(axis=0) - per_view
    assert float(np.median(measured / predicted)) == pytest.approx(1.0, abs=0.15)
    assert draws[0].flat_exposures == 3 and draws[0].summary()["flat_exposures"] == 3
    _, raw, flat, _ = _transmission(rng, 8)
    averaged = flat_field_correction(raw, flat.mean(axis=1), DARK, gain=GAIN, flat_exposures=8)
    assert averaged.flat_exposures == 8 and averaged.flat_frames == 1
    as_one = flat_field_correction(raw, flat.mean(axis=1), DARK, gain=GAIN)
    np.testing.assert_allclose(as_one.flat_variance.numpy(), 8 * averaged.flat_variance.numpy(), rtol=1e-12)
    assert flat_field_correction(raw, GAIN * 400.0 + DARK, DARK, gain=GAIN).flat_variance is None  # a number: a model
    # the electronic noise (from two or more dark frames) in the flat's variance; a dead bin's is 0
    darks = DARK + 6.0 * rng.standard_normal((BINS, 8))
    flat[5] = DARK
    electronic = flat_field_correction(raw, flat, darks, gain=GAIN)
    photons = (flat.mean(axis=1) - darks.mean(axis=1)) / GAIN
    expected = (photons + electronic.read_noise ** 2) / (8 * photons ** 2)
    assert electronic.dead_detectors == (5,) and float(electronic.flat_variance[5]) == 0.0
    live = np.arange(BINS) != 5
    np.testing.assert_allclose(electronic.flat_variance.numpy()[live], expected[live], rtol=1e-12)
    assert electronic.read_noise == pytest.approx(3.0, rel=0.15)
    for kwargs, message in (({"flat": flat, "flat_exposures": 4}, "the 8 frames given are counted"),
                            ({"flat": 900.0, "flat_exposures": 4}, "a number is no measurement"),
                            ({"flat": flat[:, 0], "flat_exposures": 0}, "positive whole number"),
                            ({"flat": flat[:, 0], "flat_exposures": 2.5}, "positive whole number"),
                            ({"flat": flat[:, 0], "flat_exposures": float("inf")}, "positive whole number"),
                            ({"flat": flat[:, 0], "flat_exposures": float("nan")}, "positive whole number"),
                            ({"flat": flat[:, 0], "flat_exposures": True}, "positive whole number"),
                            ({"flat": flat[:, 0], "flat_exposures": "8"}, "positive whole number")):
        with pytest.raises(ValueError, match=message):
            flat_field_correction(raw, dark=DARK, gain=GAIN, **kwargs)


def test_ring_covariance_is_the_flats_error_in_its_fine_cosines():
    rng = np.random.default_rng(4)
    variance = rng.uniform(0.5, 2.0, 40)
    covariance = ring_covariance(variance, period=8.0)
    np.testing.assert_allclose(covariance, covariance.T, atol=0)
    assert np.linalg.eigvalsh(covariance).min() > -1e-12
    bins = np.arange(40)
    for k in (3, 9, 10, 11, 39):  # the DCT-II's cosine k has period 80 / k bins: kept below 8 (k > 10)
        cosine = np.cos(np.pi * k * (2 * bins + 1) / 80)
        assert (cosine @ covariance @ cosine > 1e-6) == (k > 10), k
    # a constant variance: the error's fine part, v H with H a projector of the cosines kept (k > 10)
    flat = ring_covariance(np.full(40, 3.0), period=8.0)
    np.testing.assert_allclose(flat @ flat / 3.0, flat, atol=1e-12)
    assert np.trace(flat) / 3.0 == pytest.approx(29)
    assert ring_covariance(torch.from_numpy(variance), period=8.0) == pytest.approx(covariance)


def test_generalized_least_squares_whitens_the_flats_fine_rings_that_weighted_least_squares_leaves():
    """Errors drawn from the model the data term assumes: each value's own noise (variance 1 / N) plus
    the flat's error projected on the fine cosines (``H e``, ``e`` of variance ``flat_variance``), the
    same in every view of a bin. Through the gls data term they are white at the weighted noise's
    level, also along each bin's views (where the rings lie); through wls that component is
    ``sqrt(1 + sum(W) v)`` times the level, and a model of twice the variance would whiten too much."""
    rng = np.random.default_rng(2)
    _, raw, flat, _ = _transmission(rng, 1)
    data = flat_field_correction(raw, flat, DARK, gain=GAIN)
    op = ParallelBeamCT(45, angles=VIEWS)
    assert op.n_detectors == BINS
    counts = data.precision[None, None]
    fine = dct(np.eye(BINS), norm="ortho", axis=0)[np.arange(BINS) * RING_PERIOD_BINS > 2 * BINS]
    projector = fine.T @ fine
    variance = data.flat_variance.numpy()
    doubled = dataclasses.replace(data, flat_variance=data.flat_variance * 2)
    along, overall = {"wls": [], "gls": [], "doubled": []}, []
    for draw in range(6):
        shared = projector @ (np.sqrt(variance) * rng.standard_normal(BINS))
        error = torch.from_numpy(shared[:, None] + rng.standard_normal((BINS, VIEWS)) / np.sqrt(counts[0, 0].numpy()))
        for name, model in (("wls", None), ("gls", data), ("doubled", doubled)):
            weighted, _, level = restore._photon_count_weighting(op, error[None, None], counts, 1.0,
                                                                  "wls" if model is None else "gls", [], model)
            white = weighted.statistical_weighting(error[None, None])[0, 0].numpy()
            unit = np.sqrt(counts[0, 0].numpy()) / np.sqrt(counts[0, 0].numpy().sum(axis=1, keepdims=True))
            along[name].append((white * unit).sum(axis=1) / level)  # each bin's component along its root weights
            if name == "gls":
                overall.append(white.std() / level)
    levels = {name: float(np.concatenate(values).std()) for name, values in along.items()}
    inflation = math.sqrt(1 + float(np.median(counts[0, 0].sum(dim=1).numpy() * variance)) * 7 / 8)
    assert levels["gls"] == pytest.approx(1.0, abs=0.1) and float(np.mean(overall)) == pytest.approx(1.0, abs=0.05)
    assert levels["doubled"] < 0.85  # twice the variance: whitened too much
    assert levels["wls"] == pytest.approx(inflation, rel=0.25) and inflation > 5


def test_a_one_frame_flats_rings_cost_less_with_gls_and_the_guarantee_holds():
    n = 32
    phantom = torch.zeros(1, 1, n, n, dtype=torch.float64)
    phantom[..., 6:26, 8:24] = 0.6
    phantom[..., 10:21, 12:19] = 1.0
    op = ParallelBeamCT(n, angles=60)
    mu = 3.0 / float(op.A(phantom).max())
    rng = np.random.default_rng(1)  # gls gained 0.44 to 0.80 dB over seeds 0 to 3
    incident = np.full(op.n_detectors, 2e3)
    raw = GAIN * rng.poisson(incident[:, None] * np.exp(-mu * op.A(phantom)[0, 0].numpy())) + DARK
    flat = GAIN * rng.poisson(incident) + DARK
    scores, reports = {}, {}
    for weighting in ("gls", "wls", "auto"):
        result = restore.reconstruct_ct(torch.from_numpy(raw).float()[None], flat=flat, dark=DARK, gain=GAIN,
                                        weighting=weighting, denoiser="gray", max_iter=60, progress=False)
        value = (result.image.double() / mu).clamp(0, 1)
        scores[weighting] = float(10 * torch.log10(1 / ((value - phantom[0]) ** 2).mean()))
        reports[weighting] = result.report
        assert result.guarantee.holds and result.result.monotone
    assert reports["gls"]["noise"]["weighting"] == "gls" and reports["wls"]["noise"]["weighting"] == "wls"
    assert reports["gls"]["noise"]["flat_field"]["flat_exposures"] == 1
    assert any("flat field's own noise (1 exposure)" in note for note in reports["gls"]["notes"])
    assert scores["gls"] > scores["wls"] + 0.3, scores
    # one value per bin may be a mean of many: "auto" models its noise only when told its exposures
    assert reports["auto"]["noise"]["weighting"] == "wls" and scores["auto"] == scores["wls"]
    assert any("--flat-exposures 1" in note for note in reports["auto"]["notes"])


def test_gls_options_are_refused_where_they_mean_nothing():
    sinogram = torch.rand(1, 13, 6) + 100.0
    for kwargs, message in (({"weighting": "gls", "photons": 1e3}, "gls' models a measured flat"),
                            ({"weighting": "gls", "flat": 200.0}, "not a number"),
                            ({"flat_exposures": 4, "photons": 1e3}, "counts the exposures a flat field averages")):
        with pytest.raises(ValueError, match=message):
            restore.reconstruct_ct(sinogram, progress=False, **kwargs)


@pytest.mark.parametrize("frames, told, modelled", [(2, None, True), (3, None, False), (1, 2, True), (1, 3, False),
                                                     (1, None, False), (1, 1, True)])
def test_auto_whitens_the_rings_of_a_flat_of_at_most_two_known_exposures(frames, told, modelled):
    rng = np.random.default_rng(5)
    _, raw, flat, _ = _transmission(rng, frames)
    data = flat_field_correction(raw, flat[:, 0] if frames == 1 else flat, DARK, gain=GAIN, flat_exposures=told)
    notes = []
    assert restore._flat_rings_modelled("auto", data, told, notes) is modelled
    assert bool(notes) == (frames == 1 and told is None)  # one value per bin, exposures unknown: how to model it
    assert restore._flat_rings_modelled("gls", data, told, [])
    assert not restore._flat_rings_modelled("wls", data, told, [])


def test_gls_takes_one_flat_frame_for_one_exposure_in_the_gain_reading_too():
    n = 32
    op = ParallelBeamCT(n, angles=60)
    phantom = torch.zeros(1, 1, n, n, dtype=torch.float64)
    phantom[..., 6:26, 8:24] = 0.02
    rng = np.random.default_rng(6)
    incident = np.full(op.n_detectors, 2e3)
    raw = GAIN * rng.poisson(incident[:, None] * np.exp(-op.A(phantom)[0, 0].numpy())) + DARK
    flat = GAIN * rng.poisson(incident) + DARK
    result = restore.reconstruct_ct(torch.from_numpy(raw).float()[None], flat=flat, dark=DARK, weighting="gls",
                                    denoiser="gray", max_iter=1, progress=False)
    summary = result.report["noise"]["flat_field"]
    told = flat_field_correction(raw.astype(np.float32).astype(np.float64), flat, DARK, flat_exposures=1)
    untold = flat_field_correction(raw.astype(np.float32).astype(np.float64), flat, DARK)
    assert summary["flat_exposures"] == 1 and summary["gain_source"] == "sinogram noise"
    assert summary["gain"] == pytest.approx(told.gain, rel=1e-6) and untold.gain > 1.1 * told.gain

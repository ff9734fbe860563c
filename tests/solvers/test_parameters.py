"""Automatic parameters: noise estimation, the MAP rule, and that every choice keeps the guarantee."""

from __future__ import annotations

import math

import pytest
import torch
from skimage import data
from skimage.transform import resize

from pnp_stable.solvers import ParameterRule, choose_parameters, estimate_noise_level, solve
from solver_toys import FFTBlur, declared_norm_only, GaussianSmoother, SigmaSmoother, gaussian_kernel

SIZE = 64


@pytest.fixture(scope="module")
def blurred():
    x = torch.tensor(resize(data.camera() / 255.0, (SIZE, SIZE), anti_aliasing=True), dtype=torch.float64)[None, None]
    op = FFTBlur(gaussian_kernel(7, 1.6), (SIZE, SIZE))
    return op, x


@pytest.mark.parametrize("sigma", [0.01, 0.03])
def test_noise_level_estimate_on_blurred_image(blurred, sigma):
    op, x = blurred
    y = op.simulate(x, sigma, seed=3)
    (estimate,) = estimate_noise_level(y)
    assert estimate == pytest.approx(sigma, rel=0.15)


def test_noise_estimate_refuses_non_images():
    with pytest.raises(ValueError, match="B x C x H x W"):
        estimate_noise_level(torch.zeros(2, 10))


def test_fb_rule_for_a_gaussian_denoiser_follows_the_map_balance():
    rule = ParameterRule(weight=2.0, exponent=2.0)
    chosen = choose_parameters("fb", "noise_level", rule, noise_level=0.02, operator_norm=2.0)
    tau = 1.9 / 4.0
    assert chosen.step == pytest.approx(tau) and chosen.step < 2 / 4.0
    assert chosen.sigma_den == pytest.approx(math.sqrt(tau * 2.0 * 0.02**2))


def test_admm_rule_for_gaussian_and_prox_denoisers():
    rule = ParameterRule(weight=0.5, exponent=1.0, sigma_ratio=3.0, gamma_scale=2.0)
    gaussian = choose_parameters("admm", "noise_level", rule, noise_level=0.01, operator_norm=1.0)
    assert gaussian.sigma_den == pytest.approx(0.03)
    assert gaussian.step == pytest.approx(0.03**2 / (0.5 * 0.01))
    prox = choose_parameters("admm", "prox_weight", rule, noise_level=0.01, operator_norm=2.0)
    assert prox.step == pytest.approx(0.5)
    # target = weight ||A||^2 (sigma_y / ||A||)^p = 0.5 * 4 * 0.005
    assert prox.sigma_den == pytest.approx(0.5 * (0.5 * 4 * 0.005))


def test_admm_denoiser_strength_follows_a_power_of_the_noise_level():
    """``s = sigma_ratio * sigma_x^q``: with q = 0.5 a noise level 4x higher gets a denoiser only 2x
    stronger, and the step still sets the MAP balance ``s^2 / gamma = target``."""
    rule = ParameterRule(weight=2.0, exponent=2.0, sigma_ratio=0.4, sigma_exponent=0.5)
    low = choose_parameters("admm", "noise_level", rule, noise_level=0.01, operator_norm=1.0)
    high = choose_parameters("admm", "noise_level", rule, noise_level=0.04, operator_norm=1.0)
    assert low.sigma_den == pytest.approx(0.4 * 0.1) and high.sigma_den == pytest.approx(2 * low.sigma_den)
    for chosen, noise in ((low, 0.01), (high, 0.04)):
        assert chosen.sigma_den**2 / chosen.step == pytest.approx(2.0 * noise**2)
    proportional = choose_parameters("admm", "noise_level", ParameterRule(sigma_ratio=4.0), noise_level=0.03,
                                     operator_norm=1.0)
    assert proportional.sigma_den == pytest.approx(0.12)  # the default q = 1: s / sigma_x constant


@pytest.mark.parametrize("method", ["fb", "admm"])
@pytest.mark.parametrize("kind", ["noise_level", "prox_weight", "fixed"])
@pytest.mark.parametrize("sigma_exponent", [1.0, 0.3])
def test_rule_is_invariant_to_rescaling_the_operator_data_and_noise(method, kind, sigma_exponent):
    """(A, y, sigma_y) -> c (A, y, sigma_y) leaves the problem in x unchanged: same denoiser
    strength and relaxation, step scaled by 1/c^2 (prox_{gamma f} of the scaled f). This is what
    makes a rule calibrated on blur (||A|| = 1) apply to CT (||A|| ~ 200)."""
    rule = ParameterRule(weight=100.0, exponent=3.0, sigma_ratio=4.0, sigma_exponent=sigma_exponent,
                         sigma_min=0.02, sigma_max=0.2)
    extra = {"trained_noise_level": 0.05} if kind == "fixed" else {}
    for sigma_y in (0.003, 0.01, 0.05):
        base = choose_parameters(method, kind, rule, noise_level=sigma_y, operator_norm=1.0, **extra)
        for c in (0.5, 211.0):
            scaled = choose_parameters(method, kind, rule, noise_level=c * sigma_y, operator_norm=c, **extra)
            assert scaled.step == pytest.approx(base.step / c**2, rel=1e-9)
            if base.sigma_den is None:
                assert scaled.sigma_den is None
            else:
                assert scaled.sigma_den == pytest.approx(base.sigma_den, rel=1e-9)
            if base.relaxation is None:
                assert scaled.relaxation is None
            else:
                assert scaled.relaxation == pytest.approx(base.relaxation, rel=1e-9)


def test_fixed_denoiser_uses_the_step_then_a_relaxation_at_most_one():
    rule = ParameterRule(weight=1.0, exponent=2.0)
    # small noise: the wanted step 0.05^2 / 0.01^2 = 25 exceeds 1.9, so the step is capped and D weakened
    capped = choose_parameters("fb", "fixed", rule, noise_level=0.01, operator_norm=1.0, trained_noise_level=0.05)
    assert capped.step == pytest.approx(1.9)
    assert capped.relaxation == pytest.approx(1.9 * 0.01**2 / 0.05**2) and 0 < capped.relaxation <= 1
    free = choose_parameters("fb", "fixed", rule, noise_level=0.1, operator_norm=1.0, trained_noise_level=0.05)
    assert free.step == pytest.approx(0.25) and free.relaxation is None
    untrained = choose_parameters("fb", "fixed", rule, noise_level=None, operator_norm=1.0)
    assert untrained.step == pytest.approx(1.9) and untrained.noise_level_source == "unused"


def test_rule_needs_a_positive_noise_level():
    with pytest.raises(ValueError, match="positive noise level"):
        choose_parameters("admm", "noise_level", ParameterRule(), noise_level=0.0, operator_norm=1.0)


def test_invalid_rule_constants_are_refused():
    with pytest.raises(ValueError, match="weight"):
        ParameterRule(weight=0.0)
    with pytest.raises(ValueError, match="sigma_exponent must be >= 0"):
        ParameterRule(sigma_exponent=-0.5)
    for name in ("exponent", "sigma_exponent"):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            ParameterRule(**{name: math.nan})


def test_rule_from_a_mapping_validates_every_field():
    rule = ParameterRule.from_mapping({"weight": "2", "exponent": 3})
    assert (rule.weight, rule.exponent, rule.sigma_ratio, rule.sigma_exponent) == (2.0, 3.0, 1.0, 1.0)
    assert ParameterRule.from_mapping({"sigma_exponent": 0.25}).sigma_exponent == 0.25
    assert ParameterRule.from_mapping(rule) is rule
    for bad, message in [({"weigth": 1.0}, "unknown ParameterRule fields"), ({"weight": "x"}, "not a valid"),
                         ({"weight": -1.0}, "must be positive"), ([1.0], "must be a ParameterRule or a dict")]:
        with pytest.raises(ValueError, match=message):
            ParameterRule.from_mapping(bad)


def test_solve_passes_the_chosen_noise_level_and_keeps_the_guarantee(blurred):
    op, x = blurred
    y = op.simulate(x, 0.02, seed=0)
    denoiser = SigmaSmoother(1.0, (SIZE, SIZE))
    for method in ("fb", "admm"):
        result = solve(y, op, denoiser, method=method, max_iter=5, progress=False)
        auto = result.parameters["automatic"]
        assert auto["noise_level_source"] == "estimated"
        assert auto["noise_level"] == pytest.approx(0.02, rel=0.15)
        assert denoiser.last_sigma == pytest.approx(result.parameters["sigma_den"])
        assert declared_norm_only(result.guarantee) if method == "fb" else result.guarantee.proven


def test_denoiser_calibration_attribute_and_explicit_rule_take_precedence(blurred):
    op, x = blurred
    y = op.simulate(x, 0.02, seed=0)
    denoiser = SigmaSmoother(1.0, (SIZE, SIZE))
    denoiser.pnp_parameter_rule = {"admm": {"sigma_ratio": 4.0}}
    result = solve(y, op, denoiser, method="admm", noise_level=0.02, max_iter=2, progress=False)
    assert result.parameters["sigma_den"] == pytest.approx(0.08)
    explicit = solve(y, op, denoiser, method="admm", noise_level=0.02, max_iter=2, progress=False,
                     rule=ParameterRule(sigma_ratio=1.5))
    assert explicit.parameters["sigma_den"] == pytest.approx(0.03)


def test_an_operator_family_selects_the_denoisers_rule_for_that_problem(blurred):
    """A CT operator (parameter_family "ct") takes the denoiser's CT calibration; a blur, which
    names no family, the generic one; a family without a rule for the method falls back too."""
    from pnp_stable.operators import ParallelBeamCT

    denoiser = SigmaSmoother(1.0, (32, 32))
    denoiser.pnp_parameter_rule = {"fb": {"weight": 0.3}, "ct": {"fb": {"weight": 2.0}}}
    ct = ParallelBeamCT(32, angles=8)
    assert ct.parameter_family == "ct"
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    y = ct.simulate(x, 0.5, seed=0)
    sigma_x = 0.5 / ct.norm()
    chosen = solve(y, ct, denoiser, method="fb", noise_level=0.5, max_iter=1, progress=False).parameters
    assert chosen["sigma_den"] == pytest.approx(math.sqrt(1.9 * 2.0) * sigma_x)
    op, img = blurred
    yb = op.simulate(img, 0.02, seed=0)
    generic = solve(yb, op, SigmaSmoother(1.0, (SIZE, SIZE)), method="fb", noise_level=0.02, max_iter=1,
                    progress=False, rule=denoiser.pnp_parameter_rule).parameters
    assert generic["sigma_den"] == pytest.approx(math.sqrt(1.9 * 0.3) * 0.02)
    denoiser.pnp_parameter_rule = {"fb": {"weight": 0.3}, "ct": {"admm": {"weight": 2.0}}}
    fallback = solve(y, ct, denoiser, method="fb", noise_level=0.5, max_iter=1, progress=False).parameters
    assert fallback["sigma_den"] == pytest.approx(math.sqrt(1.9 * 0.3) * sigma_x)


def test_a_rule_weighs_the_operators_sampling_density_by_its_exponent():
    """``target`` gains ``d^density_exponent``: ADMM's ``gamma = s^2 / target`` falls by that factor,
    FB's denoiser strength by its square root; a rule without the exponent ignores ``d`` (and records
    none), an operator without a density counts as 1, and a bad density is refused by name."""
    rule = ParameterRule(weight=0.4, exponent=1.5, sigma_ratio=0.05, sigma_exponent=0.0, density_exponent=0.5)
    plain = choose_parameters("admm", "noise_level", rule, noise_level=2.0, operator_norm=200.0)
    dense = choose_parameters("admm", "noise_level", rule, noise_level=2.0, operator_norm=200.0, density=4.0)
    assert dense.step == pytest.approx(plain.step / 2.0) and dense.sigma_den == plain.sigma_den
    assert dense.as_dict()["density"] == 4.0 and "density" not in plain.as_dict()
    fb_plain = choose_parameters("fb", "noise_level", rule, noise_level=2.0, operator_norm=200.0)
    fb_dense = choose_parameters("fb", "noise_level", rule, noise_level=2.0, operator_norm=200.0, density=4.0)
    assert fb_dense.sigma_den == pytest.approx(fb_plain.sigma_den * math.sqrt(2.0))
    plain_rule = ParameterRule(weight=0.4, exponent=1.5, sigma_ratio=0.05, sigma_exponent=0.0)
    for anything in (4.0, "not a number", -1.0):  # a rule without the exponent never reads the density
        ignored = choose_parameters("admm", "noise_level", plain_rule, noise_level=2.0, operator_norm=200.0,
                                    density=anything)
        assert "density" not in ignored.as_dict() and ignored.step == pytest.approx(plain.step)
    import numpy as np

    for scalar in (np.float32(4.0), np.int64(4), torch.tensor(4.0)):  # numbers of other libraries count
        assert choose_parameters("admm", "noise_level", rule, noise_level=2.0, operator_norm=200.0,
                                 density=scalar).step == pytest.approx(dense.step)
    for bad in (0.0, -1.0, math.nan, math.inf, True, "2", None.__class__):
        with pytest.raises(ValueError, match="parameter_density must be a positive number"):
            choose_parameters("admm", "noise_level", rule, noise_level=2.0, operator_norm=200.0, density=bad)
    for density, exponent in ((1e3, 200.0), (1e-3, 200.0)):
        with pytest.raises(ValueError, match="density_exponent .* overflows or underflows"):
            choose_parameters("admm", "noise_level", ParameterRule(density_exponent=exponent), noise_level=2.0,
                              operator_norm=200.0, density=density)
    with pytest.raises(ValueError, match="density_exponent must be finite"):
        ParameterRule(density_exponent=math.nan)


def test_ct_sampling_density_counts_directions_and_solve_uses_it():
    """Projection directions per pixel across: a 360-degree scan of an even number of views measures
    each direction twice (up to float32 rounding or jitter) and has the density of the 180-degree
    one, an odd number interleaves; the solver hands the density to the rule and records it."""
    import numpy as np

    from pnp_stable.operators import ParallelBeamCT

    assert ParallelBeamCT(32, angles=8).parameter_density == pytest.approx(8 / 32)
    full_turn = ParallelBeamCT(32, angles=np.arange(0.0, 360.0, 22.5))
    assert full_turn.parameter_density == pytest.approx(8 / 32)
    assert ParallelBeamCT(32, angles=np.arange(0.0, 360.0, 22.5) + 1.0).parameter_density == pytest.approx(8 / 32)
    assert ParallelBeamCT(32, angles=[0.0, 180.0, 359.9999999]).parameter_density == pytest.approx(1 / 32)
    as_float32 = np.rad2deg(np.linspace(0, 2 * np.pi, 16, endpoint=False).astype(np.float32))  # rounded
    assert ParallelBeamCT(32, angles=as_float32).parameter_density == pytest.approx(8 / 32)
    jittered = np.arange(0.0, 360.0, 22.5) + np.random.default_rng(0).normal(0.0, 1e-3, 16)  # a gantry's log
    assert ParallelBeamCT(32, angles=jittered).parameter_density == pytest.approx(8 / 32)
    assert ParallelBeamCT(32, angles=np.arange(0.0, 360.0, 24.0)).parameter_density == pytest.approx(15 / 32)  # odd: interleaved
    denoiser = SigmaSmoother(1.0, (32, 32))
    ct = ParallelBeamCT(32, angles=8)
    y = ct.simulate(torch.rand(1, 1, 32, 32, dtype=torch.float64), 0.5, seed=0)
    steps = {}
    for kappa in (0.0, 1.0):
        denoiser.pnp_parameter_rule = {"ct": {"admm": {"weight": 2.0, "sigma_ratio": 0.05, "sigma_exponent": 0.0,
                                                       "density_exponent": kappa}}}
        chosen = solve(y, ct, denoiser, method="admm", noise_level=0.5, max_iter=1, progress=False).parameters
        steps[kappa] = chosen["step"]
        assert chosen["automatic"].get("density") == (None if kappa == 0.0 else pytest.approx(8 / 32))
    assert steps[1.0] == pytest.approx(steps[0.0] / (8 / 32))  # gamma = s^2 / target, target x d


def test_denoiser_call_convention_errors(blurred):
    op, x = blurred
    y = op.simulate(x, 0.02, seed=0)
    with pytest.raises(ValueError, match="takes no noise level"):
        solve(y, op, GaussianSmoother(1.0, (SIZE, SIZE)), method="fb", sigma_den=0.1, max_iter=1, progress=False)


def test_declared_training_range_clamps_the_noise_level(blurred):
    op, x = blurred
    y = op.simulate(x, 0.01, seed=0)
    denoiser = SigmaSmoother(1.0, (SIZE, SIZE))
    denoiser.metadata = {"sigma_range": [0.02, 0.2]}
    result = solve(y, op, denoiser, method="fb", noise_level=0.01, max_iter=1, progress=False)
    assert result.parameters["sigma_den"] == pytest.approx(0.02)  # sqrt(1.9) * 0.01 < 0.02 is raised ...
    assert result.parameters["relaxation"] == pytest.approx(1.9 * 0.01**2 / 0.02**2)  # ... and D weakened
    assert declared_norm_only(result.guarantee)
    assert result.parameters["automatic"]["rule"]["sigma_min"] == pytest.approx(0.02)


def test_export_metadata_range_on_the_255_scale_is_read():
    from pnp_stable.solvers.parameters import declared_noise_range

    denoiser = SigmaSmoother(1.0, (8, 8))
    denoiser.metadata = {"sigma_range_255": [5.0, 50.0]}
    assert declared_noise_range(denoiser) == pytest.approx((5 / 255, 50 / 255))
    denoiser.metadata = {"sigma_range_255": "nonsense"}
    assert declared_noise_range(denoiser) is None

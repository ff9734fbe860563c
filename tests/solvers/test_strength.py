"""Choosing the regularisation strength by SURE (pnp_stable.solvers.strength)."""

import pytest
import torch

import pnp_stable as ps
from pnp_stable.operators import Blur
from pnp_stable.solvers.strength import select_strength, sure_predicted_risk


def test_sure_is_an_unbiased_estimate_of_the_predicted_risk_for_a_linear_restoration():
    # x(y) = H y with a symmetric low-pass H: the predicted risk has a closed form, and the mean of
    # SURE over noise draws must match it (a wrong sign or factor of the divergence term would not)
    gen = torch.Generator().manual_seed(0)
    n, sigma = 32, 0.05
    f = torch.fft.fftfreq(n)
    symbol = torch.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / 0.02))
    h = lambda v: torch.fft.ifft2(torch.fft.fft2(v) * symbol).real  # noqa: E731
    clean = torch.rand(1, 1, n, n, generator=gen)
    # E||H y - clean||^2 / N with y = clean + n: bias^2 + sigma^2 tr(H^2) / N
    risk = ((h(clean) - clean).pow(2).mean() + sigma**2 * symbol.pow(2).mean()).item()
    estimates = []
    for _ in range(300):
        y = clean + sigma * torch.randn(clean.shape, generator=gen)
        probe = torch.randn(clean.shape, generator=gen)
        estimates.append(sure_predicted_risk(h(y), h(y + 0.5 * sigma * probe), y, probe, 0.5 * sigma, sigma))
    assert abs(sum(estimates) / len(estimates) - risk) < 0.05 * risk


@pytest.fixture(scope="module")
def gray():
    from pnp_stable.denoisers import load

    return load("gray")


def _problem(x):
    op = Blur("box:3", tuple(x.shape[1:]))
    return op, op.simulate(x[None], 0.01, seed=0)


def test_a_flat_image_gets_a_stronger_setting_and_a_much_better_restoration(gray):
    x = torch.full((1, 32, 32), 0.5)
    op, y = _problem(x)
    common = dict(noise_level=0.01, progress=False, x_true=x[None])
    rule = ps.solve(y, op, gray, "admm", **common)
    chosen = select_strength(y, op, gray, "admm", **common)
    sel = chosen.parameters["strength"]
    assert sel["chosen_factor"] > 1 and sel["tried"][0]["factor"] == 1.0
    assert chosen.history[-1]["psnr"][0] > rule.history[-1]["psnr"][0] + 5
    assert chosen.guarantee.holds and chosen.guarantee.proven
    # the stronger setting is the rule's weight times the factor, nothing else changed
    assert chosen.parameters["step"] == pytest.approx(rule.parameters["step"] / sel["chosen_factor"], rel=1e-9)
    assert chosen.parameters["sigma_den"] == rule.parameters["sigma_den"]


def test_a_textured_image_keeps_the_rule_and_its_exact_result(gray):
    from skimage.data import camera

    x = torch.tensor(camera()[96:128, 192:224] / 255.0, dtype=torch.float32)[None]
    op, y = _problem(x)
    rule = ps.solve(y, op, gray, "admm", noise_level=0.01, progress=False)
    chosen = select_strength(y, op, gray, "admm", noise_level=0.01, progress=False)
    assert chosen.parameters["strength"]["chosen_factor"] == 1.0
    assert len(chosen.parameters["strength"]["tried"]) == 2  # the rule and the first stronger setting
    assert torch.equal(chosen.x, rule.x)


def test_the_tasks_and_their_refusals(gray):
    x = torch.full((1, 32, 32), 0.5)
    r = ps.deblur(x, "box:3", noise_level=0.01, simulate=True, denoiser=gray, progress=False, strength="sure")
    assert r.report["solver"]["parameters"]["strength"]["chosen_factor"] > 1
    assert any(n.startswith("strength by SURE") for n in r.notes)
    for bad in (dict(step=3.0), dict(sigma_den=0.05), dict(checkpoint="s.state")):
        with pytest.raises(ValueError, match="strength 'sure'"):
            ps.deblur(x, "box:3", noise_level=0.01, simulate=True, denoiser=gray, strength="sure", **bad)
    with pytest.raises(ValueError, match="unknown strength 'strong'"):
        ps.deblur(x, "box:3", noise_level=0.01, simulate=True, denoiser=gray, strength="strong")
    op, y = _problem(x)
    with pytest.raises(ValueError, match="increasing numbers above 1"):
        select_strength(y, op, gray, factors=(4, 2))
    with pytest.raises(ValueError, match="step cannot be combined"):
        select_strength(y, op, gray, step=2.0)


def test_a_denoiser_without_an_adjustable_strength_is_refused():
    from solver_toys import GaussianSmoother

    x = torch.full((1, 32, 32), 0.5)
    op, y = _problem(x)
    with pytest.raises(ValueError, match="no strength to choose"):
        select_strength(y, op, GaussianSmoother(1.0, (32, 32)).float(), "fb", noise_level=0.01, progress=False)


@pytest.mark.parametrize("risk, best, taken", [
    (0.89, 1.0, True), (0.91, 1.0, False), (1.2, 1.0, False),
    # SURE can be negative at low noise: lower means more negative, by 10 % of the size
    (-1.11, -1.0, True), (-1.05, -1.0, False), (-0.9, -1.0, False),
    (-4.08e-7, -4.53e-7, False),  # a noise-free inpainting took this as "lower" under margin * best
])
def test_a_stronger_setting_is_taken_only_for_a_clearly_lower_risk(risk, best, taken):
    from pnp_stable.solvers.strength import clearly_lower

    assert clearly_lower(risk, best, 0.9) is taken


def test_sure_counts_only_the_measured_entries_of_an_inpainting():
    """For the restoration x(y) = y, SURE of the predicted risk is exactly sigma^2 on the measured
    entries; counting the holes as noisy data halves it with half the pixels missing."""
    from pnp_stable.operators import Inpainting

    op = Inpainting.random((1, 64, 64), observed_fraction=0.5, seed=0)
    sigma, eps = 0.05, 0.025
    g = torch.Generator().manual_seed(1)
    y = op.A(op.simulate(torch.rand(1, 1, 64, 64, generator=g), sigma, seed=2))
    # a +-1 probe makes the divergence exact: sum over measured entries of probe^2 = their count
    probe = torch.randint(0, 2, y.shape, generator=g).float() * 2 - 1
    a_x, a_probe = op.A(y), op.A(y + eps * probe)
    measured = op.measured_entries(y)
    assert sure_predicted_risk(a_x, a_probe, y, probe, eps, sigma, measured) == pytest.approx(sigma**2, rel=1e-6)
    fraction = float(measured.float().mean())
    unmeasured = sure_predicted_risk(a_x, a_probe, y, probe, eps, sigma)  # negative control
    assert unmeasured == pytest.approx(sigma**2 * (2 * fraction - 1), rel=1e-3)



def test_select_strength_estimates_an_inpaintings_noise_on_measured_entries():
    from pnp_stable.operators import Inpainting
    from pnp_stable.solvers import estimate_noise_level

    op = Inpainting.random((1, 64, 64), observed_fraction=0.75, seed=0)  # ~330 fully observed 2x2 blocks
    y = op.A(op.simulate(torch.full((1, 1, 64, 64), 0.5), 0.05, seed=1))
    D = ps.denoisers.load("gray")
    res = select_strength(y, op, D, "admm", factors=(4.0,), max_iter=2, progress=False)
    level = res.parameters["strength"]["noise_level"]
    assert level == pytest.approx(estimate_noise_level(y, observed=op.measured_entries(y))[0])
    assert 0.04 < level < 0.06  # the holes' zeros, counted, read as jumps of 0.5
    assert estimate_noise_level(y)[0] > 0.1

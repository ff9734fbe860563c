"""The adversarial check every conditioned denoiser test runs: its stated averagedness survives the
search at a low and a high noise level (the sigma heads move every bias, integration time, pull
and gate, so one noise level is not enough)."""

from __future__ import annotations

from torch import nn

from pnp_stable.verification import empirical_averagedness_violation

TOL = 1e-9  # float64 rounding
NOISE_LEVELS_AND_SHAPES = ((0.02, (1, 7, 9)), (0.3, (1, 6, 6)))


def assert_averaged_at_both_noise_levels(model: nn.Module, averagedness: float, search: dict) -> None:
    """``model(., sigma)`` shows no violation of ``averagedness``-averagedness beyond rounding."""
    for sigma, shape in NOISE_LEVELS_AND_SHAPES:
        fn = lambda z, s=sigma: model(z, s)  # noqa: E731
        assert empirical_averagedness_violation(fn, averagedness, shape, **search) <= TOL


def assert_denoiser_keeps_its_certificate(model: nn.Module, search: dict) -> None:
    """The denoiser states a proper certificate (averaged, Lipschitz <= 1) and the search at both
    noise levels cannot break it."""
    cert = model.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    assert_averaged_at_both_noise_levels(model, cert.averagedness, search)

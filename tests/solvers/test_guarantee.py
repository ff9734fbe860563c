"""The guarantee analysis states exactly what the constants support."""

from __future__ import annotations

import math

import pytest

from pnp_stable.layers.certificates import Certificate
from pnp_stable.solvers import ProximalDenoiser, analyse_forward_backward, analyse_splitting
from pnp_stable.layers import certificate_of


def _combettes_yamada(a1: float, a2: float) -> float:
    return (a1 + a2 - 2 * a1 * a2) / (1 - a1 * a2)


def test_fb_default_step_composes_averagedness():
    plan = analyse_forward_backward(Certificate(1.0, 0.6), "D", 2.0, "exact")
    assert plan.step == pytest.approx(1.9 / 4.0)
    g = plan.guarantee
    assert g.holds and g.proven
    assert g.constants["alpha_iteration"] == pytest.approx(_combettes_yamada(0.95, 0.6))
    assert "Krasnosel'skii-Mann" in g.theorem
    assert plan.km_relaxation == 1.0


@pytest.mark.parametrize("factor, phrase", [(2.0, "only non-expansive"), (2.2, "expansive")])
def test_fb_step_at_or_beyond_bound_breaks_the_guarantee(factor, phrase):
    plan = analyse_forward_backward(Certificate(1.0, 0.5), "D", 1.0, "exact", step=factor)
    assert not plan.guarantee.holds
    assert phrase in plan.guarantee.reason
    assert plan.guarantee.theorem is None


def test_fb_uncertified_denoiser_has_no_guarantee():
    plan = analyse_forward_backward(None, "DnCNN", 1.0, "exact")
    assert not plan.guarantee.holds
    assert "DnCNN carries no certificate" in plan.guarantee.reason


def test_fb_nonexpansive_only_denoiser_is_averaged_by_a_km_step():
    plan = analyse_forward_backward(Certificate(1.0, None), "D", 1.0, "exact")
    assert plan.guarantee.holds
    assert plan.km_relaxation == 0.5
    assert any("Krasnosel'skii-Mann" in a for a in plan.guarantee.actions)


def test_fb_expansive_relaxation_is_refused():
    # t = 3 on a 0.5-averaged D gives 1.5 "averagedness": not even non-expansive
    plan = analyse_forward_backward(Certificate(1.0, 0.5), "D", 1.0, "exact", relaxation=3.0)
    assert not plan.guarantee.holds
    assert "relaxed denoiser" in plan.guarantee.reason


def test_fb_estimated_norm_makes_the_guarantee_conditional():
    plan = analyse_forward_backward(Certificate(1.0, 0.5), "D", 1.02, "estimated", norm_statement="||A|| <= 1.02 (est.)")
    g = plan.guarantee
    assert g.holds and not g.proven and g.conditional
    assert g.assumptions == ("||A|| <= 1.02 (est.)",)
    assert "conditionally" in str(g)


def test_admm_relaxes_an_averaged_denoiser_to_firm_nonexpansiveness():
    plan = analyse_splitting("admm", Certificate(1.0, 0.8), "D", step=0.5)
    assert plan.relaxation == pytest.approx(1 / 1.6)
    g = plan.guarantee
    assert g.holds and g.proven
    assert g.constants["alpha_relaxed_denoiser"] == pytest.approx(0.5)
    assert any("t = 0.625" in a for a in g.actions)
    assert "w = x + u" in g.reason


def test_admm_keeps_a_firmly_nonexpansive_denoiser_and_relaxes_a_nonexpansive_one():
    assert analyse_splitting("drs", Certificate(1.0, 0.3), "D", step=1.0).relaxation == 1.0
    plan = analyse_splitting("admm", Certificate(1.0, None), "D", step=1.0)
    assert plan.relaxation == 0.5 and plan.guarantee.holds


def test_admm_user_relaxation_beyond_firm_nonexpansiveness_is_reported():
    plan = analyse_splitting("admm", Certificate(1.0, 0.8), "D", step=1.0, relaxation=1.0)
    assert not plan.guarantee.holds
    assert "not firmly non-expansive" in plan.guarantee.reason


def test_admm_uncertified_and_inexact_prox():
    assert not analyse_splitting("admm", None, "Net", step=1.0).guarantee.holds
    plan = analyse_splitting("drs", Certificate(1.0, 0.5), "D", step=1.0, prox_is_exact=False)
    assert plan.guarantee.holds and not plan.guarantee.proven
    assert "iterative" in plan.guarantee.assumptions[0]


def test_declared_prox_is_an_assumption_not_a_proof():
    import torch

    declared = ProximalDenoiser(torch.nn.Identity(), name="TV", inexact="by 1000 Chambolle-Pock steps")
    cert = certificate_of(declared)
    assert cert.averagedness == 0.5
    plan = analyse_splitting("admm", cert, "ProximalDenoiser", step=1.0)
    assert plan.guarantee.holds and not plan.guarantee.proven
    assert "declared by the user" in plan.guarantee.assumptions[0]


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_invalid_steps_raise(bad):
    with pytest.raises(ValueError):
        analyse_forward_backward(Certificate(1.0, 0.5), "D", 1.0, "exact", step=bad)
    with pytest.raises(ValueError):
        analyse_splitting("admm", Certificate(1.0, 0.5), "D", step=bad)


def test_automatic_admm_relaxation_is_firm_in_exact_arithmetic():
    """t = 1/(2 alpha) rounds up for about half of all alphas, leaving t alpha a rounding above 1/2:
    the automatic relaxation used to claim a proof of a hypothesis that failed by one ulp."""
    from fractions import Fraction

    alpha = 0.8789772014701512
    assert Fraction(1.0 / (2.0 * alpha)) * Fraction(alpha) > Fraction(1, 2)  # the naive t is not firm
    plan = analyse_splitting("admm", Certificate(1.0, alpha), "D", step=1.0)
    assert Fraction(plan.relaxation) * Fraction(alpha) <= Fraction(1, 2)
    assert plan.relaxation == pytest.approx(1.0 / (2.0 * alpha), rel=1e-15)
    assert plan.guarantee.proven


def test_a_user_relaxation_firm_only_up_to_rounding_is_an_assumption():
    alpha = 0.8789772014701512
    naive = analyse_splitting("admm", Certificate(1.0, alpha), "D", step=1.0, relaxation=1.0 / (2.0 * alpha))
    assert naive.guarantee.holds and not naive.guarantee.proven
    assert any("exceeds 1/2" in a for a in naive.guarantee.assumptions)
    rounded = analyse_splitting("admm", Certificate(1.0, alpha), "D", step=1.0, relaxation=round(1 / (2 * alpha), 6))
    assert not rounded.guarantee.holds  # 6 digits rounded up: far beyond rounding, not firm


@pytest.mark.parametrize("sigma", [-0.5, float("nan"), float("inf")])
def test_a_negative_or_non_finite_denoiser_strength_is_refused(sigma):
    """prox_{s g} with s < 0 is no prox: a declared ProximalDenoiser used to keep its guarantee."""
    import torch

    from pnp_stable.operators import Identity
    from pnp_stable.solvers import solve

    class SoftThreshold(torch.nn.Module):
        def forward(self, x, s):
            return torch.sign(x) * torch.clamp(x.abs() - s, min=0)

    y = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma_den must be a finite non-negative number"):
        solve(y, Identity(), ProximalDenoiser(SoftThreshold()), method="admm", step=1.0, sigma_den=sigma,
              max_iter=2, progress=False)


def test_an_accelerated_solve_quotes_only_what_the_theorem_gives_it():
    import torch

    from pnp_stable.denoisers import DenoiserConfig, build_denoiser
    from pnp_stable.operators import Blur
    from pnp_stable.solvers import solve

    torch.manual_seed(0)
    D = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=4)).eval()
    op = Blur("gauss:1.0", (1, 16, 16))
    y = op.simulate(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)), 0.01, seed=0)
    plain = solve(y, op, D, max_iter=2, progress=False)
    accelerated = solve(y, op, D, max_iter=2, progress=False, accelerate=True)
    assert plain.guarantee.holds and accelerated.guarantee.holds
    assert "cluster point" not in plain.guarantee.theorem
    # Anderson iterates are no Krasnosel'skii-Mann sequence: the sum bound is not theirs
    assert accelerated.guarantee.theorem.startswith(plain.guarantee.theorem)
    assert "every cluster point of w_k is a fixed point" in accelerated.guarantee.theorem
    assert "not for the accelerated one" in accelerated.guarantee.theorem


def test_a_foreign_operators_norm_claim_is_an_assumption_and_ours_is_proven():
    """FB rests on ||A||. A protocol operator's "certified" norm is its own declaration, checked only
    against a power-method lower bound: one that understates it slightly (0.915 for a norm of 1,
    which 4 power steps from a random start do not reach) gets a conditional guarantee naming the
    claim; pnp-stable's own operators prove their norms."""
    import warnings

    import torch
    from solver_toys import certified_network

    from pnp_stable import solve
    from pnp_stable.operators import Blur

    class Diagonal:
        norm_kind = "certified"

        def __init__(self, gains):
            self.gains = gains

        def A(self, x):
            return x * self.gains

        A_adjoint = A

        def norm(self):
            return 0.915

        def prox_data(self, z, y, gamma):
            return (z + gamma * self.gains * y) / (1 + gamma * self.gains ** 2)

        def simulate(self, x, noise_level, seed=None):
            return self.A(x)

    gains = torch.full((1, 1, 8, 8), 0.9, dtype=torch.float64)
    gains[..., 3, 4] = 1.0
    y = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = solve(y, Diagonal(gains), certified_network(), method="fb", max_iter=2, progress=False)
    assert result.guarantee.holds and not result.guarantee.proven
    assert any("certified as Diagonal declares it" in a for a in result.guarantee.assumptions)
    blur = Blur("gauss:0.6,5", (8, 8))
    ours = solve(blur.A(y), blur, certified_network(), method="fb", max_iter=2, progress=False)
    assert ours.guarantee.proven and not ours.guarantee.assumptions

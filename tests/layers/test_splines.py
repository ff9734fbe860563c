"""Learned monotone spline activations: the function class, its gradients, and the certificate of
blocks and denoisers that use it — checked against random pairs and adversarial search, with
negative controls showing the same search catches a spline that leaves the class."""

import pytest
import torch
import torch.nn.functional as F

from pnp_stable.denoisers import DenoiserConfig, build_denoiser
from pnp_stable.layers import MonotoneLinearSpline, make_activation, uniform_knots
from pnp_stable.verification import empirical_lipschitz

from activation_blocks import assert_block_keeps_its_certificate, block_with_activation, saved_and_loaded, single_admissible_step
from certificate_search import TOL, assert_denoiser_keeps_its_certificate

SEARCH = dict(restarts=2, steps=40, n_pairs=16)


def random_spline(channels=3, per_side=4, spacing=0.25, low=-1.0, high=2.0, seed=0):
    """A spline whose *raw* slopes lie well outside [0, 1]: the forward clamp must still hold."""
    spline = MonotoneLinearSpline(channels, uniform_knots(per_side, spacing)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        spline.raw_slopes.copy_(torch.empty(spline.raw_slopes.shape, dtype=torch.float64).uniform_(low, high, generator=g))
    return spline


def test_leaky_relu_initialisation_is_exact():
    spline = MonotoneLinearSpline(4, uniform_knots(3, 0.1), negative_slope=0.01).double()
    t = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64).repeat(2, 4, 1)  # knots and beyond the range
    # up to the float32 storage of the slope 0.01 (the parameters are created in float32)
    torch.testing.assert_close(spline(t), F.leaky_relu(t, 0.01), rtol=0, atol=1e-9)
    relu = MonotoneLinearSpline(4, uniform_knots(3, 0.1), init="relu").double()
    torch.testing.assert_close(relu(t), F.relu(t), rtol=0, atol=1e-15)
    assert make_activation(spline) is spline  # accepted as monotone and 1-Lipschitz


@torch.no_grad()
def test_any_parameters_give_a_continuous_monotone_one_lipschitz_function_through_zero():
    spline = random_spline(seed=1)
    t = torch.linspace(-3.0, 3.0, 60001, dtype=torch.float64).repeat(1, 3, 1)  # 0.0001 grid, knots on it
    s = spline(t)
    slopes = (s[..., 1:] - s[..., :-1]) / (t[..., 1:] - t[..., :-1])
    assert float(slopes.min()) >= -TOL and float(slopes.max()) <= 1 + TOL
    assert float(spline(torch.zeros(1, 3, 1, dtype=torch.float64)).abs().max()) == 0.0
    # continuity at every knot, approached from both sides
    knots = spline.knots.double()
    for eps in (1e-7, 1e-10):
        left, right = spline((knots - eps).repeat(1, 3, 1)), spline((knots + eps).repeat(1, 3, 1))
        assert float((left - right).abs().max()) <= 2 * eps + TOL
    # and the slope on each segment is the clamped raw parameter
    mid = torch.cat([knots[:1] - 1, (knots[1:] + knots[:-1]) / 2, knots[-1:] + 1])
    h = 1e-6
    numeric = (spline((mid + h).repeat(1, 3, 1)) - spline((mid - h).repeat(1, 3, 1))) / (2 * h)
    torch.testing.assert_close(numeric[0], spline.raw_slopes.detach().clamp(0, 1), rtol=0, atol=1e-8)


def test_gradients_match_finite_differences():
    spline = MonotoneLinearSpline(3, uniform_knots(4, 0.25)).double()
    with torch.no_grad():  # interior slopes: the clamp is smooth there
        spline.raw_slopes.uniform_(0.05, 0.95)
    t = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * 0.6).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: spline(x), (t,))
    raw = spline.raw_slopes.detach().clone().requires_grad_()
    call = lambda w: torch.func.functional_call(spline, {"raw_slopes": w}, (t.detach(),))  # noqa: E731
    assert torch.autograd.gradcheck(call, (raw,))


def test_block_with_a_random_spline_keeps_its_certificate():
    assert_block_keeps_its_certificate(block_with_activation(random_spline(seed=2)), [(2, 5, 5), (2, 7, 6)], SEARCH)


class _Unclamped(MonotoneLinearSpline):
    """A spline that skips the clamp (what the class must never do)."""

    def slopes(self):
        return self.raw_slopes


@pytest.mark.parametrize("raw_slope", [-1.0, 3.0])
def test_search_catches_a_spline_that_leaves_the_class(raw_slope):
    """Negative controls: a decreasing piece (non-convex potential) or a slope of 3 (a 3x steeper
    gradient than the step rule assumes) makes the block expansive, and the search sees it."""
    spline = _Unclamped(4, uniform_knots(2, 0.5)).double()
    with torch.no_grad():
        spline.raw_slopes.fill_(raw_slope)
    block = single_admissible_step(block_with_activation(spline, scale=1.0))
    assert empirical_lipschitz(block, (2, 6, 6), restarts=4, steps=150) > 1.05


def tiny_spline_denoiser(**kw):
    cfg = dict(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8, init_scale=1.6, spline_knots=3,
               spline_spacing=0.2, time_conditioning=True, max_substeps=2)
    cfg.update(kw)
    model = build_denoiser(DenoiserConfig(**cfg))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.embedding.parameters():
            p.normal_(0, 0.5, generator=g)
        for block in model.flow_blocks:
            block.activation.raw_slopes.uniform_(-0.5, 1.5, generator=g)
    return model.double().eval()


def test_denoiser_with_spline_activations_keeps_its_certificate_for_every_sigma():
    model = tiny_spline_denoiser()
    model.freeze_substeps()
    assert_denoiser_keeps_its_certificate(model, SEARCH)


def test_spline_denoiser_saves_loads_and_warm_starts_from_a_relu_model(tmp_path):
    from pnp_stable.training.loop import _initialise_from

    model = tiny_spline_denoiser()
    again = saved_and_loaded(model, tmp_path / "spline.pt")
    assert again.config.spline_knots == 3 and again.config.spline_spacing == 0.2

    plain = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8)).eval()
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pt")
    warm = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8,
                                         spline_knots=3, spline_spacing=0.05))
    info = _initialise_from(warm, str(tmp_path / "plain.pt"))
    assert any(name.endswith("raw_slopes") for name in info["fresh"])
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(warm.eval()(x, 0.1), plain(x, 0.1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="unconstrained", spline_knots=2), "certified gradient-flow blocks only"),
    (dict(spline_knots=2, activation="tanh"), "starts as leaky_relu or relu"),
    (dict(spline_knots=2, spline_spacing=0.0), "spline_spacing must be positive"),
    (dict(spline_knots=-1), "spline_knots must be >= 0"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenoiserConfig(**kwargs)


@pytest.mark.parametrize("knots, message", [
    ([0.1, 0.2, 0.3], "must contain 0"),
    ([-0.2, 0.0, 0.1], "equally spaced"),
    ([0.0], "at least two"),
])
def test_spline_errors(knots, message):
    with pytest.raises(ValueError, match=message):
        MonotoneLinearSpline(2, torch.tensor(knots))
    with pytest.raises(ValueError, match="channels in dimension 1"):
        MonotoneLinearSpline(2)(torch.zeros(1, 3, 4))


def test_the_knots_buffer_cannot_change_the_function():
    """The intercepts were computed from the ``knots`` buffer (saved in every file), the segments
    located with the constructed knots: knots of -50, -40, 0, 40, 50 stored for -0.2 ... 0.2 made a
    saturating spline jump by 40 at 0.1, and a one-block denoiser measured Lipschitz 2337 while its
    certificate said 1. Now the buffer is ignored by the forward pass and checked on loading."""
    spline = MonotoneLinearSpline(2, uniform_knots(2, 0.1)).double()
    with torch.no_grad():
        spline.raw_slopes[:, -2:] = 0.0  # saturate beyond the first positive knot
    t = torch.linspace(-1.0, 1.0, 401, dtype=torch.float64).repeat(1, 2, 1)
    before = spline(t).detach()
    with torch.no_grad():
        spline.knots.copy_(torch.tensor([-50.0, -40.0, 0.0, 40.0, 50.0]))
    torch.testing.assert_close(spline(t).detach(), before, rtol=0, atol=1e-12)
    slopes = (spline(t)[..., 1:] - spline(t)[..., :-1]).detach() / (t[..., 1:] - t[..., :-1])
    assert float(slopes.max()) <= 1 + 1e-9 and float(slopes.min()) >= -1e-12
    # random pairs and adversarial search on the activation itself
    assert empirical_lipschitz(spline, (2, 5), **SEARCH) <= 1 + TOL
    fresh = MonotoneLinearSpline(2, uniform_knots(2, 0.1))
    with pytest.raises(ValueError, match="knots"):
        fresh.load_state_dict(spline.state_dict())
    spline.knots.copy_(uniform_knots(2, 0.1).float())
    fresh.load_state_dict(spline.state_dict())  # its own knots (float32 storage): fine


def test_a_file_with_tampered_knots_is_refused(tmp_path):
    from pnp_stable.denoisers import load, save_denoiser

    config = DenoiserConfig(width=2, hidden=2, blocks=1, spline_knots=2, spline_spacing=0.1, embedding_dim=4,
                            power_size=8)
    model = build_denoiser(config).eval()
    with torch.no_grad():
        model.network[1].activation.raw_slopes[:, -2:] = 0.0
        model.network[1].activation.knots.copy_(torch.tensor([-50.0, -40.0, 0.0, 40.0, 50.0]))
    save_denoiser(model, tmp_path / "m.pt", {"certificate": model.certificate().as_dict()})
    with pytest.raises(ValueError, match="knots"):
        load(tmp_path / "m.pt")

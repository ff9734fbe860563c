"""The certified denoiser: certificate valid for every sigma and input size, and input checks."""

import math

import pytest
import torch

from pnp_stable.denoisers import CertifiedDenoiser, DenoiserConfig, UnconstrainedDenoiser, build_denoiser
from pnp_stable.denoisers.models import TimeScaledFlowBlock
from pnp_stable.layers import ConvMap, certificate_of
from pnp_stable.verification import empirical_averagedness_violation

from certificate_search import TOL, assert_averaged_at_both_noise_levels

SEARCH = dict(restarts=1, steps=25, n_pairs=8)


def tiny(**kw) -> CertifiedDenoiser:
    cfg = dict(width=3, hidden=5, blocks=2, strides=(1, 2), embedding_dim=8, power_size=8, init_scale=1.6)
    cfg.update(kw)
    model = build_denoiser(DenoiserConfig(**cfg))
    if model.embedding is not None:
        with torch.no_grad():  # a conditioning that actually moves the biases and the relaxation
            for p in model.embedding.parameters():
                p.normal_(0, 0.5)
    return model.double().eval()


def test_certificate_holds_for_every_sigma_and_size():
    model = tiny()
    assert max(model.freeze_substeps()) > 1  # the test exercises sub-stepping
    cert = model.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    assert certificate_of(model) == cert
    # alpha-averaged implies 1-Lipschitz, so the averagedness search checks both constants
    for sigma, shape in [(0.0, (1, 7, 9)), (0.3, (1, 6, 6))]:
        fn = lambda x, s=sigma: model(x, s)  # noqa: E731
        assert empirical_averagedness_violation(fn, cert.averagedness, shape, **SEARCH) <= TOL


def test_search_catches_a_forced_unsafe_step():
    """Negative control: too few sub-steps for the weights must be visible to the same search."""
    model = tiny(init_scale=6.0, learned_relaxation=False, sigma_conditioning=False, strides=(1, 1))
    alpha_when_safe = model.certificate().averagedness
    for block in model.flow_blocks:
        block.fixed_substeps.fill_(1)
    cert = model.certificate()
    assert cert.averagedness is None and cert.lipschitz > 1  # the certificate says so honestly
    found = empirical_averagedness_violation(lambda x: model(x), alpha_when_safe, (1, 6, 6), **SEARCH)
    assert found > 1e-3


def test_eval_uses_certified_substeps_and_training_the_estimate():
    model = tiny()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    model(x, 0.1)
    for block in model.flow_blocks:
        assert block.last_substeps == block.required_substeps(block.nu(certified=True))
    model.train()
    model(x, 0.1)
    for block in model.flow_blocks:
        assert block.last_substeps == block.required_substeps(block.nu(certified=False))


def test_sigma_float_and_tensor_agree_and_matter():
    model = tiny()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    a = model(x, 0.1)
    b = model(x, torch.tensor([0.1, 0.1], dtype=torch.float64))
    torch.testing.assert_close(a, b)
    c = model(x, torch.tensor([0.1, 0.4], dtype=torch.float64))
    torch.testing.assert_close(a[0], c[0])
    assert not torch.allclose(a[1], c[1])


@pytest.mark.parametrize(
    "x, sigma, message",
    [
        (torch.rand(1, 8, 8), 0.1, "B x C x H x W"),
        (torch.rand(1, 3, 8, 8), 0.1, "channel"),
        (torch.rand(1, 1, 8, 8), None, "sigma"),
        (torch.rand(1, 1, 8, 8), -0.1, "non-negative"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0.1, 0.2, 0.3]), "entries"),
        ((torch.rand(1, 1, 8, 8) * 255).to(torch.uint8), 0.1, "floating-point images on the .0, 1. scale.*255"),
        (torch.rand(1, 1, 8, 8, dtype=torch.complex64), 0.1, "real floating-point"),
        (torch.rand(1, 1, 8, 8, dtype=torch.float64), 0.1, "weights are torch.float32 and the image torch.float64"),
        (torch.rand(1, 1, 8, 8).half(), 0.1, "weights are torch.float32 and the image torch.float16"),
        (torch.rand(0, 1, 8, 8), 0.1, "empty"),
    ],
)
def test_input_errors(x, sigma, message):
    model = tiny().float()
    with pytest.raises(ValueError, match=message):
        model(x, sigma)


def test_unconstrained_baseline_states_no_certificate():
    model = build_denoiser(DenoiserConfig(kind="unconstrained", width=3, hidden=5, blocks=2, embedding_dim=8))
    assert isinstance(model, UnconstrainedDenoiser)
    assert certificate_of(model) is None
    assert model(torch.rand(2, 1, 7, 9), 0.1).shape == (2, 1, 7, 9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "magic"}, "kind"),
        ({"blocks": 2, "strides": (1,)}, "strides"),
        ({"kernel_size": 4}, "odd"),
        ({"channels": 3, "width": 2}, "width"),
        ({"time": 0.0}, "time"),
        ({"max_substeps": -1}, "max_substeps"),
        ({"kind": "unconstrained", "max_substeps": 2}, "certified"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenoiserConfig(**kwargs)


def test_config_round_trip():
    cfg = DenoiserConfig(width=5, strides=(1, 2, 1, 2, 1, 2, 1, 2))
    assert DenoiserConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        DenoiserConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_time_conditioned_model_keeps_the_certificate_for_every_sigma():
    model = tiny(time_conditioning=True)
    with torch.no_grad():
        for p in model.time_embedding.parameters():
            p.normal_(0, 1.0)
    model.freeze_substeps()
    cert = model.certificate()
    x = torch.rand(2, 1, 7, 9, dtype=torch.float64)
    scales = torch.sigmoid(model.time_embedding(torch.tensor([0.02, 0.3], dtype=torch.float64)))
    assert float(scales.min().detach()) < 0.9  # the test exercises shortened flows
    head = model.time_embedding
    model.time_embedding = None  # full integration time
    full_time = model(x, 0.02)
    model.time_embedding = head
    assert not torch.allclose(model(x, 0.02), full_time)
    assert_averaged_at_both_noise_levels(model, cert.averagedness, SEARCH)
    with pytest.raises(ValueError, match="time_scale"):
        model.flow_blocks[0](torch.rand(1, 3, 4, 4, dtype=torch.float64), time_scale=torch.tensor([1.5]))
    with pytest.raises(ValueError, match="certified"):
        DenoiserConfig(kind="unconstrained", time_conditioning=True)


def test_time_adapted_substeps_never_lengthen_a_step():
    rule = TimeScaledFlowBlock.time_adapted_substeps
    assert [rule(10, t) for t in (1.0, 0.95, 0.6, 0.1, 0.01)] == [10, 10, 6, 1, 1]
    assert rule(1, 1e-6) == 1 and rule(7, 1.0) == 7
    for n in range(1, 40):
        for tau in torch.rand(50, dtype=torch.float32).clamp_min(1e-7).tolist():
            m = rule(n, tau)
            assert 1 <= m <= n and tau / m <= 1.0 / n  # h' = tau T / n' <= T / n
            assert m == 1 or tau / (m - 1) > 1.0 / n  # and no fewer steps would do


def test_eval_takes_fewer_substeps_when_the_noise_level_shortens_the_flow(constant_time_scale):
    model = tiny(time_conditioning=True, init_scale=4.0, learned_relaxation=False, sigma_conditioning=False,
                 strides=(1, 1))
    full = model.freeze_substeps()
    assert min(full) >= 4
    cert = model.certificate()
    tau = constant_time_scale(model, 0.3)
    x = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    adapted = model(x, 0.1)
    assert [b.last_substeps for b in model.flow_blocks] == [math.ceil(tau * n) for n in full]
    for block in model.flow_blocks:
        block.adapt_substeps_to_time = False
    trained_discretisation = model(x, 0.1)
    assert [b.last_substeps for b in model.flow_blocks] == full
    # a different (coarser) discretisation of the same flows, not a different map
    assert 0 < float((adapted - trained_discretisation).detach().abs().max()) < 0.1
    for block in model.flow_blocks:
        block.adapt_substeps_to_time = True
    fn = lambda z: model(z, 0.1)  # noqa: E731
    assert empirical_averagedness_violation(fn, cert.averagedness, (1, 6, 6), **SEARCH) <= TOL


def test_search_catches_too_few_time_adapted_substeps(monkeypatch, constant_time_scale):
    """Negative control: one sub-step over 0.6 T is 6x too long a step, and the search must see it."""
    model = tiny(time_conditioning=True, init_scale=6.0, learned_relaxation=False, sigma_conditioning=False,
                 strides=(1, 1))
    assert min(model.freeze_substeps()) >= 10
    cert = model.certificate()
    constant_time_scale(model, 0.6)
    monkeypatch.setattr(TimeScaledFlowBlock, "time_adapted_substeps", staticmethod(lambda n, tau: 1))
    found = empirical_averagedness_violation(lambda z: model(z, 0.1), cert.averagedness, (1, 6, 6), **SEARCH)
    assert found > 1e-3


def test_time_scaled_block_under_a_substep_cap_keeps_its_certificate():
    """With max_substeps the full-time step is the capped one; a scaled flow must not step past it."""
    torch.manual_seed(3)
    block = TimeScaledFlowBlock(ConvMap(2, 4, 3, power_size=8), activation="leaky_relu", max_substeps=2).double()
    with torch.no_grad():
        block.linear.weight.mul_(6.0)
    block.eval()
    assert block.required_substeps(block.nu()) > 2  # the cap binds
    cert = block.certificate()
    assert cert.averagedness is not None
    for tau in (1.0, 0.7, 0.3):
        scale = torch.tensor([tau], dtype=torch.float64)
        fn = lambda z, s=scale: block(z, time_scale=s)  # noqa: E731
        assert empirical_averagedness_violation(fn, cert.averagedness, (2, 6, 6), **SEARCH) <= TOL


def test_time_scaled_block_capped_step_is_differentiable_in_the_norm():
    """As for the plain block: with ReLU, no bias and a capped step h = tau c / ||A||^2 the block is
    invariant to scaling A, so the training gradient has no radial component; a capped step held
    constant (as a float) would have one."""
    torch.manual_seed(1)
    block = TimeScaledFlowBlock(ConvMap(3, 6, 3, power_size=8), activation="relu", time=4.0, bias=False,
                                max_substeps=1).double().train()
    with torch.no_grad():
        while block.required_substeps(block.nu(certified=True)) <= 1:
            block.linear.weight.mul_(1.5)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    scale = torch.tensor([0.6, 0.9], dtype=torch.float64)
    block(x, time_scale=scale)  # settle the power vector, then freeze it for the comparison
    block.linear.norm_estimate.fill_(block.linear.certified_norm())
    with torch.no_grad():
        block.linear.estimate_norm(n_iter=50)
    loss = (block(x, time_scale=scale) - 1.0).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, block.linear.weight)
    weight = block.linear.weight.detach()
    radial = float((grad * weight).sum()) / (float(grad.norm()) * float(weight.norm()))
    assert abs(radial) < 1e-4
    assert float(grad.norm()) > 0


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_capped_denoiser_keeps_its_certificate_at_a_fixed_cost(time_conditioning):
    """max_substeps: every block costs at most the cap, and the stated alpha still holds."""
    model = tiny(init_scale=6.0, max_substeps=2, time_conditioning=time_conditioning)
    uncapped = [b.required_substeps(b.nu()) for b in model.flow_blocks]
    assert max(uncapped) > 2  # the cap binds
    assert max(model.freeze_substeps()) == 2
    cert = model.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    for sigma, shape in [(0.02, (1, 7, 9)), (0.3, (1, 6, 6))]:
        fn = lambda x, s=sigma: model(x, s)  # noqa: E731
        assert empirical_averagedness_violation(fn, cert.averagedness, shape, **SEARCH) <= TOL
        assert all(b.last_substeps <= 2 for b in model.flow_blocks)
    assert DenoiserConfig.from_dict(model.config.to_dict()).max_substeps == 2


def test_certified_finetuning_takes_the_capped_steps_eval_will_take():
    """With frozen counts (the certified fine-tuning phase) a capped block steps with the
    certified norm, as eval does; the power estimate, a lower bound, would step further."""
    model = tiny(init_scale=6.0, max_substeps=2, strides=(1, 1))
    model.freeze_substeps()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    expected = model(x, 0.1)
    model.train()
    for block in model.flow_blocks:  # a stale, low estimate, as a power vector one step in would give
        block.linear.norm_estimate.fill_(0.8 * block.linear.certified_norm())
    output = model(x, 0.1)
    assert output.requires_grad
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)  # float32 norm estimate
    output.sum().backward()  # and the step keeps its gradient in the weights
    assert all(float(b.linear.weight.grad.norm()) > 0 for b in model.flow_blocks)

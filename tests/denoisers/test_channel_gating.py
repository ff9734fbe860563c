"""Channel gating: potential channel c of block k weighted by g_kc(sigma) in (0, 1).

The certificate computed without gates must hold for every sigma (adversarial search, with a
negative control whose gate leaves [0, 1]), a model trained without gates must start near its
own function, and reshaping must move each block's gate rows with it.
"""

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser, load, save_denoiser
from pnp_stable.denoisers.models import CertifiedDenoiser
from pnp_stable.layers import ConvMap, GradientFlowBlock
from pnp_stable.training.grow import grow_denoiser, grown_positions, prune_denoiser, widen_denoiser
from pnp_stable.training.loop import _initialise_from
from pnp_stable.verification import empirical_averagedness_violation

from certificate_search import TOL, assert_averaged_at_both_noise_levels

SEARCH = dict(restarts=1, steps=25, n_pairs=8)


def gated(**kw) -> CertifiedDenoiser:
    """A small certified model whose conditioning and gate heads are far from their initial values."""
    cfg = dict(width=3, hidden=5, blocks=3, embedding_dim=8, power_size=8, init_scale=1.6, channel_gating=True,
               time_conditioning=True)
    cfg.update(kw)
    torch.manual_seed(5)
    model = build_denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():
        for head in (model.embedding, model.time_embedding, model.gate_embedding):
            for p in head.parameters() if head is not None else ():
                p.normal_(0, 0.5)
        model.gate_embedding.mlp[-1].bias.normal_(0.0, 2.0)  # gates spread over (0, 1)
    return model.double().eval()


def gates_of(model: CertifiedDenoiser, sigmas: list[float]) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(model.gate_embedding(torch.tensor(sigmas, dtype=next(model.parameters()).dtype)))


def test_gated_model_keeps_the_ungated_certificate_for_every_sigma():
    model = gated()
    model.freeze_substeps()
    cert = model.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    gates = gates_of(model, [0.02, 0.3])
    assert float(gates.min()) < 0.2 and float(gates.max()) > 0.8  # the test exercises real gates
    x = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    head = model.gate_embedding
    model.gate_embedding = None
    plain = model(x, 0.02)
    assert model.certificate().averagedness == cert.averagedness  # the same constants
    model.gate_embedding = head
    assert float((model(x, 0.02) - plain).detach().abs().max()) > 1e-3
    assert_averaged_at_both_noise_levels(model, cert.averagedness, SEARCH)


def test_search_catches_a_gate_above_one():
    """Negative control: a block whose potential is weighted by 3 takes steps three times past the
    admissible maximum, and the same search must see the broken constant; the denoiser refuses it."""
    torch.manual_seed(6)
    block = GradientFlowBlock(ConvMap(2, 4, 3, power_size=8), activation="leaky_relu", max_substeps=1).double().eval()
    with torch.no_grad():
        block.linear.weight.mul_(3.0)
    block.freeze_substeps()
    cert = block.certificate()
    h = block.step_size()
    gate = torch.full((1, 4, 1, 1), 3.0, dtype=torch.float64)
    honest = lambda z: block._integrate(z, 1, h, None, torch.ones_like(gate))  # noqa: E731
    inflated = lambda z: block._integrate(z, 1, h, None, gate)  # noqa: E731
    assert empirical_averagedness_violation(honest, cert.averagedness, (2, 6, 6), **SEARCH) <= TOL
    assert empirical_averagedness_violation(inflated, cert.averagedness, (2, 6, 6), **SEARCH) > 1e-3
    model = gated()
    with pytest.raises(ValueError, match="channel_gate"):
        model.flow_blocks[0](torch.rand(1, 3, 5, 5, dtype=torch.float64), channel_gate=torch.full((1, 5, 1, 1), 1.5, dtype=torch.float64))


def test_warm_start_from_a_model_without_gates_starts_near_its_function(tmp_path):
    torch.manual_seed(4)
    plain = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=3, embedding_dim=8, power_size=8))
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pt")
    model = build_denoiser(DenoiserConfig.from_dict({**plain.config.to_dict(), "channel_gating": True}))
    _initialise_from(model, str(tmp_path / "plain.pt"))
    plain.eval(), model.eval()
    x = torch.rand(2, 1, 10, 8)
    with torch.no_grad():
        change = float((model(x, 0.1) - plain(x, 0.1)).abs().max())
    gates = gates_of(model, [0.02, 0.2])
    assert torch.allclose(gates, torch.full_like(gates, torch.sigmoid(torch.tensor(5.0)).item()))
    assert 0 < change < 5e-3


def test_unconstrained_twin_applies_the_gates():
    torch.manual_seed(7)
    cfg = dict(kind="unconstrained", width=3, hidden=5, blocks=2, embedding_dim=8, channel_gating=True)
    model = build_denoiser(DenoiserConfig(**cfg)).eval()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        before = model(x, 0.1)
        model.gate_embedding.mlp[-1].bias.fill_(-20.0)  # every gate ~0: the blocks become the identity
        off = model(x, 0.1)
        model.gate_embedding = None
        no_blocks = model.network[-1](model.network[0](x - 0.5)) + 0.5
        t = torch.sigmoid(model.embedding(torch.tensor([0.1]))[:, -1]).view(-1, 1, 1, 1)
    assert float((before - off).abs().max()) > 1e-4
    assert torch.allclose(off, x + t * (no_blocks - x), atol=1e-6)


def test_reshaping_moves_the_gate_rows_with_their_blocks():
    model = gated().float()
    sigmas = [0.02, 0.2]
    old = gates_of(model, sigmas).view(2, 3, 5)
    grown = grow_denoiser(model, 6, fresh_weight_scale=1e-3).eval()
    new = gates_of(grown, sigmas).view(2, 6, 5)
    positions = grown_positions(3, 6)
    assert torch.allclose(new[:, positions], old)
    fresh = [k for k in range(6) if k not in positions]
    on = torch.sigmoid(torch.tensor(5.0)).item()
    assert torch.allclose(new[:, fresh], torch.full_like(new[:, fresh], on))
    pruned = prune_denoiser(model, [1]).eval()
    assert torch.allclose(gates_of(pruned, sigmas).view(2, 2, 5), old[:, [0, 2]])
    wide = widen_denoiser(model, hidden=7).eval()
    widened = gates_of(wide, sigmas).view(2, 3, 7)
    assert torch.allclose(widened[:, :, :5], old)
    assert torch.allclose(widened[:, :, 5:], torch.full_like(widened[:, :, 5:], on))
    x = torch.rand(1, 1, 9, 8)
    with torch.no_grad():  # the widened model starts at the trained function
        assert float((wide(x, 0.1) - model.eval()(x, 0.1)).abs().max()) < 1e-3


def test_saved_gated_model_loads_with_the_same_function_and_certificate(tmp_path):
    model = gated().float()
    model.freeze_substeps()
    save_denoiser(model, tmp_path / "gated.pt", metadata={"certificate": model.certificate().as_dict()})
    loaded = load(tmp_path / "gated.pt")
    assert loaded.config.channel_gating
    x = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.07), model(x, 0.07))
    assert loaded.certificate().averagedness == model.certificate().averagedness
    assert loaded.certificate().details[-1]["channel_gate"] == "g_kc(sigma) in (0, 1)"

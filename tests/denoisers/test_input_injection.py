"""Input injection: every block's output pulled back towards the lifted input by theta_k(sigma).

The certificate of the plain composition must hold for every sigma (checked by the adversarial
search, with a negative control that extrapolates instead of pulling back), a model trained
without injection must start from (almost) its own function, and reshaping must move the
injection rows with their blocks.
"""

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser, load, save_denoiser
from pnp_stable.denoisers.models import CertifiedDenoiser
from pnp_stable.training.grow import grow_denoiser, grown_positions
from pnp_stable.training.loop import _initialise_from
from pnp_stable.verification import empirical_averagedness_violation

from certificate_search import assert_averaged_at_both_noise_levels

SEARCH = dict(restarts=1, steps=25, n_pairs=8)


def injected(**kw) -> CertifiedDenoiser:
    """A small certified model whose conditioning and injection heads are far from their initial values."""
    cfg = dict(width=3, hidden=5, blocks=3, embedding_dim=8, power_size=8, init_scale=1.6, input_injection=True,
               time_conditioning=True)
    cfg.update(kw)
    torch.manual_seed(3)
    model = build_denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():
        for head in (model.embedding, model.time_embedding, model.injection_embedding):
            for p in head.parameters() if head is not None else ():
                p.normal_(0, 0.5)
        model.injection_embedding.mlp[-1].bias.normal_(-0.05, 0.05)  # pulls spread over (0, 1)
    return model.double().eval()


def test_injected_model_keeps_the_plain_composition_certificate_for_every_sigma():
    model = injected()
    model.freeze_substeps()
    cert = model.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    with torch.no_grad():
        pulls = model.injection_weights(torch.tensor([0.02, 0.3], dtype=torch.float64))
    assert float(pulls.min()) < 0.3 and float(pulls.max()) > 0.6  # the test exercises real pulls
    x = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    head = model.injection_embedding
    model.injection_embedding = None
    plain = model(x, 0.02)
    assert model.certificate().averagedness == cert.averagedness  # the same constants
    model.injection_embedding = head
    assert float((model(x, 0.02) - plain).detach().abs().max()) > 1e-3
    assert_averaged_at_both_noise_levels(model, cert.averagedness, SEARCH)


def test_search_catches_an_injection_that_extrapolates(monkeypatch):
    """Negative control: theta = -2 (z -> 3 G(z) - 2 z_0) leaves the relaxation interval, and the same
    search must see the broken constant."""
    model = injected(init_scale=4.0, learned_relaxation=False, sigma_conditioning=False, time_conditioning=False)
    model.freeze_substeps()
    cert = model.certificate()
    monkeypatch.setattr(type(model), "injection_weights",
                        lambda self, s: torch.full((s.shape[0], self.config.blocks), -2.0, dtype=s.dtype))
    found = empirical_averagedness_violation(lambda z: model(z, 0.1), cert.averagedness, (1, 6, 6), **SEARCH)
    assert found > 1e-3


def test_warm_start_from_a_model_without_injection_starts_near_its_function(tmp_path):
    torch.manual_seed(4)
    plain = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=3, embedding_dim=8, power_size=8))
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pt")
    model = build_denoiser(DenoiserConfig.from_dict({**plain.config.to_dict(), "input_injection": True}))
    _initialise_from(model, str(tmp_path / "plain.pt"))
    plain.eval(), model.eval()
    x = torch.rand(2, 1, 10, 8)
    with torch.no_grad():
        change = float((model(x, 0.1) - plain(x, 0.1)).abs().max())
        pulls = model.injection_weights(torch.tensor([0.02, 0.2]))
    assert torch.allclose(pulls, torch.full_like(pulls, torch.sigmoid(torch.tensor(-6.0)).item()))
    assert 0 < change < 5e-3


def test_growing_moves_the_injection_rows_with_their_blocks():
    model = injected().float()
    grown = grow_denoiser(model, 6, fresh_weight_scale=1e-3).eval()
    sigmas = torch.tensor([0.02, 0.2])
    with torch.no_grad():
        old, new = model.injection_weights(sigmas), grown.injection_weights(sigmas)
    positions = grown_positions(3, 6)
    assert torch.allclose(new[:, positions], old)
    fresh = [k for k in range(6) if k not in positions]
    assert torch.allclose(new[:, fresh], torch.full_like(new[:, fresh], torch.sigmoid(torch.tensor(-6.0)).item()))


def test_plain_models_have_no_injection_and_say_so():
    model = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2))
    assert model.injection_embedding is None
    assert model.certificate().details[-1]["input_injection"] == "none"
    with pytest.raises(ValueError, match="no input injection"):
        model.injection_weights(torch.tensor([0.1]))


def test_saved_injected_model_loads_with_the_same_function_and_certificate(tmp_path):
    model = injected().float()
    model.freeze_substeps()
    save_denoiser(model, tmp_path / "injected.pt", metadata={"certificate": model.certificate().as_dict()})
    loaded = load(tmp_path / "injected.pt")
    assert loaded.config.input_injection
    x = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.07), model(x, 0.07))
    assert loaded.certificate().averagedness == model.certificate().averagedness

"""Growing a trained certified denoiser: trained blocks kept in order, output almost unchanged,
certificate still proven (and checked by search), user errors reported."""

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser, load, save_denoiser
from pnp_stable.training.grow import grow_denoiser, grown_positions, main
from pnp_stable.verification import empirical_averagedness_violation

SEARCH = dict(restarts=1, steps=25, n_pairs=8)


def trained_like(blocks=3, **kw):
    """A small certified model whose conditioning heads are far from their initial values."""
    cfg = dict(width=3, hidden=5, blocks=blocks, embedding_dim=8, power_size=8, init_scale=1.6,
               time_conditioning=True, max_substeps=1)
    cfg.update(kw)
    torch.manual_seed(1)
    model = build_denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():
        for head in (model.embedding, model.time_embedding):
            for p in head.parameters() if head is not None else ():
                p.normal_(0, 0.5)
    return model.eval()


def test_positions_spread_new_blocks_between_old_ones():
    assert grown_positions(24, 32)[:7] == [0, 1, 2, 4, 5, 6, 8]
    assert grown_positions(3, 3 * 2) == [0, 2, 4]
    with pytest.raises(ValueError, match="must be larger"):
        grown_positions(4, 4)


@pytest.mark.parametrize("time_conditioning", [True, False])
def test_grown_model_starts_at_the_trained_function(time_conditioning):
    model = trained_like(time_conditioning=time_conditioning)
    grown = grow_denoiser(model, 7, fresh_weight_scale=1e-3).eval()
    assert grown.config.blocks == 7 and len(grown.flow_blocks) == 7
    for i, j in enumerate(grown_positions(3, 7)):
        assert torch.equal(grown.flow_blocks[j].linear.weight, model.flow_blocks[i].linear.weight)
    x = torch.rand(2, 1, 12, 10)
    for sigma in (0.02, 0.2):
        with torch.no_grad():
            before, after = model(x, sigma), grown(x, sigma)
        assert float((before - after).abs().max()) < 1e-3
        # the trained output really depends on the copied conditioning (a wrong row map would show)
        assert float((before - x).abs().max()) > 1e-2


def test_grown_model_keeps_its_certificate_under_search():
    grown = grow_denoiser(trained_like(), 6, fresh_weight_scale=0.5).double().eval()
    cert = grown.certificate()
    assert cert.averagedness is not None and cert.averagedness < 1 and cert.lipschitz <= 1
    for sigma, shape in [(0.02, (1, 7, 9)), (0.3, (1, 6, 6))]:
        fn = lambda x, s=sigma: grown(x, s)  # noqa: E731
        assert empirical_averagedness_violation(fn, cert.averagedness, shape, **SEARCH) <= 1e-9


def test_growing_refuses_what_it_cannot_keep():
    with pytest.raises(ValueError, match="only certified"):
        grow_denoiser(build_denoiser(DenoiserConfig(kind="unconstrained", width=3, hidden=5, blocks=2)), 4)
    with pytest.raises(ValueError, match="strided"):
        grow_denoiser(build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2, strides=(1, 2))), 4)
    with pytest.raises(ValueError, match="fresh_weight_scale"):
        grow_denoiser(trained_like(), 5, fresh_weight_scale=0.0)


def test_command_writes_a_loadable_model_and_never_overwrites(tmp_path, capsys):
    source, dest = tmp_path / "small.pt", tmp_path / "grown.pt"
    model = trained_like()
    model.freeze_substeps()
    save_denoiser(model, source, metadata={"certificate": None})
    assert main([str(source), str(dest), "--blocks", "5"]) == 0
    grown = load(dest)
    assert grown.config.blocks == 5 and grown.metadata["grown_from"]["positions"] == [0, 1, 3]
    assert main([str(source), str(dest), "--blocks", "5"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main([str(source), str(tmp_path / "other.pt"), "--blocks", "2"]) == 2

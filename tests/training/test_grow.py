"""Growing, pruning, reviving and widening a trained certified denoiser: trained weights kept in
place, output (almost) unchanged, certificate still proven (and checked by search), user errors
reported."""

import json

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser, load, save_denoiser
from pnp_stable.training.grow import (grow_denoiser, grown_positions, idle_blocks, main, prune_denoiser,
                                     prune_idle_blocks, revive_denoiser, widen_denoiser)

from certificate_search import assert_averaged_at_both_noise_levels, assert_denoiser_keeps_its_certificate

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


def assert_starts_at(model, reshaped, tolerance):
    """``reshaped`` computes ``model``'s function to ``tolerance``, at two noise levels where the
    trained output really depends on the conditioning (so a wrong row map would show)."""
    x = torch.rand(2, 1, 12, 10)
    for sigma in (0.02, 0.2):
        with torch.no_grad():
            before, after = model(x, sigma), reshaped(x, sigma)
        assert float((before - after).abs().max()) < tolerance
        assert float((before - x).abs().max()) > 1e-2


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
    assert_starts_at(model, grown, 1e-3)


def assert_certificate_survives_search(model):
    """The reshaped model states a proper certificate and the adversarial search cannot break it."""
    assert_denoiser_keeps_its_certificate(model.double().eval(), SEARCH)


def test_grown_model_keeps_its_certificate_under_search():
    assert_certificate_survives_search(grow_denoiser(trained_like(), 6, fresh_weight_scale=0.5))


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


def with_idle_blocks(idle=(1, 3), blocks=5, **kw):
    """A trained-like model whose blocks ``idle`` have tau(sigma) ~ 1e-9 at every noise level."""
    model = trained_like(blocks=blocks, **kw)
    head = model.time_embedding.mlp[-1]
    with torch.no_grad():
        for k in idle:
            head.weight[k].zero_()
            head.bias[k] = -20.0
    model.freeze_substeps()
    return model


def _features(model, sigmas):
    """The time head's input features at ``sigmas`` (what its last layer sees)."""
    seen = []
    hook = model.time_embedding.mlp[-1].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    model.time_embedding(torch.tensor(sigmas))
    hook.remove()
    return seen[0]


def test_idle_blocks_are_the_ones_switched_off_at_every_noise_level():
    model = with_idle_blocks()
    assert idle_blocks(model, 0.0, 0.3) == [1, 3]
    head = model.time_embedding.mlp[-1]
    with torch.no_grad():  # block 3 now comes back at high noise: logit -20 at sigma 0.001, +20 at 0.3
        features = _features(model, [0.001, 0.3])
        direction = features[1] - features[0]
        head.weight[3] = 40.0 * direction / float(direction @ direction)
        head.bias[3] = -20.0 - float(head.weight[3] @ features[0])
    assert idle_blocks(model, 0.0, 0.3) == [1]
    assert idle_blocks(model, 0.001, 0.001) == [1, 3]
    assert idle_blocks(trained_like(time_conditioning=False), 0.0, 0.3) == []


def test_pruning_idle_blocks_keeps_the_function_and_the_certificate():
    model = with_idle_blocks()
    pruned = prune_denoiser(model, [1, 3])
    assert pruned.config.blocks == 3 and not pruned.training
    for new, old in enumerate([0, 2, 4]):
        assert torch.equal(pruned.flow_blocks[new].linear.weight, model.flow_blocks[old].linear.weight)
        assert int(pruned.flow_blocks[new].fixed_substeps) == int(model.flow_blocks[old].fixed_substeps)
    x = torch.rand(2, 1, 12, 10)
    for sigma in (0.02, 0.1, 0.3):
        with torch.no_grad():
            assert float((pruned(x, sigma) - model(x, sigma)).abs().max()) < 1e-6
    assert pruned.certificate().averagedness <= model.certificate().averagedness
    double = pruned.double()
    assert_averaged_at_both_noise_levels(double, double.certificate().averagedness, SEARCH)


def test_pruning_a_working_block_is_visible():
    """Negative control for the test above: the same comparison sees a block that does work."""
    model = with_idle_blocks()
    pruned = prune_denoiser(model, [2])
    x = torch.rand(2, 1, 12, 10)
    with torch.no_grad():
        assert float((pruned(x, 0.1) - model(x, 0.1)).abs().max()) > 1e-3


def test_reviving_replaces_idle_blocks_in_place_with_fresh_full_time_blocks():
    model = with_idle_blocks()
    revived = revive_denoiser(model, [1, 3], fresh_weight_scale=1e-3).eval()
    assert revived.config.blocks == 5
    for k in (0, 2, 4):
        assert torch.equal(revived.flow_blocks[k].linear.weight, model.flow_blocks[k].linear.weight)
    for k in (1, 3):
        assert float(revived.flow_blocks[k].linear.weight.detach().abs().max()) < 1e-2
    with torch.no_grad():
        tau = torch.sigmoid(revived.time_embedding(torch.tensor([0.02, 0.3])))
    assert float(tau[:, [1, 3]].min()) > 0.99 and float(tau[:, [1, 3]].max()) < 1
    torch.testing.assert_close(tau[:, [0, 2, 4]], torch.sigmoid(model.time_embedding(torch.tensor([0.02, 0.3])))[:, [0, 2, 4]])
    x = torch.rand(2, 1, 12, 10)
    with torch.no_grad():
        assert float((revived(x, 0.1) - model(x, 0.1)).abs().max()) < 1e-3
    assert idle_blocks(revived, 0.0, 0.3) == []


def test_strided_blocks_keep_their_scale_when_pruned_revived_or_widened():
    """A multi-scale model (stride-2 potentials) reshapes like any other: each kept block keeps its
    stride, so export can leave idle blocks out of it (it prunes, as below)."""
    strides = (1, 2, 1, 2, 2)
    model = with_idle_blocks(strides=strides)
    pruned, record = prune_idle_blocks(model, 0.02, 0.2)
    assert record["blocks"] == [1, 3] and not record["kept"]
    assert pruned.config.strides == (1, 1, 2)
    assert [b.linear.stride for b in pruned.flow_blocks] == [1, 1, 2]
    x = torch.rand(2, 1, 13, 10)  # odd sizes: the strided maps pad and crop
    for sigma in (0.02, 0.2):
        with torch.no_grad():
            assert float((pruned(x, sigma) - model(x, sigma)).abs().max()) < 1e-6
    assert_certificate_survives_search(pruned)
    revived = revive_denoiser(model, [1, 3], fresh_weight_scale=1e-3).eval()
    assert revived.config.strides == strides
    assert torch.equal(revived.flow_blocks[4].linear.weight, model.flow_blocks[4].linear.weight)
    assert_starts_at(model, revived, 1e-3)
    widened = widen_denoiser(model, 5, 8, fresh_weight_scale=1e-3).eval()
    assert widened.config.strides == strides
    assert_starts_at(model, widened, 1e-3)


def test_reshaping_errors():
    model = with_idle_blocks()
    with pytest.raises(ValueError, match="out of range"):
        prune_denoiser(model, [7])
    with pytest.raises(ValueError, match="every block"):
        prune_denoiser(model, list(range(5)))
    with pytest.raises(ValueError, match="sigma_min"):
        idle_blocks(model, 0.2, 0.1)


def test_commands_prune_and_revive_idle_blocks(tmp_path, capsys):
    source = tmp_path / "idle.pt"
    save_denoiser(with_idle_blocks(), source, metadata={"sigma_range_255": [5.0, 50.0], "bsd68_psnr": {"25": 1.0}})
    pruned_path = tmp_path / "pruned.pt"
    assert main([str(source), str(pruned_path), "--prune-idle"]) == 0
    pruned = load(pruned_path)
    meta = json.loads(pruned_path.with_suffix(".json").read_text())
    assert pruned.config.blocks == 3 and meta["pruned_from"]["idle"] == [1, 3]
    assert meta["certificate"]["averagedness"] == pytest.approx(pruned.certificate().averagedness)
    assert len(meta["certificate"]["substeps"]) == 3 and meta["empirical_check"]["averagedness_violation"] < 1e-5
    assert meta["bsd68_psnr"] == {"25": 1.0} and meta["name"] == "pruned"
    assert main([str(source), str(tmp_path / "revived.pt"), "--revive-idle"]) == 0
    assert load(tmp_path / "revived.pt").metadata["revived_from"]["idle"] == [1, 3]
    assert main([str(pruned_path), str(tmp_path / "again.pt"), "--prune-idle"]) == 2
    assert "no block" in capsys.readouterr().err
    bare = tmp_path / "bare.pt"
    save_denoiser(with_idle_blocks(), bare)
    assert main([str(bare), str(tmp_path / "x.pt"), "--prune-idle"]) == 2
    assert "--sigma-range" in capsys.readouterr().err
    assert main([str(bare), str(tmp_path / "x.pt"), "--prune-idle", "--sigma-range", "5", "50"]) == 0


def test_pruning_refuses_idle_blocks_that_still_move_the_output(tmp_path, capsys):
    """tau ~ 9e-4 is below the idle threshold, yet with large weights the block moves the output by
    ~3e-4 > 1e-4: the probe check keeps it (export) or refuses (command), never prunes silently."""
    model = trained_like(blocks=5, init_scale=6.0)
    head = model.time_embedding.mlp[-1]
    with torch.no_grad():
        head.weight[1].zero_()
        head.bias[1] = -7.0
    model.freeze_substeps()
    kept, record = prune_idle_blocks(model, 0.0, 0.3)
    assert kept is model and record["kept"] and record["blocks"] == [1] and record["max_output_change"] > 1e-4
    source = tmp_path / "nearly.pt"
    save_denoiser(model, source, metadata={"sigma_range_255": [0.0, 76.5]})
    assert main([str(source), str(tmp_path / "out.pt"), "--prune-idle"]) == 2
    assert "not pruned" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("width,hidden,spline_knots", [(6, 5, 0), (3, 9, 0), (6, 9, 0), (6, 9, 3)])
def test_widened_model_starts_at_the_trained_function(width, hidden, spline_knots):
    model = trained_like(spline_knots=spline_knots)
    if spline_knots:  # trained activations, not the initial leaky ReLU
        with torch.no_grad():
            for block in model.flow_blocks:
                for p in block.activation.parameters():
                    p.uniform_(-1.0, 1.0)
    wide = widen_denoiser(model, width, hidden, fresh_weight_scale=1e-3)
    assert wide.training and all(int(b.fixed_substeps) == 0 for b in wide.flow_blocks)
    wide.eval()
    assert (wide.config.width, wide.config.hidden, wide.config.blocks) == (width, hidden, 3)
    for old, new in zip(model.flow_blocks, wide.flow_blocks):
        assert new.linear.weight.shape == (hidden, width, 3, 3)
        assert torch.equal(new.linear.weight[:5, :3], old.linear.weight)
        new_entries = torch.cat([new.linear.weight[5:].flatten(), new.linear.weight[:, 3:].flatten()]).detach()
        assert float(new_entries.abs().sum()) > 0 and float(new_entries.abs().max()) < 1e-2
        assert torch.equal(new.bias[:5], old.bias) and not bool(new.bias[5:].any())
    assert_starts_at(model, wide, 1e-4)


def test_widening_with_misplaced_shift_rows_is_visible():
    """Negative control for the test above: the same comparison sees conditioning rows that were
    not moved with their potential channels (the old, contiguous layout kept as it was)."""
    model = trained_like()
    wide = widen_denoiser(model, 3, 9, fresh_weight_scale=1e-3).eval()
    head, old_head = wide.embedding.mlp[-1], model.embedding.mlp[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[:15] = old_head.weight[:15]
        head.bias[:15] = old_head.bias[:15]
        head.weight[-1], head.bias[-1] = old_head.weight[-1], old_head.bias[-1]
        x = torch.rand(2, 1, 12, 10)
        assert float((wide(x, 0.2) - model(x, 0.2)).abs().max()) > 1e-3


def test_widened_model_keeps_its_certificate_under_search():
    assert_certificate_survives_search(widen_denoiser(trained_like(), 5, 8, fresh_weight_scale=0.5))


def test_widening_refuses_what_it_cannot_keep():
    model = trained_like()
    with pytest.raises(ValueError, match="one must grow"):
        widen_denoiser(model, 3, 5)
    with pytest.raises(ValueError, match="neither may shrink"):
        widen_denoiser(model, 2, 9)
    with pytest.raises(ValueError, match="only certified"):
        widen_denoiser(build_denoiser(DenoiserConfig(kind="unconstrained", width=3, hidden=5, blocks=2)), 6)
    with pytest.raises(ValueError, match="fresh_weight_scale"):
        widen_denoiser(model, 6, 9, fresh_weight_scale=2.0)


def test_widened_file_initialises_a_wider_training_run_completely(tmp_path):
    """Every tensor of the run's model comes from the widened file (``init_from`` copies what
    matches by name and shape), so training continues from the trained function."""
    from pnp_stable.training.loop import _initialise_from

    wide_path = tmp_path / "wide.pt"
    save_denoiser(widen_denoiser(trained_like(), 6, 9), wide_path)
    target = build_denoiser(DenoiserConfig(width=6, hidden=9, blocks=3, embedding_dim=8, power_size=8,
                                           time_conditioning=True, max_substeps=1))
    record = _initialise_from(target, str(wide_path))
    assert record["fresh"] == [name for name in record["fresh"] if name.endswith("power_vector")]
    assert torch.equal(target.flow_blocks[1].linear.weight, load(wide_path).flow_blocks[1].linear.weight)


def test_command_widens_and_records_where_from(tmp_path, capsys):
    source, dest = tmp_path / "small.pt", tmp_path / "wide.pt"
    model = trained_like()
    model.freeze_substeps()
    history = {"steps": 7, "wall_hours": 0.5, "init_from": {"name": "older"}}
    save_denoiser(model, source, metadata={"name": "small", "date": "2026-12-01", "commit": "abc", "training": history})
    assert main([str(source), str(dest), "--widen", "6", "9"]) == 0
    wide = load(dest)
    assert (wide.config.width, wide.config.hidden) == (6, 9)
    assert wide.metadata["widened_from"] == {
        "source": str(source), "width": 3, "hidden": 5, "fresh_weight_scale": 0.03,
        "source_model": {"name": "small", "date": "2026-12-01", "commit": "abc"}}
    # a run started from the widened file keeps the source's history in its lineage
    from pnp_stable.training.lineage import starting_point_record

    record = starting_point_record(str(dest))
    assert record["steps"] == 7 and record["wall_hours"] == 0.5 and record["init_from"] == {"name": "older"}
    assert record["widened_from"]["source_model"]["name"] == "small"
    assert main([str(source), str(tmp_path / "narrow.pt"), "--widen", "2", "5"]) == 2
    assert "shrink" in capsys.readouterr().err

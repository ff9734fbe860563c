"""Tiled denoising: the output is the untiled output, so the certificate carries over."""

import pytest
import torch
from torch import nn

from pnp_stable.denoisers import DenoiserConfig, OpponentColorDenoiser, build_denoiser
from pnp_stable.denoisers.tiling import ReceptiveField, TiledDenoiser, receptive_field
from pnp_stable.layers import certificate_of
from pnp_stable.protocols import accepts_noise_level, denoiser_channels
from pnp_stable.verification import empirical_averagedness_violation

TOL = 1e-12  # float64: a different evaluation order, nothing else


def tiny(**kw) -> nn.Module:
    cfg = dict(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8, init_scale=1.6)
    cfg.update(kw)
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():  # conditioning heads that actually move biases, times and gates
        for head in (model.embedding, model.time_embedding, model.injection_embedding, model.gate_embedding):
            for p in () if head is None else head.parameters():
                p.normal_(0, 0.5)
    return model.double().eval()


ARCHITECTURES = {
    "adaptive sub-steps": dict(),
    "strided potentials": dict(strides=(1, 2, 1), blocks=3),
    "heun": dict(integrator="heun"),
    "capped, 5x5, injection, gating": dict(max_substeps=1, blocks=3, kernel_size=5, input_injection=True,
                                          channel_gating=True),
    "spline activations": dict(spline_knots=4),
    "group shrinkage": dict(shrinkage_group_size=1),
    "unconstrained": dict(kind="unconstrained", strides=(2, 1)),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_tiled_output_is_the_untiled_output(name):
    model = tiny(**ARCHITECTURES[name])
    field = receptive_field(model)
    assert field is not None and field.radius > 0
    tiled = TiledDenoiser(model, tile=7)
    assert tiled.exact and tiled.margin == field.radius and tiled.tile % field.alignment == 0
    x = torch.rand(2, 1, 2 * field.radius + 3 * tiled.tile + 5, 2 * field.radius + 2 * tiled.tile + 3, dtype=torch.float64)
    assert len(tiled.tiles(*x.shape[-2:])) > 9  # interior tiles with margins on every side
    with torch.no_grad():
        for sigma in (0.03, torch.tensor([0.2, 0.05], dtype=torch.float64)):
            assert torch.allclose(tiled(x, sigma), model(x, sigma), atol=TOL, rtol=0)


def test_a_margin_short_of_the_radius_changes_the_output_and_drops_the_certificate():
    model = tiny()
    radius = receptive_field(model).radius
    x = torch.rand(1, 1, 4 * radius, 4 * radius, dtype=torch.float64)
    short = TiledDenoiser(model, tile=radius, margin=radius // 2)
    with torch.no_grad():
        assert (short(x, 0.1) - model(x, 0.1)).abs().max() > 1e-6
    assert not short.exact and short.certificate() is None and certificate_of(short) is None
    with pytest.raises(ValueError, match="TiledDenoiser states no certificate"):
        short.certified_averagedness()
    exact = TiledDenoiser(model, tile=radius)
    inner = certificate_of(model)
    assert (exact.certified_lipschitz_bound(), exact.certified_averagedness()) == (inner.lipschitz, inner.averagedness)


def test_radius_bounds_the_dependence_and_is_tight_for_stride_one():
    """Autograd's dependence of one output pixel on the input lies within the stated radius (and
    reaches it: leaky ReLU has no flat part, so nothing cancels)."""
    for kw, tight in ((dict(), True), (dict(integrator="heun"), True), (dict(strides=(2, 1)), False)):
        model = tiny(**kw)
        radius = receptive_field(model).radius
        n = 2 * radius + 9
        x = torch.rand(1, 1, n, n, dtype=torch.float64, requires_grad=True)
        model(x, 0.1)[0, 0, n // 2, n // 2].backward()
        rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
        reach = max(int((rows - n // 2).abs().max()), int((cols - n // 2).abs().max()))
        assert reach <= radius
        if tight:
            assert reach == radius


def test_colour_wrapper_tiles_exactly_with_the_gray_field():
    gray = tiny(strides=(1, 2))
    colour = OpponentColorDenoiser(gray)
    assert receptive_field(colour) == receptive_field(gray)
    tiled = TiledDenoiser(colour, tile=6)
    x = torch.rand(1, 3, 41, 37, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(tiled(x, 0.1), colour(x, 0.1), atol=TOL, rtol=0)
    assert denoiser_channels(tiled) == 3 and tiled.metadata["color"]["mode"] == "opponent"


def test_certificate_is_the_wrapped_one_and_survives_an_adversarial_search():
    model = tiny()
    tiled = TiledDenoiser(model, tile=6)
    inner, outer = certificate_of(model), certificate_of(tiled)
    assert outer == inner and outer.details[0]["layer"] == "tiling"
    fn = lambda x: tiled(x, 0.1)  # noqa: E731
    shape = (1, tiled.margin + 13, tiled.margin + 7)  # 3 x 2 tiles
    assert empirical_averagedness_violation(fn, inner.averagedness, shape, restarts=1, steps=10, n_pairs=4) <= 1e-9


def test_fields_that_are_not_known_are_not_guessed():
    model = tiny()
    model.network[1].linear.padding_mode = "circular"  # wraps around the image: crops cannot reproduce it
    assert receptive_field(model) is None
    assert receptive_field(nn.Identity()) is None
    with pytest.raises(ValueError, match="receptive field .* unknown"):
        TiledDenoiser(nn.Identity())
    approx = TiledDenoiser(nn.Identity(), tile=4, margin=2)
    assert not approx.exact and approx.certificate() is None
    assert not accepts_noise_level(approx)  # called as the wrapped module is: D(x)
    x = torch.rand(1, 1, 9, 10)
    assert torch.equal(approx(x), x)

    class Declared(nn.Module):
        def receptive_field(self):
            return ReceptiveField(3, 2)

        def forward(self, x, sigma):
            return x

    declared = TiledDenoiser(Declared(), tile=5)
    assert declared.exact and declared.margin == 3 and declared.tile == 6  # rounded up to the alignment


def test_whole_image_calls_when_it_fits_or_while_training():
    calls = []

    class Counting(nn.Module):
        def receptive_field(self):
            return ReceptiveField(2)

        def forward(self, x, sigma):
            calls.append(tuple(x.shape[-2:]))
            return x

    inner = Counting().eval()
    tiled = TiledDenoiser(inner, tile=8)
    tiled(torch.rand(1, 1, 8, 8), 0.1)
    assert calls == [(8, 8)]
    calls.clear()
    tiled(torch.rand(1, 1, 9, 17), 0.1)
    assert calls == [(9, 10), (9, 11), (9, 3), (3, 10), (3, 11), (3, 3)]
    calls.clear()
    inner.train()  # sub-step counts would follow a power estimate: not the map the field describes
    tiled(torch.rand(1, 1, 9, 17), 0.1)
    assert calls == [(9, 17)]


def test_refuses_bad_arguments_and_stateful_denoisers():
    model = tiny()
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="tile"):
            TiledDenoiser(model, tile=bad)
    with pytest.raises(ValueError, match="margin"):
        TiledDenoiser(model, margin=-1)

    class Stateful(nn.Module):
        def warm_start_state(self):
            return None

        def forward(self, x, sigma):
            return x

    with pytest.raises(ValueError, match="state"):
        TiledDenoiser(Stateful(), margin=1)
    with pytest.raises(ValueError, match="B x C x H x W"):
        TiledDenoiser(model)(torch.rand(5, 5), 0.1)


def test_restoration_tasks_tile_automatically_only_large_calls():
    from pnp_stable.denoisers.tiling import AUTO_TILE_PIXELS, default_tile
    from pnp_stable.restore import _tiled

    model = tiny().float()
    assert default_tile("cpu") == 256 and default_tile("cuda") == 1024
    side = int(AUTO_TILE_PIXELS ** 0.5)
    notes, info = [], {}
    assert _tiled(model, (1, 1, side, side), None, notes, info) is model and not notes  # one call is small enough
    auto = _tiled(model, (1, 1, side + 1, side), None, notes, info)
    assert isinstance(auto, TiledDenoiser) and auto.tile == 256 and auto.exact
    assert info["tiling"]["margin"] == receptive_field(model).radius and "exact" in notes[0]
    assert isinstance(_tiled(model, (4, 1, side // 2 + 1, side // 2), None, [], {}), TiledDenoiser)  # batch counts
    assert _tiled(model, (1, 1, 5000, 5000), 0, [], {}) is model  # 0: never
    assert _tiled(model, (1, 1, 40, 40), 40, [], {}) is model  # fits in one tile
    assert _tiled(model, (1, 1, 40, 41), 40, [], {}).tile == 40
    identity = nn.Identity()
    assert _tiled(identity, (1, 1, 5000, 5000), None, [], {}) is identity  # unknown field: not tiled, no error
    with pytest.raises(ValueError, match="cannot be tiled exactly"):
        _tiled(nn.Identity(), (1, 1, 50, 50), 16, [], {})
    with pytest.raises(ValueError, match="tile"):
        _tiled(model, (1, 1, 50, 50), -2, [], {})


def test_tiling_benchmark_records_exactness_per_size_and_tile(tmp_path):
    import json

    from bench_loader import load_bench_script

    from pnp_stable.denoisers import save_denoiser

    model = tiny().float()
    path = tmp_path / "tiny.pt"
    save_denoiser(model, path, {"channels": 1})
    bench = load_bench_script("bench_tiling")
    out = tmp_path / "tiling.json"
    assert bench.main([str(path), "--sizes", "40", "--tiles", "16", "0", "--threads", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    whole, tiled = record["results"]
    assert whole["tile"] == 0 and "max_abs_difference" not in whole and whole["peak_rss_gb"] > 0
    assert tiled["tile"] == 16 and tiled["tiles"] == 9 and tiled["max_abs_difference"] == 0.0
    assert record["command"].startswith("python bench/bench_tiling.py ") and record["date"]
    assert bench.main(["gray", "--tiles", "-1"]) == 2


def test_the_tiling_follows_weights_changed_after_wrapping():
    """New weights (load_state_dict, fine-tuning) can raise a block's sub-step count and so its
    receptive field: a default margin follows it (output and certificate of the untiled model), a
    given margin that no longer covers it is inexact and states no certificate (review of
    2026-12-06: crops cut to the old field gave a Lipschitz constant of 1.008 against a certified 1)."""
    from pnp_stable.denoisers import DenoiserConfig, TiledDenoiser, build_denoiser, receptive_field

    torch.manual_seed(1)
    config = DenoiserConfig(width=2, hidden=3, blocks=1, embedding_dim=4, power_size=8, negative_slope=1.0,
                            sigma_conditioning=False, learned_relaxation=False, center=0.0, margin=0.0)
    model = build_denoiser(config).double().eval()
    follows, fixed = TiledDenoiser(model, tile=4), TiledDenoiser(model, tile=4, margin=receptive_field(model).radius)
    before = receptive_field(model).radius
    with torch.no_grad():
        model.flow_blocks[0].linear.weight.mul_(6.0)  # a larger norm: more sub-steps
    assert receptive_field(model).radius > before
    x = torch.rand(1, 1, 13, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(follows(x), model(x), rtol=0, atol=1e-12)
    assert follows.margin == receptive_field(model).radius and follows.exact
    assert follows.certificate() is not None
    assert fixed.certificate() is None and not fixed.exact

import math

import pytest
import torch
from torch import nn

from pnp_stable.classify import ClassifierConfig, build_classifier, load_classifier, save_classifier
from pnp_stable.classify.certified_layers import NormalizedLinear
from pnp_stable.verification import adversarial_search, lipschitz_ratio, local_lipschitz, random_pair_search

TINY = dict(in_channels=2, num_classes=3, image_size=(8, 8), widths=(3, 4), blocks_per_stage=(1, 1),
            input_mean=(0.5, 0.5))


def tiny(arch="nonexpansive", **kw):
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(architecture=arch, **{**TINY, **kw})).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # large weights: the normalisation must still hold the bound (block weights only
            # change the sub-step count, so they keep their size to keep the test fast)
            if arch == "resnet" or "map.weight" in name:
                p.mul_(5.0)
    return model.eval()


def empirical_lipschitz(model, shape=(2, 8, 8)):
    """Largest ||f(x) - f(y)|| / ||x - y|| found by random pairs, gradient ascent and local
    Jacobian norms: a lower bound on the true constant (classifiers change the shape, so the
    residual heuristic of pnp_stable.verification does not apply)."""
    for p in model.parameters():
        p.requires_grad_(False)
    ratio = lambda x, y: lipschitz_ratio(model, x, y)  # noqa: E731
    rnd = random_pair_search(ratio, shape, n_pairs=8)
    adv = adversarial_search(ratio, shape, restarts=2, steps=15, init=(rnd.x, rnd.y))
    local = max(local_lipschitz(model, p, n_iter=10) for p in (rnd.x, adv.x))
    return max(rnd.value, adv.value, local)


@pytest.mark.parametrize("options", [{}, {"lift": "zero", "head": "pool", "hidden_multiplier": 2, "kernel_size": 5},
                                     {"stage_activation": "maxmin", "widths": (4, 6)}])
def test_nonexpansive_bound_holds_empirically(options):
    model = tiny(**options)
    bound = model.certified_lipschitz_bound()
    assert bound <= 1.0 + 1e-6
    found = empirical_lipschitz(model)
    assert found <= bound * (1 + 1e-6)
    assert found > 0.05  # the search sees a non-trivial map


def test_every_layer_is_certified():
    model = tiny()
    details = model.certificate().details
    kinds = [d.get("layer") for d in details]
    assert "NormalizedConv2d" in kinds and "NormalizedLinear" in kinds and "ConvMap" in kinds
    assert all(d.get("certified", True) for d in details)


def test_search_catches_a_false_certificate(monkeypatch):
    # the empirical check above can fail: scale the head by 10 behind the certificate's back
    model = tiny()
    original = NormalizedLinear.divisor
    monkeypatch.setattr(NormalizedLinear, "divisor", lambda self: original(self) / 10.0)
    found = empirical_lipschitz(model)
    assert found > model.certified_lipschitz_bound() * 1.5


class LogitDifference(nn.Module):
    """``x -> f_i(x) - f_j(x)``, the map whose constant ``certified_difference_lipschitz()[i, j]`` bounds."""

    def __init__(self, model: nn.Module, i: int, j: int) -> None:
        super().__init__()
        self.model, self.i, self.j = model, i, j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits[:, self.i : self.i + 1] - logits[:, self.j : self.j + 1]


@pytest.mark.parametrize("options", [{}, {"lift": "zero", "head": "pool", "hidden_multiplier": 2, "kernel_size": 5}])
def test_pairwise_difference_bounds_hold_empirically(options):
    model = tiny(**options)
    pairwise = model.certified_difference_lipschitz()
    ceiling = math.sqrt(2) * model.certified_lipschitz_bound()
    assert pairwise.dtype == torch.float64 and pairwise.shape == (3, 3)
    torch.testing.assert_close(pairwise, pairwise.T)
    assert bool((pairwise.diagonal() == 0).all()) and bool((pairwise <= ceiling).all())
    # the random head's rows are not orthonormal, so the pairwise rule is sharper for some pair
    assert float(pairwise[~torch.eye(3, dtype=torch.bool)].min()) < 0.95 * ceiling
    for i, j in ((0, 1), (0, 2), (1, 2)):
        found = empirical_lipschitz(LogitDifference(model, i, j))
        assert found <= float(pairwise[i, j]) * (1 + 1e-6)
        assert found > 0.1 * float(pairwise[i, j])  # the search sees a non-trivial map


def test_search_catches_a_false_pairwise_bound(monkeypatch):
    # the head's forward pass divides by 10x less than the certificate assumes
    model = tiny()
    original = NormalizedLinear.divisor
    monkeypatch.setattr(NormalizedLinear, "divisor", lambda self: original(self) / 10.0)
    pairwise = model.certified_difference_lipschitz()
    found = max(empirical_lipschitz(LogitDifference(model, i, j)) / float(pairwise[i, j])
                for i, j in ((0, 1), (0, 2), (1, 2)))
    assert found > 1.5


def test_resnet_bound_is_valid_and_loose():
    model = tiny("resnet")
    bound = model.certified_lipschitz_bound()
    found = empirical_lipschitz(model)
    assert found <= bound
    assert bound > 10.0  # unconstrained: nothing keeps it near 1


def test_resnet_block_layout():
    model = tiny("resnet")
    block = model.layers[2]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = x + block.outer(torch.relu(block.inner(x)))
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("options", [{}, {"stage_activation": "maxmin", "widths": (4, 6)}])
def test_layouts_agree_between_models(options):
    ne, rn = tiny(**options), tiny("resnet", **options)
    assert [type(layer).__name__ for layer in ne.layers][0] == type(rn.layers[0]).__name__ == "InputShift"
    assert len(ne.layers) == len(rn.layers)
    maxmin_at = lambda m: [i for i, layer in enumerate(m.layers) if type(layer).__name__ == "MaxMin"]  # noqa: E731
    assert maxmin_at(ne) == maxmin_at(rn) == ([2, 5] if options else [])  # after the lift and the transition
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    assert ne(x).shape == rn(x).shape == (3, 3)


def test_save_and_load_roundtrip(tmp_path):
    model = tiny().float()
    path = tmp_path / "m.pt"
    save_classifier(model, path, ["a", "b", "c"])
    loaded = load_classifier(path)
    x = torch.rand(4, 2, 8, 8)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.class_names == ["a", "b", "c"] and not loaded.training
    assert loaded.certified_lipschitz_bound() == pytest.approx(model.certified_lipschitz_bound())
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk.pt is not a pnp-stable classifier \(it could not be read as one\)$"):
        load_classifier(tmp_path / "junk.pt")
    # a pickle that weights_only loading refuses: one line, not PyTorch's explanation of weights_only
    torch.save({"config": math.pi, "state_dict": nn.Identity()}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="could not be read") as refused:
        load_classifier(tmp_path / "pickled.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pnp-stable classifier"):
        load_classifier(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="model file not found"):
        load_classifier(tmp_path / "absent.pt")


@pytest.mark.parametrize("options, message", [
    ({"architecture": "vgg"}, "architecture must be one of"),
    ({"widths": (4, 8), "blocks_per_stage": (1, 1, 1)}, "one non-negative count per width"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"lift": "zero", "widths": (1,), "blocks_per_stage": 1, "in_channels": 3, "input_mean": 0.5}, "widths\\[0\\] >= in_channels"),
    ({"head": "attention"}, "head must be 'flatten' or 'pool'"),
    ({"input_mean": (0.1, 0.2), "in_channels": 3}, "input_mean needs 3 entries"),
    ({"block_time": 0.0}, "block_time must be positive"),
    ({"widths": "wide"}, "widths must be a number or a sequence"),
    ({"stage_activation": "groupsort"}, "stage_activation must be one of"),
    ({"stage_activation": "maxmin", "widths": (3, 4), "blocks_per_stage": 1}, "every width must be even"),
])
def test_config_errors(options, message):
    with pytest.raises(ValueError, match=message):
        ClassifierConfig(**options)


def test_config_dict_roundtrip():
    config = ClassifierConfig(**TINY)
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown classifier option"):
        ClassifierConfig.from_dict({"depth": 3})
    assert config.final_resolution() == (4, 4) and config.head_features() == 64


def test_max_substeps_is_recorded_only_where_it_applies():
    assert ClassifierConfig(**{**TINY, "max_substeps": 2}).max_substeps == 2
    # a ResNet has no sub-steps: a shared setting must not leave a misleading cap in its config
    assert ClassifierConfig(**{**TINY, "architecture": "resnet", "max_substeps": 2}).max_substeps == 0

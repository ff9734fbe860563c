import math

import pytest
import torch
from torch import nn

from pnp_stable.classify import (
    ClassifierConfig,
    PGDConfig,
    build_classifier,
    certified_accuracy,
    certified_radii,
    evaluate,
    pgd_attack,
)
from pnp_stable.classify.certified_layers import NormalizedLinear
from pnp_stable.classify.losses import classification_loss, logit_margins, margin_cross_entropy, multiclass_hinge


def linear_toy(n=40, dim=6, classes=3, seed=0):
    """An unconstrained linear classifier, whose exact minimal adversarial distance is known:
    leaving class y means crossing some hyperplane f_y = f_j, at distance margin_j / ||w_y - w_j||."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(dim, classes)).double()
    with torch.no_grad():
        model[1].weight.copy_(4 * torch.randn(classes, dim, generator=g, dtype=torch.float64))
        model[1].bias.copy_(torch.randn(classes, generator=g, dtype=torch.float64))
    x = torch.randn(n, 1, dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    w, b = model[1].weight, model[1].bias
    f = x.flatten(1) @ w.T + b
    dist = torch.full((n,), math.inf, dtype=torch.float64)
    for j in range(classes):
        gap = (f.gather(1, y[:, None]).squeeze(1) - f[:, j]) / (w[y] - w[j]).norm(dim=1).clamp_min(1e-30)
        dist = torch.where(y == j, dist, torch.minimum(dist, gap))
    return model.eval(), x, y, dist


@pytest.mark.parametrize("loss", ["margin", "ce"])
def test_pgd_finds_every_adversarial_example_just_outside_the_minimal_distance(loss):
    # two classes: the decision function is affine, so a zero start walks straight to the optimum
    model, x, y, dist = linear_toy(classes=2)
    config = PGDConfig(steps=30, random_start=False, loss=loss, clip=None)
    outside = pgd_attack(model, x, y, dist * 1.02, config)
    assert bool(outside.fooled.all())  # PGD is strong enough to fail a model
    assert bool((model(outside.adversarial).argmax(dim=1) != y).all())
    inside = pgd_attack(model, x, y, dist * 0.98, config)
    assert not bool(inside.fooled.any())  # and reports nothing that does not exist


def test_random_start_pgd_with_restarts():
    # three classes (the runner-up logit need not give the nearest boundary) and random starts
    # (which may begin far from the best direction): restarts cover the unlucky cases
    model, x, y, dist = linear_toy(seed=1)
    config = PGDConfig(steps=50, restarts=3, clip=None)
    assert bool(pgd_attack(model, x, y, dist * 1.2, config, torch.Generator().manual_seed(0)).fooled.all())
    assert not bool(pgd_attack(model, x, y, dist * 0.95, config, torch.Generator().manual_seed(0)).fooled.any())


def test_pgd_respects_the_ball_and_the_box():
    model, x, y, _ = linear_toy()
    x = x.sigmoid()  # pixels in [0, 1]
    for eps in (0.05, 0.5, 3.0):
        for random_start in (True, False):
            config = PGDConfig(steps=10, restarts=2, random_start=random_start, clip=(0.0, 1.0))
            result = pgd_attack(model, x, y, eps, config, torch.Generator().manual_seed(1))
            step = (result.adversarial - x).flatten(1).norm(dim=1)
            assert float(step.max()) <= eps * (1 + 1e-9)
            assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    eps = torch.linspace(0.0, 1.0, x.shape[0], dtype=torch.float64)
    result = pgd_attack(model, x, y, eps, PGDConfig(steps=5), torch.Generator().manual_seed(2))
    assert bool(((result.adversarial - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-9)).all())
    assert not bool(result.fooled[0])  # eps = 0 cannot fool a correctly classified point


def test_pgd_does_not_touch_parameter_gradients():
    model, x, y, dist = linear_toy()
    pgd_attack(model, x, y, dist, PGDConfig(steps=3, clip=None))
    assert all(p.grad is None for p in model.parameters())


def test_pgd_config_errors():
    with pytest.raises(ValueError, match="steps >= 1"):
        PGDConfig(steps=0)
    with pytest.raises(ValueError, match="PGD loss must be"):
        PGDConfig(loss="hinge")
    with pytest.raises(ValueError, match="low < high"):
        PGDConfig(clip=(1.0, 0.0))
    model, x, y, _ = linear_toy()
    with pytest.raises(ValueError, match="eps must be a non-negative number"):
        pgd_attack(model, x, y, -0.1)


def trained_tiny_certified(make_data, steps=60):
    """A small non-expansive classifier trained briefly (margins matter, not accuracy)."""
    torch.manual_seed(0)
    data = make_data(64, classes=4, size=8)
    config = ClassifierConfig(in_channels=1, num_classes=4, image_size=(8, 8), widths=(4, 8),
                              blocks_per_stage=(1, 1), input_mean=(0.3,))
    model = build_classifier(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data.float_images(), data.labels
    model.train()
    for _ in range(steps):
        loss = classification_loss("hinge", model(x), y, margin=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x, y


@pytest.mark.parametrize("rule", ["global", "pairwise"])
def test_pgd_never_breaks_a_certified_radius(make_data, rule):
    model, x, y = trained_tiny_certified(make_data)
    with torch.no_grad():
        logits = model(x)
    global_radii = certified_radii(logits, y, model.certified_lipschitz_bound())
    if rule == "global":
        radii = global_radii
    else:
        radii = certified_radii(logits, y, model.certified_difference_lipschitz())
        assert bool((radii >= global_radii).all())
        assert bool((radii > global_radii * 1.01).any())  # sharper on some examples
    certified = radii > 0
    assert int(certified.sum()) >= 32  # the test is about real, trained margins
    strong = PGDConfig(steps=30, restarts=2, clip=None)
    for loss in ("margin", "ce"):
        result = pgd_attack(model, x[certified], y[certified], radii[certified].float() * 0.999,
                            PGDConfig(**{**strong.to_dict(), "loss": loss}), torch.Generator().manual_seed(3))
        assert not bool(result.fooled.any())
    # the same attack does break these examples a little further out, so it is not toothless:
    # the certified radii are loose by a modest factor only
    far = pgd_attack(model, x[certified], y[certified], radii[certified].float() * 6.0, strong,
                     torch.Generator().manual_seed(4))
    assert bool(far.fooled.any())


def test_a_false_certificate_is_caught(make_data, monkeypatch):
    # claim L = 1 while the head is secretly 20x larger: PGD breaks the claimed radii
    model, x, y = trained_tiny_certified(make_data)
    original = NormalizedLinear.divisor
    monkeypatch.setattr(NormalizedLinear, "divisor", lambda self: original(self) / 20.0)
    with torch.no_grad():
        logits = model(x)
    for constants in (model.certified_lipschitz_bound(), model.certified_difference_lipschitz()):
        radii = certified_radii(logits, y, constants)
        ok = radii > 0
        result = pgd_attack(model, x[ok], y[ok], radii[ok].float() * 0.999, PGDConfig(steps=40, clip=None),
                            torch.Generator().manual_seed(5))
        assert bool(result.fooled.any())


def test_evaluate_report_is_consistent(make_data):
    model, _, _ = trained_tiny_certified(make_data, steps=30)
    data = make_data(40, classes=4, size=8, seed=7)
    report = evaluate(model, data, eps=(0.0, 0.2, 0.6), pgd=PGDConfig(steps=10), batch_size=16, progress=False)
    assert report.n_examples == 40 and report.lipschitz_bound <= 1 + 1e-6
    assert report.certified_radius_rule == "pairwise"
    assert report.pgd_accuracy[0] == pytest.approx(report.clean_accuracy)
    assert report.certified_accuracy[0] == pytest.approx(report.clean_accuracy)
    for pgd_acc, cert_acc in zip(report.pgd_accuracy, report.certified_accuracy):
        assert cert_acc <= pgd_acc <= report.clean_accuracy
    assert report.pgd_accuracy == sorted(report.pgd_accuracy, reverse=True)
    assert report.pgd_at(0.2) == report.pgd_accuracy[1] and report.certified_at(0.6) == report.certified_accuracy[2]
    with pytest.raises(ValueError, match="was not evaluated"):
        report.pgd_at(0.5)
    assert model.training is False


def test_margins_losses_and_radii():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 2.5], [1.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    torch.testing.assert_close(logit_margins(logits, labels), torch.tensor([2.0, -0.5, 0.0]))
    radii = certified_radii(logits, labels, lipschitz=0.5)
    torch.testing.assert_close(radii, torch.tensor([2.0 / (math.sqrt(2) * 0.5), 0.0, 0.0], dtype=torch.float64))
    assert certified_accuracy(radii, 0.0) == pytest.approx(1 / 3)
    assert certified_accuracy(radii, 2.9) == pytest.approx(0.0)  # 2.83 < 2.9
    with pytest.raises(ValueError, match="Lipschitz bound must be positive"):
        certified_radii(logits, labels, 0.0)
    torch.testing.assert_close(margin_cross_entropy(logits, labels), nn.functional.cross_entropy(logits, labels))
    torch.testing.assert_close(margin_cross_entropy(logits, labels, margin=1.0, scale=2.0),
                               nn.functional.cross_entropy(2 * (logits - torch.eye(3)[labels]), labels))
    torch.testing.assert_close(multiclass_hinge(logits, labels, margin=1.0), torch.tensor((0.0 + 1.5 + 1.0) / 3))
    with pytest.raises(ValueError, match="unknown loss"):
        classification_loss("mse", logits, labels, 0.0)


def test_pairwise_radii():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 2.5], [1.0, 1.0, 0.0], [0.0, 4.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    pairwise = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 2.0], [0.5, 2.0, 0.0]])
    radii = certified_radii(logits, labels, pairwise)
    # example 0: min(2 / 1, 2.5 / 0.5); example 3: min(4 / 1, 3 / 2); wrong or tied examples: 0
    torch.testing.assert_close(radii, torch.tensor([2.0, 0.0, 0.0, 1.5], dtype=torch.float64))
    assert bool((pairwise.diagonal() == 0).all())  # the caller's matrix is left as it was
    assert bool((certified_radii(logits, labels, pairwise.double()) == radii).all())
    # with every pair at sqrt(2) L the rule is the global one
    flat = math.sqrt(2) * 0.5 * (1 - torch.eye(3))
    torch.testing.assert_close(certified_radii(logits, labels, flat), certified_radii(logits, labels, 0.5))
    with pytest.raises(ValueError, match="3 x 3"):
        certified_radii(logits, labels, torch.ones(2, 2))
    with pytest.raises(ValueError, match="positive and finite"):
        certified_radii(logits, labels, torch.zeros(3, 3))


def test_models_without_pairwise_bounds_use_the_global_rule(make_data):
    from pnp_stable.classify import certified_radius_constants

    model = build_classifier(ClassifierConfig(architecture="resnet", widths=(4, 8), blocks_per_stage=1,
                                              image_size=12, num_classes=4)).eval()
    lipschitz, constants, rule = certified_radius_constants(model)
    assert rule == "global" and constants == lipschitz == pytest.approx(model.certified_lipschitz_bound())
    assert certified_radius_constants(nn.Linear(3, 2)) == (None, None, None)
    report = evaluate(model, make_data(8), eps=[0.1], pgd=PGDConfig(steps=1), progress=False)
    assert report.certified_radius_rule == "global"


def test_test_set_summary_matches_evaluate(make_data):
    from pnp_stable.classify import (ClassifierConfig, ImageClassificationData, build_classifier, evaluate,
                                     test_set_summary)

    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(widths=(4, 8), blocks_per_stage=1, image_size=12, num_classes=4))
    data = make_data(40)
    model.train()
    summary = test_set_summary(model, data, eps=0.0, batch_size=7)
    assert model.training  # mode restored
    report = evaluate(model, data, eps=[0.0], pgd=PGDConfig(steps=1), progress=False)
    assert summary["n_examples"] == 40
    assert summary["clean_accuracy"] == pytest.approx(report.clean_accuracy)
    assert summary["certified_accuracy"] == pytest.approx(report.certified_accuracy[0])
    assert summary["lipschitz_bound"] == pytest.approx(report.lipschitz_bound)
    with pytest.raises(ValueError, match="empty"):
        test_set_summary(model, ImageClassificationData(data.images[:0], data.labels[:0], data.class_names))


def test_pgd_refuses_inputs_outside_the_clip_box():
    # clamping x itself would move the clean point: perturbations far beyond eps, and "fooled"
    # examples that only the clamp fooled (normalised data with the default (0, 1) box)
    model, x, y, _ = linear_toy()
    assert float(x.min()) < 0.0
    with pytest.raises(ValueError, match=r"outside the clip box \[0, 1\].*clip=None"):
        pgd_attack(model, x, y, 0.1, PGDConfig(steps=2))
    result = pgd_attack(model, x, y, 0.1, PGDConfig(steps=2, clip=(float(x.min()), float(x.max()))))
    assert float((result.adversarial - x).flatten(1).norm(dim=1).max()) <= 0.1 * (1 + 1e-9)


def test_plot_format_comes_from_the_suffix_and_is_checked_first(tmp_path):
    from pnp_stable.classify import RobustnessReport, plot_robustness

    report = RobustnessReport(n_examples=4, clean_accuracy=0.75, eps=[0.5], pgd_accuracy=[0.5],
                              certified_accuracy=[0.25], lipschitz_bound=1.0, pgd={"steps": 3})
    # without a suffix matplotlib used to take the format from the random part of the temporary
    # name ("Format 'xqm65rp4' is not supported"); now the error names the path and the choices
    for name, fragment in (("plot", "a file without a suffix"), ("plot.xyz", r"a \.xyz file")):
        with pytest.raises(ValueError, match=rf"{name}: cannot plot to {fragment}; use one of .*\.png"):
            plot_robustness({"m": report}, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    path = plot_robustness({"m": report}, tmp_path / "p.PDF")
    assert path.read_bytes()[:4] == b"%PDF" and [p.name for p in tmp_path.iterdir()] == ["p.PDF"]


def test_full_test_set_passes_show_progress(make_data, capsys):
    # a full Fashion-MNIST test set takes about a minute per pass on one CPU thread: not silently
    from pnp_stable.classify import clean_accuracy, test_set_summary

    model = build_classifier(ClassifierConfig(widths=(4, 8), blocks_per_stage=1, image_size=12, num_classes=4))
    data = make_data(12)
    clean_accuracy(model, data, batch_size=5, progress=True)
    test_set_summary(model, data, batch_size=5, progress=True)
    err = capsys.readouterr().err
    assert "test accuracy" in err and "certified radii" in err and "/12 " in err
    clean_accuracy(model, data, progress=False)
    test_set_summary(model, data)
    assert capsys.readouterr().err == ""

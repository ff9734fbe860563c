"""bench/bench_robust_fmnist.py caches each finished eps so a rerun (after Ctrl-C, or with a
shorter eps list) does not attack again: the cache must hit when read back from disk."""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from pnp_stable.classify import ImageClassificationData

from bench_loader import load_bench_script
from classify_helpers import synthetic_images


def _bench_module():
    return load_bench_script("bench_robust_fmnist")


class _LinearClassifier(nn.Sequential):
    """A linear classifier; its Lipschitz bound is the weight's spectral norm (exact)."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(144, 4))

    def certified_lipschitz_bound(self) -> float:
        return float(torch.linalg.matrix_norm(self[1].weight.detach(), ord=2))


def test_cached_eps_are_not_attacked_again(tmp_path, monkeypatch):
    bench = _bench_module()
    images, labels = synthetic_images(8, classes=4, size=12)
    data = ImageClassificationData(torch.from_numpy(images), torch.from_numpy(labels),
                                   [str(k) for k in range(4)], name="synthetic")
    torch.manual_seed(0)
    model = _LinearClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = data.images.float() / 255, data.labels
    for _ in range(50):               # fit the toy data so there are correct examples to attack
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.eval()
    args = argparse.Namespace(pgd_steps=3, pgd_restarts=1, pgd_loss="margin", seed=0, no_progress=True,
                              eps=[0.1, 0.5])
    cache = tmp_path / "robustness_cache.json"
    attacked = []
    real_evaluate = bench.evaluate

    def counting_evaluate(*a, **kw):
        attacked.append(tuple(kw["eps"]))
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(bench, "evaluate", counting_evaluate)
    first = bench.robustness(model, data, args, cache)
    assert attacked == [(0.1,), (0.5,)]
    args.eps = [0.1, 0.5, 1.0]           # a rerun with one more eps attacks only that one
    second = bench.robustness(model, data, args, cache)
    assert attacked == [(0.1,), (0.5,), (1.0,)]
    assert second.pgd_accuracy[:2] == first.pgd_accuracy
    # a model that proves pairwise bounds certifies by another rule: nothing cached may be reused
    weight = model[1].weight.detach().double()
    gaps = torch.stack([(weight - weight[i]).norm(dim=1) for i in range(4)])
    monkeypatch.setattr(_LinearClassifier, "certified_difference_lipschitz", lambda self: gaps, raising=False)
    third = bench.robustness(model, data, args, cache)
    assert attacked[3:] == [(0.1,), (0.5,), (1.0,)]
    assert third.certified_radius_rule == "pairwise" and second.certified_radius_rule == "global"
    assert all(p >= g for p, g in zip(third.certified_accuracy, second.certified_accuracy))


def test_plot_script_combines_runs_and_checks_them(tmp_path, capsys):
    plot = load_bench_script("plot_robust_fmnist")
    report = {"n_examples": 20, "clean_accuracy": 0.9, "eps": [0.5], "pgd_accuracy": [0.6],
              "certified_accuracy": [0.4], "lipschitz_bound": 1.0, "pgd": {"steps": 3}}

    def write(name, model, n=20):
        path = tmp_path / name
        path.write_text(json.dumps({"models": {model: {"train_config": {"seed": 0},
                                                       "pgd_subset": {**report, "n_examples": n}}}}))
        return str(path)

    a, b = write("a.json", "nonexpansive"), write("b.json", "resnet")
    out = tmp_path / "fig.png"
    assert plot.main([a, f"{b}:resnet", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert plot.main([a, write("c.json", "resnet", n=30), "--out", str(out)]) == 2
    assert "different test subsets" in capsys.readouterr().err
    assert plot.main([f"{a}:resnet", "--out", str(out)]) == 2
    assert "no model 'resnet'" in capsys.readouterr().err
    assert plot.main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert plot.main([a, write("d.json", "nonexpansive"), "--out", str(out)]) == 2
    assert "model names repeat" in capsys.readouterr().err

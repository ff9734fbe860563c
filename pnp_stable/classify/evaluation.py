"""Clean, empirical-robust (l2-PGD) and certified accuracy of a classifier on a dataset."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from pnp_stable.classify.attacks import PGDConfig, pgd_attack
from pnp_stable.classify.certify import certified_accuracy, certified_radii
from pnp_stable.classify.data import ImageClassificationData

__all__ = ["DEFAULT_EPS", "RobustnessReport", "certified_radius_constants", "clean_accuracy", "evaluate",
           "test_set_summary"]

DEFAULT_EPS = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclass
class RobustnessReport:
    """Accuracies (fractions in [0, 1]) on ``n_examples``; lists are aligned with ``eps``.

    ``certified_accuracy`` is None when the model states no Lipschitz bound. By the certificate,
    ``certified_accuracy[i] <= pgd_accuracy[i]`` for every ``eps[i]`` (checked in the tests).
    """

    n_examples: int
    clean_accuracy: float
    eps: list[float]
    pgd_accuracy: list[float]
    certified_accuracy: list[float] | None
    lipschitz_bound: float | None
    pgd: dict[str, Any] = field(default_factory=dict)
    #: "pairwise" (bounds of each logit difference, the sharper rule), "global" (margin / (sqrt(2) L)) or None
    certified_radius_rule: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pgd_at(self, eps: float) -> float:
        return self.pgd_accuracy[self._index(eps)]

    def certified_at(self, eps: float) -> float | None:
        return None if self.certified_accuracy is None else self.certified_accuracy[self._index(eps)]

    def _index(self, eps: float) -> int:
        for i, e in enumerate(self.eps):
            if abs(e - eps) < 1e-9:
                return i
        raise ValueError(f"eps {eps} was not evaluated (have {self.eps})")


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def certified_radius_constants(model: nn.Module) -> tuple[float | None, float | torch.Tensor | None, str | None]:
    """``(L, constants, rule)`` for :func:`certified_radii`, all None if the model states no bound.

    ``constants`` is the model's pairwise matrix (``certified_difference_lipschitz()``, rule
    ``"pairwise"``) when it has one, else its global bound ``L`` (rule ``"global"``). Read in eval mode.
    """
    bound_fn = getattr(model, "certified_lipschitz_bound", None)
    if not callable(bound_fn):
        return None, None, None
    lipschitz = float(bound_fn())
    pairwise_fn = getattr(model, "certified_difference_lipschitz", None)
    if callable(pairwise_fn):
        return lipschitz, pairwise_fn(), "pairwise"
    return lipschitz, lipschitz, "global"


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _progress(n: int, desc: str, enabled: bool):
    return tqdm(total=n, desc=desc, unit="img", disable=not enabled, leave=False)


def clean_accuracy(model: nn.Module, data: ImageClassificationData, batch_size: int = 500,
                   progress: bool = False) -> float:
    """Top-1 accuracy of the eval-mode model (restores the previous train/eval mode);
    ``progress`` shows a tqdm bar (a full test set takes a minute on one CPU thread)."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = 0
    bar = _progress(len(data), "test accuracy", progress)
    try:
        with torch.no_grad():
            for sl in _batches(len(data), batch_size):
                x = data.float_images(sl).to(device)
                correct += int((model(x).argmax(dim=1) == data.labels[sl].to(device)).sum())
                bar.update(x.shape[0])
    finally:
        bar.close()
        model.train(was_training)
    return correct / max(1, len(data))


def test_set_summary(model: nn.Module, data: ImageClassificationData, eps: float = 0.5,
                     batch_size: int = 500, progress: bool = False) -> dict[str, Any]:
    """Clean accuracy and certified accuracy at ``eps`` on all of ``data`` (one forward pass, cheap).

    Returns ``n_examples``, ``clean_accuracy``, ``certified_eps``, ``certified_accuracy``,
    ``lipschitz_bound`` (``model.certified_lipschitz_bound()``, eval mode),
    ``median_certified_radius`` and ``certified_radius_rule`` (see :func:`certified_radius_constants`).
    The model is put in eval mode (its previous mode is restored); ``progress`` shows a tqdm bar.
    """
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    bar = _progress(len(data), "certified radii", progress)
    try:
        bound, constants, rule = certified_radius_constants(model)
        if constants is None:
            raise ValueError("the model states no certified Lipschitz bound")
        logits = []
        with torch.no_grad():
            for sl in _batches(len(data), batch_size):
                logits.append(model(data.float_images(sl).to(device)).cpu())
                bar.update(logits[-1].shape[0])
    finally:
        bar.close()
        model.train(was_training)
    logits_all = torch.cat(logits)
    radii = certified_radii(logits_all, data.labels, constants)
    return {
        "n_examples": len(data),
        "clean_accuracy": float((logits_all.argmax(dim=1) == data.labels).double().mean()),
        "certified_eps": float(eps),
        "certified_accuracy": certified_accuracy(radii, eps),
        "lipschitz_bound": bound,
        "median_certified_radius": float(radii.median()),
        "certified_radius_rule": rule,
    }


def evaluate(
    model: nn.Module,
    data: ImageClassificationData,
    eps: Sequence[float] = DEFAULT_EPS,
    pgd: PGDConfig | None = None,
    batch_size: int = 250,
    max_examples: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> RobustnessReport:
    """Clean accuracy, l2-PGD accuracy at each ``eps`` and certified accuracy at each ``eps``.

    PGD runs only on the correctly classified examples (the others are already non-robust: ``x``
    lies in its own ball). Certified accuracy uses the model's proven constants (eval mode; see
    :func:`certified_radius_constants`): pairwise bounds of the logit differences where the model
    has them, else the radius margin / (sqrt(2) L). ``max_examples`` takes the first examples of
    ``data`` (pass ``data.subset(...)`` for a random subset).
    """
    pgd = pgd or PGDConfig()
    eps = [float(e) for e in eps]
    if any(e < 0 for e in eps):
        raise ValueError(f"eps values must be non-negative, got {eps}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    n = len(data) if max_examples is None else min(len(data), max_examples)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    lipschitz, constants, rule = certified_radius_constants(model)
    generator = torch.Generator().manual_seed(seed)
    n_clean, n_robust = 0, [0] * len(eps)
    radii_all = []
    bar = tqdm(total=n * len(eps), desc="PGD", unit="ex", disable=not progress, leave=False)
    try:
        for sl in _batches(n, batch_size):
            x = data.float_images(sl).to(device)
            y = data.labels[sl].to(device)
            with torch.no_grad():
                logits = model(x)
            correct = logits.argmax(dim=1) == y
            n_clean += int(correct.sum())
            if constants is not None:
                radii_all.append(certified_radii(logits, y, constants).cpu())
            xc, yc = x[correct], y[correct]
            for i, e in enumerate(eps):
                if xc.shape[0]:
                    fooled = pgd_attack(model, xc, yc, e, pgd, generator).fooled
                    n_robust[i] += int((~fooled).sum())
                bar.update(x.shape[0])
    finally:
        bar.close()
        model.train(was_training)
    certified = None
    if constants is not None:
        radii = torch.cat(radii_all)
        certified = [certified_accuracy(radii, e) for e in eps]
    return RobustnessReport(
        n_examples=n,
        clean_accuracy=n_clean / n,
        eps=eps,
        pgd_accuracy=[r / n for r in n_robust],
        certified_accuracy=certified,
        lipschitz_bound=lipschitz,
        pgd=pgd.to_dict(),
        seconds=time.perf_counter() - start,
        certified_radius_rule=rule,
    )

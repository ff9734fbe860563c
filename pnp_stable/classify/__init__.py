"""Adversarially robust classifiers built from the same certified blocks as the denoisers.

* data: :func:`load_dataset` (Fashion-MNIST / MNIST idx(.gz), CIFAR-10 python batches, image
  folders; never downloads), :class:`ImageClassificationData`;
* models: :class:`ClassifierConfig`, :func:`build_classifier` (``NonExpansiveClassifier``, every
  layer certified, or the unconstrained ``ResNetClassifier``), :func:`load_classifier`;
* training: :class:`TrainConfig`, :func:`train_classifier` (resumable, atomic checkpoints);
* evaluation: :func:`pgd_attack` (l2-PGD), :func:`certified_radii`, :func:`evaluate`,
  :func:`plot_robustness`.

Only :mod:`pnp_stable.layers` is imported from the rest of the package (DESIGN.md §6).
"""

from pnp_stable.classify.attacks import AttackResult, PGDConfig, pgd_attack, project_l2_ball
from pnp_stable.classify.certify import certified_accuracy, certified_radii
from pnp_stable.classify.config import ARCHITECTURES, ClassifierConfig
from pnp_stable.classify.data import ImageClassificationData
from pnp_stable.classify.datasets import DATASET_KINDS, detect_dataset, load_dataset
from pnp_stable.classify.evaluation import (
    DEFAULT_EPS,
    RobustnessReport,
    certified_radius_constants,
    clean_accuracy,
    evaluate,
    test_set_summary,
)
from pnp_stable.classify.idx import read_idx
from pnp_stable.classify.losses import logit_margins, margin_cross_entropy, multiclass_hinge
from pnp_stable.classify.models import build_classifier, load_classifier, save_classifier
from pnp_stable.classify.nonexpansive import NonExpansiveClassifier
from pnp_stable.classify.plotting import plot_robustness
from pnp_stable.classify.resnet import ResNetClassifier
from pnp_stable.classify.training import (LOSS_DEFAULTS, TrainConfig, TrainResult, resolve_device,
                                         train_classifier)

__all__ = [
    "ARCHITECTURES", "AttackResult", "ClassifierConfig", "DATASET_KINDS", "DEFAULT_EPS", "LOSS_DEFAULTS",
    "ImageClassificationData", "NonExpansiveClassifier", "PGDConfig", "ResNetClassifier", "RobustnessReport",
    "TrainConfig", "TrainResult", "build_classifier", "certified_accuracy", "certified_radii",
    "certified_radius_constants", "clean_accuracy",
    "detect_dataset", "evaluate", "load_classifier", "load_dataset", "logit_margins", "margin_cross_entropy", "multiclass_hinge",
    "pgd_attack", "plot_robustness", "project_l2_ball", "read_idx", "resolve_device", "save_classifier",
    "test_set_summary", "train_classifier",
]

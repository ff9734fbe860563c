"""Build a classifier from its config; save and load exported models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pnp_stable.classify.config import ClassifierConfig
from pnp_stable.classify.nonexpansive import NonExpansiveClassifier
from pnp_stable.classify.resnet import ResNetClassifier
from pnp_stable.fileio import atomic_output, read_torch_file

__all__ = ["MODEL_FORMAT", "atomic_torch_save", "build_classifier", "load_classifier", "save_classifier"]

MODEL_FORMAT = "pnp-stable-classifier/1"


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """A fresh ``NonExpansiveClassifier`` or ``ResNetClassifier`` as ``config.architecture`` says."""
    if config.architecture == "nonexpansive":
        return NonExpansiveClassifier(config)
    return ResNetClassifier(config)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (:func:`pnp_stable.fileio.atomic_output`), creating the folder: a
    reader never sees a half-written file, and an interrupted save leaves the previous file intact."""
    with atomic_output(path, make_parents=True) as tmp:
        torch.save(obj, tmp)


def save_classifier(model: nn.Module, path: str | Path, class_names: list[str] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Export weights + architecture (+ class names, certified bound) atomically to ``path``."""
    config: ClassifierConfig = model.config  # type: ignore[assignment]
    payload = {
        "format": MODEL_FORMAT,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names) if class_names is not None else None,
        "certified_lipschitz": float(model.certified_lipschitz_bound()),  # type: ignore[operator]
        "extra": extra or {},
    }
    atomic_torch_save(payload, path)


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported classifier in eval mode; ``ValueError`` if the file is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: model file not found")
    payload = read_torch_file(path, "a pnp-stable classifier", map_location)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path}: not a pnp-stable classifier (no config/state_dict)")
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: unsupported model format {payload.get('format')!r} (expected {MODEL_FORMAT})")
    model = build_classifier(ClassifierConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.class_names = payload.get("class_names")
    return model.to(map_location).eval()

"""Build a classifier from its config; save and load exported models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pnp_stable.classify.config import ClassifierConfig
from pnp_stable.classify.nonexpansive import NonExpansiveClassifier
from pnp_stable.classify.resnet import ResNetClassifier

__all__ = ["MODEL_FORMAT", "atomic_torch_save", "build_classifier", "file_mode", "load_classifier", "save_classifier"]

MODEL_FORMAT = "pnp-stable-classifier/1"


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """A fresh ``NonExpansiveClassifier`` or ``ResNetClassifier`` as ``config.architecture`` says."""
    if config.architecture == "nonexpansive":
        return NonExpansiveClassifier(config)
    return ResNetClassifier(config)


def file_mode() -> int:
    """Permissions of a newly created file under the current umask (``tempfile.mkstemp`` uses
    0600, which would leave atomically written outputs readable by their owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the target folder, then ``os.replace``: a reader never
    sees a half-written file, and an interrupted save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise ValueError(f"{path}: cannot read model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path}: not a pnp-stable classifier (no config/state_dict)")
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: unsupported model format {payload.get('format')!r} (expected {MODEL_FORMAT})")
    model = build_classifier(ClassifierConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.class_names = payload.get("class_names")
    return model.to(map_location).eval()

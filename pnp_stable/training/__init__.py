"""Denoiser training: data, loop (exact resume, DDP, AMP), export of certified models.

Public entry points: :class:`TrainConfig`, :func:`train_denoiser`, :func:`export_denoiser`,
:func:`preset` (named configurations, e.g. the CPU and GPU runs of the shipped models).
Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "pnp_stable.training.config",
    "TrainResult": "pnp_stable.training.loop",
    "train_denoiser": "pnp_stable.training.loop",
    "export_denoiser": "pnp_stable.training.export",
    "preset": "pnp_stable.training.presets",
    "PRESETS": "pnp_stable.training.presets",
    "evaluate_denoiser": "pnp_stable.training.evaluate",
    "psnr": "pnp_stable.training.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pnp_stable.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Named training configurations: the runs behind the shipped models, and a tiny one for tests.

``gray-cpu`` is sized for one CPU thread and a few hours (the first models of a session without
a GPU), ``gray-cpu-deep`` spends the same kind of budget on 24 fixed-cost blocks (the shipped
``gray``); ``gray-gpu`` is the full run meant for a GPU session (see docs/training.md);
``*-unconstrained`` are the same runs with the constraint removed (the price-of-guarantee
baseline); ``tiny`` exercises the whole pipeline in seconds.
"""

from __future__ import annotations

import copy
from typing import Any

from pnp_stable.denoisers.config import DenoiserConfig
from pnp_stable.training.config import TrainConfig, check_field_values

__all__ = ["PRESETS", "preset"]

_GRAY_CPU: dict[str, Any] = {
    # 32 state / 64 potential channels, 8 blocks, 12 patches of 32x32: ~0.4 s per step on one free
    # CPU thread (several times that on a shared, busy machine). Wider models or bigger batches
    # make too little progress in a CPU session; the GPU preset below is the full-size run.
    "model": {"kind": "certified", "channels": 1, "width": 32, "hidden": 64, "blocks": 8, "kernel_size": 3,
              "time": 1.0, "integrator": "euler", "activation": "leaky_relu", "sigma_conditioning": True,
              "learned_relaxation": True},
    "sigma_min": 5.0 / 255.0, "sigma_max": 50.0 / 255.0,
    "patch_size": 32, "batch_size": 12, "steps": 2400, "lr": 1e-3, "lr_min": 1e-5, "warmup_steps": 200,
    "grad_clip": 1.0, "certified_finetune_steps": 300, "val_every": 500, "val_limit": 8, "val_crop": 128,
    "checkpoint_every": 50, "log_every": 20, "num_threads": 1,
}

# The same budget spent on depth instead of sub-steps: 24 blocks of one capped gradient step each
# (max_substeps=1) cost a fixed 24 steps per pass (~0.9 s per training step on one CPU thread),
# where gray-cpu's 8 adaptive blocks grow to ~90 sub-steps (2.5 s per step) as their norms grow.
_GRAY_CPU_DEEP: dict[str, Any] = copy.deepcopy(_GRAY_CPU)
_GRAY_CPU_DEEP["model"].update(blocks=24, max_substeps=1, time_conditioning=True)
_GRAY_CPU_DEEP.update(steps=6000, val_every=1500)

_GRAY_GPU: dict[str, Any] = {
    # time conditioning as in the shipped CPU model (gray-cpu3), which is the best certified run so far
    "model": {"kind": "certified", "channels": 1, "width": 64, "hidden": 128, "blocks": 12, "kernel_size": 3,
              "time": 1.0, "integrator": "euler", "activation": "leaky_relu", "sigma_conditioning": True,
              "learned_relaxation": True, "time_conditioning": True},
    "sigma_min": 5.0 / 255.0, "sigma_max": 50.0 / 255.0,
    "patch_size": 64, "batch_size": 32, "steps": 150000, "lr": 1e-3, "lr_min": 1e-6, "warmup_steps": 1000,
    "grad_clip": 1.0, "certified_finetune_steps": 5000, "val_every": 5000, "val_limit": None, "val_crop": None,
    "checkpoint_every": 1000, "log_every": 100, "amp": True,
}

_TINY: dict[str, Any] = {
    "model": {"kind": "certified", "channels": 1, "width": 4, "hidden": 8, "blocks": 2, "embedding_dim": 8,
              "power_size": 8},
    "sigma_min": 0.1, "sigma_max": 0.1, "patch_size": 16, "batch_size": 4, "steps": 20, "lr": 1e-2,
    "warmup_steps": 1, "val_every": 10, "val_limit": 2, "val_crop": 24, "checkpoint_every": 5, "log_every": 5,
    "progress": False, "num_threads": 1,
}


def _unconstrained(base: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["model"]["kind"] = "unconstrained"
    # properties of gradient-flow blocks; free blocks have neither
    out["model"]["time_conditioning"] = False
    out["model"]["max_substeps"] = 0
    return out


PRESETS: dict[str, dict[str, Any]] = {
    "gray-cpu": _GRAY_CPU,
    "gray-cpu-unconstrained": _unconstrained(_GRAY_CPU),
    "gray-cpu-deep": _GRAY_CPU_DEEP,
    "gray-gpu": _GRAY_GPU,
    "gray-gpu-unconstrained": _unconstrained(_GRAY_GPU),
    "tiny": _TINY,
}


def preset(name: str, train_dirs: list[str], run_dir: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name``; ``overrides`` replace top-level fields and
    ``model`` (a dict) updates individual architecture fields.

    A key that is no field, or a value of the wrong type (``lr="abc"``), is a one-line ValueError
    naming it (``model.KEY`` for an architecture field), raised before anything is built.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    values = copy.deepcopy(PRESETS[name])
    model_overrides = overrides.pop("model", None) or {}
    if not isinstance(model_overrides, dict):
        raise ValueError(f"invalid value for model: {model_overrides!r} (expected a JSON object of "
                         "architecture fields; or set them one by one, as model.KEY=VALUE)")
    check_field_values(TrainConfig, overrides)
    check_field_values(DenoiserConfig, model_overrides, prefix="model.")
    values["model"].update(model_overrides)
    values.update(overrides)
    for key in ("certified_finetune_steps", "warmup_steps"):
        # a shortened run (--steps 100) keeps the preset's phases, which may not fit: say whose they are
        if key not in overrides and isinstance(values.get(key), int) and isinstance(values.get("steps"), int) \
                and values[key] > values["steps"]:
            raise ValueError(f"the preset {name}'s {key} ({values[key]}) is more than steps={values['steps']}: "
                             f"set it too, e.g. --set {key}={max(0, values['steps'] // 10)}")
    return TrainConfig(train_dirs=list(train_dirs), run_dir=run_dir, **values)

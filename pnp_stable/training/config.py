"""Configuration of a denoiser training run (a plain dataclass, serialised into checkpoints)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pnp_stable.denoisers.config import DenoiserConfig

__all__ = ["MIN_POWER_SIZE", "TrainConfig", "check_field_values"]

_INT64 = 2**63
# smallest spatial size of the power-method buffers a training run accepts (the tiny preset's 8)
MIN_POWER_SIZE = 8


@dataclass
class TrainConfig:
    """A denoiser training run.

    Attributes:
        train_dirs: image folders or BSDS500 roots (``images/{train,test}`` are used, never val).
        run_dir: where checkpoints (``checkpoint.pt``, ``best.pt``) and ``log.jsonl`` go.
        model: architecture of the denoiser.
        val_dir: validation folder (e.g. BSD68); None disables validation.
        sigma_min, sigma_max: training noise range on the [0, 1] scale (equal: fixed sigma).
        patch_size, batch_size: patches per step (per process under DDP).
        steps: total optimisation steps.
        lr, lr_min, warmup_steps: AdamW/Adam learning rate with linear warm-up, cosine decay.
        optimizer: ``"adam"`` or ``"adamw"``; weight_decay for AdamW.
        grad_clip: max global gradient norm (0 disables).
        loss_weighting: ``"uniform"`` (plain MSE over the batch) or ``"inverse_sigma"`` (each
            patch's MSE weighted by ``c / sigma``, ``c`` making the weights average 1 over the
            sampled range). Plain MSE lets the noisiest patches dominate the gradient, since a
            denoiser's error grows about linearly with sigma in 5-50/255; weighting by
            ``1 / sigma`` balances the *relative* errors, i.e. PSNR, across the range.
        val_every, val_sigmas, val_limit, val_crop: validation schedule and size (``val_limit``
            and ``val_crop`` None: every image, uncropped; otherwise positive).
        certified_finetune_steps: the last this-many steps run with the *certified* sub-step
            counts (recomputed from certified norm bounds every step) instead of the power-method
            estimate, so that the exported discretisation is the one the weights were tuned for.
        checkpoint_every, log_every: in steps.
        seed: seeds the initialisation and every batch (batches depend on (seed, step, rank));
            a 64-bit integer.
        amp: mixed precision on CUDA (ignored on CPU).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        num_threads: torch CPU threads (0 leaves torch's default).
        progress: show a tqdm bar.
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        init_from: start a *new* run from the weights of a training checkpoint or exported
            ``.pt`` (every tensor whose name and shape match; e.g. to add a conditioning head to
            a trained model). Ignored when resuming.
        color: ``None`` (train on images with ``model.channels`` channels) or ``"opponent"``:
            train a gray (1-channel, noise-level conditioned) model *inside* the opponent-colour
            denoiser (:class:`pnp_stable.denoisers.OpponentColorDenoiser`) on RGB patches and RGB
            validation images, i.e. for the job it does on colour images (luma at ``sigma /
            sqrt(3)``, chroma planes amplified at ``3 sigma``). The weights stay a gray model's,
            with the gray model's certificate, which the colour denoiser keeps.
    """

    train_dirs: list[str]
    run_dir: str
    model: DenoiserConfig = field(default_factory=DenoiserConfig)
    val_dir: str | None = None
    sigma_min: float = 5.0 / 255.0
    sigma_max: float = 50.0 / 255.0
    patch_size: int = 40
    batch_size: int = 16
    steps: int = 10000
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup_steps: int = 100
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss_weighting: str = "uniform"
    val_every: int = 500
    val_sigmas: tuple[float, ...] = (15.0 / 255.0, 25.0 / 255.0, 50.0 / 255.0)
    val_limit: int | None = 8
    val_crop: int | None = 128
    certified_finetune_steps: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True
    resume: bool = False
    init_from: str | None = None
    color: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = DenoiserConfig.from_dict(self.model)
        self.train_dirs = [str(d) for d in ([self.train_dirs] if isinstance(self.train_dirs, str) else self.train_dirs)]
        self.val_sigmas = tuple(float(s) for s in self.val_sigmas)
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ValueError(f"need 0 <= sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_max > 1.0:
            raise ValueError(f"sigma is on the [0, 1] scale; sigma_max={self.sigma_max} looks like a 0-255 value")
        for name in ("patch_size", "batch_size", "steps", "val_every", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.certified_finetune_steps <= self.steps:
            raise ValueError(f"certified_finetune_steps must lie in [0, steps], got {self.certified_finetune_steps}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and math.isfinite(self.lr_min) and self.lr > 0 and 0 <= self.lr_min <= self.lr):
            # NaN passed the old "lr > 0 or lr_min < 0" test and trained on NaN; lr_min > lr
            # made the cosine "decay" a rise
            raise ValueError(f"need finite learning rates with 0 < lr and 0 <= lr_min <= lr, got lr={self.lr}, "
                             f"lr_min={self.lr_min}")
        if not -_INT64 <= self.seed < _INT64:
            raise ValueError(f"seed must be a 64-bit integer (|seed| < 2^63), got {self.seed}")
        if not len(self.val_sigmas):
            raise ValueError("val_sigmas is empty: give at least one validation noise level (or no --val)")
        bad_sigmas = [s for s in self.val_sigmas if not (math.isfinite(s) and 0 < s <= 1)]
        if bad_sigmas:
            raise ValueError(f"val_sigmas are noise levels in (0, 1] (the [0, 1] scale), got {bad_sigmas[0]}")
        for name in ("val_limit", "val_crop"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                # 0 used to mean "all" or "no crop" by accident; null says so
                raise ValueError(f"{name} must be a positive integer, or null for none, got {value}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be a finite number >= 0 (0 disables clipping), got {self.grad_clip}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= int(self.warmup_steps) <= self.steps:
            # more than steps: the learning rate would never reach its peak
            raise ValueError(f"warmup_steps must lie in [0, steps], got {self.warmup_steps}")
        if int(self.num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 leaves torch's default), got {self.num_threads}")
        if self.model.power_size < MIN_POWER_SIZE:
            # the power method on a smaller image sees too little of a convolution to estimate
            # its norm: the training sub-step counts then rest on a poor lower bound
            raise ValueError(f"model.power_size must be at least {MIN_POWER_SIZE}, got {self.model.power_size}")
        if self.loss_weighting not in ("uniform", "inverse_sigma"):
            raise ValueError(f"loss_weighting must be 'uniform' or 'inverse_sigma', got {self.loss_weighting!r}")
        if self.loss_weighting == "inverse_sigma" and not self.sigma_min > 0:
            raise ValueError("loss_weighting='inverse_sigma' needs sigma_min > 0")
        if self.color not in (None, "opponent"):
            raise ValueError(f"color must be None or 'opponent', got {self.color!r}")
        if self.color and self.model.channels != 1:
            raise ValueError(f"color='opponent' trains a gray model; model.channels is {self.model.channels}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["val_sigmas"] = list(self.val_sigmas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
        return cls(**data)


def check_field_values(cls: type, values: dict[str, Any], prefix: str = "") -> None:
    """Check overrides of dataclass ``cls``'s fields before ``cls(**values)`` is built from them.

    Guarantee: returns only if every key of ``values`` is a field of ``cls`` and every value has
    the field's type (an int is a float; a bool is neither; a list is a tuple); otherwise a
    one-line ValueError names the key (``prefix`` + key), the value and what was expected, and for
    an unknown key the nearest field names. Without this check a wrong key is Python's "unexpected
    keyword argument" and a string in a numeric field a TypeError deep in ``__post_init__``.
    Fields of other types (e.g. ``model``) are left to their own constructors.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key, value in values.items():
        if key not in hints:
            near = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
            # a nested configuration (``model``) is set field by field: list it as ``model.KEY``
            listed = sorted(n + (".KEY" if dataclasses.is_dataclass(hints[n]) else "") for n in names)
            known = (f"did you mean {' or '.join(prefix + n for n in near)}?" if near
                     else f"valid keys: {', '.join(prefix + n for n in listed)}")
            raise ValueError(f"unknown configuration key {prefix + key!r} ({known})")
        expected = _describe(hints[key])
        if expected is not None and not _conforms(value, hints[key]):
            raise ValueError(f"invalid value for {prefix + key}: {value!r} (expected {expected})")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint`` (the plain types of configuration fields only)."""
    if _is_union(hint):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # bool is an int to Python, not to a user typing lr=true
        allowed = (int,) if hint is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if hint is str:  # a path object where a path is meant (val_dir, init_from) is what API callers pass
        return isinstance(value, (str, os.PathLike))
    if typing.get_origin(hint) in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        items = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        return not items or all(_conforms(v, items[0]) for v in value)
    return True


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
_PLURALS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _describe(hint: Any) -> str | None:
    """What a user should write for a field of type ``hint``; None for types this module does not check."""
    if _is_union(hint):
        parts = [_describe(arg) for arg in typing.get_args(hint)]
        return None if None in parts else " or ".join(parts)  # type: ignore[arg-type]
    if hint in _NAMES:
        return _NAMES[hint]
    if typing.get_origin(hint) in (list, tuple):
        items = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        inner = _PLURALS.get(items[0]) if items else None
        return "a JSON list" + (f" of {inner}" if inner else "")
    return None

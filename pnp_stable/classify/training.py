"""Training loop: Adam(W) + one-cycle schedule, CE or hinge loss, atomic resumable checkpoints.

Resumption is exact up to floating-point non-determinism: the epoch's shuffling is a function
of ``(seed, epoch)``, the augmentation generator's state is checkpointed, and so are the model
(including the power-method buffers), optimiser, schedule and AMP scaler. A checkpoint is written
every ``checkpoint_minutes``, at the end of each epoch, and on Ctrl-C or SIGTERM before a
``KeyboardInterrupt`` is raised; an interrupted run continues where it stopped when started again
with the same config.

Ctrl-C (SIGINT) and SIGTERM (``kill``, ``timeout``, a batch scheduler) are *deferred* to the end of
the current optimisation step, because a forward pass advances the power-method buffers and an
optimiser step updates every parameter: a checkpoint taken mid-step would not be a state the
uninterrupted run ever passed through. A second signal stops at once (the last periodic
checkpoint then stands).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pnp_stable.classify.augment import random_crop_flip
from pnp_stable.classify.config import ClassifierConfig
from pnp_stable.classify.data import ImageClassificationData
from pnp_stable.classify.datasets import DATASET_KINDS, load_dataset
from pnp_stable.classify.evaluation import clean_accuracy
from pnp_stable.classify.losses import LOSSES, classification_loss
from pnp_stable.classify.models import atomic_torch_save, build_classifier, load_classifier, save_classifier
from pnp_stable.digest import tensor_digest
from pnp_stable.fileio import atomic_write_json, exclusive_use, read_torch_file, remove_stale_temporaries
from pnp_stable.precision import cuda_autocast_dtype

__all__ = ["CHECKPOINT_FORMAT", "LOSS_DEFAULTS", "TrainConfig", "TrainResult", "resolve_device", "train_classifier"]

CHECKPOINT_FORMAT = "pnp-stable-classifier-checkpoint/1"

# the loss each architecture is trained with unless told otherwise (benchmark and CLI defaults):
# the certified model a margin loss (margin 1.0 in logit units ~ sqrt(2) * 0.5 plus slack, i.e.
# aimed at radius 0.5), the unconstrained baseline plain cross-entropy, as it is normally trained
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "nonexpansive": {"loss": "hinge", "margin": 1.0, "logit_scale": 8.0},
    "resnet": {"loss": "ce", "margin": 0.0, "logit_scale": 1.0},
}

# options that do not change the optimisation trajectory: they may differ on resume
_RUNTIME_FIELDS = {"output_dir", "device", "progress", "resume", "checkpoint_minutes", "data_path"}


@dataclass
class TrainConfig:
    """Everything a training run needs. ``model``'s ``in_channels``, ``num_classes``,
    ``image_size`` and ``input_mean`` are taken from the training data, not from the config.

    ``margin`` is in logit units for both losses; with a 1-Lipschitz model a margin ``m`` at ``x``
    certifies the radius ``m / sqrt(2)``. ``logit_scale`` multiplies the logits inside CE only.
    ``init_from`` starts a *new* run (fresh optimiser and schedule) from the weights of an exported
    classifier (``model.pt``) with the same layout, e.g. to fine-tune with another margin; a run
    being resumed takes its weights from its checkpoint instead.
    """

    dataset: str = "fashion_mnist"
    data_path: str | None = None
    output_dir: str = "runs/classify/run"
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.3
    loss: str = "ce"
    margin: float = 0.0
    logit_scale: float = 1.0
    augment: bool | None = None
    train_size: int | None = None
    test_size: int | None = None
    image_size: tuple[int, int] | None = None
    seed: int = 0
    init_from: str | None = None
    device: str = "auto"
    amp: bool = True
    checkpoint_minutes: float = 5.0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ClassifierConfig.from_dict(self.model)
        if self.image_size is not None:
            self.image_size = tuple(int(v) for v in self.image_size)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the first invalid option."""
        if self.dataset.lower().replace("-", "_") not in DATASET_KINDS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_KINDS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"lr must be positive and weight_decay non-negative (finite), got {self.lr}, "
                             f"{self.weight_decay}")
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must lie in (0, 1), got {self.warmup_fraction}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not (math.isfinite(self.margin) and self.margin >= 0 and math.isfinite(self.logit_scale)
                and self.logit_scale > 0):
            raise ValueError(f"margin must be >= 0 and logit_scale > 0 (finite), got {self.margin}, {self.logit_scale}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"image_size must be (H, W) with positive entries, got {self.image_size}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if not self.checkpoint_minutes > 0:
            raise ValueError(f"checkpoint_minutes must be positive, got {self.checkpoint_minutes}")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass
class TrainResult:
    """The trained model (eval mode), where it was written, and the per-epoch history."""

    model: nn.Module
    model_path: Path
    checkpoint_path: Path
    history: list[dict[str, Any]]
    certified_lipschitz: float


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` picks CUDA when available; otherwise the named CPU or CUDA device (must exist)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}") from None
    if device.type not in ("cpu", "cuda"):  # e.g. mps: no float64, which the certified layers keep
        raise ValueError(f"device {spec!r} is not supported: use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available")
    return device


def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def _differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Sorted names of the fields whose values differ (a field missing on one side differs)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _trajectory_fields(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RUNTIME_FIELDS}


def _load_data(config: TrainConfig, train_data: ImageClassificationData | None,
               test_data: ImageClassificationData | None):
    if train_data is None or test_data is None:
        if config.data_path is None:
            raise ValueError("data_path is required (no dataset is downloaded)")
        if train_data is None:
            train_data = load_dataset(config.dataset, config.data_path, "train", config.image_size)
        if test_data is None:
            test_data = load_dataset(config.dataset, config.data_path, "test", config.image_size)
    if train_data.image_shape != test_data.image_shape:
        raise ValueError(f"train images {train_data.image_shape} and test images {test_data.image_shape} differ in shape")
    train_data = train_data.subset(config.train_size, seed=config.seed)
    test_data = test_data.subset(config.test_size, seed=config.seed)
    return train_data, test_data


def _data_digest(train_data: ImageClassificationData, test_data: ImageClassificationData) -> str:
    """SHA-256 of the images and labels a run trains and evaluates on (after the subsets): what a
    resume must be given again (a path may change; Fashion-MNIST hashes in a fraction of a second)."""
    return tensor_digest((train_data.images, train_data.labels, test_data.images, test_data.labels))


def _model_config(config: TrainConfig, data: ImageClassificationData) -> ClassifierConfig:
    c, h, w = data.image_shape
    values = config.model.to_dict()
    values.update(in_channels=c, num_classes=data.num_classes, image_size=[h, w], input_mean=list(data.channel_mean()))
    return ClassifierConfig.from_dict(values)


def _warm_start(model_config: ClassifierConfig, path: str) -> tuple[ClassifierConfig, dict[str, torch.Tensor]]:
    """The weights of the trained model at ``path`` and the config to build around them.

    Neither the sub-step cap (fine-tuning an adaptive model into a capped one is legitimate) nor
    the input shift (the mean of whichever subset the source saw; it is kept, so the function
    fine-tuning starts from is the source's) must match; every other field must.
    """
    source = load_classifier(path)
    loose = ("max_substeps", "input_mean")
    ours = {k: v for k, v in model_config.to_dict().items() if k not in loose}
    theirs = {k: v for k, v in source.config.to_dict().items() if k not in loose}
    changed = _differing_fields(ours, theirs)
    if changed:
        raise ValueError(f"{path}: a classifier of another layout ({', '.join(changed)}) cannot initialise this run")
    config = ClassifierConfig.from_dict({**model_config.to_dict(), "input_mean": list(source.config.input_mean)})
    return config, source.state_dict()


def _amp_settings(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    if not (config.amp and device.type == "cuda"):
        return False, torch.float32
    return True, cuda_autocast_dtype()


class _DeferredInterrupt:
    """Turn the first SIGINT or SIGTERM (``kill``, ``timeout``, a batch scheduler's stop) into a
    flag checked between steps (main thread only); a second one stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def train_classifier(
    config: TrainConfig,
    train_data: ImageClassificationData | None = None,
    test_data: ImageClassificationData | None = None,
) -> TrainResult:
    """Train (or resume training) a classifier as ``config`` says; returns the eval-mode model.

    Writes ``checkpoint.pt`` (training state), ``model.pt`` (the exported model, see
    :func:`~pnp_stable.classify.models.load_classifier`), ``history.json`` and ``config.json``
    into ``config.output_dir``, each atomically. With ``resume`` (default), a checkpoint of the
    same configuration is continued (a finished run returns at once); a checkpoint of a different
    configuration is a ``ValueError`` (choose another ``output_dir`` or pass ``resume=False``).
    Data passed explicitly replaces loading from ``config.data_path``. A second process training
    into the same ``output_dir`` at the same time is refused (ValueError).
    """
    config.validate()
    with exclusive_use(Path(config.output_dir), "run folder") as held:
        for name in ("checkpoint.pt", "model.pt", "history.json", "config.json") if held else ():
            remove_stale_temporaries(Path(config.output_dir) / name)  # killed writers' temporary files
        return _train_classifier(config, train_data, test_data)


def _train_classifier(config: TrainConfig, train_data: ImageClassificationData | None,
                      test_data: ImageClassificationData | None) -> TrainResult:
    device = resolve_device(config.device)
    train_data, test_data = _load_data(config, train_data, test_data)
    out_dir = Path(config.output_dir)
    checkpoint_path, model_path = out_dir / "checkpoint.pt", out_dir / "model.pt"
    dataset_kind = config.dataset.lower().replace("-", "_")
    augment = config.augment if config.augment is not None else dataset_kind == "cifar10"

    torch.manual_seed(config.seed)
    data_digest = _data_digest(train_data, test_data)
    state = _read_checkpoint(checkpoint_path, device) if config.resume and checkpoint_path.exists() else None
    if state is not None and state.get("data_sha256") not in (None, data_digest):
        # data_path may move, the data may not: another set would continue this run's trajectory
        raise ValueError(f"cannot resume {out_dir}: its training or test images changed since the checkpoint "
                         "(their content differs); resume with the data it was started with, or start a new run "
                         "(e.g. with init_from)")
    if state is not None:
        # read back through the dataclass: an option added after the checkpoint was written takes
        # its default, which is what that run trained with
        saved = _trajectory_fields(TrainConfig.from_dict(state["train_config"]).to_dict())
        current = _trajectory_fields(config.to_dict())
        changed = _differing_fields(saved, current)
        if changed:
            raise ValueError(f"{checkpoint_path} was written with a different configuration ({', '.join(changed)}); "
                             "use another output_dir or resume=False")
        # the layout the run was built with (a warm start keeps its source's input shift)
        model_config = ClassifierConfig.from_dict(state["model_config"])
    else:
        model_config = _model_config(config, train_data)
    initial_state = None
    if state is None and config.init_from:
        model_config, initial_state = _warm_start(model_config, config.init_from)
    model = build_classifier(model_config).to(device)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction)
    use_amp, amp_dtype = _amp_settings(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    aug_generator = torch.Generator().manual_seed(config.seed + 1)

    epoch, step_in_epoch, history = 0, 0, []
    running = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved with the scaler off (CPU, bf16): a float16 resume starts it afresh
            scaler.load_state_dict(state["scaler"])
        aug_generator.set_state(state["aug_generator"])
        epoch, step_in_epoch, history = state["epoch"], state["step_in_epoch"], state["history"]
        running = state["running"]
    atomic_write_json(out_dir / "config.json", config.to_dict(), make_parents=True)

    def save_checkpoint() -> None:
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT,
            "train_config": config.to_dict(),
            "model_config": model_config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "aug_generator": aug_generator.get_state(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "history": history,
            "running": running,
            "class_names": train_data.class_names,
            "data_sha256": data_digest,
        }, checkpoint_path)

    # uint8 images are small (Fashion-MNIST: 47 MB): keeping them on the device avoids a host
    # round trip per batch on GPU; on CPU this is no copy at all
    train_images, train_labels = train_data.images.to(device), train_data.labels.to(device)
    last_save = time.monotonic()
    with _DeferredInterrupt() as interrupt:
        while epoch < config.epochs:
            model.train()
            order = _epoch_permutation(len(train_data), config.seed, epoch)
            bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="batch", disable=not config.progress, leave=False)
            tick = time.perf_counter()
            while step_in_epoch < steps_per_epoch:
                index = order[step_in_epoch * config.batch_size:(step_in_epoch + 1) * config.batch_size].to(device)
                x = train_images[index].to(torch.float32) / 255.0
                y = train_labels[index]
                if augment:
                    x = random_crop_flip(x, aug_generator)
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = model(x)
                loss = classification_loss(config.loss, logits, y, config.margin, config.logit_scale)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}, step {step_in_epoch}; "
                                             "lower lr or logit_scale")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step_in_epoch += 1
                running["loss"] += float(loss.detach()) * y.shape[0]
                running["correct"] += int((logits.argmax(dim=1) == y).sum())
                running["seen"] += int(y.shape[0])
                bar.update(1)
                bar.set_postfix(loss=f"{running['loss'] / running['seen']:.4f}",
                                acc=f"{running['correct'] / running['seen']:.3f}")
                if interrupt.requested:
                    running["seconds"] += time.perf_counter() - tick
                    save_checkpoint()
                    bar.close()
                    # the API resumes by default (resume=True); the command needs --resume
                    tqdm.write(f"interrupted: state saved to {checkpoint_path}; the same run again continues it "
                               "(pnp-stable train-classifier: the same command plus --resume)", file=sys.stderr)
                    raise KeyboardInterrupt
                if time.monotonic() - last_save > 60.0 * config.checkpoint_minutes:
                    running["seconds"] += time.perf_counter() - tick
                    tick = time.perf_counter()
                    save_checkpoint()
                    last_save = time.monotonic()
            bar.close()
            running["seconds"] += time.perf_counter() - tick
            record = {
                "epoch": epoch + 1,
                "train_loss": running["loss"] / max(1, running["seen"]),
                "train_accuracy": running["correct"] / max(1, running["seen"]),
                "test_accuracy": clean_accuracy(model, test_data, progress=config.progress),
                "train_seconds": running["seconds"],
                "lr_end": scheduler.get_last_lr()[0],
            }
            history.append(record)
            if config.progress:
                tqdm.write(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, train acc "
                           f"{record['train_accuracy']:.4f}, test acc {record['test_accuracy']:.4f} "
                           f"({record['train_seconds']:.0f} s)")
            epoch, step_in_epoch = epoch + 1, 0
            running = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            save_checkpoint()
            last_save = time.monotonic()
            atomic_write_json(out_dir / "history.json", history, make_parents=True)

    model.eval()
    bound = float(model.certified_lipschitz_bound())
    if not model_path.exists() or _stale(model_path, checkpoint_path):
        save_classifier(model, model_path, train_data.class_names, extra={"history": history})
    return TrainResult(model, model_path, checkpoint_path, history, bound)


def _stale(model_path: Path, checkpoint_path: Path) -> bool:
    return model_path.stat().st_mtime < checkpoint_path.stat().st_mtime


def _read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    state = read_torch_file(path, "a pnp-stable classifier checkpoint", device)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pnp-stable classifier checkpoint")
    state["aug_generator"] = state["aug_generator"].cpu()
    return state

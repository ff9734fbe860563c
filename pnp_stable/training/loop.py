"""The denoiser training loop: patches -> MSE -> Adam(W), with exact resume and optional DDP.

Norm enforcement follows the paper: in training mode every gradient-flow block advances its
warm-started power method by one iteration per forward and takes as many sub-steps as that
estimate requires; validation runs the model in eval mode, i.e. with certified step counts.

Determinism: the initial weights depend on ``seed`` and batch ``k`` on ``(seed, k, rank)`` only,
and checkpoints hold the model (with its power-method buffers), optimiser, schedule and step, so
resuming from step ``k`` performs bit-for-bit the step an uninterrupted run performs (on the same
hardware and thread count).

Distributed: launched with ``torchrun --nproc_per_node N``, each process trains on its own
batches, gradients are averaged by DDP (NCCL on GPU, gloo on CPU) and rank 0 validates,
logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pnp_stable.denoisers.color import OpponentColorDenoiser
from pnp_stable.denoisers.io import MAX_FROZEN_SUBSTEPS
from pnp_stable.denoisers.models import CertifiedDenoiser, build_denoiser
from pnp_stable.fileio import exclusive_use, remove_stale_temporaries
from pnp_stable.precision import cuda_autocast_dtype
from pnp_stable.training.checkpoint import load_checkpoint, save_checkpoint
from pnp_stable.training.config import TrainConfig
from pnp_stable.training.data import PatchSampler, ValidationSet, training_image_paths
from pnp_stable.training.evaluate import evaluate_denoiser
from pnp_stable.training.lineage import starting_point_record

__all__ = ["TrainResult", "train_denoiser", "CHECKPOINT_NAME", "BEST_NAME", "LOG_NAME", "MAX_TRAINING_SUBSTEPS",
           "RESUME_FIXED_KEYS"]

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
LOG_NAME = "log.jsonl"


@dataclass
class TrainResult:
    """What a (possibly partial) run produced."""

    run_dir: Path
    step: int
    checkpoint: Path
    best_checkpoint: Path | None
    best_validation: dict[str, Any] | None
    losses: list[float] = field(default_factory=list)  # per step, this process, this invocation
    # why this invocation ended before ``end``: "interrupted" (Ctrl-C), "terminated" (SIGTERM),
    # "time_limit"; None when it ran the steps it was asked for (all of them, or ``stop_after``)
    stopped: str | None = None
    planned_steps: int = 0  # config.steps: ``step < planned_steps`` is an unfinished run
    rank: int = 0  # this process's rank under DDP (0 alone): only rank 0 reports

    @property
    def finished(self) -> bool:
        """Whether the run has taken all its planned steps (and may be exported)."""
        return self.step >= self.planned_steps


class _Log:
    """Append-only JSON-lines log (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if not self.enabled:
            return
        record.setdefault("time", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _distributed_context(config: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """``(rank, world_size, device, initialised_here)``; joins the torchrun group if launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    initialised_here = False
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialised_here = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device, initialised_here


def _schedule(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
        low = config.lr_min / config.lr
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _block_stats(model: nn.Module) -> dict[str, Any]:
    if not isinstance(model, CertifiedDenoiser):
        return {}
    blocks = model.flow_blocks
    return {
        "substeps": [b.last_substeps for b in blocks],
        "norm_estimates": [round(float(b.linear.norm_estimate), 5) for b in blocks],
    }


def _certificate_summary(model: nn.Module, sigma_min: float, sigma_max: float) -> dict[str, Any]:
    if not isinstance(model, CertifiedDenoiser):
        return {}
    from pnp_stable.training.grow import idle_blocks

    cert = model.certificate()
    # blocks the time conditioning has switched off at every trained noise level: capacity lost
    # for good unless revived (python -m pnp_stable.training.grow --revive-idle)
    return {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness,
            "certified_substeps": [b.substeps(certified=True) for b in model.flow_blocks],
            "idle_blocks": idle_blocks(model, sigma_min, sigma_max)}


# A block asking for more sub-steps than this per forward pass has diverged (norms of 10^4 and
# more after too large a learning rate): running them would take hours per step and all the
# memory autograd keeps per sub-step. The same bound load() puts on a stored frozen count
# (pnp_stable.denoisers.io), so no run that passes this check trains a model it could not load.
MAX_TRAINING_SUBSTEPS = MAX_FROZEN_SUBSTEPS


def _substeps_about_to_run(block: nn.Module) -> tuple[int, float]:
    """``(n, norm)``: the sub-step count ``block.forward`` is about to take, and the norm it comes from.

    In training mode (counts not frozen) the forward pass first advances the power method by one
    iteration: that iteration is run here on copies of the power buffers, which are then put
    back, so that the forward pass repeats it bit for bit and the run is the one it would be
    without this check.
    """
    frozen = int(block.fixed_substeps)
    linear = block.linear
    if frozen > 0:
        n, norm = frozen, float(linear.norm_estimate)
    elif block.training and torch.is_grad_enabled():
        saved = [buffer.clone() for buffer in (linear.power_vector, linear.norm_estimate)]
        try:
            norm = float(linear.estimate_norm(n_iter=1))
        finally:
            linear.power_vector.copy_(saved[0])
            linear.norm_estimate.copy_(saved[1])
        nu = block.activation_lipschitz * norm * norm
        n = block.required_substeps(nu) if math.isfinite(nu) else -1
    else:
        norm = float(linear.certified_norm())
        nu = block.activation_lipschitz * norm * norm
        n = block.required_substeps(nu) if math.isfinite(nu) else -1
    cap = int(block.max_substeps)
    if cap > 0 and n != -1:
        n = min(n, cap)
    return n, norm


def _substep_guard(index: int, current_step: Any) -> Any:
    """A forward pre-hook for flow block ``index`` refusing, before it runs them, more than
    :data:`MAX_TRAINING_SUBSTEPS` sub-steps (or a non-finite norm): a one-line ValueError."""

    def hook(block: nn.Module, args: Any) -> None:  # noqa: ARG001 - forward pre-hook signature
        n, norm = _substeps_about_to_run(block)
        if n == -1 or n > MAX_TRAINING_SUBSTEPS:
            asked = "a non-finite number of" if n == -1 else f"{n}"
            raise ValueError(f"training diverged at step {current_step() + 1}: block {index} would take {asked} "
                             f"sub-steps (operator norm {norm:.4g}; at most {MAX_TRAINING_SUBSTEPS} are allowed); "
                             "lower the learning rate (lr) or keep gradient clipping on (grad_clip)")

    return hook


# Settings a resumed run must share with its checkpoint: the data and the noise it is drawn with,
# the batches (a pure function of seed, step and rank, hence of the world size too), the objective,
# the optimiser and its schedule's shape, the validation that picks best.pt, and the starting
# point. Changing one makes the resumed run neither the one that was started nor a new run with a
# record of its own, yet the checkpoint (and any export) would then name only the new value.
RESUME_FIXED_KEYS = ("train_dirs", "val_dir", "sigma_min", "sigma_max", "patch_size", "batch_size", "lr", "lr_min",
                     "warmup_steps", "optimizer", "weight_decay", "grad_clip", "loss_weighting", "val_sigmas",
                     "val_limit", "val_crop", "certified_finetune_steps", "seed", "amp", "color", "init_from")


def _comparable(key: str, value: Any) -> Any:
    """``value`` of configuration ``key`` in a form that compares equal for the same setting
    (a folder given as another spelling of the same path, a tuple stored as a list)."""
    if key in ("train_dirs", "val_dir", "init_from") and value is not None:
        items = [value] if isinstance(value, (str, os.PathLike)) else value
        resolved = [str(Path(v).expanduser().resolve()) for v in items]
        return resolved if key == "train_dirs" else resolved[0]
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return value


def _resume_changes(state: dict[str, Any], config: TrainConfig, world: int) -> dict[str, list[Any]]:
    """Compare a resumed configuration with its checkpoint's: a one-line ValueError listing the
    changed :data:`RESUME_FIXED_KEYS` (and a changed DDP world size); otherwise the other changed
    fields as ``{key: [old, new]}`` (``steps``, ``val_every``, ``checkpoint_every``, ``device``...),
    which the caller logs. ``steps`` may grow or shrink, but not below the checkpoint's step."""
    stored, new = state["config"], config.to_dict()
    stored_model, new_model = stored.get("model", {}), new["model"]
    # the architecture first: the weights cannot even be loaded into another one
    refused = [f"model.{key} ({stored_model.get(key)!r} -> {new_model.get(key)!r})"
               for key in sorted(set(stored_model) | set(new_model)) if stored_model.get(key) != new_model.get(key)]
    refused += [f"{key} ({stored[key]!r} -> {new[key]!r})" for key in RESUME_FIXED_KEYS
                if key in stored and _comparable(key, stored[key]) != _comparable(key, new[key])]
    recorded_world = state.get("world_size")
    if recorded_world is not None and int(recorded_world) != world:
        refused.append(f"DDP world size ({recorded_world} -> {world})")
    if refused:
        raise ValueError(f"cannot resume {config.run_dir} with changed settings: {', '.join(refused)}; resume with "
                         "the settings it was started with (the same --preset and --set options; or start a new "
                         "run, e.g. with init_from)")
    if config.steps < int(state["step"]):
        raise ValueError(f"cannot resume {config.run_dir} with steps={config.steps}: its checkpoint is already at "
                         f"step {int(state['step'])}")
    ignored = set(RESUME_FIXED_KEYS) | {"model", "resume"}
    return {key: [stored.get(key), new[key]] for key in new
            if key not in ignored and _comparable(key, stored.get(key)) != _comparable(key, new[key])}


def _truncate_log(log: "_Log", step: int) -> int:
    """Remove from the log the records of steps after ``step`` (the checkpoint a resume starts
    from), and a partial last line; returns how many records were removed."""
    if not log.enabled or not log.path.is_file():
        return 0
    from pnp_stable.fileio import atomic_write_bytes

    kept, dropped = [], 0
    for line in log.path.read_text().splitlines():
        try:
            record = json.loads(line)
            later = int(record.get("step", 0)) > step
        except (ValueError, TypeError, AttributeError):
            later = True  # a line cut by the crash
        if later:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_write_bytes(log.path, "".join(line + "\n" for line in kept).encode())
    return dropped


def denoising_loss(output: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor, weighting: str,
                   sigma_range: tuple[float, float]) -> torch.Tensor:
    """The training loss of a batch (``B x C x H x W``, noise levels ``sigma`` of shape ``(B,)``).

    ``"uniform"``: the MSE over the batch. ``"inverse_sigma"``: the mean of each patch's MSE times
    ``c / sigma_i``, with ``c = (hi - lo) / ln(hi / lo)`` the normaliser that makes the weights
    average 1 for sigma uniform in ``sigma_range = (lo, hi)`` (``c = lo`` when ``lo == hi``: plain
    MSE), so the learning rate and the clipping threshold mean the same under both.
    """
    if weighting == "uniform":
        return F.mse_loss(output, clean)
    lo, hi = sigma_range
    scale = lo if hi - lo <= 1e-12 * hi else (hi - lo) / math.log(hi / lo)
    per_patch = (output - clean).pow(2).flatten(1).mean(dim=1)
    return (per_patch * (scale / sigma)).mean()


def _project_parameters(model: nn.Module) -> None:
    """Put constrained parameters back into their sets after a step (e.g. spline slopes in [0, 1]).

    The forward passes clamp them anyway, so the certificate never depends on this; without it a
    parameter pushed past its clamp would get no gradient and stay stuck there.
    """
    for module in model.modules():
        project = getattr(module, "project_parameters_", None)
        if callable(project):
            project()


def _initialise_from(model: nn.Module, path: str) -> dict[str, Any]:
    """Copy every tensor of ``path`` (checkpoint or exported model) whose name and shape match."""
    from pnp_stable.fileio import read_torch_file

    payload = read_torch_file(path, "a pnp-stable checkpoint or model file to initialise from")
    source = payload.get("model") or payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(source, dict):
        raise ValueError(f"{path} holds no model weights")
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no tensor of {path} matches this architecture")
    model.load_state_dict(matched, strict=False)
    # Exported models carry no power vectors. A stored estimate with a fresh random vector would
    # make the one-iteration-per-step power method start far below ||A|| (steps too long while it
    # catches up): a zero estimate makes the first step run the full warm-up instead.
    for name, module in model.named_modules():
        vector = f"{name}.power_vector" if name else "power_vector"
        if vector in own and vector not in matched and hasattr(module, "norm_estimate"):
            module.norm_estimate.zero_()
    return {"path": str(path), "copied": len(matched), "fresh": sorted(set(own) - set(matched))}


def train_denoiser(config: TrainConfig, stop_after: int | None = None,
                   time_limit: float | None = None) -> TrainResult:
    """Train (or resume training) the denoiser described by ``config``.

    Writes ``checkpoint.pt`` (atomic; every ``checkpoint_every`` steps, at the end and when
    stopped), ``best.pt`` (best mean validation PSNR) and ``log.jsonl`` to ``config.run_dir``.
    ``stop_after`` ends this invocation after that many steps (checkpointed), leaving the run
    resumable with ``resume=True``; the schedule always refers to ``config.steps``. ``time_limit``
    (seconds of wall time) does the same once that much time has passed in this invocation — for
    jobs with a wall-clock allowance (a cluster slot, a borrowed GPU); all ranks stop together.

    Raises ValueError for unusable data, a ``run_dir`` that already holds a checkpoint while
    ``resume`` is off (a run is never overwritten), a resume whose configuration changes what the
    checkpoint was trained with (:data:`RESUME_FIXED_KEYS`), or norms that diverged (a block
    asking for more than :data:`MAX_TRAINING_SUBSTEPS` sub-steps).

    SIGTERM (``kill PID``, a scheduler's preemption) and Ctrl-C (SIGINT) end the run after the
    current step (and its validation) with a checkpoint at that step boundary; the result's
    ``stopped`` says which. A second Ctrl-C aborts at once with KeyboardInterrupt and writes no
    checkpoint (the state is mid-step): the last one written stays, and resuming from it is exact.
    """
    stop_requested = threading.Event()
    signals: list[str] = []

    def request_stop(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        if signum == signal.SIGINT and "interrupted" in signals:
            raise KeyboardInterrupt  # the user insists: abort now (no checkpoint of a mid-step state)
        signals.append("interrupted" if signum == signal.SIGINT else "terminated")
        stop_requested.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: its default KeyboardInterrupt lands anywhere inside a step (power vectors
        # already advanced by the forward pass, Adam half-way through its update), and a checkpoint
        # of that state makes the resumed run differ from the uninterrupted one
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        return _train(config, stop_after, stop_requested, time_limit, signals)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train(config: TrainConfig, stop_after: int | None, stop_requested: threading.Event,
           time_limit: float | None, signals: list[str]) -> TrainResult:
    if stop_after is not None and not stop_after >= 1:
        # zero steps would write no checkpoint, yet report one (a path that does not exist)
        raise ValueError(f"stop_after must be a positive number of steps, got {stop_after}")
    if time_limit is not None and not time_limit >= 0:
        raise ValueError(f"time_limit must be a non-negative number of seconds, got {time_limit}")
    deadline = None if time_limit is None else time.monotonic() + time_limit
    rank, world, device, own_group = _distributed_context(config)
    try:
        with contextlib.ExitStack() as stack:
            # rank 0 holds the run folder for all ranks and judges it; every rank raises its verdict,
            # since a rank left alone would wait in DDP's first broadcast until the job is killed
            problem = None
            if rank == 0:
                try:
                    _check_run_folder(config, stack)
                except ValueError as exc:
                    problem = str(exc)
            if world > 1:
                verdict = [problem]
                dist.broadcast_object_list(verdict, src=0)
                problem = verdict[0]
            if problem is not None:
                raise ValueError(problem)
            return _train_on(config, stop_after, stop_requested, rank, world, device, deadline, signals)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _check_run_folder(config: TrainConfig, stack: contextlib.ExitStack) -> None:
    """Hold ``config.run_dir`` for this run (until ``stack`` closes) and refuse one that another
    process is training in, or that holds an earlier run's log or best weights without a checkpoint
    (a run stopped before its first one: a new run would overwrite its best.pt and append to its
    log); then remove killed writers' temporary files, which no other process can be writing."""
    run_dir = Path(config.run_dir).expanduser()
    held = stack.enter_context(exclusive_use(run_dir, "run folder"))
    checkpoint_path = run_dir / CHECKPOINT_NAME
    leftovers = [name for name in (LOG_NAME, BEST_NAME) if (run_dir / name).exists()]
    if leftovers and not checkpoint_path.exists():
        raise ValueError(f"{run_dir} holds an earlier run's {' and '.join(leftovers)} but no checkpoint to resume "
                         "(stopped before its first one?): remove them, or choose another run directory")
    for name in (CHECKPOINT_NAME, BEST_NAME) if held else ():
        remove_stale_temporaries(run_dir / name)


def _stop_reason(stop_requested: threading.Event, deadline: float | None, world: int,
                 device: torch.device) -> str | None:
    """``"terminated"`` (a stop signal), ``"time_limit"`` or None, agreed by every rank under DDP.

    Ranks see a signal or their clock run out at different steps; one that stopped alone would leave
    the others waiting in the next collective, so any rank's reason stops them all at this step.
    """
    flags = [1.0 if stop_requested.is_set() else 0.0,
             1.0 if deadline is not None and time.monotonic() >= deadline else 0.0]
    if world > 1:
        agreed = torch.tensor(flags, device=device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
        flags = agreed.tolist()
    if flags[0] > 0:
        return "terminated"
    return "time_limit" if flags[1] > 0 else None


def _image_list(paths: list[Path]) -> list[list[Any]]:
    """``[[resolved path, size in bytes], ...]`` of the training images: what a resume checks (the
    batches are drawn from this list by index, so another list gives other batches)."""
    return [[str(p.resolve()), p.stat().st_size] for p in paths]


def _check_same_images(state: dict[str, Any], images: list[list[Any]], run_dir: Path) -> None:
    """A one-line ValueError if the training images differ from those of the checkpoint ``state``
    (added, removed, or changed in size): the resumed run would not be the one that was started.
    Checkpoints older than this record are not checked."""
    stored = state.get("training_images")
    if stored is None or [list(e) for e in stored] == images:
        return
    before, now = {e[0]: e[1] for e in stored}, {e[0]: e[1] for e in images}
    parts = []
    for label, names in (("added", [n for n in now if n not in before]),
                         ("removed", [n for n in before if n not in now]),
                         ("changed", [n for n in now if n in before and now[n] != before[n]])):
        if names:
            shown = ", ".join(Path(n).name for n in names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{len(names)} {label} ({shown})")
    what = "; ".join(parts) or "their order changed"
    raise ValueError(f"cannot resume {run_dir}: its training images changed since the checkpoint: {what}; resume with "
                     "the images it was started with (or start a new run, e.g. with init_from)")


def _train_on(config: TrainConfig, stop_after: int | None, stop_requested: threading.Event, rank: int, world: int,
              device: torch.device, deadline: float | None, signals: list[str]) -> TrainResult:
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    run_dir = Path(config.run_dir).expanduser()
    checkpoint_path, best_path = run_dir / CHECKPOINT_NAME, run_dir / BEST_NAME
    if checkpoint_path.exists() and not config.resume:
        raise ValueError(f"{run_dir} already holds a checkpoint; resume it or choose another run directory")
    log = _Log(run_dir / LOG_NAME, rank == 0)

    paths = training_image_paths(config.train_dirs)
    images = _image_list(paths)
    if config.val_dir is not None:
        val_root = Path(config.val_dir).expanduser().resolve()
        if any(p.resolve().parent == val_root for p in paths):
            raise ValueError(f"validation folder {val_root} is also a training folder")
    image_channels = 3 if config.color else config.model.channels
    sampler = PatchSampler(paths, image_channels, config.patch_size, (config.sigma_min, config.sigma_max))
    validation = None
    if config.val_dir is not None and rank == 0:
        validation = ValidationSet.from_folder(config.val_dir, image_channels, config.val_limit, config.val_crop)

    torch.manual_seed(config.seed)
    model = build_denoiser(config.model).to(device)
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = cuda_autocast_dtype() if use_amp else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    if stop_requested.is_set() and world == 1:
        # Ctrl-C (or SIGTERM) while the data were read: stop before the first step, which would
        # otherwise be taken and checkpointed, leaving a fresh run that needs --resume or deleting
        raise KeyboardInterrupt
    step, best, elapsed = 0, None, 0.0
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        changed = _resume_changes(state, config, world)
        _check_same_images(state, images, run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved with the scaler off (CPU, bf16): a float16 resume starts it afresh
            scaler.load_state_dict(state["scaler"])
        step, best, elapsed = int(state["step"]), state.get("best"), float(state.get("elapsed", 0.0))
        # a checkpoint older than starting-point records has none: export falls back to the path
        has_origin = "init_from_record" in state
        origin = state.get("init_from_record")
        # a crash (or a hard abort) after the checkpoint leaves records of steps the resumed run
        # takes again: drop them, so that the log holds each step once
        discarded = _truncate_log(log, step)
        log.write(event="resume", step=step, changed=changed, discarded_records=discarded)
    else:
        initialised = _initialise_from(model, config.init_from) if config.init_from else None
        # taken now, before the file at init_from can be overwritten (see pnp_stable.training.lineage)
        has_origin, origin = True, starting_point_record(config.init_from)
        if rank == 0:  # only now: unusable data, a bad init_from or an early stop leave no folder behind
            run_dir.mkdir(parents=True, exist_ok=True)
        log.write(event="start", step=0, config=config.to_dict(), world_size=world, device=str(device),
                  initialised_from=initialised, starting_point=origin,
                  hardware=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                  parameters=sum(p.numel() for p in model.parameters()), training_images=len(sampler))

    # what the loss and validation see: the model itself, or the colour denoiser made of it
    # (its weights, checkpoints and exports stay the gray model's)
    # on the device: DDP broadcasts every buffer, the colour basis included
    task: nn.Module = OpponentColorDenoiser(model).to(device) if config.color == "opponent" else model
    net: nn.Module = task
    if world > 1:
        net = nn.parallel.DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None)

    def state_dict() -> dict[str, Any]:
        return {"config": config.to_dict(), "world_size": world, "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "best": best, "elapsed": elapsed, "training_images": images,
                **({"init_from_record": origin} if has_origin else {})}

    checkpointed = step  # the step of the last checkpoint written (what a hard abort falls back to)

    def checkpoint() -> None:
        nonlocal checkpointed
        if rank == 0:
            save_checkpoint(checkpoint_path, state_dict())
        checkpointed = step

    def validate() -> dict[str, Any] | None:
        nonlocal best
        if validation is None:
            return None
        model.eval()
        results = evaluate_denoiser(task, validation, config.val_sigmas, device)
        model.train()
        mean = sum(results.values()) / len(results)
        record = {"step": step, "psnr": {f"{s * 255:.4g}": v for s, v in results.items()}, "mean_psnr": mean,
                  **_certificate_summary(model, config.sigma_min, config.sigma_max)}
        log.write(event="val", **record)
        if best is None or mean > best["mean_psnr"]:
            best = record
            save_checkpoint(best_path, state_dict())
        return record

    from tqdm.auto import tqdm

    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress or rank != 0, dynamic_ncols=True,
               desc="train denoiser")
    certified_model = isinstance(model, CertifiedDenoiser)
    if certified_model and step < config.steps - config.certified_finetune_steps:
        # Frozen counts belong to the certified fine-tuning phase only. Weights taken from a
        # fine-tuned model (init_from) arrive frozen; kept so, the blocks would learn with stale
        # counts and norm estimates while the weights grow past what those counts certify.
        model.unfreeze_substeps()
    losses: list[float] = []
    window: list[float] = []
    stopped: str | None = None
    model.train()
    # checked before each block integrates (see _substep_guard): a diverged run fails at once
    guards = [block.register_forward_pre_hook(_substep_guard(i, lambda: step))
              for i, block in enumerate(getattr(model, "flow_blocks", []))]
    tic = time.time()
    try:
        while step < end:
            clean, noisy, sigma = sampler.batch(config.batch_size, step, config.seed, rank)
            clean, noisy, sigma = clean.to(device), noisy.to(device), sigma.to(device)
            if certified_model and step >= config.steps - config.certified_finetune_steps:
                model.freeze_substeps()
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                output = net(noisy, sigma)
            loss = denoising_loss(output.float(), clean, sigma, config.loss_weighting,
                                  (config.sigma_min, config.sigma_max))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            _project_parameters(model)
            scheduler.step()
            step += 1
            value = float(loss.detach())
            losses.append(value)
            # The log and the bar report the plain MSE (a PSNR), whatever the weighting of the objective.
            window.append(value if config.loss_weighting == "uniform"
                          else float(F.mse_loss(output.detach().float(), clean)))
            bar.update(1)
            if step % config.log_every == 0 or step == end:
                mse = sum(window) / len(window)
                bar.set_postfix(loss=f"{mse:.2e}", psnr=f"{10 * math.log10(1 / max(mse, 1e-20)):.2f}")
                log.write(event="train", step=step, loss=mse, lr=scheduler.get_last_lr()[0],
                          elapsed=elapsed + time.time() - tic, **_block_stats(model))
                window = []
            if rank == 0 and (step % config.val_every == 0 or step == config.steps):
                validate()
            # at the last step every rank stops anyway: no agreement needed (nor a collective)
            reason = (_stop_reason(stop_requested, deadline, world, device) if step < end
                      else "terminated" if stop_requested.is_set() else None)
            if reason is not None:
                if reason == "terminated":  # which signal: this rank's own, or another rank's SIGTERM/Ctrl-C
                    reason = signals[0] if signals else "terminated"
                stopped = reason
                log.write(event=reason, step=step)
                end = step
            if step % config.checkpoint_every == 0 or step == end:
                elapsed += time.time() - tic
                tic = time.time()
                checkpoint()
    except KeyboardInterrupt:
        # A second Ctrl-C (or one outside the main thread, where no handler catches it) lands
        # anywhere inside a step: no checkpoint of that state. The last one, at a step boundary,
        # stays, and resuming from it is exact (the steps since are taken again).
        log.write(event="aborted", step=step, checkpoint_step=checkpointed)
        raise
    finally:
        for guard in guards:
            guard.remove()
        bar.close()
        if world > 1 and dist.is_initialized():
            dist.barrier()
    log.write(event="stop", step=step, elapsed=elapsed)
    return TrainResult(run_dir, step, checkpoint_path, best_path if best_path.exists() else None, best, losses,
                       stopped=stopped, planned_steps=config.steps, rank=rank)

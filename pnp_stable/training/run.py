"""Script entry point for training runs (also what ``torchrun`` launches for DDP).

Usage::

    python -m pnp_stable.training.run --preset gray-cpu --train ../shared/data/denoising/bsds500 \\
        --val ../shared/data/denoising/bsd68 --run-dir runs/gray-cpu [--resume]
    torchrun --nproc_per_node 8 -m pnp_stable.training.run --preset gray-gpu ...

``--set key=value`` overrides a configuration field (``model.width=48`` for architecture fields;
values are parsed as JSON when possible). User errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["apply_steps_option", "check_run_dir", "check_time_limit", "main", "parse_overrides", "parse_set_options"]

# fields that this script and ``pnp-stable train-denoiser`` set from options of their own: a
# --set of one would clash with the option's value (Python's "got multiple values" TypeError)
_OWN_OPTIONS = {"train_dirs": "--train", "run_dir": "--run-dir", "val_dir": "--val", "resume": "--resume"}


def parse_overrides(items: list[str]) -> dict:
    """``["steps=10", "model.width=8"]`` -> ``{"steps": 10, "model": {"width": 8}}``."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key == "model" or key.startswith("model."):
            model = out.setdefault("model", {})
            if key == "model":
                if not isinstance(value, dict):
                    raise ValueError(f"--set model=...: expects a JSON object of architecture fields, e.g. "
                                     f"model={{\"width\": 48}}, got {raw!r}")
                model.update(value)  # merged with the model.* fields given before it, as they are with it
            else:
                model[key[len("model."):]] = value
        else:
            out[key] = value
    return out


def check_time_limit(minutes: float | None) -> float | None:
    """``--time-limit MINUTES`` as seconds; a one-line ValueError for a negative or non-finite value."""
    if minutes is None:
        return None
    if not (math.isfinite(minutes) and minutes >= 0):
        raise ValueError(f"--time-limit must be a non-negative number of minutes, got {minutes:g}")
    return 60.0 * minutes


def parse_set_options(items: list[str]) -> dict:
    """:func:`parse_overrides` of the front ends' ``--set`` options; a one-line ValueError for a
    field that has an option of its own (``--set run_dir=...``: use ``--run-dir``)."""
    overrides = parse_overrides(items)
    for key, option in _OWN_OPTIONS.items():
        if key in overrides:
            raise ValueError(f"--set {key}=...: {key} has its own option, {option}")
    return overrides


def apply_steps_option(overrides: dict, steps: int | None) -> None:
    """``--steps N`` into ``overrides`` (in place); a one-line ValueError for a non-positive N or a
    ``--set steps=M`` that says otherwise."""
    if steps is None:
        return
    if steps < 1:
        raise ValueError(f"--steps must be a positive number of steps, got {steps}")
    if "steps" in overrides and overrides["steps"] != steps:
        raise ValueError(f"--steps {steps} and --set steps={overrides['steps']} disagree: give one of them")
    overrides["steps"] = steps


def check_run_dir(run_dir: str | os.PathLike, resume: bool) -> None:
    """Refuse, before any data is read or a step is taken, a run directory that cannot hold the
    run: an existing file, a parent that is a file or not writable
    (:func:`pnp_stable.fileio.destination_problem`), or (``resume``) a folder without a checkpoint.
    One-line ValueError.

    Here and not in the loop: :attr:`TrainConfig.resume` means "continue if there is a
    checkpoint", while a user who types ``--resume`` expects a run to continue, not hours of a new
    one from scratch (a mistyped ``--run-dir``).
    """
    from pnp_stable.fileio import destination_problem
    from pnp_stable.training.loop import CHECKPOINT_NAME

    path = Path(run_dir).expanduser()
    problem = destination_problem(path, folder=True)
    if problem:
        raise ValueError(f"run directory {os.fspath(run_dir)}{problem}")
    if resume and not (path / CHECKPOINT_NAME).is_file():
        raise ValueError(f"no checkpoint to resume in {os.fspath(run_dir)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pnp_stable.training.run", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gray-cpu")
    parser.add_argument("--train", action="append", required=True, help="training folder (repeatable)")
    parser.add_argument("--val", default=None, help="validation folder (e.g. BSD68)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="the run's number of steps (the preset's by default)")
    parser.add_argument("--stop-after", type=int, default=None, help="stop this invocation after N steps")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                        help="stop this invocation (checkpointed, resumable) after this much wall time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from pnp_stable.training.loop import train_denoiser
    from pnp_stable.training.presets import preset

    try:
        if args.stop_after is not None and args.stop_after < 1:
            raise ValueError(f"--stop-after must be a positive number of steps, got {args.stop_after}")
        overrides = parse_set_options(args.set)
        apply_steps_option(overrides, args.steps)
        time_limit = check_time_limit(args.time_limit)
        check_run_dir(args.run_dir, args.resume)
        config = preset(args.preset, args.train, args.run_dir, val_dir=args.val, resume=args.resume, **overrides)
        result = train_denoiser(config, stop_after=args.stop_after, time_limit=time_limit)
    except FileNotFoundError as exc:  # e.g. init_from naming no file
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # a second Ctrl-C: aborted mid-step, so nothing was saved now; the last checkpoint stands
        print(f"aborted; the last checkpoint in {args.run_dir} (if any) is intact: continue with the same command "
              "plus --resume", file=sys.stderr)
        return 130
    if result.rank != 0:  # under DDP every rank returns; one report is enough
        return 130 if result.stopped in ("interrupted", "terminated") else 0
    print(json.dumps({"step": result.step, "checkpoint": str(result.checkpoint),
                      "best_validation": result.best_validation, "stopped": result.stopped}))
    if result.stopped in ("interrupted", "terminated"):
        print(f"{result.stopped} at step {result.step} of {result.planned_steps}; checkpoint saved in "
              f"{args.run_dir}: continue with the same command plus --resume", file=sys.stderr)
        return 130  # as the restoration commands exit when interrupted
    return 0


if __name__ == "__main__":
    sys.exit(main())

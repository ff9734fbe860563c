"""Average the weights of training runs that share a starting point (a "model soup").

Two continuations of one trained model with different seeds (different patches and noise
draws) end at different weights with about the same validation PSNR. On the CPU both cores can
train such siblings at once, but a shipped model is one set of weights: averaging them spends
both runs' compute on one model at no cost per call. Weights fine-tuned from one starting point
at a small learning rate usually sit in one basin, where their average denoises at least as well
as either (it is measured, not assumed: ``--validate``).

The certificate does not rest on the runs: the averaged weights are a new set of weights, and
:func:`pnp_stable.training.export.export_denoiser` recomputes the certified norm bounds, the
sub-step counts and the averagedness from them, exactly as for any checkpoint. Averaging the
*outputs* of two averaged denoisers would also keep the constant (a convex combination of
alpha-averaged maps is alpha-averaged) but costs a call per model; averaging weights does not.

Usage::

    python -m pnp_stable.training.average runs/soup.pt runs/c8/checkpoint.pt runs/c9/checkpoint.pt --validate
    python -m pnp_stable.training.export runs/soup.pt gray ...

The result is a training checkpoint without optimiser state: it can be exported, or serve as
``init_from`` of a new run, but not be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from pnp_stable.denoisers import CertifiedDenoiser, build_denoiser
from pnp_stable.training.checkpoint import load_checkpoint, save_checkpoint
from pnp_stable.training.config import TrainConfig
from pnp_stable.training.lineage import wall_hours

__all__ = ["average_checkpoints", "validate_checkpoint", "main"]

# buffers that are per-run state rather than weights: the power-method estimate is re-run on
# the averaged weights, the frozen sub-step counts re-derived from them
_RESTATED_BUFFERS = ("norm_estimate", "fixed_substeps")


def _starting_point(config: dict[str, Any]) -> tuple[str, Any]:
    # From scratch, the seed draws the initial weights: only runs with the same seed start alike.
    return ("init_from", config["init_from"]) if config.get("init_from") else ("seed", config.get("seed"))


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The training-checkpoint state whose model weights are the mean of those in ``paths``.

    Requirements (ValueError otherwise): at least two readable training checkpoints, one model
    architecture and one training noise range, and one starting point (the same ``init_from``,
    or from scratch the same seed) -- weights of unrelated runs are not in one basin, and their
    average is no denoiser. Floating-point weights are averaged in float64; the power-method
    estimates are re-run from the averaged weights, and sub-step counts are frozen again from
    their certified norm bounds when every input had them frozen (the state at the end of
    certified fine-tuning). The result records its inputs (``averaged_from``: path, steps, wall
    hours, seed, patch and batch size) and keeps their common starting-point record
    (``init_from_record``; inputs whose records differ are refused); its ``elapsed`` is the
    inputs' total, since all of them were spent on it. Its ``best`` is None: no validation has
    run on the average (``main --validate`` records one).
    """
    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    states = [load_checkpoint(p) for p in paths]
    configs = [TrainConfig.from_dict(s["config"]) for s in states]
    first = configs[0]
    for path, config, state in zip(paths[1:], configs[1:], states[1:]):
        if config.model.to_dict() != first.model.to_dict():
            raise ValueError(f"{path} has another architecture than {paths[0]}")
        if (config.sigma_min, config.sigma_max) != (first.sigma_min, first.sigma_max):
            raise ValueError(f"{path} was trained on another noise range than {paths[0]}")
        if _starting_point(state["config"]) != _starting_point(states[0]["config"]):
            kind, value = _starting_point(state["config"])
            raise ValueError(f"{path} starts from another point ({kind} {value!r}) than {paths[0]}: "
                             "only runs from one starting point can be averaged")
    # one init_from path may have held different files when the runs started (a shipped model
    # overwritten between them): their records, taken at each run's start, tell
    records = [(path, s["init_from_record"]) for path, s in zip(paths, states) if "init_from_record" in s]
    for path, record in records[1:]:
        if record != records[0][1]:
            raise ValueError(f"{path} started from another version of {first.init_from} than {records[0][0]}: "
                             "only runs from one starting point can be averaged")

    model = build_denoiser(first.model)
    own = model.state_dict()
    averaged: dict[str, torch.Tensor] = {}
    for key, reference in own.items():
        tensors = [s["model"].get(key) for s in states]
        if any(t is None or t.shape != reference.shape for t in tensors):
            raise ValueError(f"the checkpoints disagree on the model tensor {key!r}")
        if key.rsplit(".", 1)[-1] in _RESTATED_BUFFERS:
            averaged[key] = tensors[0].clone()
        elif tensors[0].is_floating_point():
            averaged[key] = (sum(t.double() for t in tensors) / len(tensors)).to(tensors[0].dtype)
        elif all(torch.equal(t, tensors[0]) for t in tensors):
            averaged[key] = tensors[0].clone()
        else:
            raise ValueError(f"the checkpoints disagree on the integer tensor {key!r}")
    model.load_state_dict(averaged)

    if isinstance(model, CertifiedDenoiser):
        frozen = all(int(s["model"][k]) > 0 for s in states for k in s["model"] if k.endswith("fixed_substeps"))
        model.unfreeze_substeps()
        for block in model.flow_blocks:
            block.linear.norm_estimate.zero_()
            block.linear.estimate_norm()  # a zero estimate runs the full warm-up
        if frozen:
            model.freeze_substeps()

    # the data recipe may differ between inputs (patch size, batch), and the average's own config
    # is its first input's: each input's is kept here
    sources = [{"path": str(p), "steps": int(s["step"]), "wall_hours": wall_hours(s),
                "seed": c.seed, "patch_size": c.patch_size, "batch_size": c.batch_size}
               for p, s, c in zip(paths, states, configs)]
    return {"config": states[0]["config"], "step": max(int(s["step"]) for s in states), "model": model.state_dict(),
            "best": None, "elapsed": sum(float(s.get("elapsed", 0.0)) for s in states), "averaged_from": sources,
            **({"init_from_record": records[0][1]} if records else {})}


def validate_checkpoint(state: dict[str, Any]) -> dict[str, float]:
    """Validation PSNR (dB, keyed by sigma on the 0-255 scale) of a checkpoint state's model, on
    the validation set its configuration names -- the ``val`` record a training run writes."""
    from pnp_stable.training.data import ValidationSet
    from pnp_stable.training.evaluate import evaluate_denoiser

    config = TrainConfig.from_dict(state["config"])
    if config.val_dir is None:
        raise ValueError("the checkpoint's configuration names no validation folder")
    data = ValidationSet.from_folder(config.val_dir, config.model.channels, config.val_limit, config.val_crop)
    model = build_denoiser(config.model)
    model.load_state_dict(state["model"])
    model.eval()
    results = evaluate_denoiser(model, data, config.val_sigmas)
    record = {f"{s * 255:.4g}": v for s, v in results.items()}
    record["mean"] = sum(results.values()) / len(results)
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m pnp_stable.training.average OUT CHECKPOINT CHECKPOINT [...] [--validate]``."""
    parser = argparse.ArgumentParser(prog="python -m pnp_stable.training.average",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the averaged training checkpoint to write (never an input)")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--validate", action="store_true",
                        help="print the validation PSNR of every input and of the average")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if any(out.resolve() == Path(p).resolve() for p in args.checkpoints):
            raise ValueError(f"{out} is one of the inputs: write the average elsewhere")
        if out.exists():
            raise ValueError(f"{out} exists: choose a new file")
        state = average_checkpoints(args.checkpoints)
        report: dict[str, Any] = {"out": str(out), "averaged_from": state["averaged_from"]}
        if args.validate:
            report["validation"] = {p: validate_checkpoint(load_checkpoint(p)) for p in args.checkpoints}
            report["validation"]["average"] = average = validate_checkpoint(state)
            # the record a training run keeps of its best validation, so that an export of the
            # average states its validation PSNR as it does for any run
            state["best"] = {"step": state["step"], "psnr": {k: v for k, v in average.items() if k != "mean"},
                             "mean_psnr": average["mean"]}
        save_checkpoint(out, state)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

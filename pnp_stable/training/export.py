"""Export a trained denoiser: certified step counts, certificate, metadata, ``NAME.pt`` + ``NAME.json``.

On export every gradient-flow block's sub-step count is recomputed from the **certified** norm
bound of its weights and frozen, the certificate of the whole denoiser is computed from those
bounds, and the files are written atomically. Optionally the exported model is evaluated with
the denoise-bsd68 protocol and checked empirically (random + adversarial search).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pnp_stable.denoisers.io import (
    FORMAT, check_finite_state, load, pretrained_dir, rewrite_with_metadata, save_denoiser, stored_metadata,
)
from pnp_stable.denoisers.models import CertifiedDenoiser, build_denoiser
from pnp_stable.fileio import atomic_output, json_safe
from pnp_stable.training.checkpoint import load_checkpoint
from pnp_stable.training.config import TrainConfig
from pnp_stable.training.grow import prune_idle_blocks
from pnp_stable.training.lineage import starting_point_record, wall_hours

__all__ = ["certificate_record", "check_export_destination", "check_model_name", "empirical_certificate_check", "export_denoiser", "git_commit",
           "read_calibrated_rule", "write_model"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_model_name(name: str) -> None:
    """One-line ValueError unless ``name`` is a usable model name (letters, digits, '-', '_', '.';
    not ending in ``.pt`` or ``.json``, which :func:`~pnp_stable.denoisers.load` would take for a
    file): callers that export after hours of training check it before the first step."""
    if not _NAME.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits, '-', '_' and '.'")
    if name.lower().endswith((".pt", ".json")):
        raise ValueError(f"invalid model name {name!r}: give it without the suffix ({Path(name).stem!r}); the "
                         "files are NAME.pt and NAME.json")


def check_export_destination(pt_path: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> None:
    """One-line ValueError if writing the model to ``pt_path`` would replace ``checkpoint`` (the one
    being exported) or any other training checkpoint (a run's ``checkpoint.pt`` or ``best.pt``:
    the run could no longer be resumed), or if its folder cannot be made or written."""
    from pnp_stable.fileio import destination_problem
    from pnp_stable.training.checkpoint import load_checkpoint

    pt_path = Path(pt_path)
    problem = destination_problem(pt_path.parent, folder=True)
    if problem:
        raise ValueError(f"export folder {pt_path.parent}{problem}")
    if checkpoint is not None and pt_path.resolve() == Path(checkpoint).resolve():
        raise ValueError(f"{pt_path} is the checkpoint being exported: choose another name or folder")
    if pt_path.is_file():
        try:
            load_checkpoint(pt_path)
        except ValueError:
            return  # an earlier export (or another file) of that name: replaced, as outputs are
        raise ValueError(f"{pt_path} is a training checkpoint, which the export would replace: choose another "
                         "name or folder")


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The current commit of the repository holding ``path`` (this package by default), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def empirical_certificate_check(model: CertifiedDenoiser, alpha: float,
                                sigmas: tuple[float, ...] = (5 / 255, 25 / 255, 50 / 255)) -> dict[str, Any]:
    """Largest averagedness violation found by random pairs + gradient ascent (<= ~1e-6 in float32).

    Averagedness with alpha < 1 implies the Lipschitz bound 1, so this one search tests both.
    """
    from pnp_stable.verification import empirical_averagedness_violation

    shape = (model.config.channels, 16, 16)
    violation = max(
        empirical_averagedness_violation(lambda x, s=sigma: model(x, s), alpha, shape, restarts=1, steps=20,
                                         n_pairs=8, dtype=torch.float32)
        for sigma in sigmas
    )
    return {"averagedness_violation": violation, "sigmas": list(sigmas),
            "search": "random pairs + gradient ascent, 16x16 inputs, float32 (rounding ~1e-6)"}


def certificate_record(model: CertifiedDenoiser) -> dict[str, Any]:
    """The metadata's ``certificate`` entry of a model whose sub-step counts are frozen: the
    constants from certified norm bounds, the firmly non-expansive relaxation, the per-block
    bounds and counts."""
    cert = model.certificate()
    alpha = cert.averagedness
    return {
        "lipschitz": cert.lipschitz,
        "averagedness": alpha,
        "firmly_nonexpansive_relaxation": None if alpha is None else min(1.0, 1.0 / (2.0 * alpha)),
        "norm_bounds": [b.linear.certified_norm() for b in model.flow_blocks],
        "substeps": [int(b.fixed_substeps) for b in model.flow_blocks],
        "valid_for": "every input size and every sigma, eval mode, zero padding",
    }


def _per_input(state: dict[str, Any], field: str, own: Any) -> Any:
    """A run's ``field`` of its data recipe; for an average of runs (``pnp_stable.training.average``),
    whose configuration is its first input's, the list of its inputs' values."""
    sources = state.get("averaged_from")
    return [source.get(field) for source in sources] if sources else own


def read_calibrated_rule(spec: str) -> tuple[str | None, str, dict[str, float], dict[str, Any]]:
    """Parse ``[PROBLEM:]METHOD=FILE`` (``FILE`` written by ``bench/calibrate_parameters.py --out``,
    or ``bench/calibrate_ct_rule.py --out`` for ``PROBLEM`` ``ct``).

    Returns ``(problem, method, rule, provenance)``: the operator family the rule is for (None: every
    operator without a rule of its own), the rule's fields (validated as a
    :class:`~pnp_stable.solvers.ParameterRule`) and where they were calibrated (train images, crop,
    kernels or angles, noise levels), so that the shipped metadata says what the automatic
    parameters rest on. Raises ``ValueError`` for a bad spec, a missing/unreadable file or a rule of
    another method.
    """
    import json

    from pnp_stable.solvers import ParameterRule

    key, sep, file = spec.partition("=")
    problem, _, method = key.rpartition(":")
    if not sep or method not in ("fb", "admm", "drs") or not file or (problem and not _NAME.match(problem)):
        raise ValueError(f"--pnp-rule expects [PROBLEM:]METHOD=FILE with METHOD fb, admm or drs, got {spec!r}")
    try:
        with open(file) as f:
            calibration = json.load(f)
        stored = calibration["rule"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read a calibrated rule from {file}: {exc}") from None
    if calibration.get("method", method) != method:
        raise ValueError(f"{file} calibrates {calibration['method']!r}, not {method!r}")
    if calibration.get("problem") != (problem or None):
        raise ValueError(f"{file} calibrates {calibration.get('problem') or 'the generic rule'!r}, "
                         f"not {problem or 'the generic rule'!r}")
    try:
        ParameterRule.from_mapping(stored)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None
    rule = {k: float(v) for k, v in stored.items()}
    provenance = {key: calibration[key] for key in ("images", "crop", "kernels", "angles", "size", "color",
                                                    "noise_relative") if key in calibration}
    provenance["noise_levels"] = sorted(float(n) for n in calibration.get("best", {}))
    provenance["source"] = calibration.get("source", "bench/calibrate_parameters.py on BSDS500 train crops")
    return problem or None, method, rule, provenance


def export_denoiser(checkpoint: str | os.PathLike, name: str, dest_dir: str | os.PathLike | None = None,
                    description: str = "", bsd68_dir: str | None = None, bsd68_limit: int | None = None,
                    empirical_check: bool = True, extra_metadata: dict[str, Any] | None = None,
                    bsd68_result: dict[str, Any] | None = None, prune_idle: bool = True,
                    validation_dir: str | os.PathLike | None = None) -> Path:
    """Export the model in a training checkpoint to ``dest_dir/NAME.pt`` and ``NAME.json``.

    Guarantee: the written model's sub-step counts are those its certified norm bounds require
    (frozen), and the certificate recorded in the metadata is recomputed and re-checked when the
    file is loaded (:func:`pnp_stable.denoisers.load`). ``dest_dir`` defaults to the package's
    ``pretrained`` folder. Returns the path of the ``.pt`` file.

    BSD68 numbers are either measured here (``bsd68_dir``) or taken from a denoise-bsd68 result of
    the same weights (``bsd68_result``, one entry of ``bench/bench_denoise_bsd68.py --out``), so
    that the 20-minute-to-hours CPU evaluation is not run twice.

    ``validation_dir`` measures the model with the same protocol on any folder (a colour model on
    its RGB images, inside its colour denoiser) and records it under ``validation_psnr``, with the
    folder in ``validation_dir``: the numbers of ``pnp-stable train-denoiser --val DIR --export``,
    which say nothing of BSD68 unless DIR is that set.

    With ``prune_idle`` (default) blocks that time conditioning switched off at every noise level
    of the training range (:func:`pnp_stable.training.grow.idle_blocks`) are left out of the file,
    provided the output on a probe image moves by at most ``1e-4`` at the range's ends and middle:
    the same function at less cost per call, and a lower averagedness. What was dropped, and the
    measured change, is recorded as ``pruned_idle_blocks``.
    """
    check_model_name(name)
    pt_path = (Path(dest_dir) if dest_dir is not None else pretrained_dir()) / f"{name}.pt"
    check_export_destination(pt_path, checkpoint)  # before the measurements, which may take long
    state = load_checkpoint(checkpoint)
    train_config = TrainConfig.from_dict(state["config"])
    model = build_denoiser(train_config.model)
    model.load_state_dict(state["model"])
    model.eval()
    # before anything is computed from them: NaN weights (a diverged run) would otherwise fail
    # deep in the empirical check with a message about tensor shapes
    check_finite_state(model, Path(checkpoint))

    certificate = None
    pruned_record = None
    if isinstance(model, CertifiedDenoiser):
        model.freeze_substeps()
        if prune_idle:
            model, pruned_record = prune_idle_blocks(model, train_config.sigma_min, train_config.sigma_max)
        certificate = certificate_record(model)

    metadata: dict[str, Any] = {
        "name": name,
        "format": FORMAT,
        "description": description,
        "kind": train_config.model.kind,
        "certified": certificate is not None and certificate["averagedness"] is not None,
        "channels": train_config.model.channels,
        "sigma_range_255": [train_config.sigma_min * 255.0, train_config.sigma_max * 255.0],
        "architecture": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "certificate": certificate,
        "training": {
            "data": train_config.train_dirs,
            # the number of training images, when the checkpoint records them (2026-12-06 on)
            **({"images": len(state["training_images"])} if state.get("training_images") else {}),
            "validation": train_config.val_dir,
            "steps": int(state["step"]),
            "planned_steps": train_config.steps,
            "patch_size": _per_input(state, "patch_size", train_config.patch_size),
            "batch_size": _per_input(state, "batch_size", train_config.batch_size),
            "lr": train_config.lr,
            "loss_weighting": train_config.loss_weighting,
            # "opponent": trained inside the opponent-colour denoiser on RGB images, its job there
            "color": train_config.color,
            "seed": _per_input(state, "seed", train_config.seed),
            "wall_hours": wall_hours(state),
            "best_validation": state.get("best"),
            # the record the run took when it started; read now only for checkpoints older than
            # records (the file may since have been overwritten, e.g. by this very export)
            "init_from": (state["init_from_record"] if "init_from_record" in state
                          else starting_point_record(train_config.init_from)),
        },
        "date": _dt.date.today().isoformat(),
        "commit": git_commit(),
    }
    if state.get("averaged_from"):  # weights averaged over sibling runs (pnp_stable.training.average)
        metadata["training"]["averaged_from"] = state["averaged_from"]
    measured_on = "bsd68"
    if train_config.color:
        # trained for RGB images inside the opponent-colour denoiser (the training loop builds it
        # with its default chroma scale): load() returns that denoiser
        from pnp_stable.denoisers.color import DEFAULT_CHROMA_SCALE

        metadata["channels"] = 3
        metadata["color"] = {"mode": train_config.color, "chroma_scale": DEFAULT_CHROMA_SCALE}
        measured_on = "cbsd68"
        if bsd68_dir is not None:
            raise ValueError("a colour model is measured on CBSD68, not the gray BSD68: pass the entry of "
                             "bench/bench_denoise_bsd68.py --color ... --out instead")
    if bsd68_dir is not None:
        result = _measure(model, bsd68_dir, metadata, limit=bsd68_limit)
        metadata["bsd68_psnr"] = result["psnr"]
        metadata["bsd68_images"] = result["images"]
    elif bsd68_result is not None:
        protocol = bsd68_result.get("protocol", f"denoise-{measured_on}")
        if protocol != f"denoise-{measured_on}":
            raise ValueError(f"the numbers given were measured by {protocol}; this model is measured by "
                             f"denoise-{measured_on}")
        metadata[f"{measured_on}_psnr"] = bsd68_result["psnr"]
        metadata[f"{measured_on}_images"] = bsd68_result["images"]
    if validation_dir is not None:
        result = _measure(model, validation_dir, metadata)
        metadata["validation_dir"] = str(validation_dir)
        metadata["validation_psnr"] = result["psnr"]
        metadata["validation_images"] = result["images"]
    if empirical_check and certificate is not None and certificate["averagedness"] is not None:
        metadata["empirical_check"] = empirical_certificate_check(model, certificate["averagedness"])
    if pruned_record is not None:
        metadata["pruned_idle_blocks"] = pruned_record
    if extra_metadata:
        metadata.update(extra_metadata)

    write_model(model, pt_path, metadata)
    return pt_path


def _measure(model: nn.Module, folder: str | os.PathLike, metadata: dict[str, Any],
             limit: int | None = None) -> dict[str, Any]:
    """The denoise-bsd68 protocol on ``folder`` for the model as :func:`load` will return it: a colour
    model (``metadata["color"]``) inside its opponent-colour denoiser, on RGB images."""
    from pnp_stable.training.evaluate import denoise_bsd68

    measured: nn.Module = model
    if metadata.get("color"):
        from pnp_stable.denoisers.color import OpponentColorDenoiser

        measured = OpponentColorDenoiser(model, metadata["color"]["chroma_scale"]).eval()
    with torch.no_grad():
        return denoise_bsd68(measured, str(folder), limit=limit, progress=True, channels=metadata["channels"])


def write_model(model: nn.Module, pt_path: Path, metadata: dict[str, Any]) -> None:
    """Write ``NAME.pt`` and its ``NAME.json`` metadata, validated before they take their names.

    Both are written to temporary files beside their targets; the ``.pt`` is reloaded with
    :func:`pnp_stable.denoisers.load` (which re-derives the certificate from what was written and
    refuses non-finite weights or a certificate weaker than recorded), and only then are both
    moved into place (``os.replace``). Guarantee: when this raises, nothing under either name has
    changed — a previous model of that name stays as it was, and no half-checked model is listed
    by ``pnp-stable models``.
    """
    import json

    pt_path = Path(pt_path)
    text = json.dumps(json_safe(metadata), indent=2) + "\n"
    # exits in reverse order: the .pt takes its name first, then its .json, which is what lists it
    with atomic_output(pt_path.with_suffix(".json"), make_parents=True) as json_tmp, \
            atomic_output(pt_path, make_parents=True) as pt_tmp:
        save_denoiser(model, pt_tmp, metadata)
        json_tmp.write_text(text)
        try:
            load(pt_tmp)
        except ValueError as exc:  # name the file the user asked for, not the temporary one
            raise ValueError(str(exc).replace(str(pt_tmp), str(pt_path))) from None


_METHODS = ("fb", "admm", "drs")


def _merge_rules(base: dict[str, Any], update: dict[str, Any]) -> list[str]:
    """Replace ``base``'s rules (``{"fb": ..., "ct": {"fb": ...}}``) method by method with
    ``update``'s, in place; returns what was replaced, e.g. ``["admm", "ct:fb"]``."""
    replaced = []
    for key, value in update.items():
        if key in _METHODS:
            base[key] = value
            replaced.append(key)
        else:  # an operator family's own rules
            family = base.setdefault(key, {})
            family.update(value)
            replaced.extend(f"{key}:{method}" for method in value)
    return replaced


def replace_pnp_rules(source: str | os.PathLike, name: str, dest_dir: str | os.PathLike | None = None,
                      rules: dict[str, Any] | None = None, description: str = "") -> Path:
    """Write the exported model ``source`` (shipped name or ``.pt`` file) again as ``NAME`` with new
    PnP parameter rules, e.g. a calibration made after export.

    ``rules`` holds ``pnp_parameter_rule`` and ``pnp_parameter_calibration`` as ``--pnp-rule`` builds
    them; they replace the source's rules method by method (per operator family too), the others
    are kept. The weights, architecture, certificate and measured numbers are the source's, byte
    for byte; the reload re-derives the certificate (:func:`pnp_stable.denoisers.load`).
    ``rules_updated`` records the date, the commit and what was replaced. The source file is never
    overwritten.
    """
    import copy

    check_model_name(name)
    if not rules or not rules.get("pnp_parameter_rule"):
        raise ValueError("no PnP parameter rule to record: pass --pnp-rule METHOD=FILE or --pnp-rules-from MODEL")
    metadata = copy.deepcopy(stored_metadata(source))
    current_rules = metadata.setdefault("pnp_parameter_rule", {})
    current_calibrations = metadata.setdefault("pnp_parameter_calibration", {})
    replaced = _merge_rules(current_rules, copy.deepcopy(rules["pnp_parameter_rule"]))
    _merge_rules(current_calibrations, copy.deepcopy(rules.get("pnp_parameter_calibration", {})))
    metadata["name"] = name
    if description:
        metadata["description"] = description
    metadata["rules_updated"] = {"date": _dt.date.today().isoformat(), "commit": git_commit(),
                                 "replaced": replaced, "from": str(source)}
    dest = Path(dest_dir) if dest_dir is not None else pretrained_dir()
    return rewrite_with_metadata(source, dest / f"{name}.pt", metadata)


def _carried_rules(source: str) -> dict[str, Any]:
    """The calibrated PnP rules (and their provenance) recorded in another model's metadata,
    marked as carried over from it: a warm restart keeps the function close to its start."""
    import copy

    metadata = load(source).metadata
    rules = metadata.get("pnp_parameter_rule")
    if not rules:
        raise ValueError(f"{source} records no PnP parameter rules to carry over")
    calibrations = copy.deepcopy(metadata.get("pnp_parameter_calibration") or {})
    origin = {"name": metadata.get("name"), "date": metadata.get("date"), "commit": metadata.get("commit")}
    if isinstance(metadata.get("rules_updated"), dict):  # rules recorded after the weights were exported
        origin["rules_updated"] = {k: metadata["rules_updated"].get(k) for k in ("date", "commit")}
    for key, value in calibrations.items():  # {"fb": ..., "ct": {"fb": ...}}
        for method, provenance in ({key: value} if key in _METHODS else value).items():
            if method in _METHODS:
                provenance["carried_from"] = origin
    return {"pnp_parameter_rule": copy.deepcopy(rules), "pnp_parameter_calibration": calibrations}


def _bench_numbers(specs: list[str]) -> dict[str, Any]:
    """The PSNR of one model from ``FILE:ENTRY`` specs (``bench_denoise_bsd68.py --out`` files),
    merged over the files: they must measure the same protocol on the same number of images."""
    import json

    merged: dict[str, Any] = {"psnr": {}}
    for spec in specs:
        file, _, entry = spec.rpartition(":")
        with open(file) as f:
            bench = json.load(f)
        results = bench["results"]
        if entry not in results:
            raise ValueError(f"{file} has no entry {entry!r} (has: {', '.join(results)})")
        found = {**results[entry], "protocol": bench.get("protocol", "denoise-bsd68")}
        for key in ("protocol", "images"):
            if merged.get(key, found[key]) != found[key]:
                raise ValueError(f"{file}: {key} {found[key]!r} differs from {merged[key]!r} in the files before it")
            merged[key] = found[key]
        merged["psnr"].update(found["psnr"])
    return merged


def _note_unfinished(checkpoint: str) -> None:
    """A note on stderr when ``checkpoint`` stopped before its planned steps (the export proceeds:
    an unfinished run is sometimes what is wanted, e.g. to look at it)."""
    import sys

    if not Path(checkpoint).is_file():
        return  # the export names the missing file
    state = load_checkpoint(checkpoint)
    planned = state.get("config", {}).get("steps")
    if isinstance(planned, int) and int(state.get("step", planned)) < planned:
        print(f"note: {checkpoint} is at step {int(state['step'])} of {planned}: the run has not finished (its "
              "certified fine-tuning comes last); exporting it as it is", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m pnp_stable.training.export CHECKPOINT NAME [--dest DIR] [--bsd68 DIR]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m pnp_stable.training.export", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("name")
    parser.add_argument("--dest", default=None, help="output folder (default: the shipped pretrained folder)")
    parser.add_argument("--bsd68", default=None, help="BSD68 folder: record denoise-bsd68 PSNR in the metadata")
    parser.add_argument("--bsd68-limit", type=int, default=None)
    parser.add_argument("--bsd68-json", action="append", default=[], metavar="BENCH_JSON:ENTRY",
                        help="take the BSD68 numbers (CBSD68 for a colour model: the run with --color) from a "
                             "bench_denoise_bsd68.py --out file (entry = model label); repeatable, e.g. one "
                             "file per noise level")
    parser.add_argument("--description", default="")
    parser.add_argument("--no-empirical-check", action="store_true")
    parser.add_argument("--keep-idle", action="store_true",
                        help="keep blocks that time conditioning switched off at every trained noise level "
                             "(by default they are left out when that leaves the output unchanged)")
    parser.add_argument("--pnp-rule", action="append", default=[], metavar="[PROBLEM:]METHOD=CALIBRATION_JSON",
                        help="record the automatic PnP parameter rule calibrated for METHOD (fb, admm, drs) by "
                             "bench/calibrate_parameters.py --out; with PROBLEM (ct: bench/calibrate_ct_rule.py) "
                             "the rule of that operator family only; repeatable")
    parser.add_argument("--pnp-rules-from", default=None, metavar="MODEL",
                        help="carry over the PnP parameter rules of MODEL (shipped name or .pt file), e.g. the "
                             "model a warm restart started from; --pnp-rule entries replace single methods")
    parser.add_argument("--replace-rules", action="store_true",
                        help="CHECKPOINT is an exported model (.pt file or shipped name): write it again as NAME "
                             "with the rules of --pnp-rule / --pnp-rules-from in place of its own, weights, "
                             "certificate and measured numbers unchanged")
    args = parser.parse_args(argv)
    if args.replace_rules and (args.bsd68 or args.bsd68_json or args.keep_idle):
        print("error: --replace-rules keeps the model as exported: drop --bsd68, --bsd68-json and --keep-idle",
              file=sys.stderr)
        return 2
    try:
        extra: dict[str, Any] = _carried_rules(args.pnp_rules_from) if args.pnp_rules_from else {}
        for spec in args.pnp_rule:
            problem, method, rule, provenance = read_calibrated_rule(spec)
            rules = extra.setdefault("pnp_parameter_rule", {})
            calibrations = extra.setdefault("pnp_parameter_calibration", {})
            if problem:  # {"fb": generic, "ct": {"fb": ...}}: see pnp_stable.solvers.rule_for
                rules, calibrations = rules.setdefault(problem, {}), calibrations.setdefault(problem, {})
            rules[method] = rule
            calibrations[method] = provenance
        if args.replace_rules:
            print(replace_pnp_rules(args.checkpoint, args.name, args.dest, extra, args.description))
            return 0
        bsd68_result = _bench_numbers(args.bsd68_json) if args.bsd68_json else None
        _note_unfinished(args.checkpoint)
        path = export_denoiser(args.checkpoint, args.name, args.dest, args.description, args.bsd68, args.bsd68_limit,
                               empirical_check=not args.no_empirical_check, bsd68_result=bsd68_result,
                               prune_idle=not args.keep_idle,
                               extra_metadata=extra or None)
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

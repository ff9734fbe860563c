"""``pnp-stable train-denoiser``."""

from __future__ import annotations

import sys

import click

from pnp_stable.cli.errors import UserError, user_errors


@click.command("train-denoiser")
@click.option("--train", "train_dirs", multiple=True, required=True, metavar="DIR",
              help="Training images: a BSDS500 root (images/{train,test}; val is never used) or any folder. Repeatable.")
@click.option("--val", "val_dir", default=None, metavar="DIR", help="Validation folder (e.g. BSD68); never a training folder.")
@click.option("--run-dir", required=True, metavar="DIR", help="Checkpoints (atomic), best model and JSON log go here.")
@click.option("--preset", default="gray-cpu", show_default=True,
              help="Configuration preset: gray-cpu, gray-cpu-deep, gray-gpu, tiny; gray-cpu-unconstrained "
                   "and gray-gpu-unconstrained are the baselines without the constraint.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Override the preset's number of steps.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any field, e.g. --set lr=5e-4 --set model.width=48. Repeatable.")
@click.option("--resume", is_flag=True,
              help="Continue from RUN_DIR/checkpoint.pt (exact resume); an error if there is none.")
@click.option("--stop-after", type=click.IntRange(1), default=None, help="End this invocation after N steps (resumable).")
@click.option("--time-limit", type=click.FloatRange(0), default=None, metavar="MINUTES",
              help="End this invocation after this much wall time (checkpointed, resumable).")
@click.option("--export", "export_name", default=None, metavar="NAME",
              help="After training, export the best checkpoint as NAME.pt + NAME.json (certified step counts frozen).")
@click.option("--export-dir", default=None, metavar="DIR",
              help="Where --export writes  [default: your models folder, $PNP_STABLE_MODELS or "
                   "~/.local/share/pnp-stable/models, so that --denoiser NAME finds it].")
def train_denoiser(train_dirs, val_dir, run_dir, preset, steps, overrides, resume, stop_after, time_limit, export_name,
                   export_dir):
    """Train a certified (or, with a *-unconstrained preset, baseline) denoiser.

    Ctrl-C or SIGTERM stops after the current step with a checkpoint; --resume continues exactly.
    Multi-GPU: `torchrun --nproc_per_node N -m pnp_stable.training.run ...` (same options).

    \b
    Examples:
      pnp-stable train-denoiser --train data/bsds500 --val data/bsd68 --run-dir runs/gray
      pnp-stable train-denoiser --train data/bsds500 --run-dir runs/gray --resume --export my-gray
    """
    with user_errors():
        from pathlib import Path

        from pnp_stable.training import preset as make_preset
        from pnp_stable.training import train_denoiser as train
        from pnp_stable.training.run import check_run_dir, parse_set_options

        extra = parse_set_options(list(overrides))
        check_run_dir(run_dir, resume)  # before any data is read: a wrong folder fails at once
        if steps is not None:
            if "steps" in extra and extra["steps"] != steps:
                raise UserError(f"--steps {steps} and --set steps={extra['steps']} disagree: give one of them")
            extra["steps"] = steps
        config = make_preset(preset, list(train_dirs), run_dir, val_dir=val_dir, resume=resume, **extra)
        dest = None
        if export_name:
            # checked now, not after hours of training
            from pnp_stable.denoisers import user_models_dir
            from pnp_stable.fileio import destination_problem
            from pnp_stable.training.export import check_model_name

            check_model_name(export_name)
            dest = Path(export_dir) if export_dir is not None else user_models_dir()
            problem = destination_problem(dest, folder=True)
            if problem:
                raise UserError(f"export folder {dest}{problem}")
        try:
            result = train(config, stop_after=stop_after, time_limit=None if time_limit is None else 60.0 * time_limit)
        except KeyboardInterrupt:
            # a second Ctrl-C aborts mid-step: nothing is saved then, the last checkpoint stands
            click.echo(f"aborted; the last checkpoint in {run_dir} (if any) is intact: continue with the same "
                       "command plus --resume", err=True)
            sys.exit(130)
        if result.stopped in ("interrupted", "terminated"):
            # an unfinished run is never exported; exit as the restoration commands do when interrupted
            click.echo(f"{result.stopped} at step {result.step} of {result.planned_steps}; checkpoint saved in "
                       f"{run_dir}: continue with the same command plus --resume", err=True)
            sys.exit(130)
        click.echo(f"trained {result.step} steps; checkpoints in {run_dir}")
        if export_name and not result.finished:
            click.echo(f"not exported: the run is at step {result.step} of {result.planned_steps}; continue with "
                       f"the same command plus --resume (and --export {export_name}) to finish and export it", err=True)
        elif export_name:
            from pnp_stable.training import export_denoiser

            best = Path(run_dir) / "best.pt"
            source = best if best.is_file() else Path(run_dir) / "checkpoint.pt"
            if not source.is_file():
                raise UserError(f"no checkpoint to export in {run_dir}")
            dest.mkdir(parents=True, exist_ok=True)
            # the --val folder is measured under a neutral key naming it: it is BSD68 only if the
            # user says so (python -m pnp_stable.training.export --bsd68 DIR)
            path = export_denoiser(source, export_name, dest_dir=dest, validation_dir=val_dir)
            hint = export_name if export_dir is None else path
            click.echo(f"exported {path} (use it with --denoiser {hint})")

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
@click.option("--time-limit", type=float, default=None, metavar="MINUTES",
              help="End this invocation after this much wall time (checkpointed, resumable).")
@click.option("--export", "export_name", default=None, metavar="NAME",
              help="After training, export the finished run as NAME.pt + NAME.json (certified step counts frozen; "
                   "RUN_DIR/best.pt, the best validation, is exported by python -m pnp_stable.training.export).")
@click.option("--export-dir", default=None, metavar="DIR",
              help="Where --export writes  [default: your models folder, $PNP_STABLE_MODELS or "
                   "~/.local/share/pnp-stable/models, so that --denoiser NAME finds it].")
def train_denoiser(train_dirs, val_dir, run_dir, preset, steps, overrides, resume, stop_after, time_limit, export_name,
                   export_dir):
    """Train a certified (or, with a *-unconstrained preset, baseline) denoiser.

    Ctrl-C or SIGTERM stops after the current step with a checkpoint; --resume continues exactly.
    Multi-GPU: `torchrun --nproc_per_node N -m pnp_stable.training.run ...` takes the same
    options but --export and --export-dir; export the finished run with
    `python -m pnp_stable.training.export RUN_DIR/checkpoint.pt NAME --dest DIR`.

    \b
    Examples:
      pnp-stable train-denoiser --train data/bsds500 --val data/bsd68 --run-dir runs/gray
      pnp-stable train-denoiser --train data/bsds500 --val data/bsd68 --run-dir runs/gray --resume --export my-gray
    """
    with user_errors():
        from pathlib import Path

        from pnp_stable.training import preset as make_preset
        from pnp_stable.training import train_denoiser as train
        from pnp_stable.training.run import apply_steps_option, check_run_dir, check_time_limit, parse_set_options

        extra = parse_set_options(list(overrides))
        apply_steps_option(extra, steps)
        time_limit_s = check_time_limit(time_limit)
        check_run_dir(run_dir, resume)  # before any data is read: a wrong folder fails at once
        config = make_preset(preset, list(train_dirs), run_dir, val_dir=val_dir, resume=resume, **extra)
        dest = None
        if export_name:
            # checked now, not after hours of training
            from pnp_stable.denoisers import available, user_models_dir
            from pnp_stable.fileio import destination_problem
            from pnp_stable.training.export import check_export_destination, check_model_name
            from pnp_stable.training.loop import BEST_NAME, CHECKPOINT_NAME

            check_model_name(export_name)
            dest = Path(export_dir) if export_dir is not None else user_models_dir()
            problem = destination_problem(dest, folder=True)
            if problem:
                raise UserError(f"export folder {dest}{problem}")
            if export_dir is None and export_name in {m["name"] for m in available(include_user=False)}:
                # --denoiser NAME and load(NAME) would still find the shipped model
                raise UserError(f"--export {export_name}: a shipped model has that name, which would hide yours; "
                                "choose another name")
            if (dest / f"{export_name}.pt").resolve() in {(Path(run_dir) / f).resolve()
                                                          for f in (CHECKPOINT_NAME, BEST_NAME)}:
                raise UserError(f"--export {export_name} in {dest} would replace the run's own {export_name}.pt: "
                                "choose another name or --export-dir")
            check_export_destination(dest / f"{export_name}.pt", Path(run_dir) / CHECKPOINT_NAME)
        try:
            result = train(config, stop_after=stop_after, time_limit=time_limit_s)
        except KeyboardInterrupt:
            # a second Ctrl-C aborts mid-step: nothing is saved then, the last checkpoint stands
            if (Path(run_dir) / CHECKPOINT_NAME).is_file():
                click.echo(f"aborted; the last checkpoint in {run_dir} is intact: continue with the same command plus "
                           "--resume", err=True)
            elif Path(run_dir).exists():  # stopped before the first checkpoint: nothing to resume
                click.echo(f"aborted before the first checkpoint; nothing to resume: remove {run_dir} and run the same "
                           "command again", err=True)
            else:
                click.echo("aborted before anything was written: run the same command again", err=True)
            sys.exit(130)
        if result.stopped in ("interrupted", "terminated"):
            # an unfinished run is never exported; exit as the restoration commands do when interrupted
            click.echo(f"{result.stopped} at step {result.step} of {result.planned_steps}; checkpoint saved in "
                       f"{run_dir}: continue with the same command plus --resume", err=True)
            sys.exit(130)
        if result.finished:
            click.echo(f"trained {result.step} steps; checkpoints in {run_dir}")
        else:
            limit = "--time-limit" if result.stopped == "time_limit" else "--stop-after"
            click.echo(f"stopped ({limit}) at step {result.step} of {result.planned_steps}; checkpoints in {run_dir}: "
                       "continue with the same command plus --resume")
            if export_name:
                click.echo(f"not exported: the run has not finished; --resume with --export {export_name} finishes "
                           "and exports it", err=True)
        if export_name and result.finished:
            from pnp_stable.training import export_denoiser

            # the finished run (its certified fine-tuning last), not best.pt: a validation on a few
            # crops may prefer a step before the fine-tuning, whose certified step counts differ
            # from the ones its weights were trained with
            source = Path(result.checkpoint)
            dest.mkdir(parents=True, exist_ok=True)
            replaced = (dest / f"{export_name}.pt").is_file()
            # the --val folder is measured under a neutral key naming it: it is BSD68 only if the
            # user says so (python -m pnp_stable.training.export --bsd68 DIR)
            path = export_denoiser(source, export_name, dest_dir=dest, validation_dir=val_dir)
            hint = export_name if export_dir is None else path
            if replaced:
                click.echo(f"note: {path} replaced the model of that name exported before", err=True)
            click.echo(f"exported {path} (use it with --denoiser {hint})")

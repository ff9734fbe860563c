"""``pnp-stable train-classifier``: front end to :func:`pnp_stable.classify.train_classifier` and
the robustness evaluation (clean, certified and, optionally, l2-PGD accuracy)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from pnp_stable.cli.errors import UserError, user_errors

# CLI spelling -> pnp_stable.classify dataset kind (None: detect from the folder's files)
_DATASETS = {"auto": None, "fashion-mnist": "fashion_mnist", "mnist": "mnist", "cifar10": "cifar10",
             "folder": "image_folder"}


def _number_list(cast, what: str, minimum: float):
    """A click callback parsing ``"0.1,0.5,1"`` into a list of numbers >= ``minimum``."""

    def convert(ctx, param, value):
        if value is None:
            return None
        items = str(value).replace(" ", "").split(",")
        if "" in items[:-1] or (items[-1] == "" and len(items) > 1):  # "8,,16": a value left out
            raise click.BadParameter(f"{value!r} has an empty entry")
        try:
            numbers = [cast(v) for v in items if v]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {what}") from None
        if not numbers:
            raise click.BadParameter(f"{value!r} is an empty list")
        if any(not (n >= minimum and math.isfinite(n)) for n in numbers):
            raise click.BadParameter(f"{value!r}: every value must be a finite number >= {minimum}")
        return numbers

    return convert


def _check_destination(path: str, option: str, folder: bool = False) -> None:
    """Refuse, before any training, an output path that cannot be written (one-line user error)."""
    from pnp_stable.fileio import destination_problem

    problem = destination_problem(path, folder)
    if problem:
        raise UserError(f"{option} {path}{problem}")


# what a run writes into its --run-dir (pnp_stable.classify.train_classifier)
_RUN_FILES = ("checkpoint.pt", "model.pt", "config.json", "history.json")


def _inside(path: str | Path, folder: str | Path) -> bool:
    resolved, root = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return resolved == root or root in resolved.parents


def _check_not_inputs(data: str, init_from: str | None, **outputs: str | None) -> None:
    """Refuse an output that is an input: inside the --data folder (an image, or a new class folder
    the next run would read), the --init-from model, or the other output."""
    seen: dict[Path, str] = {}
    for option, target in outputs.items():
        if not target:
            continue
        flag, resolved = f"--{option}", Path(target).expanduser().resolve()
        if _inside(target, data):
            raise UserError(f"{flag} {target} is inside the --data folder {data}: it would change the dataset",
                            hint=f"write {flag} elsewhere")
        if init_from and resolved == Path(init_from).expanduser().resolve():
            raise UserError(f"{flag} {target} is the --init-from model", hint=f"choose another {flag} name")
        if resolved in seen:
            raise UserError(f"{seen[resolved]} and {flag} name the same file ({target})")
        seen[resolved] = flag


def _check_run_dir(run_dir: str, data: str, **outputs: str | None) -> None:
    """Refuse a --run-dir inside the --data folder (its files, or a new class folder, would join the
    dataset) and an output that is one of the run's own files."""
    if _inside(run_dir, data) or _inside(data, run_dir):
        raise UserError(f"--run-dir {run_dir} and the --data folder {data} overlap: the run's files would change "
                        "the dataset", hint="choose a --run-dir outside --data")
    own = {(Path(run_dir) / name).expanduser().resolve() for name in _RUN_FILES}
    for option, target in outputs.items():
        if target and Path(target).expanduser().resolve() in own:
            raise UserError(f"--{option} {target} is one of the run's own files ({', '.join(_RUN_FILES)})",
                            hint=f"choose another --{option} name")


def _image_size(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")] if value.strip() == value and " " not in value else []
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise click.BadParameter(f"{value!r} is not a size (examples: 28, 32x32)")
    if max(parts) > 4096:  # a typo (99999x99999) would ask for terabytes of images before any error
        raise click.BadParameter(f"{value!r}: at most 4096 pixels per side")
    return (parts[0], parts[-1])


@click.command("train-classifier")
@click.option("--data", required=True, metavar="DIR",
              help="Local dataset folder: MNIST/Fashion-MNIST idx(.gz) files, the CIFAR-10 python folder "
                   "(cifar-10-batches-py), or an image folder root[/train|/test]/<class>/<images>. Never downloaded.")
@click.option("--dataset", type=click.Choice(list(_DATASETS)), default="auto", show_default=True,
              help="Format of --data; auto detects it from the file names (idx in a folder named *fashion* "
                   "-> fashion-mnist).")
@click.option("--model", "architecture", type=click.Choice(["nonexpansive", "resnet"]), default="nonexpansive",
              show_default=True, help="Certified non-expansive network, or the unconstrained ResNet baseline.")
@click.option("--widths", callback=_number_list(int, "channel counts", 1), default="32,64,128", show_default=True,
              help="Channels per stage (stride-2 transitions between stages).")
@click.option("--blocks", callback=_number_list(int, "block counts", 0), default="2", show_default=True,
              help="Residual blocks per stage (one value for all stages, or one per width).")
@click.option("--max-substeps", type=click.IntRange(0), default=0, show_default=True,
              help="Cap on each certified block's sub-steps: fixed cost, same guarantee, shorter "
                   "integrated time once the weights grow (0 = the paper's adaptive count).")
@click.option("--head", type=click.Choice(["flatten", "pool"]), default="flatten", show_default=True,
              help="Flatten before the linear head, or a norm-preserving global pool.")
@click.option("--stage-activation", type=click.Choice(["none", "maxmin"]), default="none", show_default=True,
              help="A 1-Lipschitz, norm-preserving MaxMin after the lift and each transition (even widths).")
@click.option("--image-size", callback=_image_size, default=None, metavar="HxW",
              help="Resize image-folder images to this size (required when their sizes differ).")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
              help="Peak learning rate of the one-cycle schedule (AdamW).")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--loss", type=click.Choice(["ce", "hinge"]), default=None,
              help="Training loss [default: hinge for nonexpansive, ce for resnet].")
@click.option("--margin", type=click.FloatRange(0), default=None,
              help="Logit margin of the loss; with L = 1 a margin m certifies radius m/sqrt(2) "
                   "[default: 1.0 for nonexpansive, 0 for resnet].")
@click.option("--logit-scale", type=click.FloatRange(0, min_open=True), default=None,
              help="Temperature of the CE loss [default: 8 for nonexpansive, 1 for resnet].")
@click.option("--augment/--no-augment", default=None,
              help="Random shifts and flips [default: on for CIFAR-10 only].")
@click.option("--train-size", type=click.IntRange(1), default=None,
              help="Train on a seeded random subset of this many images (default: all).")
@click.option("--test-size", type=click.IntRange(1), default=None,
              help="Evaluate on a seeded random subset of this many test images (default: all).")
@click.option("--run-dir", default=None, metavar="DIR",
              help="Checkpoints, model.pt, history.json, config.json [default: runs/classify/<dataset>-<model>].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --run-dir (same options; a finished run is only evaluated).")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None, metavar="MODEL.pt",
              help="Start a new run from a trained model of the same layout (e.g. fine-tune with another "
                   "--margin); fresh optimiser and schedule.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp/--no-amp", default=True, show_default=True, help="bf16/fp16 autocast (CUDA only).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="torch CPU threads (1 is fastest for small models on a shared machine).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of initialisation, shuffling, subsets and the attack's random starts.")
@click.option("--eval/--no-eval", "do_eval", default=True, show_default=True,
              help="After training: clean and certified accuracy on the test set (and PGD with --pgd-eps).")
@click.option("--certified-eps", type=click.FloatRange(0), default=0.5, show_default=True,
              help="l2 radius (pixels in [0,1]) of the certified accuracy.")
@click.option("--pgd-eps", callback=_number_list(float, "radii", 0.0), default=None, metavar="LIST",
              help="Also run l2-PGD at these radii, e.g. 0.1,0.5,1.0 (default: no attack).")
@click.option("--pgd-steps", type=click.IntRange(1), default=100, show_default=True)
@click.option("--pgd-restarts", type=click.IntRange(1), default=1, show_default=True)
@click.option("--eval-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Test images attacked by PGD (a seeded random subset).")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (options, data, model and certificate, history, accuracies).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Plot PGD and certified accuracy against eps (needs --pgd-eps; .png/.pdf/.svg).")
@click.option("--quiet", is_flag=True, help="No progress bars or notes; only the summary lines.")
def train_classifier(data, dataset, architecture, widths, blocks, max_substeps, head, stage_activation, image_size,
                     epochs, batch_size, lr, weight_decay, loss, margin, logit_scale, augment, train_size, test_size,
                     run_dir, resume, init_from, device, amp, threads, seed, do_eval, certified_eps, pgd_eps, pgd_steps,
                     pgd_restarts, eval_size, report, plot, quiet):
    """Train a robust classifier (certified non-expansive, or the ResNet baseline) and evaluate it.

    Prints the clean accuracy and the certified accuracy at --certified-eps on the test set and,
    with --pgd-eps, the accuracy under l2-PGD on --eval-size test images. Ctrl-C (or SIGTERM)
    saves a checkpoint after the current step; run the same command with --resume to continue.

    \b
    Examples:
      pnp-stable train-classifier --data data/fashion_mnist --epochs 30
      pnp-stable train-classifier --data data/fashion_mnist --model resnet --run-dir runs/fm-resnet
      pnp-stable train-classifier --data data/fashion_mnist --train-size 5000 --epochs 3 \\
          --pgd-eps 0.1,0.5,1.0 --eval-size 500 --report fm.json --plot fm.png --threads 1
      pnp-stable train-classifier --data data/cifar-10-batches-py --widths 64,128,256 --device cuda
    """
    with user_errors():
        if not math.isfinite(certified_eps):
            raise UserError(f"--certified-eps must be a finite radius, got {certified_eps}")
        if plot and not (pgd_eps and do_eval):
            raise UserError("--plot needs an attack to plot", hint="add --pgd-eps 0.1,0.5,1.0 (and keep --eval)")
        from pathlib import Path

        import torch

        from pnp_stable.classify import (
            LOSS_DEFAULTS,
            ClassifierConfig,
            PGDConfig,
            TrainConfig,
            detect_dataset,
            evaluate,
            load_dataset,
            plot_robustness,
            test_set_summary,
        )
        from pnp_stable.classify import train_classifier as train
        from pnp_stable.fileio import atomic_write_json, figure_format

        # every destination is checked before hours of training, not after
        if report:
            _check_destination(report, "--report")
        if plot:
            _check_destination(plot, "--plot")
            figure_format(plot)  # ValueError (one line) for a suffix matplotlib cannot write
        _check_not_inputs(data, init_from, report=report, plot=plot)

        def note(message: str) -> None:
            if not quiet:
                click.echo(f"note: {message}", err=True)

        if threads:
            torch.set_num_threads(threads)
        kind = _DATASETS[dataset]
        if kind is None:
            try:
                kind = detect_dataset(data)
            except ValueError as exc:
                if not Path(data).is_dir():  # missing, or a file: the message says so
                    raise
                # the library's advice names its own argument; here the format is an option
                choices = [name for name in _DATASETS if name != "auto"]
                raise UserError(str(exc).split(";")[0],
                                hint=f"pass --dataset {', '.join(choices[:-1])} or {choices[-1]}") from None
            note(f"dataset detected as {kind} (use --dataset to override)")
        if image_size is not None and kind != "image_folder":  # it would be ignored without a word
            raise UserError(f"--image-size resizes image folders only; {kind} images are used at their size",
                            hint="leave out --image-size")
        if kind == "image_folder":
            has = {split: (Path(data) / split).is_dir() for split in ("train", "test")}
            if has["train"] != has["test"]:
                present, absent = ("train", "test") if has["train"] else ("test", "train")
                raise UserError(f"{data} has a {present}/ sub-folder but no {absent}/ one",
                                hint="provide both, or put the class folders directly in it")
        train_data = load_dataset(kind, data, "train", image_size)
        test_data = load_dataset(kind, data, "test", image_size)
        if train_data.class_names != test_data.class_names:
            raise UserError(f"{data}: the train and test splits have different classes "
                            f"({len(train_data.class_names)} vs {len(test_data.class_names)})")
        if kind == "image_folder" and not (Path(data) / "test").is_dir():
            click.echo(f"warning: {data} has no train/ and test/ sub-folders: the 'test' accuracies are "
                       "measured on the training images", err=True)
        if run_dir is None:
            run_dir = str(Path("runs") / "classify" / f"{kind}-{architecture}")
        _check_destination(run_dir, "--run-dir", folder=True)
        _check_run_dir(run_dir, data, report=report, plot=plot)
        checkpoint = Path(run_dir) / "checkpoint.pt"
        if checkpoint.exists() and not resume:
            raise UserError(f"{run_dir} already holds a training run",
                            hint="pass --resume to continue it, or choose another --run-dir")
        if resume and not checkpoint.exists():  # a mistyped --run-dir must not start hours of a new run
            raise UserError(f"no checkpoint to resume in {run_dir}")
        defaults = LOSS_DEFAULTS[architecture]
        config = TrainConfig(
            dataset=kind,
            data_path=str(Path(data).resolve()),
            output_dir=run_dir,
            model=ClassifierConfig(architecture=architecture, widths=tuple(widths), blocks_per_stage=tuple(blocks),
                                   head=head, max_substeps=max_substeps, stage_activation=stage_activation),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            loss=loss or defaults["loss"],
            margin=defaults["margin"] if margin is None else margin,
            logit_scale=defaults["logit_scale"] if logit_scale is None else logit_scale,
            augment=augment,
            train_size=train_size,
            test_size=test_size,
            image_size=image_size,
            seed=seed,
            init_from=init_from,
            device=device,
            amp=amp,
            resume=resume,
            progress=not quiet,
        )
        try:
            result = train(config, train_data, test_data)
        except FloatingPointError as exc:
            raise UserError(str(exc)) from None
        except ValueError as exc:
            if "different configuration" in str(exc):
                raise UserError(str(exc).split(";")[0],
                                hint="resume with the run's original options, or choose another --run-dir") from None
            raise
        model = result.model
        train_seconds = sum(h["train_seconds"] for h in result.history)
        n_train = min(len(train_data), train_size or len(train_data))
        n_epochs = len(result.history)
        click.echo(f"trained {architecture} on {kind}: {n_epochs} epoch{'s' * (n_epochs != 1)}, {n_train} images, "
                   f"{train_seconds:.0f} s; model {result.model_path} (certified L = "
                   f"{result.certified_lipschitz:.4g})")

        summary, robustness = None, None
        test_eval = test_data.subset(test_size, seed=seed)  # the subset training reported on
        if do_eval:
            summary = test_set_summary(model, test_eval, certified_eps, progress=not quiet)
            line = (f"test ({summary['n_examples']} images): clean {100 * summary['clean_accuracy']:.2f}%, "
                    f"certified@{certified_eps:g} {100 * summary['certified_accuracy']:.2f}%")
            if pgd_eps:
                subset = test_eval.subset(eval_size, seed=seed)
                robustness = evaluate(model, subset, eps=pgd_eps, pgd=PGDConfig(steps=pgd_steps, restarts=pgd_restarts),
                                      seed=seed, progress=not quiet)
                # on the attacked subset, beside each PGD accuracy its certified one (certified <= PGD
                # <= clean): the whole test set's, above, are on other images
                certified = robustness.certified_accuracy or [None] * len(robustness.eps)
                attacked = ", ".join(f"{e:g}: {100 * a:.1f}%" + ("" if c is None else f" (certified {100 * c:.1f}%)")
                                     for e, a, c in zip(robustness.eps, robustness.pgd_accuracy, certified))
                line += (f"; l2-PGD ({pgd_steps} steps, {len(subset)} images, clean {100 * robustness.clean_accuracy:.1f}% "
                         f"on them) {attacked}")
            click.echo(line)
        if report:
            atomic_write_json(report, {
                "command": "train-classifier",
                "options": click.get_current_context().params,
                "data": {"path": str(data), "dataset": kind, "train_images": n_train,
                         "test_images": len(test_eval), "image_shape": list(train_data.image_shape),
                         "class_names": list(train_data.class_names)},
                "model": {"architecture": architecture, "path": str(result.model_path),
                          "config": model.config.to_dict(),
                          "parameters": sum(p.numel() for p in model.parameters()),
                          "certified_lipschitz": result.certified_lipschitz},
                "training": {"config": config.to_dict(), "seconds": train_seconds, "history": result.history},
                "test": summary,
                "pgd": None if robustness is None else robustness.to_dict(),
            }, make_parents=True, default=str)
            note(f"report written to {report}")
        if plot and robustness is not None:
            plot_robustness({architecture: robustness}, plot,
                            title=f"{kind}, l2-PGD ({pgd_steps} steps) on {robustness.n_examples} test images")
            note(f"plot written to {plot}")

"""robust-fmnist benchmark (DESIGN.md §5): certified non-expansive classifier vs unconstrained ResNet.

Trains both models with the same pipeline (``pnp_stable.classify.train_classifier``: same data,
optimiser, schedule, epochs), then reports for each: clean accuracy and certified accuracy on the
full test set, and l2-PGD accuracy (``--pgd-steps`` steps, random start) at every ``--eps`` on a
fixed random subset of ``--eval-size`` test images (the same images for both models). Writes
``results.json`` and ``robustness.png`` into ``--out``. Training and evaluation are resumable:
rerun the same command after an interruption (each finished eps is cached).

Full scale (GPU)::

    python bench/bench_robust_fmnist.py --device cuda --epochs 30 --eval-size 10000

CPU smoke scale: see docs/classify.md and docs/benchmarks.md for the exact commands used.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from pnp_stable.classify import (
    LOSS_DEFAULTS,
    ClassifierConfig,
    PGDConfig,
    RobustnessReport,
    TrainConfig,
    certified_radius_constants,
    evaluate,
    load_dataset,
    plot_robustness,
    test_set_summary,
    train_classifier,
)
from pnp_stable.classify.config import STAGE_ACTIVATIONS
from pnp_stable.fileio import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data root (default ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "classify" / "robust_fmnist")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--models", default="nonexpansive,resnet")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--train-size", type=int, default=None, help="random training subset (default: all 60000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--widths", type=_ints, default=[32, 64, 128])
    p.add_argument("--blocks", type=_ints, default=[2], help="blocks per stage (one value or one per width)")
    p.add_argument("--hidden-multiplier", type=int, default=1)
    p.add_argument("--max-substeps", type=int, default=0,
                   help="cap on each non-expansive block's sub-steps (0 = adaptive, cost grows with the norms)")
    p.add_argument("--head", choices=("flatten", "pool"), default="flatten")
    p.add_argument("--stage-activation", choices=STAGE_ACTIVATIONS, default="none",
                   help="1-Lipschitz nonlinearity after the lift and each transition (both models)")
    p.add_argument("--lift", choices=("conv", "zero"), default="conv")
    certified = LOSS_DEFAULTS["nonexpansive"]
    p.add_argument("--loss", choices=("ce", "hinge"), default=certified["loss"], help="loss of the non-expansive model")
    p.add_argument("--margin", type=float, default=certified["margin"],
                   help="logit margin of the non-expansive model's loss (1.0 ~ sqrt(2) * 0.5 + slack)")
    p.add_argument("--logit-scale", type=float, default=certified["logit_scale"],
                   help="CE temperature of the non-expansive model")
    p.add_argument("--eval-size", type=int, default=1000, help="test images attacked by PGD")
    p.add_argument("--eps", type=_floats, default=[round(0.1 * i, 1) for i in range(1, 11)])
    p.add_argument("--certified-eps", type=float, default=0.5)
    p.add_argument("--pgd-steps", type=int, default=100)
    p.add_argument("--pgd-restarts", type=int, default=1)
    p.add_argument("--pgd-loss", choices=("margin", "ce"), default="margin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", default=None, metavar="MODEL_PT",
                   help="start the non-expansive model from these weights (same layout; new optimiser and schedule)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def train_config(args: argparse.Namespace, architecture: str) -> TrainConfig:
    # the baseline gets the loss an unconstrained network is normally trained with (plain CE)
    certified = architecture == "nonexpansive"
    baseline = LOSS_DEFAULTS["resnet"]
    return TrainConfig(
        dataset="fashion_mnist",
        data_path=str(args.data / "classification" / "fashion_mnist"),
        output_dir=str(args.out / architecture),
        model=ClassifierConfig(architecture=architecture, widths=tuple(args.widths), blocks_per_stage=tuple(args.blocks),
                               hidden_multiplier=args.hidden_multiplier, head=args.head, lift=args.lift,
                               max_substeps=args.max_substeps, stage_activation=args.stage_activation),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        loss=args.loss if certified else baseline["loss"],
        margin=args.margin if certified else baseline["margin"],
        logit_scale=args.logit_scale if certified else baseline["logit_scale"],
        train_size=args.train_size,
        seed=args.seed,
        init_from=args.init_from if certified else None,
        device=args.device,
        progress=not args.no_progress,
    )


def robustness(model, subset, args: argparse.Namespace, cache_path: Path) -> RobustnessReport:
    """PGD + certified accuracy per eps on ``subset``, caching each finished eps in ``cache_path``."""
    pgd = PGDConfig(steps=args.pgd_steps, restarts=args.pgd_restarts, loss=args.pgd_loss)
    # Round-trip through JSON so tuples compare equal to the lists read back from the cache.
    rule = certified_radius_constants(model)[2]  # cached certified accuracies must come from the same rule
    key = json.loads(json.dumps({"pgd": pgd.to_dict(), "n": len(subset), "seed": args.seed, "radius_rule": rule}))
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if cache.get("key") != key:
        cache = {"key": key, "per_eps": {}}
    for e in args.eps:
        if str(e) in cache["per_eps"]:
            continue
        report = evaluate(model, subset, eps=[e], pgd=pgd, seed=args.seed, progress=not args.no_progress)
        cache["per_eps"][str(e)] = report.to_dict()
        atomic_write_json(cache_path, cache, make_parents=True)
        print(f"  eps {e}: PGD {report.pgd_accuracy[0]:.4f}, certified {report.certified_accuracy[0]:.4f} "
              f"({report.seconds:.0f} s)", flush=True)
    reports = [RobustnessReport(**cache["per_eps"][str(e)]) for e in args.eps]
    first = reports[0]
    return RobustnessReport(
        n_examples=first.n_examples,
        clean_accuracy=first.clean_accuracy,
        eps=list(args.eps),
        pgd_accuracy=[r.pgd_accuracy[0] for r in reports],
        certified_accuracy=[r.certified_accuracy[0] for r in reports],
        lipschitz_bound=first.lipschitz_bound,
        pgd=first.pgd,
        seconds=sum(r.seconds for r in reports),
        certified_radius_rule=first.certified_radius_rule,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    fashion = args.data / "classification" / "fashion_mnist"
    try:
        test = load_dataset("fashion_mnist", fashion, "test")
        configs = {name: train_config(args, name) for name in args.models.split(",")}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    subset = test.subset(args.eval_size, seed=args.seed)
    results = {
        "benchmark": "robust-fmnist",
        "date": date.today().isoformat(),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "models": {},
    }
    reports = {}
    for name, config in configs.items():
        print(f"== {name}: training ({config.epochs} epochs, {config.train_size or 60000} images)", flush=True)
        start = time.perf_counter()
        trained = train_classifier(config)
        train_seconds = sum(h["train_seconds"] for h in trained.history)
        model = trained.model
        full = test_set_summary(model, test, args.certified_eps, progress=True)
        print(f"  clean {full['clean_accuracy']:.4f}, certified@{args.certified_eps} {full['certified_accuracy']:.4f}, "
              f"L = {full['lipschitz_bound']:.4g}", flush=True)
        report = robustness(model, subset, args, Path(config.output_dir) / "robustness_cache.json")
        reports[name] = report
        results["models"][name] = {
            "train_config": config.to_dict(),
            "train_seconds": train_seconds,
            "wall_seconds_this_invocation": time.perf_counter() - start,
            "history": trained.history,
            "full_test": full,
            "pgd_subset": report.to_dict(),
        }
        atomic_write_json(args.out / "results.json", results, make_parents=True)
    plot_robustness(reports, args.out / "robustness.png",
                    title=f"Fashion-MNIST, l2-PGD ({args.pgd_steps} steps) on {len(subset)} test images")
    print("\nmodel          clean   PGD@0.5  cert@0.5(full test)")
    for name, r in results["models"].items():
        pgd05 = RobustnessReport(**r["pgd_subset"]).pgd_at(0.5) if 0.5 in args.eps else float("nan")
        print(f"{name:14s} {r['full_test']['clean_accuracy']:.4f}  {pgd05:.4f}   {r['full_test']['certified_accuracy']:.4f}")
    print(f"written: {args.out / 'results.json'}, {args.out / 'robustness.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

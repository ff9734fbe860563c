"""Plot accuracy against eps for models measured by separate ``bench_robust_fmnist.py`` runs.

Each benchmark run writes ``results.json`` with one or more models; when the models of a
comparison were trained in different runs (different options, e.g. a fine-tuned certified model
and a baseline trained from scratch), this draws them on one figure without re-running anything::

    python bench/plot_robust_fmnist.py runs/classify/A/results.json:nonexpansive \
        runs/classify/B/results.json:resnet --out docs/figures/robust_fmnist_full.png

The PGD subsets must be the same images (same ``--eval-size`` and ``--seed``); this is checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pnp_stable.classify import RobustnessReport, plot_robustness


def _load(spec: str) -> tuple[str, RobustnessReport, dict]:
    path, _, name = spec.partition(":")
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read benchmark results ({exc})") from None
    models = results.get("models", {})
    if not name:
        if len(models) != 1:
            raise ValueError(f"{path}: holds {', '.join(models) or 'no models'}; name one as {path}:MODEL")
        name = next(iter(models))
    if name not in models:
        raise ValueError(f"{path}: no model {name!r} (has {', '.join(models) or 'none'})")
    entry = models[name]
    report = RobustnessReport(**entry["pgd_subset"])
    return name, report, {"n": report.n_examples, "seed": entry["train_config"].get("seed")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", metavar="RESULTS_JSON[:MODEL]")
    p.add_argument("--out", type=Path, required=True, help="figure path (format from the suffix)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    try:
        loaded = [_load(spec) for spec in args.results]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    subsets = {json.dumps(meta, sort_keys=True) for _, _, meta in loaded}
    if len(subsets) != 1:
        print(f"error: the runs attacked different test subsets ({sorted(subsets)})", file=sys.stderr)
        return 2
    names = [name for name, _, _ in loaded]
    if len(set(names)) != len(names):
        print(f"error: model names repeat ({', '.join(names)})", file=sys.stderr)
        return 2
    reports = {name: report for name, report, _ in loaded}
    first = loaded[0][1]
    title = args.title or f"Fashion-MNIST, l2-PGD ({first.pgd.get('steps', '?')} steps) on {first.n_examples} test images"
    print(f"written: {plot_robustness(reports, args.out, title=title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

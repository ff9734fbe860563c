"""Calibrate the automatic PnP parameter rule on BSDS500 *train* crops (never BSD68 or reserved sets).

For each noise level, grid-search the regularisation balance ``target = weight * sigma_y^2`` (and,
for ADMM/DRS with a Gaussian denoiser, ``sigma_ratio``) maximising the mean PSNR over
``--images`` train crops x the deblur-quick kernels; then fit ``target = weight * sigma_y^exponent``
across noise levels (least squares in log-log); with ``--ratio-follows-noise`` also the denoiser
strength ``sigma_den = sigma_ratio * sigma_y^sigma_exponent`` instead of one ratio for all levels. Prints the resulting ParameterRule and writes it
as JSON (``--out``), ready for ``DEFAULT_RULES`` or a denoiser's ``pnp_parameter_rule``.
``--color opponent`` calibrates on the RGB crops (one colour problem per crop and kernel, the same
kernel on every channel): the rule of a colour model, or of a gray one in opponent mode.

    python bench/calibrate_parameters.py --denoiser tv --method admm --out /tmp/tv_admm.json
    python bench/calibrate_parameters.py --refit run1.json run2.json --out merged.json   # widen a grid
    python bench/calibrate_parameters.py --denoiser color --color opponent --method admm --out /tmp/color_admm.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import (  # noqa: E402
    DEFAULT_DATA, QUICK_KERNELS, deblur_problems, in_colour_mode, make_denoiser, solve_problem, summarize_runs,
)


def _train_images(data: Path, count: int) -> tuple[str, ...]:
    names = sorted(p.stem for p in (data / "denoising/bsds500/images/train").glob("*.jpg"))
    if len(names) < count:
        raise ValueError(f"only {len(names)} training images found under {data}")
    step = len(names) // count  # spread over the set instead of the first few ids
    return tuple(names[i * step] for i in range(count))


def _log_linear_fit(noises: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares ``log value = intercept + slope * log noise``; returns ``(exp(intercept), slope)``."""
    xs, ys = [math.log(n) for n in noises], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    return math.exp(my - slope * mx), slope


def fit_rule(table: list[dict], gamma_scale: float = 1.0,
             ratio_follows_noise: bool = False) -> tuple[dict[float, dict], dict[str, float]]:
    """Fit ``target = weight * sigma^exponent`` to a grid-search table (rows: noise, weight,
    sigma_ratio, psnr).

    By default ``sigma_ratio`` is one constant for all noise levels, so it is chosen first: the ratio
    whose best rows (one per noise level) have the highest mean PSNR; taking each noise level's best
    ratio and a median across them can pick a ratio that is poor at every other noise level. Then,
    for that ratio, ``log(best weight * sigma^2)`` is fitted linearly in ``log(sigma)`` (least
    squares; exponent 2 with a single noise level).

    With ``ratio_follows_noise`` each noise level keeps its own best row, and the denoiser strength
    ``s = sigma_ratio * sigma`` of those rows is fitted the same way, ``s = ratio * sigma^q``
    (``sigma_exponent = q``, at least 0; 1 with a single noise level). Returns the chosen row per
    noise level and the rule.
    """
    noises = sorted({float(r["noise"]) for r in table})
    ratios = sorted({float(r["sigma_ratio"]) for r in table})

    def best_rows(ratio: float | None) -> dict[float, dict] | None:
        rows = {}
        for noise in noises:
            candidates = [r for r in table if float(r["noise"]) == noise
                          and (ratio is None or float(r["sigma_ratio"]) == ratio)]
            if not candidates:
                return None  # this ratio was not tried at every noise level
            rows[noise] = max(candidates, key=lambda r: r["psnr"])
        return rows

    if ratio_follows_noise:
        best_per_noise = best_rows(None)
        assert best_per_noise is not None  # every noise level has rows
    else:
        scored = [(sum(r["psnr"] for r in rows.values()) / len(rows), ratio, rows)
                  for ratio in ratios if (rows := best_rows(ratio)) is not None]
        if not scored:
            raise ValueError("no sigma_ratio was tried at every noise level")
        best_per_noise = max(scored, key=lambda item: item[0])[2]
    targets = [b["weight"] * n**2 for n, b in best_per_noise.items()]
    strengths = [b["sigma_ratio"] * n for n, b in best_per_noise.items()]
    if len(noises) >= 2:
        weight, exponent = _log_linear_fit(noises, targets)
    else:
        weight, exponent = targets[0] / noises[0] ** 2, 2.0
    sigma_ratio, sigma_exponent = float(best_per_noise[noises[0]]["sigma_ratio"]), 1.0
    if ratio_follows_noise and len(noises) >= 2:
        sigma_ratio, sigma_exponent = _log_linear_fit(noises, strengths)
        if sigma_exponent < 0:  # a strength falling with the noise is grid noise: hold it constant
            sigma_exponent = 0.0
            sigma_ratio = math.exp(sum(math.log(s) for s in strengths) / len(strengths))
    rule = {"weight": weight, "exponent": exponent, "sigma_ratio": sigma_ratio, "sigma_exponent": sigma_exponent,
            "gamma_scale": gamma_scale}
    return best_per_noise, rule


def report_calibration(result: dict, out: Path | None) -> None:
    """Print the fitted rule and, with ``out``, write the whole calibration atomically."""
    print("rule:", json.dumps(result["rule"]))
    if out:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(out, result)


def read_calibrations(files: list[Path], settings) -> list[dict] | None:
    """The ``--out`` files to merge, or None (after a one-line error) when one is unreadable or
    ``settings(run)`` (what must agree: denoiser, method, images, ...) differs between them."""
    try:
        runs = [json.loads(Path(f).read_text()) for f in files]
    except (OSError, ValueError) as err:
        print(f"error: cannot read a calibration: {err}", file=sys.stderr)
        return None
    keys = {settings(r) for r in runs}
    if len(keys) != 1:
        print(f"error: the files calibrate different settings: {sorted(map(str, keys))}", file=sys.stderr)
        return None
    return runs


def refit(files: list[Path], out: Path | None, ratio_follows_noise: bool = False) -> int:
    """Merge the tables of earlier ``--out`` files (same denoiser and method) and fit one rule."""
    runs = read_calibrations(files, lambda r: (r["denoiser"], r["method"], r.get("crop"), tuple(r.get("images", ())),
                                               tuple(r.get("kernels", ())), r.get("color")))
    if runs is None:
        return 2
    merged: dict[tuple, dict] = {}
    for r in runs:
        for row in r["table"]:  # a grid point measured twice is deterministic: keep one
            merged[(row["noise"], row["weight"], row["sigma_ratio"])] = row
    table = sorted(merged.values(), key=lambda row: (row["noise"], row["sigma_ratio"], row["weight"]))
    gamma_scale = runs[0]["rule"].get("gamma_scale", 1.0)
    best_per_noise, rule = fit_rule(table, gamma_scale, ratio_follows_noise)
    result = {**{k: runs[0][k] for k in ("denoiser", "kind", "method", "images", "crop", "kernels", "color") if k in runs[0]},
              "merged_from": [str(f) for f in files], "ratio_follows_noise": ratio_follows_noise,
              "best": best_per_noise, "rule": rule, "table": table}
    report_calibration(result, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--denoiser", default="tv")
    parser.add_argument("--method", default="admm", choices=["fb", "admm", "drs"])
    parser.add_argument("--noise-levels", type=float, nargs="+", default=[0.01, 0.03])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--kernels", nargs="+", default=list(QUICK_KERNELS))
    parser.add_argument("--weights", type=float, nargs="+", default=[1, 3, 10, 30, 100, 300, 1000],
                        help="grid of the balance multiplier (weight at exponent 2)")
    parser.add_argument("--sigma-ratios", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                        help="grid of sigma_ratio (ADMM/DRS with a Gaussian denoiser)")
    parser.add_argument("--gamma-scale", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--accelerate", default="anderson", choices=["none", "anderson"])
    parser.add_argument("--color", choices=["opponent", "per-channel"], default=None,
                        help="calibrate on the RGB crops, a gray denoiser in this colour mode (a colour model: opponent)")
    parser.add_argument("--ratio-follows-noise", action="store_true",
                        help="fit sigma_den = ratio * sigma^q across noise levels (sigma_exponent q) instead of "
                             "one sigma_ratio for all of them")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--refit", type=Path, nargs="+", default=None, metavar="CALIBRATION_JSON",
                        help="no new solves: merge the tables of earlier --out files and fit the rule again")
    args = parser.parse_args(argv)
    if args.refit:
        return refit(args.refit, args.out, args.ratio_follows_noise)
    torch.set_num_threads(1)

    from pnp_stable.solvers import ParameterRule, strength_kind

    try:
        images = _train_images(args.data, args.images)
        denoiser, description = in_colour_mode(*make_denoiser(args.denoiser, torch.float32), args.color)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kind = strength_kind(denoiser)
    ratios = args.sigma_ratios if (args.method != "fb" and kind == "noise_level") else [1.0]
    accelerate = None if args.accelerate == "none" else "anderson"
    print(f"calibrating {description} ({kind}) for {args.method} on train images {images}")
    table = []
    for noise in args.noise_levels:
        problems = deblur_problems(args.data, images, tuple(args.kernels), "denoising/bsds500/images/train", noise,
                                   torch.float32, crop=args.crop, color=args.color)
        for weight, ratio in itertools.product(args.weights, ratios):
            rule = ParameterRule(weight=weight, exponent=2.0, sigma_ratio=ratio, gamma_scale=args.gamma_scale)
            start = time.perf_counter()
            summary = summarize_runs([solve_problem(p, denoiser, args.method, args.tol, args.max_iter, accelerate,
                                                    noise_level=noise, rule=rule)[0] for p in problems])
            row = {"noise": noise, "weight": weight, "sigma_ratio": ratio, "psnr": summary["mean_psnr"],
                   "iterations": summary["mean_iterations"], "seconds": time.perf_counter() - start}
            table.append(row)
            print(json.dumps(row), flush=True)
    best_per_noise, rule = fit_rule(table, args.gamma_scale, args.ratio_follows_noise)
    result = {"denoiser": description, "kind": kind, "method": args.method, "images": images, "crop": args.crop,
              "kernels": args.kernels, **({"color": args.color} if args.color else {}),
              "ratio_follows_noise": args.ratio_follows_noise, "best": best_per_noise, "rule": rule, "table": table}
    report_calibration(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

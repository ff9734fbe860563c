"""Calibrate the automatic PnP parameter rule on BSDS500 *train* crops (never BSD68 or reserved sets).

For each noise level, grid-search the regularisation balance ``target = weight * sigma_y^2`` (and,
for ADMM/DRS with a Gaussian denoiser, ``sigma_ratio``) maximising the mean PSNR over
``--images`` train crops x the deblur-quick kernels; then fit ``target = weight * sigma_y^exponent``
across noise levels (least squares in log-log). Prints the resulting ParameterRule and writes it
as JSON (``--out``), ready for ``DEFAULT_RULES`` or a denoiser's ``pnp_parameter_rule``.

    python bench/calibrate_parameters.py --denoiser tv --method admm --out /tmp/tv_admm.json
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
from deblur_common import DEFAULT_DATA, QUICK_KERNELS, deblur_problems, make_denoiser, psnr, reset_denoiser_state  # noqa: E402


def _train_images(data: Path, count: int) -> tuple[str, ...]:
    names = sorted(p.stem for p in (data / "denoising/bsds500/images/train").glob("*.jpg"))
    if len(names) < count:
        raise ValueError(f"only {len(names)} training images found under {data}")
    step = len(names) // count  # spread over the set instead of the first few ids
    return tuple(names[i * step] for i in range(count))


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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from pnp_stable.solvers import ParameterRule, solve, strength_kind

    try:
        images = _train_images(args.data, args.images)
        denoiser, description = make_denoiser(args.denoiser, torch.float32)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kind = strength_kind(denoiser)
    ratios = args.sigma_ratios if (args.method != "fb" and kind == "noise_level") else [1.0]
    accelerate = None if args.accelerate == "none" else "anderson"
    print(f"calibrating {description} ({kind}) for {args.method} on train images {images}")
    table = []
    best_per_noise = {}
    for noise in args.noise_levels:
        problems = deblur_problems(args.data, images, tuple(args.kernels), "denoising/bsds500/images/train", noise,
                                   torch.float32, crop=args.crop)
        best = None
        for weight, ratio in itertools.product(args.weights, ratios):
            rule = ParameterRule(weight=weight, exponent=2.0, sigma_ratio=ratio, gamma_scale=args.gamma_scale)
            start = time.perf_counter()
            scores, iterations = [], []
            for p in problems:
                reset_denoiser_state(denoiser)
                res = solve(p.y, p.operator, denoiser, method=args.method, noise_level=noise, rule=rule, tol=args.tol,
                            max_iter=args.max_iter, accelerate=accelerate, progress=False)
                scores.append(psnr(res.x, p.x))
                iterations.append(res.iterations)
            mean = sum(scores) / len(scores)
            row = {"noise": noise, "weight": weight, "sigma_ratio": ratio, "psnr": mean,
                   "iterations": sum(iterations) / len(iterations), "seconds": time.perf_counter() - start}
            table.append(row)
            print(json.dumps(row), flush=True)
            if best is None or mean > best["psnr"]:
                best = row
        best_per_noise[noise] = best
    # fit log(target) = log(weight) + exponent * log(sigma), target = best weight * sigma^2
    xs = [math.log(n) for n in best_per_noise]
    ys = [math.log(b["weight"] * n**2) for n, b in best_per_noise.items()]
    if len(xs) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        exponent = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
        log_weight = my - exponent * mx
    else:
        exponent, log_weight = 2.0, ys[0] - 2.0 * xs[0]
    ratio = sorted(b["sigma_ratio"] for b in best_per_noise.values())[len(best_per_noise) // 2]
    rule = {"weight": math.exp(log_weight), "exponent": exponent, "sigma_ratio": ratio, "gamma_scale": args.gamma_scale}
    result = {"denoiser": description, "kind": kind, "method": args.method, "images": images, "crop": args.crop,
              "kernels": args.kernels, "best": best_per_noise, "rule": rule, "table": table}
    print("rule:", json.dumps(rule))
    if args.out:
        from pnp_stable.solvers.result import write_atomically

        write_atomically(args.out, (json.dumps(result, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

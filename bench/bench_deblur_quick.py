"""deblur-quick (DESIGN.md §5) with pnp_stable.solve, and the wall-time ratio against deepinv's own loop.

BSD68 test001..test004 centre-cropped 256x256; kernels levin_1, levin_5, gaussian_25x25_sigma1.6,
uniform_9x9; circular boundary (pnp_stable.operators.Blur); noise 0.01, generator seeded with the
image's 0-based index. Parameters are chosen automatically (noise level estimated from y unless
``--known-noise``). For each run: PSNR, iterations to ``--tol`` (relative residual of the governing
variable), T-evaluations, wall time, monotonicity; with ``--compare-deepinv`` also deepinv's
PGD/ADMM/DRS on the same operator, denoiser (same relaxation), step and noise level, stopped by
its own relative criterion at the same ``--tol``, and the ratio of wall times (ours / deepinv).

``--color opponent|per-channel`` runs the same problems on the colour versions of the four images
(CBSD68, matched through ``denoising/cbsd68_index.csv``), blurred per channel by the same kernel,
with a gray denoiser in that colour mode (``pnp_stable.denoisers.OpponentColorDenoiser``, or R, G, B
as three gray problems); PSNR over the three channels. A colour model (one that takes RGB images)
runs as it is with ``--color opponent``. ``--noise`` changes the noise level (a check off the
protocol, e.g. of a parameter rule at a higher noise level); ``--rule`` replaces the denoiser's own
parameter rule by one from ``calibrate_parameters.py --out`` (to check a calibration before export).

Example (the recorded results in docs/benchmarks.md):

    python bench/bench_deblur_quick.py --denoiser tv --method admm --accelerate anderson --compare-deepinv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import (  # noqa: E402
    QUICK_IMAGES, QUICK_KERNELS, QUICK_NOISE, add_solver_arguments, deblur_problems, in_colour_mode, make_denoiser,
    run_deepinv, solve_problem, summarize_runs,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_solver_arguments(parser, denoiser_default="tv")
    parser.add_argument("--known-noise", action="store_true", help="pass the true noise level instead of estimating it")
    parser.add_argument("--noise", type=float, default=QUICK_NOISE,
                        help=f"noise std of the observations (the protocol: {QUICK_NOISE}; other values are checks off it)")
    parser.add_argument("--compare-deepinv", action="store_true")
    parser.add_argument("--images", nargs="+", default=list(QUICK_IMAGES))
    parser.add_argument("--kernels", nargs="+", default=list(QUICK_KERNELS))
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write all runs to this JSON file")
    parser.add_argument("--color", choices=["opponent", "per-channel"], default=None,
                        help="colour versions of the images (CBSD68) with a gray denoiser in this mode")
    parser.add_argument("--rule", type=Path, default=None, metavar="CALIBRATION_JSON",
                        help="the parameter rule of this calibrate_parameters.py --out file instead of the denoiser's")
    args = parser.parse_args(argv)
    if args.color and args.compare_deepinv:
        print("error: --compare-deepinv runs the gray protocol; drop it or --color", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32
    try:
        problems = deblur_problems(args.data, tuple(args.images), tuple(args.kernels), "denoising/bsd68", args.noise, dtype,
                                   color=args.color)
        denoiser, description = in_colour_mode(*make_denoiser(args.denoiser, dtype), args.color)
        rule = None
        if args.rule:
            from pnp_stable.training.export import read_calibrated_rule

            rule = read_calibrated_rule(f"{args.method}={args.rule}")[2]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    accelerate = None if args.accelerate == "none" else args.accelerate
    print(f"denoiser: {description}; noise {args.noise}; method {args.method}; accelerate {accelerate}; tol {args.tol}; dtype {dtype}")
    runs = []
    for p in problems:
        run, res = solve_problem(p, denoiser, args.method, args.tol, args.max_iter, accelerate,
                                 noise_level=args.noise if args.known_noise else None, rule=rule)
        wall = run["wall"]
        line = (f"{p.image} {p.kernel:26s} PSNR {run['psnr']:6.2f}  it {run['iterations']:4d}  eval {run['evaluations']:4d}  "
                f"{wall:7.2f}s  monotone {run['monotone']}")
        if args.compare_deepinv:
            theirs = run_deepinv(args.method, p, denoiser, res.parameters, args.tol, args.max_iter)
            run["deepinv"] = theirs
            run["ratio"] = wall / theirs["wall"]
            line += f" | deepinv PSNR {theirs['psnr']:6.2f} it {theirs['iterations']:4d} {theirs['wall']:7.2f}s  ratio {run['ratio']:.2f}"
        print(line, flush=True)
        runs.append(run)

    n = len(runs)
    summary = {
        "denoiser": description, "color": args.color, "noise": args.noise, "method": args.method,
        "rule": {"file": str(args.rule), **rule} if rule else "the denoiser's",
        "accelerate": accelerate, "tol": args.tol, **summarize_runs(runs),
    }
    if args.compare_deepinv:
        summary["deepinv_mean_psnr"] = sum(r["deepinv"]["psnr"] for r in runs) / n
        summary["deepinv_mean_iterations"] = sum(r["deepinv"]["iterations"] for r in runs) / n
        summary["deepinv_total_wall"] = sum(r["deepinv"]["wall"] for r in runs)
        summary["wall_ratio"] = summary["total_wall"] / summary["deepinv_total_wall"]
    print(json.dumps(summary, indent=2))
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, {"summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

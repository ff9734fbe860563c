"""speed (DESIGN.md §5): wall time to residual tol on deblur-quick, ours vs deepinv's own loop, one process.

For every deblur-quick problem, three runs with the same operator (pnp_stable.operators.Blur),
denoiser (same relaxation), step and noise level: pnp_stable.solve without acceleration, with
safeguarded Anderson, and deepinv's PGD/ADMM/DRS (its relative-change criterion at the same tol).
Reports iterations, evaluations of T, wall time, seconds per evaluation, and the ratios
ours / deepinv (target <= 0.5 with acceleration). Runs are interleaved per problem so machine load
affects all three alike.

    python bench/bench_solver_speed.py --denoiser tv --method admm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import (  # noqa: E402
    DEFAULT_DATA, QUICK_IMAGES, QUICK_KERNELS, QUICK_NOISE, deblur_problems, make_denoiser, psnr,
    reset_denoiser_state, run_deepinv,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--denoiser", default="tv", help="tv | random-certified | NAME | PATH")
    parser.add_argument("--method", default="admm", choices=["fb", "admm", "drs"])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--images", nargs="+", default=list(QUICK_IMAGES))
    parser.add_argument("--kernels", nargs="+", default=list(QUICK_KERNELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.solvers import solve

    try:
        problems = deblur_problems(args.data, tuple(args.images), tuple(args.kernels), "denoising/bsd68", QUICK_NOISE,
                                   torch.float32)
        denoiser, description = make_denoiser(args.denoiser, torch.float32)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"denoiser: {description}; method {args.method}; tol {args.tol}")
    rows = []
    for p in problems:
        row = {"image": p.image, "kernel": p.kernel}
        for label, accelerate in (("plain", None), ("anderson", "anderson")):
            reset_denoiser_state(denoiser)
            start = time.perf_counter()
            res = solve(p.y, p.operator, denoiser, method=args.method, tol=args.tol, max_iter=args.max_iter,
                        accelerate=accelerate, progress=False)
            wall = time.perf_counter() - start
            row[label] = {"psnr": psnr(res.x, p.x), "iterations": res.iterations, "evaluations": res.evaluations,
                          "wall": wall, "monotone": res.monotone, "converged": res.converged}
            params = res.parameters
        row["deepinv"] = run_deepinv(args.method, p, denoiser, params, args.tol, args.max_iter)
        row["deepinv"]["evaluations"] = row["deepinv"]["iterations"]
        rows.append(row)
        print(" | ".join(
            f"{k} {row[k]['psnr']:.2f} dB it {row[k]['iterations']} ev {row[k]['evaluations']} {row[k]['wall']:.2f}s"
            for k in ("plain", "anderson", "deepinv")) + f"  [{p.image} {p.kernel}]", flush=True)

    def total(key: str, field: str) -> float:
        return sum(r[key][field] for r in rows)

    summary = {"denoiser": description, "method": args.method, "tol": args.tol, "runs": len(rows)}
    for key in ("plain", "anderson", "deepinv"):
        summary[key] = {
            "mean_psnr": total(key, "psnr") / len(rows), "mean_iterations": total(key, "iterations") / len(rows),
            "mean_evaluations": total(key, "evaluations") / len(rows), "total_wall": total(key, "wall"),
            "seconds_per_evaluation": total(key, "wall") / total(key, "evaluations"),
        }
    summary["monotone_runs"] = {k: sum(r[k]["monotone"] for r in rows) for k in ("plain", "anderson")}
    summary["ratio_plain"] = summary["plain"]["total_wall"] / summary["deepinv"]["total_wall"]
    summary["ratio_anderson"] = summary["anderson"]["total_wall"] / summary["deepinv"]["total_wall"]
    print(json.dumps(summary, indent=2))
    if args.json:
        from pnp_stable.solvers.result import write_atomically

        write_atomically(args.json, (json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""speed (DESIGN.md §5): wall time to residual tol on deblur-quick, ours vs deepinv's own loop, one process.

For every deblur-quick problem, three runs with the same operator (pnp_stable.operators.Blur),
denoiser (same relaxation), step and noise level: pnp_stable.solve without acceleration, with
safeguarded Anderson, and deepinv's PGD/ADMM/DRS (its relative-change criterion at the same tol).
Reports PSNR, iterations, evaluations of T, wall time, seconds per evaluation, monotonicity and
the ratios ours / deepinv (target <= 0.5 with acceleration). The three runs of a problem are
interleaved, in an order rotated from one problem to the next, so machine load affects all three
alike; the load average is recorded with every problem. The evaluation ratio (T evaluations, ours
/ deepinv's denoiser calls) does not depend on load at all. The JSON file is rewritten after every
problem, so a cut-off run keeps what it finished.

    python bench/bench_solver_speed.py --denoiser tv --method admm --json runs/bench/speed_tv_admm.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import (  # noqa: E402
    DEFAULT_DATA, QUICK_IMAGES, QUICK_KERNELS, QUICK_NOISE, deblur_problems, make_denoiser, psnr,
    reset_denoiser_state, run_deepinv,
)

LABELS = ("plain", "anderson", "deepinv")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def summarise(rows: list[dict], header: dict) -> dict:
    def total(key: str, field: str) -> float:
        return sum(r[key][field] for r in rows)

    n = len(rows)
    summary = dict(header, runs=n)
    for key in LABELS:
        summary[key] = {
            "mean_psnr": total(key, "psnr") / n, "mean_iterations": total(key, "iterations") / n,
            "mean_evaluations": total(key, "evaluations") / n, "total_wall": total(key, "wall"),
            "seconds_per_evaluation": total(key, "wall") / total(key, "evaluations"),
            "converged_runs": sum(bool(r[key]["converged"]) for r in rows),
        }
    for key in ("plain", "anderson"):
        summary[key]["monotone_runs"] = sum(r[key]["monotone"] for r in rows)
        summary[key]["guarantee_runs"] = sum(r[key]["guarantee"] for r in rows)
    summary["anderson"]["accepted"] = sum(r["anderson"]["accepted"] for r in rows)
    summary["anderson"]["rejected"] = sum(r["anderson"]["rejected"] for r in rows)
    summary["ratio_plain"] = summary["plain"]["total_wall"] / summary["deepinv"]["total_wall"]
    summary["ratio_anderson"] = summary["anderson"]["total_wall"] / summary["deepinv"]["total_wall"]
    summary["evaluation_ratio_plain"] = total("plain", "evaluations") / total("deepinv", "evaluations")
    summary["evaluation_ratio_anderson"] = total("anderson", "evaluations") / total("deepinv", "evaluations")
    summary["anderson_speedup_wall"] = summary["plain"]["total_wall"] / summary["anderson"]["total_wall"]
    summary["anderson_speedup_evaluations"] = total("plain", "evaluations") / total("anderson", "evaluations")
    loads = [r["load_before"][0] for r in rows] + [r["load_after"][0] for r in rows]
    summary["load_1min"] = {"min": min(loads), "max": max(loads), "mean": sum(loads) / len(loads)}
    return summary


def markdown(summary: dict) -> str:
    """The summary as a markdown table (what docs/benchmarks.md records)."""
    lines = [
        "| loop | mean PSNR (dB) | mean iterations | mean T evaluations | converged | monotone | total wall (s) | s / evaluation | wall / deepinv | evaluations / deepinv |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    n = summary["runs"]
    for key in LABELS:
        s = summary[key]
        mono = f"{s['monotone_runs']}/{n}" if key != "deepinv" else "n/a"
        ratio = "1" if key == "deepinv" else f"{summary['ratio_' + key]:.3f}"
        ev_ratio = "1" if key == "deepinv" else f"{summary['evaluation_ratio_' + key]:.3f}"
        lines.append(
            f"| {key} | {s['mean_psnr']:.2f} | {s['mean_iterations']:.1f} | {s['mean_evaluations']:.1f} | "
            f"{s['converged_runs']}/{n} | {mono} | {s['total_wall']:.1f} | {s['seconds_per_evaluation']:.3f} | "
            f"{ratio} | {ev_ratio} |"
        )
    return "\n".join(lines)


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
    from pnp_stable.fileio import atomic_write_json

    try:
        problems = deblur_problems(args.data, tuple(args.images), tuple(args.kernels), "denoising/bsd68", QUICK_NOISE,
                                   torch.float32)
        denoiser, description = make_denoiser(args.denoiser, torch.float32)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    header = {"denoiser": description, "denoiser_spec": args.denoiser, "method": args.method, "tol": args.tol,
              "max_iter": args.max_iter, "noise": QUICK_NOISE, "machine": machine(), "argv": sys.argv[1:]}
    print(f"denoiser: {description}; method {args.method}; tol {args.tol}; {header['machine']}", flush=True)
    rows: list[dict] = []
    for index, p in enumerate(problems):
        row: dict = {"image": p.image, "kernel": p.kernel, "load_before": list(os.getloadavg())}
        params = None
        order = [LABELS[(index + j) % 3] for j in range(3)]
        if order.index("deepinv") < min(order.index("plain"), order.index("anderson")):
            order.remove("deepinv")  # deepinv needs the parameters chosen by one of our runs
            order.insert(1, "deepinv")
        for label in order:
            if label == "deepinv":
                row["deepinv"] = run_deepinv(args.method, p, denoiser, params, args.tol, args.max_iter)
                row["deepinv"]["evaluations"] = row["deepinv"]["iterations"]
                continue
            reset_denoiser_state(denoiser)
            start = time.perf_counter()
            res = solve(p.y, p.operator, denoiser, method=args.method, tol=args.tol, max_iter=args.max_iter,
                        accelerate=None if label == "plain" else "anderson", progress=False)
            wall = time.perf_counter() - start
            row[label] = {"psnr": psnr(res.x, p.x), "iterations": res.iterations, "evaluations": res.evaluations,
                          "wall": wall, "monotone": res.monotone, "violations": res.monotonicity_violations[0],
                          "converged": res.converged, "guarantee": res.guarantee.holds,
                          "proven": res.guarantee.proven}
            if res.anderson is not None:
                row[label]["accepted"] = res.anderson["accepted"][0]
                row[label]["rejected"] = res.anderson["rejected"][0]
            params = res.parameters
            row["parameters"] = {k: params[k] for k in ("step", "sigma_den", "relaxation", "km_relaxation")}
            row["noise_level"] = (params["automatic"] or {}).get("noise_level")
        row["order"] = order
        row["load_after"] = list(os.getloadavg())
        rows.append(row)
        print(" | ".join(
            f"{k} {row[k]['psnr']:.2f} dB it {row[k]['iterations']} ev {row[k]['evaluations']} {row[k]['wall']:.2f}s"
            for k in LABELS) + f"  [{p.image} {p.kernel}; load {row['load_after'][0]:.2f}]", flush=True)
        if args.json:
            payload = {"summary": summarise(rows, header), "rows": rows, "complete": len(rows) == len(problems)}
            atomic_write_json(args.json, payload)

    summary = summarise(rows, header)
    print(json.dumps(summary, indent=2))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

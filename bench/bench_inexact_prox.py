"""What a budgeted (inexact, certified) CG data prox costs and changes in PnP-ADMM.

    python bench/bench_inexact_prox.py [--ratios 0 0.03 0.1] [--ct-size 256] [--angles 60]
        [--images 2] [--kernels gauss:1.6 motion:15,30] [--boundaries reflect zero]
        [--data ../shared/data] [--threads 2] [--json out.json]

Problems: the CT demo (Shepp-Logan ``ct-size`` x ``ct-size``, ``angles`` angles, 1% noise, FBP start,
``pnp_stable.restore.reconstruct_ct(method="admm")``) and, when the data are there, the photograph
problems of ``bench_boundary.py`` (valid part of the blur of BSDS500 *train* crops) with the CG
boundaries, ``pnp_stable.restore.deblur(method="admm")``. Every problem is solved once per
``prox_error_ratio`` (interleaved, so machine drift hits all ratios alike): wall time, CG iterations
summed over the solve, PNP iterations, PSNR, the monitor's verdict (with the certified error bounds
in its tolerance) and whether the guarantee is proven.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


@contextlib.contextmanager
def counting_cg():
    """Count the CG iterations of every operator prox inside the block (``counter["cg"]``)."""
    from pnp_stable.operators.base import CertifiedLinearPhysics

    original = CertifiedLinearPhysics.prox_data
    counter = {"cg": 0}

    def counted(self, *args, **kwargs):
        x = original(self, *args, **kwargs)
        counter["cg"] += self.last_prox_info.iterations
        return x

    CertifiedLinearPhysics.prox_data = counted
    try:
        yield counter
    finally:
        CertifiedLinearPhysics.prox_data = original


def ct_phantom(size: int) -> torch.Tensor:
    from skimage import data as skdata
    from skimage import transform

    phantom = transform.resize(skdata.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return torch.from_numpy(phantom.clip(0, 1).astype("float32"))[None]


def problems(args):
    """Yield ``(name, solve(ratio) -> Restoration, ground truth or None when the report has PSNR)``."""
    from pnp_stable.restore import deblur, reconstruct_ct

    if args.ct_size:
        phantom = ct_phantom(args.ct_size)
        yield (f"ct shepp-logan {args.ct_size} / {args.angles} angles",
               lambda ratio: reconstruct_ct(phantom, simulate=True, angles=args.angles, method="admm",
                                            progress=False, device="cpu", max_iter=args.max_iter,
                                            prox_error_ratio=ratio), None)
    if args.images:
        from bench_boundary import photo_problems

        try:
            photos = list(photo_problems(args.data, args.images, args.kernels, 300, args.noise))
        except FileNotFoundError as exc:
            print(f"skipping the photographs: {exc}", file=sys.stderr)
            photos = []
        for name, kernel, y, truth in photos:
            for boundary in args.boundaries:
                yield (f"{name} {kernel} {boundary}",
                       lambda ratio, y=y, kernel=kernel, boundary=boundary: deblur(
                           y, kernel, noise_level=args.noise, boundary=boundary, method="admm", progress=False,
                           max_iter=args.max_iter, prox_error_ratio=ratio), truth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.03, 0.1])
    parser.add_argument("--ct-size", type=int, default=256, help="0: no CT problem")
    parser.add_argument("--angles", type=int, default=60)
    parser.add_argument("--images", type=int, default=2, help="BSDS500 train photographs (0: none)")
    parser.add_argument("--kernels", nargs="+", default=["gauss:1.6", "motion:15,30"])
    parser.add_argument("--boundaries", nargs="+", default=["reflect", "zero"])
    parser.add_argument("--noise", type=float, default=2.55 / 255)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.restore import psnr

    rows = []
    for name, run, truth in problems(args):
        for ratio in args.ratios:
            with counting_cg() as counter, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tic = time.perf_counter()
                restoration = run(ratio)
                seconds = time.perf_counter() - tic
            result = restoration.result
            row = {"problem": name, "prox_error_ratio": ratio, "seconds": seconds, "cg_iterations": counter["cg"],
                   "iterations": result.iterations, "evaluations": result.evaluations,
                   "psnr": restoration.report["metrics"]["psnr"] if truth is None else psnr(restoration.image, truth),
                   "monotone": result.monotone,
                   "converged": result.converged, "proven": result.guarantee.proven}
            rows.append(row)
            print(f"{name:<40} ratio {ratio:<5g} {seconds:6.1f} s  CG {row['cg_iterations']:5d}  "
                  f"{row['iterations']:3d} it  {row['psnr']:.3f} dB  "
                  f"{'monotone' if row['monotone'] else 'RESIDUAL ROSE'}  "
                  f"{'proven' if row['proven'] else 'not proven'}", flush=True)
    summary = {}
    for ratio in args.ratios:
        sel = [r for r in rows if r["prox_error_ratio"] == ratio]
        if not sel:
            continue
        summary[str(ratio)] = {
            "seconds": statistics.mean(r["seconds"] for r in sel),
            "cg_iterations": statistics.mean(r["cg_iterations"] for r in sel),
            "psnr": statistics.mean(r["psnr"] for r in sel),
            "monotone": sum(r["monotone"] for r in sel), "proven": sum(r["proven"] for r in sel), "runs": len(sel),
        }
        s = summary[str(ratio)]
        print(f"mean ratio {ratio:<5g} {s['seconds']:6.1f} s  CG {s['cg_iterations']:7.1f}  {s['psnr']:.3f} dB  "
              f"monotone {s['monotone']}/{s['runs']}  proven {s['proven']}/{s['runs']}")
    if args.json:
        atomic_write_json(args.json, run_record(__file__, argv, benchmark="inexact_prox", results=rows,
                                                summary=summary, threads=args.threads), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

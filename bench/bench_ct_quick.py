"""ct-quick (DESIGN.md §5): parallel-beam CT of Shepp–Logan and Mayo *train* slices, PnP vs FBP.

    python bench/bench_ct_quick.py [--denoiser gray] [--method fb] [--angles 60 180]
        [--mayo 2] [--size 256] [--tol 1e-4] [--threads 1] [--json runs/bench/ct_quick.json]

Phantoms: scikit-image's Shepp–Logan and ``--mayo`` slices spread over ``ct/mayo_crr/train``
(never ``validation``, reserved for acceptance; ``phantom_149``, which is in both, is skipped),
resized with anti-aliasing to ``--size``. Each is measured at every ``--angles`` with Gaussian
noise of 1% of the clean sinogram's maximum (seeded with the phantom's index), initialised by FBP
and restored with :func:`pnp_stable.restore.reconstruct_ct` (automatic parameters from the
estimated noise level, safeguarded Anderson). Reports PSNR/SSIM of FBP and of the result,
iterations, wall time, convergence, monotonicity and the guarantee verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def phantoms(data: Path, mayo: int, size: int) -> list[tuple[str, np.ndarray]]:
    """``[(name, size x size float32 in [0, 1])]``: Shepp–Logan, then ``mayo`` train slices."""
    from skimage import data as skdata
    from skimage import transform

    def fit(image: np.ndarray) -> np.ndarray:
        return np.clip(transform.resize(image, (size, size), anti_aliasing=True), 0, 1).astype(np.float32)

    out = [("shepp_logan", fit(skdata.shepp_logan_phantom()))]
    if mayo:
        train = sorted(p for p in (data / "ct/mayo_crr/train").glob("phantom_*.png") if p.stem != "phantom_149")
        if len(train) < mayo:
            raise ValueError(f"only {len(train)} Mayo train slices under {data}")
        step = len(train) // mayo
        for path in train[::step][:mayo]:
            with Image.open(path) as img:
                out.append((path.stem, fit(np.asarray(img.convert("L"), dtype=np.float64) / 255.0)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--method", default="fb", choices=["fb", "admm", "drs"])
    parser.add_argument("--angles", type=int, nargs="+", default=[60, 180])
    parser.add_argument("--mayo", type=int, default=2, help="number of Mayo train slices")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strength", default="rule", choices=["rule", "sure"],
                        help="regularisation strength: the automatic rule, or chosen by SURE (docs/solvers.md)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pnp_stable.restore import reconstruct_ct
    from pnp_stable.fileio import atomic_write_json

    try:
        images = phantoms(args.data, args.mayo, args.size)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs = []
    for index, (name, image) in enumerate(images):
        for angles in args.angles:
            start = time.perf_counter()
            restoration = reconstruct_ct(torch.from_numpy(image)[None], angles=angles, simulate=True, seed=index,
                                         method=args.method, denoiser=args.denoiser, max_iter=args.max_iter,
                                         tol=args.tol, accelerate=True, device="cpu", progress=False,
                                         strength=args.strength)
            wall = time.perf_counter() - start
            m, r = restoration.report["metrics"], restoration.result
            row = {"image": name, "angles": angles, "psnr_fbp": m["psnr_input"], "ssim_fbp": m["ssim_input"],
                   "psnr": m["psnr"], "ssim": m["ssim"], "iterations": int(r.iterations),
                   "converged": bool(r.converged), "monotone": bool(r.monotone),
                   "guarantee": bool(r.guarantee.holds), "wall": wall, "load": [round(v, 2) for v in os.getloadavg()],
                   "strength_factor": (r.parameters.get("strength") or {}).get("chosen_factor")}
            runs.append(row)
            print(f"{name:14s} {angles:4d} angles  FBP {row['psnr_fbp']:6.2f}  PnP {row['psnr']:6.2f} dB  "
                  f"SSIM {row['ssim_fbp']:.3f} -> {row['ssim']:.3f}  it {row['iterations']:4d}  {wall:7.1f}s  "
                  f"monotone {row['monotone']}  guarantee {row['guarantee']}", flush=True)
    summary = {
        "protocol": "ct-quick", "denoiser": args.denoiser, "method": args.method, "strength": args.strength,
        "size": args.size,
        "tol": args.tol, "runs": runs,
        "mean_psnr_fbp": sum(r["psnr_fbp"] for r in runs) / len(runs),
        "mean_psnr": sum(r["psnr"] for r in runs) / len(runs),
        "monotone_runs": sum(r["monotone"] for r in runs), "converged_runs": sum(r["converged"] for r in runs),
        "machine": platform.machine(), "threads": args.threads, "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.json:
        atomic_write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

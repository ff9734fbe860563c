"""astra-geometry: this tool's CT operators against the ASTRA Toolbox's sinograms, and what a
reconstruction of ASTRA data is worth.

    python bench/bench_astra_geometry.py runs/astra/sinograms.npz [--reconstruct 256] [--threads 2] [--json out.json]

The sinograms come from bench/astra_sinograms.py (run where astra-toolbox is installed). For each
size: the relative difference ``||ours - astra|| / ||astra||`` of the parallel-beam (60 angles) and
fan-beam (120 views, ASTRA's distances and cells) sinograms of the same phantom. ``--reconstruct N``
also reconstructs ASTRA's parallel sinogram of size N with ``pnp_stable.reconstruct_ct`` (ADMM,
shipped ``gray``, automatic parameters), after adding Gaussian noise of 1 % of its maximum (torch
seed 0), and this tool's own sinogram of the phantom with the same noise: PSNR (peak 1) and
iterations of both, and of their FBPs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((estimate.reshape(truth.shape).clamp(0, 1) - truth) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sinograms", type=Path, help="the .npz of bench/astra_sinograms.py")
    parser.add_argument("--reconstruct", type=int, default=None, metavar="N", help="also reconstruct size N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import pnp_stable as ps
    from pnp_stable.operators import FanBeamCT, ParallelBeamCT

    data = np.load(args.sinograms)
    sizes = sorted(int(key.split("_")[1]) for key in data.files if key.startswith("parallel_"))
    rows = []
    for n in sizes:
        x = torch.from_numpy(data[f"phantom_{n}"].astype(np.float64))[None, None]
        parallel = ParallelBeamCT(n, angles=60).A(x)[0, 0].numpy()
        source, detector, spacing, cells = data[f"fan_{n}_geometry"]
        fan_op = FanBeamCT(n, angles=120, source_distance=float(source), detector_distance=float(detector),
                           detector_spacing=float(spacing), n_detectors=int(cells))
        fan = fan_op.A(x)[0, 0].numpy()
        row = {"size": n, "parallel": relative(parallel, data[f"parallel_{n}"]), "fan": relative(fan, data[f"fan_{n}"])}
        rows.append(row)
        print(f"| {n} | {100 * row['parallel']:.2f} % | {100 * row['fan']:.2f} % |", flush=True)
    record: dict = {"protocol": "astra-geometry", "astra_version": str(data["astra_version"]), "rows": rows}
    if args.reconstruct:
        n = args.reconstruct
        truth = torch.from_numpy(data[f"phantom_{n}"])[None, None]
        theirs = torch.from_numpy(data[f"parallel_{n}"])
        noise = 0.01 * float(theirs.max()) * torch.randn(theirs.shape, generator=torch.Generator().manual_seed(0))
        op = ParallelBeamCT(n, angles=60)
        ours = op.A(truth.double())[0, 0].float()
        record["reconstructions"] = {}
        for name, sinogram in (("astra", theirs + noise), ("ours", ours + noise)):
            result = ps.reconstruct_ct(sinogram[None], image_size=n, progress=False)
            entry = {"psnr": psnr(result.image, truth), "iterations": result.result.iterations,
                     "fbp_psnr": psnr(op.fbp(sinogram[None, None]), truth), "summary": result.summary_line()}
            record["reconstructions"][name] = entry
            print(name, entry, flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, **record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

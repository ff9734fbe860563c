"""axis-offset: parallel-beam sinograms whose rotation axis projects off the detector's centre,
reconstructed as if centred, with the offset given, and with the offset read off the data.

    python bench/bench_axis_offset.py [--data ../shared/data] [--size 256] [--angles 180] [--offsets 2.3 -0.6]
        [--noise 0.01] [--images NAME ...] [--threads 1] [--json out.json]

Problems: the Shepp-Logan phantom and two Mayo *train* slices (those of bench_photon_counts.py),
``--size`` square; ``ParallelBeamCT`` over ``--angles`` uniform over [0, 180) with
``detector_offset`` each of ``--offsets`` bins; Gaussian noise of ``--noise`` times the clean
sinogram's maximum (torch seed 0). Each sinogram is reconstructed by ``pnp_stable.reconstruct_ct``
(ADMM, ``--denoiser``, automatic parameters) three ways: ``detector_offset`` 0 (the axis assumed
centred, as before it could be given), the true offset, and ``"auto"``
(``estimate_detector_offset``). PSNR (peak 1) of the result (on the sinogram's scale, as
``reconstruct_ct`` returns it, clipped to [0, 1]), the estimate's error in bins, iterations, wall
time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photon_counts import images  # noqa: E402
from calibrate_ct_rule import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((estimate.clamp(0, 1) - truth) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--offsets", type=float, nargs="+", default=[2.3, -0.6])
    parser.add_argument("--noise", type=float, default=0.01, help="share of the clean sinogram's maximum")
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--images", nargs="+", default=None, help="only these (shepp_logan, phantom_1458, ...)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import reconstruct_ct

    rows = []
    for name, image in images(args.data, args.size):
        if args.images and name not in args.images:
            continue
        truth = torch.from_numpy(image)
        for offset in args.offsets:
            op = ParallelBeamCT(args.size, angles=args.angles, detector_offset=offset)
            clean = op.A(truth[None, None])
            sinogram = op.simulate(truth[None, None], args.noise * float(clean.abs().max()), seed=0)[0]
            for kind, reading in (("centred", 0.0), ("given", offset), ("auto", "auto")):
                tic = time.perf_counter()
                result = reconstruct_ct(sinogram, angles=args.angles, detector_offset=reading, denoiser=args.denoiser,
                                        progress=False)
                seconds = time.perf_counter() - tic
                used = result.report["operator"].get("detector_offset", 0.0)
                row = {"image": name, "offset": offset, "reading": kind, "offset_used": used,
                       "offset_error": used - offset, "psnr": psnr(result.image[0], truth),
                       "data_scale": result.report["operator"]["data_scale"],
                       "iterations": result.result.iterations, "monotone": bool(result.result.monotone),
                       "seconds": seconds}
                rows.append(row)
                print(f"| {name} | {offset:g} | {kind} | {used:.3f} | {row['psnr']:.2f} | {row['iterations']} | "
                      f"{row['monotone']} | {seconds:.0f} |", flush=True)
    means = {}
    for reading in ("centred", "given", "auto"):
        chosen = [r for r in rows if r["reading"] == reading]
        means[reading] = {"psnr": float(np.mean([r["psnr"] for r in chosen])),
                          "max_abs_offset_error": float(max(abs(r["offset_error"]) for r in chosen))}
        print(f"| mean | | {reading} | max error {means[reading]['max_abs_offset_error']:.3f} | "
              f"{means[reading]['psnr']:.2f} | | | |", flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="axis-offset", size=args.size,
                                                angles=args.angles, noise=args.noise, rows=rows, means=means))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

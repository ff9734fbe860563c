"""fan-detectors: PnP reconstruction of fan-beam scans with a flat or a curved detector, centred or
shifted by a quarter cell.

    python bench/bench_fan_detectors.py [--data ../shared/data] [--size 256] [--views 120] [--noise 0.01]
        [--threads 1] [--json out.json]

Problems: the Shepp-Logan phantom and two Mayo *train* slices (those of bench_photon_counts.py), ``--size``
square; ``FanBeamCT``'s default geometry (source 2n, detector n, one cell per pixel at the centre)
with a flat or a curved detector (cells equally spaced in fan angle), its cells centred on the central
ray or shifted by a quarter cell (``detector_offset=0.25``); ``--views`` over the full turn; Gaussian
noise of ``--noise`` times the sinogram's maximum (torch seed 0). Each is reconstructed by
``pnp_stable.reconstruct_ct(simulate=True)`` (ADMM, ``--denoiser``, automatic parameters) in the
geometry that made it. PSNR (peak 1) of the FBP and of the result, both clipped to [0, 1],
iterations, whether the residual stayed monotone, wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photon_counts import images  # noqa: E402
from calibrate_ct_rule import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402

DETECTORS = (("flat", 0.0), ("flat", 0.25), ("curved", 0.0), ("curved", 0.25))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=120)
    parser.add_argument("--noise", type=float, default=0.01, help="share of the clean sinogram's maximum")
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.restore import reconstruct_ct

    rows = []
    for name, image in images(args.data, args.size):
        for shape, offset in DETECTORS:
            tic = time.perf_counter()
            result = reconstruct_ct(torch.from_numpy(image)[None], simulate=True, geometry="fan", angles=args.views,
                                    relative_noise_level=args.noise, detector_shape=shape, detector_offset=offset,
                                    denoiser=args.denoiser, progress=False)
            row = {"image": name, "detector_shape": shape, "detector_offset": offset,
                   "n_detectors": result.report["operator"]["n_detectors"],
                   "fbp_psnr": result.report["metrics"]["psnr_input"], "psnr": result.psnr,
                   "iterations": result.result.iterations, "monotone": bool(result.result.monotone),
                   "guaranteed": bool(result.guarantee.holds), "seconds": time.perf_counter() - tic}
            rows.append(row)
            print(f"| {name} | {shape} | {offset:g} | {row['n_detectors']} | {row['fbp_psnr']:.2f} | {row['psnr']:.2f} | "
                  f"{row['iterations']} | {row['monotone']} | {row['seconds']:.0f} |", flush=True)
    means = {}
    for shape, offset in DETECTORS:
        chosen = [r for r in rows if r["detector_shape"] == shape and r["detector_offset"] == offset]
        means[f"{shape} {offset:g}"] = {"fbp_psnr": float(np.mean([r["fbp_psnr"] for r in chosen])),
                                        "psnr": float(np.mean([r["psnr"] for r in chosen]))}
        print(f"| mean | {shape} | {offset:g} | | {means[f'{shape} {offset:g}']['fbp_psnr']:.2f} | "
              f"{means[f'{shape} {offset:g}']['psnr']:.2f} | | | |", flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="fan-detectors", size=args.size,
                                                views=args.views, noise=args.noise, rows=rows, means=means))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

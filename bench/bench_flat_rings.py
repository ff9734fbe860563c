"""flat-rings: the flat field's own noise, shared by every view of a detector bin (what draws rings),
modelled in the data term (``weighting="gls"``) or not (``"wls"``), by the flat frames averaged.

    python bench/bench_flat_rings.py [--data ../shared/data] [--size 128] [--angles 180]
        [--photons 1e3 1e4] [--frames 1 2 4 16] [--images 3] [--ring-period BINS] [--methods ...]
        [--threads 1] [--json out.json]

Problems and detector as bench_flat_field.py's (the Shepp-Logan phantom and two Mayo *train* slices,
``--size`` square, parallel beam; gain 4 units per photon, dark 200, electronic noise 12 units, a
bow-tie incident profile, the longest ray at e^-4; numpy seed per image and dose). The flat field is
the mean of the first ``k`` of 16 flat frames (``--frames``), the dark 16 dark frames, the gain
given (the rings alone vary). Reconstructed (ADMM, ``--denoiser``, automatic parameters) as:
``wls-k``, weighted least squares with the photon counts; ``gls-k``, the same whitening the flat's
noise too in its detector frequencies of period below ``--ring-period`` bins (``RadonTomography``'s
``shared_variance``, ``ring_covariance``; the default for two or more frames); ``exact``, the
noise-free flat (no rings: the ceiling); ``mean16-as-one``, the mean of the 16 frames given as one
frame (one value per bin) with ``weighting="gls"``, taken for one exposure (its noise over-modelled
16 times); ``mean16-told``, the same told ``flat_exposures=16`` (``gls``: as ``gls-16``);
``wls-1-read`` and ``gls-1-read``, one flat frame told as one exposure with the gain read off the
sinogram's noise (not given), which then models the flat's noise; ``wls-1-untold``, the same not
told (the flat taken as exact by the reading).
``--ring-period 0`` whitens the flat's whole error (its per-bin variances). PSNR of the reconstruction
divided by ``mu``, clipped to [0, 1].
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flat_field import DARK, GAIN, readings  # noqa: E402
from bench_photon_counts import images  # noqa: E402
from calibrate_ct_rule import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402


def methods(frames: list[int]) -> list[str]:
    return [f"{kind}-{k}" for k in frames for kind in ("wls", "gls")] + ["exact", "mean16-as-one", "mean16-told",
                                                                        "wls-1-read", "gls-1-read", "wls-1-untold"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--photons", type=float, nargs="+", default=[1e3, 1e4])
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--images", type=int, default=3, help="the first N of Shepp-Logan and the two slices")
    parser.add_argument("--ring-period", type=float, default=None,
                        help="bins (default: transmission.RING_PERIOD_BINS); 0: the flat's whole error")
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods")
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable import transmission
    from pnp_stable.restore import PHOTON_SIMULATION_PEAK_LINE_INTEGRAL, reconstruct_ct

    if args.ring_period == 0:  # the per-bin variances themselves: the flat's whole error
        transmission.ring_covariance = lambda variance, period=None: np.asarray(variance, dtype=np.float64)
    elif args.ring_period is not None:
        transmission.RING_PERIOD_BINS = args.ring_period
    chosen = args.methods or methods(args.frames)
    op = ParallelBeamCT(args.size, angles=args.angles)
    rows = []
    for index, (name, image) in enumerate(images(args.data, args.size)[:args.images]):
        phantom = torch.from_numpy(image).double()[None, None]
        clean = op.A(phantom)[0, 0].numpy()
        mu = PHOTON_SIMULATION_PEAK_LINE_INTEGRAL / float(clean.max())
        for photons in args.photons:
            data = readings(mu * clean, photons, np.random.default_rng([index, int(photons)]))
            raw = torch.from_numpy(data["raw"]).float()[None]
            darks = data["dark_frames"]
            for method in chosen:
                common = dict(denoiser=args.denoiser, device="cpu", progress=False, gain=GAIN)
                start = time.perf_counter()
                if method == "exact":
                    r = reconstruct_ct(raw, flat=data["flat_exact"], dark=DARK, weighting="wls", **common)
                elif method.startswith("mean16"):
                    told = {"flat_exposures": 16} if method == "mean16-told" else {}
                    r = reconstruct_ct(raw, flat=data["flat_frames"].mean(axis=1), dark=darks, weighting="gls",
                                       **told, **common)
                elif method.endswith(("-read", "-untold")):  # one flat frame, the gain read off the noise
                    told = {"flat_exposures": 1} if method.endswith("-read") else {}
                    r = reconstruct_ct(raw, flat=data["flat_frames"][:, 0], dark=darks, weighting=method[:3],
                                       **told, **{k: v for k, v in common.items() if k != "gain"})
                else:
                    kind, k = method.split("-")
                    r = reconstruct_ct(raw, flat=data["flat_frames"][:, :int(k)], dark=darks, weighting=kind,
                                       **common)
                value = (r.image.double() / mu).clamp(0, 1)
                psnr = float(10 * torch.log10(1 / ((value - phantom[0]) ** 2).mean()))
                row = {"image": name, "photons": photons, "method": method, "psnr": psnr,
                       "iterations": int(r.result.iterations), "monotone": bool(r.result.monotone),
                       "guarantee": bool(r.guarantee.holds), "weighting": r.report["noise"]["weighting"],
                       "gain": r.report["noise"]["flat_field"]["gain"],
                       "wall": time.perf_counter() - start}
                rows.append(row)
                print(f"{name:14s} I0 {photons:7.0f}  {method:13s}  PSNR {psnr:6.2f}  it {row['iterations']:3d}  "
                      f"{row['wall']:5.1f}s  monotone {row['monotone']}  guarantee {row['guarantee']}", flush=True)
    summary = {}
    for photons in args.photons:
        for method in chosen:
            values = [r["psnr"] for r in rows if r["method"] == method and r["photons"] == photons]
            summary[f"{photons:g} {method}"] = float(np.mean(values))
            print(f"mean I0 {photons:g} {method}: {np.mean(values):.2f} dB")
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="flat-rings", size=args.size,
                                                angles=args.angles, denoiser=args.denoiser, rows=rows,
                                                ring_period=transmission.RING_PERIOD_BINS if args.ring_period != 0
                                                else "whole error",
                                                mean_psnr=summary), make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

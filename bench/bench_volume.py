"""volume: a projection stack reconstructed slice by slice (``reconstruct_volume``), what the slices
share measured once, against each slice reconstructed on its own from its row.

    python bench/bench_volume.py [--data ../shared/data] [--slices 8] [--size 128] [--angles 180]
        [--photons 1e3 1e4] [--offset 2.3] [--threads 1] [--workers 1 [N ...]] [--json out.json]

The volume: ``--slices`` Mayo *train* slices (calibrate_ct_rule.calibration_slices, spread over the
set) as the rows of one object, ``--size`` square, a parallel beam of ``--angles`` views over
[0, 180) whose axis lies ``--offset`` bins off the detector's centre, one attenuation for the stack
(its longest ray at e^-4). Raw readings as bench_flat_field.py's detector: gain 4 units per photon,
dark 200, electronic noise 12 units, a bow-tie profile along the bins, here also falling by 20 % from
the first row to the last; 16 flat and 16 dark frames of the whole detector (numpy seed 0 per dose).
Reconstructed (ADMM, ``--denoiser``, automatic parameters) as: ``volume``, ``reconstruct_volume``
with the gain and the axis measured once (``detector_offset="auto"``); ``volume-shared-scale``, the
same with one data scale for every slice (``shared_scale=True``); ``per-slice``, each row by
``reconstruct_ct`` with its row of the flat and dark frames, its own gain, axis and scale;
``given``, each row with the true gain and axis. PSNR of each slice divided by the attenuation,
clipped to [0, 1]. ``--workers``: ``volume`` is run once per number of worker processes given
(``reconstruct_volume(workers=N)``, each worker with its share of the usable cores' threads; the
main process keeps ``--threads``); its time per slice includes starting the workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flat_field import DARK, FRAMES, GAIN, READ_NOISE, bow_tie, detect  # noqa: E402  (the same detector)
from calibrate_ct_rule import DEFAULT_DATA, calibration_slices  # noqa: E402
from records import run_record  # noqa: E402

METHODS = ("volume", "volume-shared-scale", "per-slice", "given")


def scan(slices: np.ndarray, op, photons: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw projections (views x rows x bins), flat and dark frames (k x rows x bins), the attenuation."""
    line_integrals = np.stack([op.A(torch.from_numpy(s).double()[None, None])[0, 0].numpy() for s in slices])
    mu = 4.0 / float(line_integrals.max())
    rows, bins = slices.shape[0], line_integrals.shape[1]
    incident = bow_tie(photons, bins)[None, :] * np.linspace(1.0, 0.8, rows)[:, None]
    raw = detect(incident[:, :, None] * np.exp(-mu * line_integrals), rng)
    return {"projections": raw.transpose(2, 0, 1), "mu": mu,
            "flats": np.stack([detect(incident, rng) for _ in range(FRAMES)]),
            "darks": DARK + READ_NOISE * rng.standard_normal((FRAMES, rows, bins))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--photons", type=float, nargs="+", default=[1e3, 1e4])
    parser.add_argument("--offset", type=float, default=2.3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import psnr, reconstruct_ct
    from pnp_stable.volume import reconstruct_volume, row_sinogram

    slices = np.stack([image for _, image in calibration_slices(args.data, args.slices, args.size)])
    op = ParallelBeamCT(args.size, angles=args.angles, detector_offset=args.offset)
    truth = torch.from_numpy(slices).float()
    rows = []
    print("| I0 | method | mean PSNR | min | max | axis (bins) | gain | monotone | s per slice |")
    print("|---|---|---|---|---|---|---|---|---|")
    for photons in args.photons:
        data = scan(slices, op, photons, np.random.default_rng(0))
        common = dict(denoiser=args.denoiser, max_iter=300, progress=False)
        runs = [(m, w) for m in args.methods for w in (args.workers if m == "volume" else [1])]
        for method, workers in runs:
            started = time.perf_counter()
            if method.startswith("volume"):
                result = reconstruct_volume(data["projections"], flat=data["flats"], dark=data["darks"],
                                            detector_offset="auto", shared_scale=method == "volume-shared-scale",
                                            workers=workers, **common)
                images, reports = list(result.volume), result.reports
                axes, gains = [result.shared["detector_offset"]], [result.shared["gain"]]
            else:
                images, reports, axes, gains = [], [], [], []
                for r in range(slices.shape[0]):
                    one = reconstruct_ct(
                        torch.from_numpy(row_sinogram(data["projections"], r)).float()[None],
                        flat=data["flats"][:, r, :].T, dark=data["darks"][:, r, :].T,
                        gain=GAIN if method == "given" else None,
                        detector_offset=args.offset if method == "given" else "auto", **common)
                    images.append(one.image[0])
                    reports.append(one.report)
                    axes.append(one.report["operator"]["detector_offset"])
                    gains.append(one.report["noise"]["flat_field"]["gain"])
            seconds = (time.perf_counter() - started) / slices.shape[0]
            scores = [psnr((image / data["mu"]).clamp(0, 1)[None, None], truth[i][None, None])
                      for i, image in enumerate(images)]
            monotone = sum(bool(r["solver"]["monotone"]) for r in reports)
            rows.append({"photons": photons, "method": method, "workers": workers, "psnr": scores, "axes": axes, "gains": gains,
                         "monotone": monotone, "iterations": [r["solver"]["iterations"] for r in reports],
                         "seconds_per_slice": seconds})
            axis = (f"{axes[0]:+.3f}" if len(axes) == 1 else
                    f"{min(axes):+.2f} to {max(axes):+.2f}")
            gain = f"{gains[0]:.3f}" if len(gains) == 1 else f"{min(gains):.2f} to {max(gains):.2f}"
            shown = method if workers == 1 else f"{method}, {workers} workers"
            print(f"| {photons:g} | {shown} | {np.mean(scores):.2f} | {min(scores):.2f} | {max(scores):.2f} | "
                  f"{axis} | {gain} | {monotone}/{len(reports)} | {seconds:.1f} |", flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="volume", slices=args.slices, size=args.size,
                                                angles=args.angles, offset=args.offset, gain=GAIN, rows=rows),
                          make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

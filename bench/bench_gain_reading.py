"""gain-reading: accuracy of a detector's gain read off a raw sinogram's noise
(``pnp_stable.transmission.flat_field_correction`` with one exact flat and no gain), over noise draws;
and of the photon count read off post-log sinograms (``photons_from_sinogram_noise``), with its check
that the noise grows with the attenuation as counts' does, against Gaussian noise of one level.

    python bench/bench_gain_reading.py [--draws 12] [--data ../shared/data] [--json out.json]

Synthetic parabolic projections ``top * max(0, 1 - (s / 0.8)^2)`` over 256 detector bins (the air a
tenth of the detector on each side) and 120 views, ``1e3`` photons per bin without the object, gain 2
units per photon, dark offset 100 with electronic noise of 0 or 10 units (5 photons; 16 dark frames
then give it); ``top`` = 4 (55 photons behind the centre) or 8 (0.3 photon: photon-starved). Reports
the mean and standard deviation of the gain read, relative to the true one, over ``--draws`` seeds.
Then the phantoms of bench_photon_counts.py (128 x 128, parallel beam, 60 and 180 angles, the longest
ray at e^-4): Poisson counts of 1e3, 1e4, 1e5 photons per bin, and Gaussian noise of std 0.02 (numpy
seed 0): the count read (relative to the true one), the noise's growth from the least to the most
attenuating quarter of the bins and a count's expected growth, and the check's verdict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photon_counts import images  # noqa: E402
from calibrate_ct_rule import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402

GAIN, DARK, PHOTONS, BINS, VIEWS = 2.0, 100.0, 1e3, 256, 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from pnp_stable.transmission import flat_field_correction

    s = np.linspace(-1, 1, BINS)[:, None]
    rows = []
    for top in (4.0, 8.0):
        line_integrals = top * np.clip(1 - (s / 0.8) ** 2, 0, None) * np.ones((1, VIEWS))
        for electronic in (0.0, 10.0):
            ratios = []
            for seed in range(args.draws):
                rng = np.random.default_rng(seed)
                raw = (GAIN * rng.poisson(PHOTONS * np.exp(-line_integrals)) + DARK
                       + electronic * rng.standard_normal(line_integrals.shape))
                dark = DARK + electronic * rng.standard_normal((BINS, 16)) if electronic else DARK
                ratios.append(flat_field_correction(raw, GAIN * PHOTONS + DARK, dark).gain / GAIN)
            row = {"top": top, "electronic_units": electronic, "mean_ratio": float(np.mean(ratios)),
                   "std_ratio": float(np.std(ratios)), "ratios": [float(r) for r in ratios]}
            rows.append(row)
            print(f"line integrals up to {top:g}, electronic noise {electronic:g} units: gain read / true "
                  f"{row['mean_ratio']:.3f} +- {row['std_ratio']:.3f} ({args.draws} draws)", flush=True)
    photon_rows = photon_count_readings(args.data)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="gain-reading", gain=GAIN, photons=PHOTONS,
                                                rows=rows, photon_rows=photon_rows))
    return 0


def photon_count_readings(data: Path) -> list[dict]:
    import torch

    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.transmission import photons_from_sinogram_noise

    rows = []
    for angles in (60, 180):
        op = ParallelBeamCT(128, angles=angles)
        for name, image in images(data, 128):
            clean = op.A(torch.from_numpy(image).double()[None, None])[0, 0].numpy()
            line_integrals = 4.0 * clean / clean.max()
            for noise in (1e3, 1e4, 1e5, "gaussian 0.02"):
                rng = np.random.default_rng(0)
                if isinstance(noise, float):
                    y = -np.log(np.maximum(rng.poisson(noise * np.exp(-line_integrals)), 1) / noise)
                else:
                    y = line_integrals + 0.02 * rng.standard_normal(line_integrals.shape)
                estimate = photons_from_sinogram_noise(y)
                row = {"image": name, "angles": angles, "noise": noise, "photons_read": estimate.photons,
                       "ratio": estimate.photons / noise if isinstance(noise, float) else None,
                       "growth": estimate.growth, "expected_growth": estimate.expected_growth,
                       "poisson_like": estimate.poisson_like}
                rows.append(row)
                ratio = "" if row["ratio"] is None else f"  read / true {row['ratio']:.3f}"
                print(f"{name:14s} {angles:4d} angles  {str(noise):14s}  I0 read {estimate.photons:9.4g}{ratio}  "
                      f"growth {estimate.growth:5.2f} (counts {estimate.expected_growth:4.2f})  "
                      f"poisson-like {estimate.poisson_like}", flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

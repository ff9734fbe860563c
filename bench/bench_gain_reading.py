"""gain-reading: accuracy of a detector's gain read off a raw sinogram's noise
(``pnp_stable.transmission.flat_field_correction`` with one exact flat and no gain), over noise draws.

    python bench/bench_gain_reading.py [--draws 12] [--json out.json]

Synthetic parabolic projections ``top * max(0, 1 - (s / 0.8)^2)`` over 256 detector bins (the air a
tenth of the detector on each side) and 120 views, ``1e3`` photons per bin without the object, gain 2
units per photon, dark offset 100 with electronic noise of 0 or 10 units (5 photons; 16 dark frames
then give it); ``top`` = 4 (55 photons behind the centre) or 8 (0.3 photon: photon-starved). Reports
the mean and standard deviation of the gain read, relative to the true one, over ``--draws`` seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402

GAIN, DARK, PHOTONS, BINS, VIEWS = 2.0, 100.0, 1e3, 256, 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=12)
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
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="gain-reading", gain=GAIN, photons=PHOTONS,
                                                rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

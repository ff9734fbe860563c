"""flat-field: CT reconstruction from raw detector readings (``reconstruct_ct(flat=, dark=, gain=)``)
against the post-log sinogram reconstructed as before, without the readings' statistics.

    python bench/bench_flat_field.py [--data ../shared/data] [--size 128] [--angles 180]
        [--photons 1e3 1e4] [--threads 1] [--json out.json]

Problems: the Shepp-Logan phantom and two Mayo *train* slices (bench_photon_counts.py's), ``--size``
square, parallel beam. Readings of a detector with gain 4 units per photon, a dark offset of 200
units and electronic noise of 12 units (3 photons) per reading: ``4 P(N0(s) e^(-mu A x)) + 200 +
12 e`` with a bow-tie incident profile ``N0(s) = I0 (0.3 + 0.7 e^(-(s / 0.6)^2))`` over the detector
(``s`` in [-1, 1]) and ``mu`` putting the phantom's longest ray at e^-4 (numpy seed 0 per image and
dose). Reconstructed (ADMM, ``--denoiser``, by default the shipped ``gray``, automatic parameters) as:
``given``, the exact flat and dark with the gain given; ``frames``, 16 flat and 16 dark frames, the
gain measured from them; ``frames-e2``, the same with the electronic noise in the weights
(``electronic_noise_in_weights=True``: ``N^2 / (N + e^2)`` instead of ``N``); ``mean-flat``, the
frames' mean flat (one value per bin, as a tomopy user keeps it) and the dark offset, the gain
read off the sinogram's noise; ``post-log``, the line integrals of the ``frames`` correction
handed to ``reconstruct_ct`` as a sinogram of unknown noise (plain least squares, the level estimated:
the tool before flat fields). PSNR of the reconstruction divided by ``mu``, clipped to [0, 1].
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photon_counts import images  # noqa: E402
from calibrate_ct_rule import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402

GAIN, DARK, READ_NOISE, FRAMES = 4.0, 200.0, 12.0, 16
METHODS = ("given", "frames", "frames-e2", "mean-flat", "post-log")


def bow_tie(photons: float, bins: int) -> np.ndarray:
    """The incident photons per detector bin: ``I0 (0.3 + 0.7 e^(-(s / 0.6)^2))``, ``s`` in [-1, 1]."""
    s = np.linspace(-1, 1, bins)
    return photons * (0.3 + 0.7 * np.exp(-(s / 0.6) ** 2))


def detect(mean_photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The detector's readings of Poisson photons of these means: gain, dark offset, electronic noise."""
    return GAIN * rng.poisson(mean_photons) + DARK + READ_NOISE * rng.standard_normal(mean_photons.shape)


def readings(line_integrals: np.ndarray, photons: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw readings of ``line_integrals`` (bins x views) and flat and dark frames."""
    bins = line_integrals.shape[0]
    incident = bow_tie(photons, bins)
    return {"raw": detect(incident[:, None] * np.exp(-line_integrals), rng),
            "flat_frames": detect(incident[:, None] * np.ones((1, FRAMES)), rng),
            "dark_frames": DARK + READ_NOISE * rng.standard_normal((bins, FRAMES)),
            "flat_exact": GAIN * incident + DARK}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--photons", type=float, nargs="+", default=[1e3, 1e4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import PHOTON_SIMULATION_PEAK_LINE_INTEGRAL, reconstruct_ct
    from pnp_stable import transmission
    from pnp_stable.transmission import flat_field_correction

    op = ParallelBeamCT(args.size, angles=args.angles)
    rows = []
    for index, (name, image) in enumerate(images(args.data, args.size)):
        phantom = torch.from_numpy(image).double()[None, None]
        clean = op.A(phantom)[0, 0].numpy()
        mu = PHOTON_SIMULATION_PEAK_LINE_INTEGRAL / float(clean.max())
        for photons in args.photons:
            data = readings(mu * clean, photons, np.random.default_rng([index, int(photons)]))
            raw = torch.from_numpy(data["raw"]).float()[None]
            for method in args.methods:
                common = dict(denoiser=args.denoiser, device="cpu", progress=False)
                start = time.perf_counter()
                if method == "given":
                    r = reconstruct_ct(raw, flat=data["flat_exact"], dark=DARK, gain=GAIN, **common)
                elif method == "frames":
                    r = reconstruct_ct(raw, flat=data["flat_frames"], dark=data["dark_frames"], **common)
                elif method == "frames-e2":
                    with_electronic = functools.partial(transmission.flat_field_correction,
                                                        electronic_noise_in_weights=True)
                    with mock.patch.object(transmission, "flat_field_correction", with_electronic):
                        r = reconstruct_ct(raw, flat=data["flat_frames"], dark=data["dark_frames"], **common)
                elif method == "mean-flat":
                    r = reconstruct_ct(raw, flat=data["flat_frames"].mean(axis=1), dark=DARK, **common)
                else:
                    corrected = flat_field_correction(data["raw"], data["flat_frames"], data["dark_frames"])
                    r = reconstruct_ct(corrected.line_integrals.float()[None], **common)
                value = (r.image.double() / mu).clamp(0, 1)
                psnr = float(10 * torch.log10(1 / ((value - phantom[0]) ** 2).mean()))
                noise = r.report["noise"]
                row = {"image": name, "photons": photons, "method": method, "psnr": psnr,
                       "iterations": int(r.result.iterations), "monotone": bool(r.result.monotone),
                       "guarantee": bool(r.guarantee.holds), "sigma": noise["sigma"], "source": noise["source"],
                       "gain": noise.get("flat_field", {}).get("gain"),
                       "read_noise_photons": noise.get("flat_field", {}).get("read_noise_photons"),
                       "wall": time.perf_counter() - start}
                rows.append(row)
                gain = "" if row["gain"] is None else f"  gain {row['gain']:.3f}"
                print(f"{name:14s} I0 {photons:7.0f}  {method:9s}  PSNR {psnr:6.2f}  it {row['iterations']:3d}  "
                      f"{row['wall']:5.1f}s  sigma {row['sigma']:.4g} ({row['source']}){gain}  "
                      f"monotone {row['monotone']}  guarantee {row['guarantee']}", flush=True)
    summary = {}
    for method in args.methods:
        values = [r["psnr"] for r in rows if r["method"] == method]
        summary[method] = float(np.mean(values)) if values else math.nan
        print(f"mean {method}: {summary[method]:.2f} dB")
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="flat-field", size=args.size,
                                                angles=args.angles, denoiser=args.denoiser, gain=GAIN, dark=DARK,
                                                read_noise=READ_NOISE, frames=FRAMES, rows=rows, mean_psnr=summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""photon-counts: CT reconstruction of Poisson (photon-count) data by weighted least squares
against plain least squares, and against a noise level estimated from the sinogram.

    python bench/bench_photon_counts.py [--data ../shared/data] [--size 128] [--photons 1e3 1e4 1e5]
        [--angles 60 180] [--weighting wls none estimated] [--threads 1] [--json out.json]

Problems: the Shepp-Logan phantom and two Mayo *train* slices (neither ct-quick's nor the shared
validation one, nor the CT rule's calibration slices), ``--size`` square, parallel beam with ``--angles``; counts drawn by
``pnp_stable.reconstruct_ct(simulate=True, photons=I0)`` (attenuation: the longest ray at e^-4;
torch seed 0). Each is reconstructed (ADMM, ``--denoiser``, by default the shipped ``gray``,
automatic parameters) with ``weighting="wls"`` (the counts as weights, the level they give),
``"none"`` (plain least squares at the root-mean-square level of the counts) and ``estimated``
(plain least squares, the level estimated from the post-log sinogram, as without ``photons``);
optionally ``auto-photons`` (``photons="auto"`` on the post-log sinogram: its photon count read off
its noise, then WLS; the count read and the noise's growth with the attenuation are recorded).
PSNR of the result (clipped to [0, 1]), iterations, wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_ct_rule import DEFAULT_DATA, load_slice, usable_train_slices  # noqa: E402
from records import run_record  # noqa: E402


def images(data: Path, size: int) -> list[tuple[str, np.ndarray]]:
    from skimage import data as skdata
    from skimage import transform

    train = usable_train_slices(data)
    if len(train) < 2:
        raise ValueError(f"fewer than two Mayo train slices under {data}")
    shepp_logan = np.clip(transform.resize(skdata.shepp_logan_phantom(), (size, size), anti_aliasing=True), 0, 1)
    return [("shepp_logan", shepp_logan.astype(np.float32))] + [
        (path.stem, load_slice(path, size)) for path in (train[len(train) // 5], train[(3 * len(train)) // 5])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--photons", type=float, nargs="+", default=[1e3, 1e4, 1e5])
    parser.add_argument("--angles", type=int, nargs="+", default=[60, 180])
    parser.add_argument("--weighting", nargs="+", default=["wls", "none", "estimated"],
                        choices=["wls", "none", "estimated", "auto-photons"])
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.restore import reconstruct_ct

    rows = []
    for name, image in images(args.data, args.size):
        phantom = torch.from_numpy(image).float()[None]
        for angles in args.angles:
            for photons in args.photons:
                for weighting in args.weighting:
                    start = time.perf_counter()
                    common = dict(simulate=True, angles=angles, photons=photons, denoiser=args.denoiser,
                                  device="cpu", progress=False)
                    extra = {}
                    if weighting in ("estimated", "auto-photons"):
                        # the same post-log sinogram, read as a sinogram of unknown noise, or of a
                        # photon count read off its noise (photons="auto")
                        simulated = reconstruct_ct(phantom, weighting="none", max_iter=1, **common)
                        mu = simulated.report["noise"]["attenuation"]
                        line_integrals = simulated.observation * mu
                        auto = dict(photons="auto") if weighting == "auto-photons" else {}
                        r = reconstruct_ct(line_integrals, angles=angles, denoiser=args.denoiser, device="cpu",
                                           progress=False, **auto)
                        value = (r.image / mu).clamp(0, 1)
                        psnr = float(10 * torch.log10(1 / ((value - phantom) ** 2).mean()))
                        if auto:
                            from pnp_stable.transmission import photons_from_sinogram_noise

                            estimate = photons_from_sinogram_noise(line_integrals[0])
                            extra = {"photons_read": estimate.photons, "noise_growth": estimate.growth,
                                     "expected_growth": estimate.expected_growth,
                                     "poisson_like": estimate.poisson_like}
                    else:
                        r = reconstruct_ct(phantom, weighting=weighting, **common)
                        psnr = r.psnr
                    row = {"image": name, "angles": angles, "photons": photons, "weighting": weighting,
                           "psnr": psnr, "iterations": int(r.result.iterations),
                           "monotone": bool(r.result.monotone), "guarantee": bool(r.guarantee.holds),
                           "sigma": r.report["noise"]["sigma"], "wall": time.perf_counter() - start, **extra}
                    rows.append(row)
                    print(f"{name:14s} {angles:4d} angles  I0 {photons:8.0f}  {weighting:9s}  PSNR {psnr:6.2f}  "
                          f"it {row['iterations']:3d}  {row['wall']:5.1f}s  monotone {row['monotone']}  "
                          f"guarantee {row['guarantee']}"
                          + (f"  I0 read {extra['photons_read']:.4g}, noise growth {extra['noise_growth']:.2f} "
                             f"(counts: {extra['expected_growth']:.2f})" if extra else ""), flush=True)
    summary = {}
    for weighting in args.weighting:
        values = [r["psnr"] for r in rows if r["weighting"] == weighting]
        summary[weighting] = float(np.mean(values))
        print(f"mean {weighting}: {summary[weighting]:.2f} dB")
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="photon-counts", size=args.size,
                                                denoiser=args.denoiser, rows=rows, mean_psnr=summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

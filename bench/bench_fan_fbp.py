"""fan-fbp: how well ``FanBeamCT.fbp`` inverts full, short, irregular and limited fan-beam scans.

    python bench/bench_fan_fbp.py [--size 256] [--detector-shape flat|curved] [--threads 2] [--reference FILE] [--pnp]
                                  [--json out.json]

The Shepp-Logan phantom (``--size`` square), ``FanBeamCT``'s default geometry (source 2n, detector
n; a flat detector or with ``--detector-shape curved`` an arc of cells equally spaced in fan angle), noise-free sinograms of seven scans: 360 uniform views over the full turn, a short scan (222
views over 180 degrees plus the fan angle), 270 views over 270 degrees, 300 and 200 views at random
angles over 360 and 300 degrees (numpy seed 0), and two scans shorter than a short scan (180 views
over 180 degrees, 120 over 120). PSNR (peak 1) of each FBP clipped to [0, 1].

``--reference FILE`` also measures the ``fbp`` of the ``FanBeamCT`` class defined in FILE (a copy
of ``operators/fan_beam.py`` from another commit: ``git show REV:operators/fan_beam.py > FILE``),
applied to the same operator. ``--pnp`` adds ``pnp_stable.reconstruct_ct`` (ADMM, shipped ``gray``)
on a noisy short scan at 128 x 128: once simulated (PSNR, FBP PSNR, iterations) and once given as
a sinogram of attenuations 0.02 per pixel (the scale the FBP reads off, and the PSNR); with
``--reference``, again with the reference ``fbp`` in its place.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


def phantom(size: int) -> torch.Tensor:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return torch.from_numpy(resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)).float()[None, None]


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((estimate.clamp(0, 1) - truth) ** 2).mean()))


def scans(size: int, detector_shape: str = "flat") -> dict[str, np.ndarray]:
    from pnp_stable.operators import FanBeamCT

    half_fan = float(np.degrees(np.abs(FanBeamCT(size, angles=4, detector_shape=detector_shape).fan_angles()).max()))
    rng = np.random.default_rng(0)
    short = 180.0 + 2 * half_fan
    return {
        "360 views over 360 deg": np.arange(360) * 1.0,
        f"short scan: 222 views over {short:.1f} deg": np.linspace(0.0, short, 222),
        "270 views over 270 deg": np.arange(270) * 1.0,
        "300 random views over [0, 360) deg": np.sort(rng.uniform(0, 360, 300)),
        "200 random views over [0, 300) deg": np.sort(rng.uniform(0, 300, 200)),
        "180 views over 180 deg (less than a short scan)": np.arange(180) * 1.0,
        "120 views over 120 deg": np.arange(120) * 1.0,
    }


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("reference_fan_beam", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FanBeamCT.fbp


def pnp_short_scan(detector_shape: str = "flat") -> dict:
    import pnp_stable as ps
    from pnp_stable.operators import FanBeamCT

    size = 128
    truth = phantom(size)
    half_fan = float(np.degrees(np.abs(FanBeamCT(size, angles=4, detector_shape=detector_shape).fan_angles()).max()))
    angles = np.linspace(0.0, 180.0 + 2 * half_fan, 74)
    tic = time.perf_counter()
    simulated = ps.reconstruct_ct(truth[0], angles=angles, simulate=True, geometry="fan", progress=False,
                                   detector_shape=detector_shape)
    seconds = time.perf_counter() - tic
    op = FanBeamCT(size, angles=angles, detector_shape=detector_shape)
    attenuation = 0.02
    sinogram = op.A(truth * attenuation)
    sinogram = sinogram + 0.01 * float(sinogram.max()) * torch.randn(sinogram.shape, generator=torch.Generator().manual_seed(0))
    given = ps.reconstruct_ct(sinogram[0], angles=angles, geometry="fan", image_size=size, progress=False,
                               detector_shape=detector_shape)
    return {"views": len(angles), "span_deg": float(angles[-1]),
            "simulated": {"psnr": simulated.psnr, "fbp_psnr": simulated.report["metrics"]["psnr_input"],
                          "iterations": simulated.result.iterations, "seconds": seconds,
                          "summary": simulated.summary_line()},
            "sinogram": {"attenuation": attenuation, "notes": given.notes,
                         "psnr": psnr(given.image.reshape(truth.shape) / attenuation, truth)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector-shape", choices=("flat", "curved"), default="flat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", type=Path, default=None, help="a FanBeamCT module file to compare with")
    parser.add_argument("--pnp", action="store_true", help="also a PnP reconstruction of a noisy short scan")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.operators import FanBeamCT

    reference = load_reference(args.reference) if args.reference else None
    truth = phantom(args.size)
    rows = []
    for label, angles in scans(args.size, args.detector_shape).items():
        op = FanBeamCT(args.size, angles=angles, detector_shape=args.detector_shape)
        sinogram = op.A(truth)
        row = {"scan": label, "views": len(angles), "fbp_psnr": psnr(op.fbp(sinogram), truth)}
        if reference is not None:
            row["reference_fbp_psnr"] = psnr(reference(op, sinogram), truth)
        rows.append(row)
        print(f"| {label} | " + (f"{row['reference_fbp_psnr']:.2f} | " if reference else "") + f"{row['fbp_psnr']:.2f} |",
              flush=True)
    record = {"protocol": "fan-fbp", "size": args.size, "detector_shape": args.detector_shape, "rows": rows}
    if args.pnp:
        record["pnp_short_scan"] = pnp_short_scan(args.detector_shape)
        print(record["pnp_short_scan"], flush=True)
        if reference is not None:
            current, FanBeamCT.fbp = FanBeamCT.fbp, reference
            try:
                record["reference_pnp_short_scan"] = pnp_short_scan(args.detector_shape)
            finally:
                FanBeamCT.fbp = current
            print(record["reference_pnp_short_scan"], flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, **record,
                                                reference=str(args.reference) if args.reference else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

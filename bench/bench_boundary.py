"""Boundary conditions for photographs: which blur boundary restores a real (not simulated) photo best.

    python bench/bench_boundary.py [--data ../shared/data] [--images 4] [--kernels gauss:1.6 motion:15,30]
        [--boundaries circular reflect zero] [--size 300] [--noise 2.55/255] [--json out.json]

A photograph's scene goes on beyond its frame: the observation is modelled here as the *valid* part
of the blur of a larger scene (a ``size`` x ``size`` centre crop of a BSDS500 *train* image), with
Gaussian noise (seeded). Each boundary model restores it with the shipped ``gray``, PnP-ADMM and the
automatic parameters (``pnp_stable.restore.deblur``); PSNR is measured against the scene on the
observed pixels, overall and 20 pixels away from the edges (``interior``), and the residual monitor's
verdict is recorded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402

EDGE = 20


def photo_problems(data: Path, images: int, kernels: list[str], size: int, noise: float):
    """Yield ``(file name, kernel, y, truth)``: the valid part of the blur of a ``size`` x ``size``
    centre crop of each of the first ``images`` BSDS500 *train* images (sorted), seeded noise, and
    the scene on the observed pixels. Raises FileNotFoundError without the images."""
    from pnp_stable.operators import Blur

    folder = data / "denoising/bsds500/images/train"
    files = sorted(folder.glob("*.jpg"))[:images]
    if not files:
        raise FileNotFoundError(f"no BSDS500 train images in {folder}")
    for file in files:
        img = np.asarray(Image.open(file).convert("L"), dtype=np.float32) / 255
        h, w = img.shape
        c = size // 2
        scene = torch.from_numpy(img[h // 2 - c:h // 2 + c, w // 2 - c:w // 2 + c].copy())[None]
        for kernel in kernels:
            y = Blur(kernel, tuple(scene.shape), boundary="valid").simulate(scene[None], noise, seed=0)[0]
            top = (scene.shape[-2] - y.shape[-2]) // 2
            left = (scene.shape[-1] - y.shape[-1]) // 2
            yield file.name, kernel, y, scene[:, top:top + y.shape[-2], left:left + y.shape[-1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=4, help="the first N BSDS500 train images (sorted)")
    parser.add_argument("--kernels", nargs="+", default=["gauss:1.6", "motion:15,30"])
    parser.add_argument("--boundaries", nargs="+", default=["circular", "reflect", "zero"])
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--noise", type=float, default=2.55 / 255)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.restore import deblur, psnr

    rows = []
    try:
        problems = list(photo_problems(args.data, args.images, args.kernels, args.size, args.noise))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inner = (slice(None), slice(EDGE, -EDGE), slice(EDGE, -EDGE))
    for name, kernel, y, truth in problems:
        for boundary in args.boundaries:
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = deblur(y, kernel, noise_level=args.noise, boundary=boundary, method="admm", progress=False)
            row = {"image": name, "kernel": kernel, "boundary": boundary,
                   "psnr": psnr(r.image, truth), "psnr_interior": psnr(r.image[inner], truth[inner]),
                   "iterations": r.result.iterations, "monotone": r.result.monotone,
                   "converged": r.result.converged, "seconds": time.perf_counter() - tic}
            rows.append(row)
            print(f"{name} {kernel:<14} {boundary:<9} {row['psnr']:6.2f} dB (interior "
                  f"{row['psnr_interior']:6.2f})  {row['iterations']:3d} it  "
                  f"{'monotone' if row['monotone'] else 'RESIDUAL ROSE'}  {row['seconds']:.0f} s", flush=True)
    summary = {}
    for boundary in args.boundaries:
        sel = [r for r in rows if r["boundary"] == boundary]
        summary[boundary] = {"psnr": statistics.mean(r["psnr"] for r in sel),
                             "psnr_interior": statistics.mean(r["psnr_interior"] for r in sel),
                             "monotone": sum(r["monotone"] for r in sel), "runs": len(sel),
                             "seconds": statistics.mean(r["seconds"] for r in sel)}
        s = summary[boundary]
        print(f"mean {boundary:<9} {s['psnr']:6.2f} dB (interior {s['psnr_interior']:6.2f})  monotone "
              f"{s['monotone']}/{s['runs']}  {s['seconds']:.1f} s per run")
    if args.json:
        atomic_write_json(args.json, run_record(__file__, argv, benchmark="boundary", results=rows, summary=summary,
                                                threads=args.threads, noise=args.noise, size=args.size), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

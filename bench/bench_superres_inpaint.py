"""sr-inpaint-quick: super-resolution and inpainting by ``pnp_stable.super_resolve`` / ``inpaint``.

    python bench/bench_superres_inpaint.py [--data ../shared/data] [--denoisers gray tv] [--threads 1]
        [--problems ...] [--color] [--json out.json]

Problems (the images of deblur-quick): BSD68 test001..test004, gray, centre-cropped 256x256, each
  * super-resolved by 2 (kernel gauss:1) and by 4 (gauss:2), circular boundary, noise 0.01;
  * inpainted with 50 % and 20 % of the pixels kept at random (noise-free), and 50 % with noise 0.01;
seeded with the image index (mask and noise). Each is solved by PnP-ADMM with the automatic
parameters (the rules calibrated for deblurring; docs/solvers.md) for each denoiser, and compared
with the task's reference: the bicubic interpolation (aligned with the sampling grid) for
super-resolution, the smooth fill the solve starts from for inpainting. Records PSNR, SSIM,
iterations, wall time, whether the guarantee was proven and the residual monotone. ``--color``
takes the CBSD68 colour versions of the same images (the tasks' default for RGB is the opponent
colour mode; pass ``--denoisers color``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import (  # noqa: E402
    DEFAULT_DATA, QUICK_IMAGES, cbsd68_file, centre_crop, load_gray, load_rgb, make_denoiser,
)
from records import run_record  # noqa: E402

PROBLEMS = {
    "sr x2 gauss:1": ("sr", {"factor": 2, "kernel": "gauss:1", "noise_level": 0.01}),
    "sr x4 gauss:2": ("sr", {"factor": 4, "kernel": "gauss:2", "noise_level": 0.01}),
    "inpaint 50%": ("inpaint", {"observed_fraction": 0.5, "noise_level": 0}),
    "inpaint 20%": ("inpaint", {"observed_fraction": 0.2, "noise_level": 0}),
    "inpaint 50% noise 0.01": ("inpaint", {"observed_fraction": 0.5, "noise_level": 0.01}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--denoisers", nargs="+", default=["gray", "tv"])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--color", action="store_true", help="the CBSD68 colour images instead of the gray ones")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.restore import inpaint, super_resolve

    try:
        files = [cbsd68_file(args.data, name) if args.color else args.data / "denoising/bsd68" / f"{name}.png"
                 for name in QUICK_IMAGES]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"error: {missing[0]} not found (is --data the shared data folder?)", file=sys.stderr)
        return 2
    load = load_rgb if args.color else load_gray
    images = [centre_crop(load(f))[0].float() for f in files]
    denoisers = {spec: make_denoiser(spec, torch.float32)[0] for spec in args.denoisers}
    rows = []
    for problem in args.problems:
        task, settings = PROBLEMS[problem]
        run = super_resolve if task == "sr" else inpaint
        for index, image in enumerate(images):
            for spec, denoiser in denoisers.items():
                tic = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = run(image, simulate=True, seed=index, denoiser=denoiser, progress=False, **settings)
                m = r.report["metrics"]
                rows.append({"problem": problem, "image": QUICK_IMAGES[index], "denoiser": spec, "psnr": m["psnr"],
                             "ssim": m["ssim"], "reference": m["input"], "psnr_reference": m["psnr_input"],
                             "iterations": r.result.iterations, "seconds": time.perf_counter() - tic,
                             "converged": r.result.converged, "monotone": r.result.monotone,
                             "proven": r.guarantee.holds and r.guarantee.proven})
                row = rows[-1]
                print(f"{problem:<24} {row['image']} {spec:<6} {row['psnr']:6.2f} dB (ssim {row['ssim']:.3f}; "
                      f"{row['reference']} {row['psnr_reference']:.2f})  {row['iterations']:4d} it  "
                      f"{row['seconds']:5.1f} s  proven {row['proven']}  monotone {row['monotone']}", flush=True)
    summary = {}
    for problem in args.problems:
        for spec in args.denoisers:
            sel = [r for r in rows if r["problem"] == problem and r["denoiser"] == spec]
            summary[f"{problem} | {spec}"] = s = {
                "psnr": statistics.mean(r["psnr"] for r in sel), "ssim": statistics.mean(r["ssim"] for r in sel),
                "psnr_reference": statistics.mean(r["psnr_reference"] for r in sel),
                "iterations": statistics.mean(r["iterations"] for r in sel),
                "seconds": statistics.mean(r["seconds"] for r in sel), "runs": len(sel),
                "proven": sum(r["proven"] for r in sel), "monotone": sum(r["monotone"] for r in sel),
                "converged": sum(r["converged"] for r in sel)}
            print(f"{problem:<24} {spec:<6} {s['psnr']:6.2f} dB  ssim {s['ssim']:.3f}  (reference "
                  f"{s['psnr_reference']:.2f})  {s['iterations']:.1f} it  {s['seconds']:.1f} s  proven "
                  f"{s['proven']}/{s['runs']}  monotone {s['monotone']}/{s['runs']}  converged "
                  f"{s['converged']}/{s['runs']}")
    if args.json:
        atomic_write_json(args.json, run_record(__file__, argv, benchmark="sr-inpaint-quick", results=rows,
                                                summary=summary, threads=args.threads, color=args.color),
                          make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""deblur-full (DESIGN.md §5) with pnp_stable.solve: the GPU-sized deblurring protocol, resumable.

BSD68's first 10 images at full size (481x321 or 321x481), the 10 kernels (levin_1..8,
uniform_9x9, gaussian_25x25_sigma1.6), circular boundary (pnp_stable.operators.Blur), noise
2.55/255 and 7.65/255, the noise generator of image ``i`` (0-based) seeded with ``i`` as in
deblur-quick. Parameters are chosen automatically (noise level estimated from ``y``), safeguarded
Anderson acceleration by default, stop at relative residual ``--tol``. Reported per noise level:
mean PSNR, iterations, wall time, and the runs whose fixed-point residual ever increased.

200 solves: about 45 minutes on one GPU-less CPU core per noise level with the shipped ``gray``.
``--json`` is rewritten atomically after every problem and ``--resume`` skips the problems it
already holds (same settings), so a run can be stopped and continued; ``--images``/``--kernels``/
``--noise-levels`` select a subset (recorded: a subset is not the protocol).

    python bench/bench_deblur_full.py --denoiser gray --device cuda --json runs/bench/deblur_full_gray.json
    python bench/bench_deblur_full.py --denoiser gray --noise-levels 0.01 --threads 1 --json a.json --resume
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import add_solver_arguments, deblur_problems, make_denoiser, solve_problem, summarize_runs  # noqa: E402

FULL_IMAGES = tuple(f"test{i:03d}" for i in range(1, 11))
FULL_KERNELS = tuple(f"levin_{i}" for i in range(1, 9)) + ("uniform_9x9", "gaussian_25x25_sigma1.6")
FULL_NOISE_LEVELS = (2.55 / 255, 7.65 / 255)


def _settings(args: argparse.Namespace, description: str) -> dict:
    """What a resumed file must agree on."""
    return {"denoiser": description, "method": args.method, "accelerate": args.accelerate, "tol": args.tol,
            "max_iter": args.max_iter, "dtype": "float64" if args.float64 else "float32",
            "images": list(args.images), "kernels": list(args.kernels), "noise_levels": list(args.noise_levels)}


def _report(settings: dict, runs: list[dict], device: str, threads: int) -> dict:
    by_noise = {}
    for noise in settings["noise_levels"]:
        done = [r for r in runs if r["noise"] == noise]
        if done:
            by_noise[f"{noise:.6g}"] = summarize_runs(done)
    planned = len(settings["images"]) * len(settings["kernels"]) * len(settings["noise_levels"])
    protocol = (settings["images"] == list(FULL_IMAGES) and settings["kernels"] == list(FULL_KERNELS)
                and settings["noise_levels"] == list(FULL_NOISE_LEVELS))
    return {"protocol": "deblur-full" if protocol else "deblur-full (subset)", "settings": settings,
            "machine": {"device": device, "torch_threads": threads, "cpu": platform.processor() or platform.machine(),
                        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
            "complete": len(runs) == planned, "planned": planned,
            "summary": by_noise, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_solver_arguments(parser, denoiser_default="gray")
    parser.add_argument("--images", nargs="+", default=list(FULL_IMAGES))
    parser.add_argument("--kernels", nargs="+", default=list(FULL_KERNELS))
    parser.add_argument("--noise-levels", type=float, nargs="+", default=list(FULL_NOISE_LEVELS))
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", type=Path, default=None, help="results, rewritten after every problem")
    parser.add_argument("--resume", action="store_true", help="continue the --json file: skip the problems it holds")
    args = parser.parse_args(argv)
    if args.resume and args.json is None:
        print("error: --resume continues a --json file: name it", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    dtype = torch.float64 if args.float64 else torch.float32
    try:
        denoiser, description = make_denoiser(args.denoiser, dtype)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    denoiser = denoiser.to(device)
    settings = _settings(args, description)
    runs: list[dict] = []
    if args.resume and args.json.is_file():
        try:
            previous = json.loads(args.json.read_text())
        except ValueError as err:
            print(f"error: cannot read {args.json}: {err}", file=sys.stderr)
            return 2
        if previous.get("settings") != settings:
            print(f"error: {args.json} was run with other settings; drop --resume or use another file", file=sys.stderr)
            return 2
        runs = previous["runs"]
    done = {(r["noise"], r["image"], r["kernel"]) for r in runs}
    accelerate = None if args.accelerate == "none" else args.accelerate

    from tqdm import tqdm

    from pnp_stable.fileio import atomic_write_json

    planned = len(args.images) * len(args.kernels) * len(args.noise_levels)
    print(f"deblur-full: {description}; {args.method}; accelerate {accelerate}; tol {args.tol}; {device}; "
          f"{len(done)} of {planned} problems already done")
    with tqdm(total=planned, initial=len(done), unit="problem") as bar:
        for noise in args.noise_levels:
            for index, image in enumerate(args.images):
                if all((noise, image, k) in done for k in args.kernels):
                    continue
                try:  # one image at a time: 10 full-size observations, not 200
                    problems = deblur_problems(args.data, (image,), tuple(args.kernels), "denoising/bsd68", noise,
                                               dtype, crop=None, first_index=index)
                except ValueError as err:
                    print(f"error: {err}", file=sys.stderr)
                    return 2
                for p in problems:
                    if (noise, p.image, p.kernel) in done:
                        continue
                    p.x, p.y, p.operator = p.x.to(device), p.y.to(device), p.operator.to(device)
                    run, _ = solve_problem(p, denoiser, args.method, args.tol, args.max_iter, accelerate)
                    run = {"noise": noise, "shape": list(p.x.shape[-2:]), **run}
                    runs.append(run)
                    bar.set_postfix(psnr=f"{run['psnr']:.2f}", it=run["iterations"])
                    bar.update()
                    if args.json:
                        atomic_write_json(args.json, _report(settings, runs, device, torch.get_num_threads()))
    report = _report(settings, runs, device, torch.get_num_threads())
    print(json.dumps({k: report[k] for k in ("protocol", "complete", "summary")}, indent=2))
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The regularisation strength chosen by SURE against the automatic rule, on textured and flat images.

    python bench/bench_strength.py [--data ../shared/data] [--images 6] [--size 128]
        [--kernels levin_1 gaussian_25x25_sigma1.6 uniform_9x9] [--noise 0.01] [--threads 1] [--json out.json]

Problems: ``size`` x ``size`` centre crops of the first ``images`` BSDS500 *train* images (sorted,
gray), and three synthetic images with little to restore (a constant 0.5, a horizontal ramp 0.2 to
0.8, a smooth sinusoid), each blurred by each kernel (``kernels/npy``) with circular boundaries and
Gaussian noise (seed 0). Each is restored by ``pnp_stable.deblur`` with the shipped ``gray``,
PnP-ADMM and the given noise level, once with ``strength="rule"`` and once with ``strength="sure"``;
the PSNR, the factor chosen, the solves run and the wall time are recorded.
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


def problems(data: Path, images: int, size: int):
    """Yield ``(name, kind, image)``: BSDS500 train crops ("textured") and the synthetic "flat" ones."""
    files = sorted((data / "denoising/bsds500/images/train").glob("*.jpg"))[:images]
    if not files:
        raise FileNotFoundError(f"no BSDS500 train images in {data / 'denoising/bsds500/images/train'}")
    for file in files:
        img = np.asarray(Image.open(file).convert("L"), dtype=np.float32) / 255
        h, w = img.shape
        c = size // 2
        yield file.name, "textured", torch.from_numpy(img[h // 2 - c:h // 2 + c, w // 2 - c:w // 2 + c].copy())[None]
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    flat = {"constant": np.full((size, size), 0.5), "ramp": 0.2 + 0.6 * xx,
            "smooth": 0.5 + 0.3 * np.sin(2 * np.pi * xx) * np.cos(np.pi * yy)}
    for name, img in flat.items():
        yield name, "flat", torch.tensor(img, dtype=torch.float32)[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kernels", nargs="+", default=["levin_1", "gaussian_25x25_sigma1.6", "uniform_9x9"])
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.denoisers import load
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.restore import deblur

    try:
        cases = list(problems(args.data, args.images, args.size))
        kernels = {k: np.load(args.data / "kernels/npy" / f"{k}.npy") for k in args.kernels}
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    denoiser = load("gray")
    rows = []
    for name, kind, image in cases:
        for kname, kernel in kernels.items():
            row = {"image": name, "kind": kind, "kernel": kname}
            for strength in ("rule", "sure"):
                tic = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = deblur(image, kernel, noise_level=args.noise, simulate=True, denoiser=denoiser,
                               progress=False, strength=strength)
                row[strength] = {"psnr": r.psnr, "seconds": time.perf_counter() - tic,
                                 "iterations": r.result.iterations, "monotone": r.result.monotone,
                                 "guarantee": r.guarantee.holds and r.guarantee.proven}
                chosen = r.result.parameters.get("strength")
                if chosen:
                    row[strength].update(factor=chosen["chosen_factor"], solves=2 * len(chosen["tried"]),
                                         sure_ratio=min(t["sure"] for t in chosen["tried"]) / chosen["tried"][0]["sure"])
            rows.append(row)
            s = row["sure"]
            print(f"{name:<12} {kname:<24} rule {row['rule']['psnr']:6.2f} dB  sure {s['psnr']:6.2f} dB "
                  f"(x{s['factor']:g}, SURE ratio {s['sure_ratio']:.3f}, {s['solves']} solves)  "
                  f"{row['rule']['seconds']:.1f} / {s['seconds']:.1f} s", flush=True)
    summary = {}
    for kind in ("textured", "flat"):
        sel = [r for r in rows if r["kind"] == kind]
        summary[kind] = {
            "runs": len(sel), "psnr_rule": statistics.mean(r["rule"]["psnr"] for r in sel),
            "psnr_sure": statistics.mean(r["sure"]["psnr"] for r in sel),
            "worst_change": min(r["sure"]["psnr"] - r["rule"]["psnr"] for r in sel),
            "kept_rule": sum(r["sure"]["factor"] == 1.0 for r in sel),
            "time_ratio": statistics.mean(r["sure"]["seconds"] / r["rule"]["seconds"] for r in sel),
            "proven": sum(r["sure"]["guarantee"] for r in sel), "monotone": sum(r["sure"]["monotone"] for r in sel)}
        m = summary[kind]
        print(f"{kind:<9} rule {m['psnr_rule']:.2f} dB  sure {m['psnr_sure']:.2f} dB  worst change "
              f"{m['worst_change']:+.2f}  rule kept {m['kept_rule']}/{m['runs']}  time x{m['time_ratio']:.1f}  "
              f"proven {m['proven']}/{m['runs']}  monotone {m['monotone']}/{m['runs']}")
    if args.json:
        atomic_write_json(args.json, run_record(__file__, argv, benchmark="strength", results=rows, summary=summary,
                                                threads=args.threads, noise=args.noise, size=args.size), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

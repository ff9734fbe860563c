"""Operator benchmark: A, A^T and prox times for CT (256x256, 180 angles) and blur (256x256).

    python bench/bench_operators.py [--data ../shared/data] [--repeats 5] [--threads 2]
                                    [--ct-size 256] [--ct-angles 180] [--skip-ct] [--json FILE]

CT: Shepp-Logan phantom (scikit-image), deepinv's Radon transform with the exact autograd
adjoint. Reports the median and best time of A and A^T, and of prox_data (CG, float32, tol 1e-5)
at gamma = c / ||A||^2 for c in {1, 10, 100}: cold from the FBP, then along points drifting by 1%
per step, warm-started from the previous solution;
the time to compute the certified norm from scratch (an empty temporary cache) and to read it
back from the cache; and how loose the norm bounds are: the Schur test (first Collatz-Wielandt
iterate), the converged certified bound, its Rayleigh lower bound, and deepinv's own
``compute_norm`` power-method estimate.

Blur: BSD68 test001 centre-cropped to 256x256 (from ``--data``), the 25x25 Gaussian (sigma 1.6)
and Levin kernel 1; circular (FFT, closed-form prox) and reflect (CG prox) boundaries, and the
time of the reflect boundary's certified norm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def timed(fn, repeats: int) -> dict:
    """Median and best wall time of ``fn`` over ``repeats`` calls after one warm-up call. On a
    shared machine the best time is the better estimate of the cost itself."""
    fn()  # warm-up (allocations, autograd-adjoint construction, FFT plans)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "best_s": min(times)}


def prox_sequence(op, z: torch.Tensor, y: torch.Tensor, gamma: float, steps: int) -> dict:
    """A cold prox, then ``steps`` proxes at points drifting by 1% of ``z``'s spread each (as in
    successive PnP iterations), each warm-started from the previous solution."""
    op._warm_start = None
    t0 = time.perf_counter()
    op.prox_data(z, y, gamma)
    out = {"cold_s": time.perf_counter() - t0, "cold_iterations": op.last_prox_info.iterations, "method": op.last_prox_info.method}
    g = torch.Generator().manual_seed(0)
    times, iterations, converged = [], [], [op.last_prox_info.all_converged]
    for _ in range(steps):
        z = z + 0.01 * float(z.std()) * torch.randn(z.shape, generator=g, dtype=z.dtype)
        t0 = time.perf_counter()
        op.prox_data(z, y, gamma)
        times.append(time.perf_counter() - t0)
        iterations.append(op.last_prox_info.iterations)
        converged.append(op.last_prox_info.all_converged)
    out.update(warm_median_s=statistics.median(times), warm_best_s=min(times), warm_iterations=iterations, all_converged=all(converged))
    return out


def bench_ct(size: int, angles: int, repeats: int) -> dict:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.operators.norm_bounds import collatz_wielandt_norm_bound

    phantom = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    x = torch.tensor(phantom, dtype=torch.float32)[None, None]
    out: dict = {"image": f"shepp_logan {size}x{size}", "angles": angles}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PNP_STABLE_CACHE"] = cache
        t0 = time.perf_counter()
        op = ParallelBeamCT(size, angles=angles)
        out["construct_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        bound = op.norm_bound()
        out["norm_cold_s"] = time.perf_counter() - t0
        out["norm_upper"], out["norm_lower"] = bound.value, bound.lower
        out["norm_cw_iterations"] = bound.details["iterations"]
        t0 = time.perf_counter()
        again = ParallelBeamCT(size, angles=angles)
        again.norm()
        out["norm_cached_s_incl_construct"] = time.perf_counter() - t0
        del again
    os.environ.pop("PNP_STABLE_CACHE")

    schur = collatz_wielandt_norm_bound(op.A, op.A_adjoint, (1, 1, size, size), rel_gap=1.0, max_iter=1, dtype=torch.float32)
    out["schur_bound"] = schur.upper
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deepinv_estimate = float(op._tomography(x).compute_norm(torch.randn_like(x), squared=False, verbose=False))
    out["deepinv_power_estimate"] = deepinv_estimate

    y = op.simulate(x, 0.01 * float(op.A(x).max()), seed=0)
    out["A"] = timed(lambda: op.A(x), repeats)
    out["A_adjoint"] = timed(lambda: op.A_adjoint(y), repeats)
    z = op.fbp(y)
    for c in (1.0, 10.0, 100.0):
        out[f"prox_gamma_{c:g}_over_norm2"] = prox_sequence(op, z, y, c / bound.value**2, steps=3)
    return out


def load_gray_crop(data: Path, size: int) -> torch.Tensor:
    from PIL import Image

    image = np.asarray(Image.open(data / "denoising" / "bsd68" / "test001.png").convert("L"), dtype=np.float32) / 255
    h, w = image.shape
    top, left = (h - size) // 2, (w - size) // 2
    return torch.tensor(image[top : top + size, left : left + size])[None, None]


def bench_blur(data: Path, repeats: int) -> list[dict]:
    from pnp_stable.operators import Blur, kernels

    x = load_gray_crop(data, 256)
    rows = []
    for kernel_name, kernel in (
        ("gaussian_25x25_sigma1.6", kernels.gaussian(1.6, 25)),
        ("levin_1", kernels.from_file(data / "kernels" / "Levin09.mat", index=0)),
    ):
        for boundary in ("circular", "reflect"):
            op = Blur(kernel, (1, 256, 256), boundary=boundary)
            t0 = time.perf_counter()
            bound = op.norm_bound()
            norm_s = time.perf_counter() - t0
            y = op.simulate(x, 0.01, seed=0)
            row = {
                "kernel": kernel_name,
                "boundary": boundary,
                "norm": bound.value,
                "norm_lower": bound.lower,
                "norm_kind": bound.kind,
                "norm_s": norm_s,
                "norm_iterations": bound.details.get("iterations", 0),
                "A": timed(lambda: op.A(x), repeats),
                "A_adjoint": timed(lambda: op.A_adjoint(y), repeats),
                # gamma = 10: the order of the ADMM steps tuned for noise 0.01
                "prox": prox_sequence(op, y.clone(), y, 10.0, steps=5),
            }
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ct-size", type=int, default=256)
    parser.add_argument("--ct-angles", type=int, default=180)
    parser.add_argument("--skip-ct", action="store_true")
    parser.add_argument("--skip-blur", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    if not args.skip_blur and not (args.data / "denoising" / "bsd68").is_dir():
        sys.exit(f"data folder {args.data} has no denoising/bsd68 (pass --data)")
    torch.set_num_threads(args.threads)
    results: dict = {
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }
    if not args.skip_blur:
        results["blur_256"] = bench_blur(args.data, args.repeats)
        for row in results["blur_256"]:
            prox = row["prox"]
            print(
                f"blur {row['kernel']:>24s} {row['boundary']:>8s}: A {row['A']['best_s'] * 1e3:7.1f} ms  "
                f"A^T {row['A_adjoint']['best_s'] * 1e3:7.1f} ms  prox[{prox['method']}] cold {prox['cold_s'] * 1e3:7.1f} ms "
                f"({prox['cold_iterations']} it) warm {prox['warm_best_s'] * 1e3:7.1f} ms ({prox['warm_iterations']} it)  "
                f"||A|| <= {row['norm']:.6f} ({row['norm_kind']}, {row['norm_s']:.2f} s, {row['norm_iterations']} it)",
                flush=True,
            )
    if not args.skip_ct:
        ct = bench_ct(args.ct_size, args.ct_angles, args.repeats)
        results["ct"] = ct
        print(json.dumps(ct, indent=1), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

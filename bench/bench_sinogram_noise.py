"""sinogram-noise: the noise level a CT reconstruction is given when none is known, read from the
sinogram by the 2-D Haar estimate (``estimate_noise_level``, the only one before 2026-12-06), by
the detector-axis estimate (``estimate_sinogram_noise_level``), or by the latter floored at a share
of the former; and what each costs in PSNR against the true level.

    python bench/bench_sinogram_noise.py [--data ../shared/data] [--size 128] [--threads 1] [--json out.json]

Problems: the Shepp-Logan phantom and one Mayo *train* slice (neither ct-quick's nor the shared
validation one), ``--size`` square, 60 and 180 angles; sinograms by this tool's operator with
Gaussian noise of 0.1 / 0.3 / 1 / 3 % of their maximum, and by ``skimage.transform.radon``
(``circle=False``, converted by ``sinogram_from_skimage``: a model mismatch of ~0.4 %) with 0 and
0.1 % (numpy seed = problem index). Each is reconstructed by ``pnp_stable.reconstruct_ct`` (ADMM,
``--denoiser``, by default the shipped ``gray``, automatic parameters) with each level; PSNR of the result clipped to [0, 1].
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_ct_rule import ALSO_IN_VALIDATION, CT_QUICK_SLICES, DEFAULT_DATA  # noqa: E402

RELATIVE_NOISE = (0.001, 0.003, 0.01, 0.03)
MISMATCH_NOISE = (0.0, 0.001)
FLOOR_SHARES = (0.25, 0.5)


def images(data: Path, size: int) -> list[tuple[str, np.ndarray]]:
    from PIL import Image
    from skimage import data as skdata
    from skimage import transform

    def fit(image: np.ndarray) -> np.ndarray:
        return np.clip(transform.resize(image, (size, size), anti_aliasing=True), 0, 1)

    excluded = set(CT_QUICK_SLICES) | set(ALSO_IN_VALIDATION)
    train = sorted(p for p in (data / "ct/mayo_crr/train").glob("phantom_*.png") if p.stem not in excluded)
    if not train:
        raise ValueError(f"no Mayo train slices under {data}")
    path = train[len(train) // 3]
    with Image.open(path) as img:
        mayo = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    return [("shepp_logan", fit(skdata.shepp_logan_phantom())), (path.stem, fit(mayo))]


def problems(data: Path, size: int) -> list[dict]:
    from skimage.transform import radon

    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.operators.ct import sinogram_from_skimage

    out = []
    for name, image in images(data, size):
        for angles in (60, 180):
            op = ParallelBeamCT(size, angles=angles)
            ours = op.A(torch.from_numpy(image)[None, None])[0, 0].numpy()
            theta = np.linspace(0, 180, angles, endpoint=False)
            theirs = sinogram_from_skimage(radon(image, theta=theta, circle=False), detector="full")
            for model, clean, levels in (("ours", ours, RELATIVE_NOISE), ("skimage", theirs, MISMATCH_NOISE)):
                for relative in levels:
                    rng = np.random.default_rng(len(out))
                    sigma = relative * float(np.abs(clean).max())
                    sino = clean + sigma * rng.standard_normal(clean.shape)
                    out.append({"image": name, "angles": angles, "model": model, "relative": relative,
                                "sigma": sigma, "sinogram": sino.astype(np.float32), "truth": image})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pnp_stable.restore import psnr, reconstruct_ct
    from pnp_stable.solvers.noise_estimation import estimate_noise_level, estimate_sinogram_noise_level

    rows = []
    for problem in problems(args.data, args.size):
        y = torch.from_numpy(problem["sinogram"])[None, None]
        two_d, detector = estimate_noise_level(y)[0], estimate_sinogram_noise_level(y)[0]
        levels = {"true": problem["sigma"], "2d": two_d, "detector": detector,
                  **{f"max(detector, {share} 2d)": max(detector, share * two_d) for share in FLOOR_SHARES}}
        results, solved = {}, {}
        for key, level in levels.items():
            if not level > 0:
                results[key] = {"level": level, "psnr": None}
                continue
            cached = solved.get(round(level, 12))
            if cached is None:
                start = time.perf_counter()
                restoration = reconstruct_ct(y[0], noise_level=level, denoiser=args.denoiser, max_iter=args.max_iter,
                                             device="cpu", progress=False)
                x = restoration.image.clamp(0, 1)
                cached = {"psnr": psnr(x, torch.from_numpy(problem["truth"]).float()[None]),
                          "iterations": int(restoration.result.iterations), "wall": time.perf_counter() - start}
                solved[round(level, 12)] = cached
            results[key] = {"level": level, **cached}
        row = {k: problem[k] for k in ("image", "angles", "model", "relative", "sigma")} | {"results": results}
        rows.append(row)
        print(f"{row['image']:14s} {row['angles']:4d} {row['model']:8s} {100 * row['relative']:4.1f}%  " + "  ".join(
            f"{k}: {v['level'] / max(row['sigma'], 1e-12):5.2f}x {v['psnr'] if v['psnr'] is None else round(v['psnr'], 2)}"
            if row["sigma"] > 0 else f"{k}: {v['level']:.4f} {v['psnr'] if v['psnr'] is None else round(v['psnr'], 2)}"
            for k, v in results.items()), flush=True)
    if args.json:
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, {"protocol": "sinogram-noise", "size": args.size, "denoiser": args.denoiser,
                                       "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

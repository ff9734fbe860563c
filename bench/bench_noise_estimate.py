"""noise-estimate: how well ``estimate_noise_level`` reads a known noise level, and what a
super-resolution loses by estimating it, against the plain MAD of every block.

    python bench/bench_noise_estimate.py [--data ../shared/data] [--images 16] [--threads 1]
        [--superres 4] [--json out.json]

Accuracy: the first ``--images`` BSDS500 *train* images (every third, sorted; gray), whole or
blurred by ``gauss:1`` and sampled by 2 (a sharp small image, as super-resolution gets), with
Gaussian noise of 0 to 50/255 (seeded with the image index), clipped to [0, 1] and rounded to 8
bits. The clean images are JPEGs with some noise of their own, so at 0 to 2/255 the "true" level
is only a floor. Per level: the median and range of the estimates (/255), now and with the plain
MAD of every 2x2 block.

``--superres N``: the first N BSDS500 train images, centre 256 x 256 crops, blurred by
``gauss:1``, sampled by 2 and rounded to 8 bits (no noise added), super-resolved by
``pnp_stable.super_resolve`` (ADMM, automatic parameters) with the plain estimate, the estimate
now, and a given 0.5/255; PSNR against the crop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import DEFAULT_DATA  # noqa: E402

LEVELS_255 = (0, 1, 2, 5, 10, 25, 50)


def plain_mad(y: torch.Tensor) -> float:
    """Donoho's estimator on every 2x2 block (the estimator before 2026-12-06)."""
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    y = y[..., :h, :w]
    a, b, c, d = y[..., 0::2, 0::2], y[..., 0::2, 1::2], y[..., 1::2, 0::2], y[..., 1::2, 1::2]
    return float(((a - b - c + d) / 2).abs().median()) / 0.6745


def sampled(image: torch.Tensor) -> torch.Tensor:
    """``image`` (``1 x H x W``) blurred by ``gauss:1`` (reflect) and sampled by 2."""
    from pnp_stable.operators import Downsample
    from pnp_stable.operators.kernels import parse_kernel_spec

    op = Downsample(2, parse_kernel_spec("gauss:1"), tuple(image.shape), boundary="reflect")
    return op.A(image[None].to(torch.float64))[0]


def gray_image(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255)[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--superres", type=int, default=0, metavar="N")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.solvers import estimate_noise_level

    train = sorted((args.data / "denoising/bsds500/images/train").glob("*.jpg"))
    if not train:
        print(f"error: no BSDS500 train images under {args.data}", file=sys.stderr)
        return 2
    record: dict = {"date": time.strftime("%Y-%m-%d"), "images": args.images, "accuracy": {}, "superres": []}
    files = train[: 3 * args.images : 3]
    for mode in ("whole", "sampled by 2"):
        cleans = [gray_image(f) for f in files]
        if mode != "whole":
            cleans = [sampled(c) for c in cleans]
        print(f"{mode}: level /255 -> estimate now, plain MAD: median [min, max]")
        for level in LEVELS_255:
            now, plain = [], []
            for i, clean in enumerate(cleans):
                g = torch.Generator().manual_seed(i)
                y = clean + level / 255 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
                y = (torch.round(y.clamp(0, 1) * 255) / 255)[None]
                now.append(estimate_noise_level(y)[0] * 255)
                plain.append(plain_mad(y) * 255)
            row = {name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                   for name, v in (("now", now), ("plain", plain))}
            record["accuracy"].setdefault(mode, {})[str(level)] = row
            print(f"  {level:>3}: now {row['now']['median']:.2f} [{row['now']['min']:.2f}, {row['now']['max']:.2f}]"
                  f"   plain {row['plain']['median']:.2f} [{row['plain']['min']:.2f}, {row['plain']['max']:.2f}]",
                  flush=True)
    if args.superres:
        from pnp_stable.restore import psnr, super_resolve

        print("super-resolution x2 of clean 8-bit samples: estimate (/255) and PSNR (dB)")
        for path in train[: args.superres]:
            image = gray_image(path)
            h, w = image.shape[-2:]
            top, left = (h - 256) // 2, (w - 256) // 2
            crop = image[:, top:top + 256, left:left + 256].float()
            small = torch.round(sampled(crop).clamp(0, 1) * 255).float() / 255
            levels = {"plain": plain_mad(small[None]), "now": estimate_noise_level(small[None])[0], "0.5/255": 0.5 / 255}
            result = {"image": path.stem, "estimates_255": {k: v * 255 for k, v in levels.items()}, "psnr": {}}
            for name, level in levels.items():
                restored = super_resolve(small, 2, noise_level=level, progress=False)
                result["psnr"][name] = psnr(restored.image, crop)
            record["superres"].append(result)
            print(f"  {path.stem}: estimate plain {levels['plain'] * 255:.2f}, now {levels['now'] * 255:.2f};  PSNR "
                  + ", ".join(f"{k} {v:.2f}" for k, v in result["psnr"].items()), flush=True)
    if args.json:
        atomic_write_json(args.json, record, make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Foundation benchmark: time to certify a 10-block, 64-channel gradient-flow network on CPU.

    python bench/bench_certificate.py [--blocks 10] [--width 64] [--repeats 3] [--trained-like]

Reports the first (uncached) certificate time, the per-block certified norm vs the power estimate,
and the cached time. ``--trained-like`` smooths the random kernels (peaked symbols, like trained
filters) instead of i.i.d. initial weights (flat symbols, the hardest case for the bound).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from pnp_stable.layers import CertifiedSequential, Lift, Projection, conv_block


def build(blocks: int, width: int, trained_like: bool, seed: int) -> CertifiedSequential:
    torch.manual_seed(seed)
    net = CertifiedSequential(Lift(1, width), *[conv_block(width, time=1.0) for _ in range(blocks)],
                              Projection(width, 1)).eval()
    if trained_like:
        smooth = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        with torch.no_grad():
            for b in net[1:-1]:
                w = b.linear.weight
                w.copy_(0.7 * w + 0.3 * w.abs().mean() * torch.randn(w.shape[:2] + (1, 1)) * smooth * 9)
    return net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trained-like", action="store_true")
    args = p.parse_args()
    times = []
    for r in range(args.repeats):
        net = build(args.blocks, args.width, args.trained_like, seed=r)
        t0 = time.perf_counter()
        cert = net.certificate()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    net.certificate()
    cached = time.perf_counter() - t0
    ratios = []
    for b in net[1:-1]:
        est = b.linear.estimate_norm(n_iter=500, tol=1e-9)
        ratios.append(b.linear.certified_norm() / est)
    out = {
        "blocks": args.blocks, "width": args.width, "trained_like": args.trained_like,
        "first_certificate_s": times, "cached_certificate_s": cached,
        "lipschitz": cert.lipschitz, "averagedness": cert.averagedness,
        "certified_over_power_estimate": [min(ratios), max(ratios)],
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

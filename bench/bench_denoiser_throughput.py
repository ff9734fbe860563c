"""speed (DESIGN.md §5): denoiser throughput in Mpixel/s, CPU or GPU.

    python bench/bench_denoiser_throughput.py [gray | path/to/model.pt ...] [--sizes 256 512]
        [--sigma 25] [--batch 1] [--threads 1] [--device cpu] [--repeats 3] [--json out.json]

Each model is called on a seeded random gray (or RGB) batch at every size after one warm-up call
(which also builds cached certificates and cuDNN plans); the time of a call is the median of
``--repeats``, synchronised on CUDA. Mpixel/s counts image pixels (batch x H x W), not channels.
The certified models' cost is set by their sub-step counts, reported next to the time; a
time-conditioned model takes fewer at low noise (time-adapted sub-steps), and
``--full-time-substeps`` measures it with the full-time counts it was trained with instead. The
time to load each model (its certificate recomputed from the weights) is reported too, first and
again in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


def time_calls(model, x: torch.Tensor, sigma: float, repeats: int) -> float:
    """Median wall seconds of ``model(x, sigma)`` over ``repeats`` calls after one warm-up call."""
    def call() -> float:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        tic = time.perf_counter()
        model(x, sigma)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - tic

    with torch.inference_mode():
        call()
        return statistics.median(call() for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["gray"], help="shipped names or .pt files (default: gray)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], help="square image sizes")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here (atomically)")
    parser.add_argument("--full-time-substeps", action="store_true",
                        help="evaluate time-conditioned blocks with their full-time sub-step counts "
                             "(the training discretisation) instead of the time-adapted ones")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or min(args.sizes) < 1:
        print("error: --batch, --repeats and --sizes must be positive", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    from pnp_stable.denoisers import load
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.layers import certificate_of
    from pnp_stable.protocols import denoiser_channels

    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in args.models:
        try:
            tic = time.perf_counter()
            load(name)  # the certificate is recomputed from the weights
            load_first = time.perf_counter() - tic
            tic = time.perf_counter()
            model = load(name).to(args.device).eval()  # the certified bounds of the same weights are memoised
            load_again = time.perf_counter() - tic
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: load {load_first:.3f} s, again in the same process {load_again:.3f} s", flush=True)
        channels = denoiser_channels(model) or 1  # the colour model wraps a 1-channel config
        blocks = getattr(model, "flow_blocks", None) or getattr(getattr(model, "gray", None), "flow_blocks", [])
        for block in blocks:
            if hasattr(block, "adapt_substeps_to_time"):
                block.adapt_substeps_to_time = not args.full_time_substeps
        for size in args.sizes:
            x = torch.rand(args.batch, channels, size, size, generator=generator).to(args.device)
            seconds = time_calls(model, x, args.sigma / 255.0, args.repeats)
            substeps = sum(b.last_substeps for b in blocks)
            row = {"model": Path(name).stem if name.endswith(".pt") else name, "size": size, "batch": args.batch,
                   "seconds_per_call": seconds, "mpixel_per_s": args.batch * size * size / 1e6 / seconds,
                   "substeps_per_call": substeps or None, "certified": certificate_of(model) is not None,
                   "substep_rule": "full-time" if args.full_time_substeps else "time-adapted",
                   "load_seconds": load_first, "load_again_seconds": load_again}
            rows.append(row)
            print(f"{row['model']:<24} {size:>5}x{size:<5} batch {args.batch}: {seconds:8.3f} s/call  "
                  f"{row['mpixel_per_s']:.4f} Mpixel/s" + (f"  ({substeps} sub-steps)" if substeps else ""), flush=True)
    if args.json:
        atomic_write_json(args.json, run_record(
            __file__, argv, benchmark="denoiser-throughput", results=rows, sigma_255=args.sigma, repeats=args.repeats,
            device=args.device, threads=args.threads), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

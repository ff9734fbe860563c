"""Tiled denoising: peak memory, time and exactness of ``TiledDenoiser`` against one call.

    python bench/bench_tiling.py [gray | path/to/model.pt] [--sizes 1024 2048] [--tiles 0 256 512 768]
        [--sigma 25] [--threads 2] [--device cpu] [--json out.json]

Every (size, tile) pair runs in its own process, so that its peak memory is its own: on the CPU the
process's peak resident set (which includes the ~0.4-0.6 GB of torch and the model: also reported,
measured just before the call), on CUDA ``torch.cuda.max_memory_allocated``. Tile 0 is one call on
the whole image; its output is kept (in a temporary folder) and every tiled output is compared
with it (largest absolute difference: 0 or float rounding when the tiling is exact). The input is
a seeded uniform random gray image; one warm-up call on a 64 x 64 crop comes first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


def _peak_rss_gb() -> float:
    # Linux reports kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def child(model_name: str, size: int, tile: int, sigma: float, device: str, threads: int, reference: Path) -> dict:
    """One measurement, in this (fresh) process."""
    torch.set_num_threads(threads)
    from pnp_stable.denoisers import load
    from pnp_stable.denoisers.tiling import TiledDenoiser

    model = load(model_name).to(device).eval()
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    run = TiledDenoiser(model, tile) if tile else model
    row: dict = {"size": size, "tile": tile}
    with torch.inference_mode():
        model(x[..., :64, :64], sigma)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        row["rss_before_call_gb"] = _peak_rss_gb()
        tic = time.perf_counter()
        try:
            out = run(x, sigma)
            if device == "cuda":
                torch.cuda.synchronize()
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
                raise
            row["error"] = "out of memory"
            return row
        row["seconds"] = time.perf_counter() - tic
    row["peak_rss_gb"] = _peak_rss_gb()
    if device == "cuda":
        row["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    if tile:
        row["tiles"] = len(run.tiles(size, size))
        row["margin"] = run.margin
        if reference.is_file():
            row["max_abs_difference"] = float((out.cpu() - torch.load(reference)).abs().max())
    else:
        torch.save(out.cpu(), reference)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="gray", help="shipped name or .pt file (default: gray)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="square image sizes")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 256, 512, 768],
                        help="tile sizes; 0 = one call on the whole image (the reference)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here (atomically)")
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "TILE", "REFERENCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size, tile, reference = int(args.child[0]), int(args.child[1]), Path(args.child[2])
        print(json.dumps(child(args.model, size, tile, args.sigma / 255.0, args.device, args.threads, reference)))
        return 0
    if min(args.sizes) < 1 or min(args.tiles) < 0:
        print("error: --sizes must be positive and --tiles non-negative", file=sys.stderr)
        return 2
    from pnp_stable.fileio import atomic_write_json

    rows = []
    tiles = sorted(set(args.tiles))  # 0 (the reference) first
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            reference = Path(tmp) / f"untiled_{size}.pt"
            for tile in tiles:
                cmd = [sys.executable, __file__, args.model, "--sigma", str(args.sigma), "--threads", str(args.threads),
                       "--device", args.device, "--child", str(size), str(tile), str(reference)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                memory = f"peak {row['peak_cuda_gb']:.2f} GB CUDA" if "peak_cuda_gb" in row else (
                    f"peak RSS {row.get('peak_rss_gb', float('nan')):.2f} GB (before the call "
                    f"{row['rss_before_call_gb']:.2f})")
                what = "one call" if not tile else f"tiles of {tile} ({row.get('tiles')} tiles)"
                diff = f"  max |diff| {row['max_abs_difference']:.3g}" if "max_abs_difference" in row else ""
                timing = row.get("error") or f"{row['seconds']:.1f} s"
                print(f"{size}x{size} {what:<22} {timing:>10}  {memory}{diff}", flush=True)
    if args.json:
        atomic_write_json(args.json, run_record(
            __file__, argv, benchmark="tiling", model=args.model, results=rows, sigma_255=args.sigma,
            device=args.device, threads=args.threads), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

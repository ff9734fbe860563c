"""ct-memory: the peak memory of one CT slice's reconstruction, per image size and view count.

    python bench/bench_ct_memory.py [--sizes 128:180 256:360] [--max-iter 3] [--threads 1] [--json out.json]

Each configuration ``N:VIEWS`` runs in a fresh process (the peak resident set of a process only
grows): ``reconstruct_ct`` of scikit-image's Shepp-Logan phantom resized to N x N, simulated over
VIEWS parallel-beam views with 1 % noise, ADMM with the shipped ``gray``, ``--max-iter`` iterations
(the first data prox already builds both projectors: the float32 one of the CG corrections and the
float64 one of its residuals). Reported: the peak resident set (``getrusage``), that after the
imports, and the wall time (norm bounds come from the disk cache after the first run of a
configuration: run twice for times without them). What a worker of ``reconstruct_volume(workers=N)``
holds per slice.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def child(size: int, views: int, max_iter: int, threads: int) -> dict:
    import numpy as np
    import skimage.data
    import skimage.transform
    import torch

    torch.set_num_threads(threads)
    from pnp_stable.restore import reconstruct_ct

    imports = _peak_gb()
    phantom = skimage.transform.resize(skimage.data.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    started = time.perf_counter()
    result = reconstruct_ct(torch.from_numpy(phantom.astype(np.float32))[None], simulate=True, angles=views,
                            relative_noise_level=0.01, max_iter=max_iter, progress=False)
    return {"size": size, "views": views, "peak_rss_gb": _peak_gb(), "imports_rss_gb": imports,
            "seconds": time.perf_counter() - started, "iterations": result.result.iterations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["128:180", "256:360"], metavar="N:VIEWS")
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.max_iter, args.threads)))
        return 0
    rows = []
    print("| N | views | peak RSS (GB) | after imports (GB) | s |")
    print("|---|---|---|---|---|")
    for text in args.sizes:
        size, _, views = text.partition(":")
        done = subprocess.run([sys.executable, __file__, "--child", size, views, "--max-iter", str(args.max_iter),
                               "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"| {row['size']} | {row['views']} | {row['peak_rss_gb']:.2f} | {row['imports_rss_gb']:.2f} | "
              f"{row['seconds']:.1f} |", flush=True)
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from records import run_record

        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(args.json, run_record(__file__, argv, protocol="ct-memory", max_iter=args.max_iter,
                                                rows=rows), make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

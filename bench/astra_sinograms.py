"""Sinograms of the Shepp-Logan phantom by the ASTRA Toolbox, for bench/bench_astra_geometry.py.

    pip install astra-toolbox scikit-image      # in an environment of its own (astra brings CUDA libraries)
    python bench/astra_sinograms.py --sizes 64 100 128 256 --out runs/astra/sinograms.npz

Per size ``n``: ``resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)`` on ASTRA's default
volume (unit pixels centred on the origin); a parallel beam (``linear`` projector, ``ceil(sqrt(2) n)``
bins of width 1, 60 angles over [0, 180)) and a flat fan beam (``line_fanflat``: source 2n and
detector n from the centre, cells 1.5 apart, enough for the corners' circle, 120 views over
[0, 360)), both in this tool's layout (bins x angles), with the phantom and the geometry.
Only numpy, scikit-image and astra are imported.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import astra
import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 100, 128, 256])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out: dict[str, np.ndarray] = {"astra_version": np.array(astra.__version__)}
    for n in args.sizes:
        image = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
        volume = astra.create_vol_geom(n, n)
        bins = math.ceil(math.sqrt(2) * n)
        parallel = astra.create_proj_geom("parallel", 1.0, bins, np.arange(60) * np.pi / 60)
        _, sinogram = astra.create_sino(image, astra.create_projector("linear", parallel, volume))
        out[f"parallel_{n}"] = sinogram.T.astype(np.float32)
        source, detector, spacing = 2.0 * n, 1.0 * n, 1.5
        half_width = (source + detector) * math.tan(math.asin(math.sqrt(2) * n / 2 / source))
        cells = 2 * (math.ceil(half_width / spacing) + 1) + 1
        fan = astra.create_proj_geom("fanflat", spacing, cells, np.arange(120) * 2 * np.pi / 120, source, detector)
        _, sinogram = astra.create_sino(image, astra.create_projector("line_fanflat", fan, volume))
        out[f"fan_{n}"] = sinogram.T.astype(np.float32)
        out[f"fan_{n}_geometry"] = np.array([source, detector, spacing, cells])
        out[f"phantom_{n}"] = image.astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

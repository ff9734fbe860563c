"""Regenerate astra_reference.npz: sinograms of a smooth off-centre object by the ASTRA Toolbox
(https://astra-toolbox.com, the CT toolbox most reconstructions in the literature use), against
which tests/operators/test_ct.py checks this tool's geometry (rotation axis, bin order, angle
direction, fan distances). Not a dependency: run it where ``pip install astra-toolbox`` works.

    python tests/operators/data/make_astra_reference.py   # astra-toolbox 2.5.0, CPU projectors
"""

from pathlib import Path

import astra
import numpy as np


def smooth_object(n: int) -> np.ndarray:
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64) - (n - 1) / 2  # offsets from the image centre
    first = np.exp(-(((rows + 0.21 * n) / (0.12 * n)) ** 2 + ((cols - 0.17 * n) / (0.08 * n)) ** 2))
    second = 0.6 * np.exp(-(((rows - 0.15 * n) / (0.07 * n)) ** 2 + ((cols + 0.2 * n) / (0.13 * n)) ** 2))
    return first + second


def main() -> None:
    out = {}
    for n in (15, 16, 24):
        image = smooth_object(n)
        volume = astra.create_vol_geom(n, n)  # unit pixels, centred on the origin
        bins = int(np.ceil(np.sqrt(2) * n))
        angles = np.deg2rad(np.arange(12) * 15.0)
        parallel = astra.create_proj_geom("parallel", 1.0, bins, angles)
        _, sinogram = astra.create_sino(image, astra.create_projector("linear", parallel, volume))
        out[f"parallel_{n}"] = sinogram.T  # this tool's layout: bins x angles
        views = np.deg2rad(np.arange(10) * 36.0 + 7.0)
        source, detector, spacing, cells = 2.0 * n, 1.5 * n, 1.25, 2 * n + 1
        fan = astra.create_proj_geom("fanflat", spacing, cells, views, source, detector)
        _, sinogram = astra.create_sino(image, astra.create_projector("line_fanflat", fan, volume))
        out[f"fan_{n}"] = sinogram.T
        out[f"fan_{n}_geometry"] = np.array([source, detector, spacing, cells])
    out["astra_version"] = np.array(astra.__version__)
    np.savez_compressed(Path(__file__).with_name("astra_reference.npz"), **out)


if __name__ == "__main__":
    main()

"""axis-tilt: a volume from projections whose rotation axis turns on the detector, reconstructed
with the tilt ignored, told, and read off the data (``reconstruct_volume(axis_tilt=)``).

    python bench/bench_axis_tilt.py [--tilts 0.5 1.5] [--size 128] [--rows 72] [--angles 180]
        [--photons 1e4] [--offset 1.7] [--eval-rows 8] [--methods ...] [--threads 1] [--json out.json]
    python bench/bench_axis_tilt.py --readings-only [--tilts ...]

The object: the 3-D Shepp-Logan phantom (the modified intensities; ellipsoids turned about the axis
only), ``--size`` pixels across (its unit length = ``size / 2`` pixels) and ``--rows`` slices over
z in [-0.35, 0.35], so that its small ellipsoids span one to five slices. Its projections are
computed analytically (each ellipsoid's slice is an ellipse, whose line integrals are closed-form),
for a detector whose columns make ``--tilt`` degrees with the axis's image, the axis crossing the
middle row ``--offset`` bins off the detector's centre: detector pixel (column c, row r) of view
theta reads the slice at ``h = (c - a) sin(tilt) + (r - r0) cos(tilt)`` rows from the middle, at
``t = (c - a) cos(tilt) - (r - r0) sin(tilt)`` bins from the axis (``a`` the axis's bin, ``r0`` the
middle row). Post-log data of ``--photons`` incident photons per bin (Poisson counts; numpy seed 0),
the attenuation scaled so that the longest ray is e^-3.

Methods (ADMM, ``gray``, automatic parameters, each slice's own scale): ``untilted``, the same
object scanned with the axis along the columns, axis given (the ideal, once for all tilts);
``ignored``, the tilted scan with ``detector_offset="auto"`` and no tilt (what the tool did before);
``told``, the true tilt and offset given; ``auto``, both read off the data; ``told-nearest``, as
``told`` but each column read from the detector row nearest the slice's line (no interpolation:
every bin one reading), the alternative that was measured and dropped. PSNR (peak 1) of each
slice divided by the attenuation, clipped to [0, 1], against the phantom's slice as a detector row
sees it (4 x 4 x 4 samples per voxel), over ``--eval-rows`` rows spread over those every method
reconstructs and the object crosses.

``--readings-only``: no reconstruction; for each tilt, the tilt read off the scan, noise-free and
noisy, by ``estimate_axis_tilt`` (whole projections) and by the line through the rows' own axes
(``estimate_detector_offset`` on each row, ``fit_axis_line``), the reading that was not kept.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402

METHODS = ("untilted", "ignored", "told", "auto", "told-nearest")
# the modified 3-D Shepp-Logan phantom: intensity, semi-axes a b c, centre x0 y0 z0, turn about z (degrees)
SHEPP_LOGAN_3D = (
    (1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0),
    (0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0),
)
# the phantom's unit length, in pixels per half image (isotropic voxels: the same along the axis)
OBJECT_SCALE = 0.6
# the object mounted off the axis (a sample's usual lot): its centre of mass swings about it
X_SHIFT = 0.25
# points per detector pixel (and per voxel of the true slices) along each side
SUBPIXELS = 4


def _z_of(h: np.ndarray, size: int) -> np.ndarray:
    """The phantom's z at ``h`` slices (pixels) from the middle row."""
    return np.asarray(h) / (OBJECT_SCALE * size / 2.0)


def projections(size: int, rows: int, angles_deg: np.ndarray, bins: int, tilt_deg: float, offset: float,
                subpixels: int = SUBPIXELS) -> np.ndarray:
    """Line integrals (views x rows x bins) of the phantom on the tilted detector (the module
    docstring), each detector pixel the mean over ``subpixels`` x ``subpixels`` points of its area, as
    a detector integrates (point samples bias a tilt read off the centres of mass by 10 to 20 %: a
    tilted object's sharp caps alias between the rows differently in every view). The operators'
    convention, checked against ``ParallelBeamCT.A`` in ``main``: bin j lies at
    ``t = j - (bins - 1)/2 + offset`` from the axis, and a point (x, y) (pixels from the image centre,
    y down the rows) projects at ``t = x cos(theta) - y sin(theta)``."""
    phi = math.radians(tilt_deg)
    axis_bin = (bins - 1) / 2.0 - offset
    within = (np.arange(subpixels) + 0.5) / subpixels - 0.5
    total = 0.0
    for dc in within:
        for dr in within:
            c = np.arange(bins, dtype=np.float64)[None, :] + dc - axis_bin
            r = np.arange(rows, dtype=np.float64)[:, None] + dr - (rows - 1) / 2.0
            total = total + _project(c * math.sin(phi) + r * math.cos(phi), c * math.cos(phi) - r * math.sin(phi),
                                     size, angles_deg)
    return total / subpixels ** 2


def _project(h: np.ndarray, t: np.ndarray, size: int, angles_deg: np.ndarray) -> np.ndarray:
    """The phantom's line integrals (views x shape of ``h``) at heights ``h`` (rows from the middle) and
    detector positions ``t`` (bins from the axis)."""
    scale = OBJECT_SCALE * size / 2.0
    z = _z_of(h, size)
    beta = -np.deg2rad(np.asarray(angles_deg, dtype=np.float64))  # t = x cos(beta) + y sin(beta)
    out = np.zeros((len(beta), *np.shape(h)))
    for rho, a, b, cz, x0, y0, z0, turn in SHEPP_LOGAN_3D:
        inside = np.abs(z - z0) < cz
        shrink = np.sqrt(np.clip(1.0 - ((z - z0) / cz) ** 2, 0.0, None)) * inside
        a_h, b_h = a * scale * shrink, b * scale * shrink
        for v, angle in enumerate(beta):
            along = angle - math.radians(turn)
            s2 = (a_h * math.cos(along)) ** 2 + (b_h * math.sin(along)) ** 2
            tau = t - scale * ((x0 + X_SHIFT) * math.cos(angle) + y0 * math.sin(angle))
            chord = np.where(inside & (tau ** 2 < s2), np.sqrt(np.clip(s2 - tau ** 2, 0.0, None)), 0.0)
            out[v] += np.where(s2 > 0, 2.0 * rho * a_h * b_h * chord / np.where(s2 > 0, s2, 1.0), 0.0)
    return out


def phantom_slice(size: int, h: float, samples: int = SUBPIXELS) -> np.ndarray:
    """The phantom's slice ``h`` rows from the middle as a detector row sees it: each pixel the mean
    over ``samples``^3 points of its voxel (a row's height along the axis, a pixel across)."""
    scale = OBJECT_SCALE * size / 2.0
    fine = (np.arange(size * samples) + 0.5) / samples - size / 2.0  # pixel centres at k + 0.5 - size/2
    y, x = np.meshgrid(fine, fine, indexing="ij")
    image = np.zeros_like(x)
    for dz in (np.arange(samples) + 0.5) / samples - 0.5:
        z = float(_z_of(h + dz, size))
        for rho, a, b, cz, x0, y0, z0, turn in SHEPP_LOGAN_3D:
            if abs(z - z0) >= cz:
                continue
            shrink = math.sqrt(1.0 - ((z - z0) / cz) ** 2)
            cos_t, sin_t = math.cos(math.radians(turn)), math.sin(math.radians(turn))
            dx, dy = x - scale * (x0 + X_SHIFT), y - scale * y0
            u, w = dx * cos_t + dy * sin_t, -dx * sin_t + dy * cos_t
            image += rho * ((u / (a * scale * shrink)) ** 2 + (w / (b * scale * shrink)) ** 2 <= 1.0)
    return image.reshape(size, samples, size, samples).mean(axis=(1, 3)) / samples


@contextlib.contextmanager
def _nearest_rows(active: bool):
    """While active, slices read each column from the detector row nearest their line."""
    from pnp_stable.volume import TiltedAxis

    original = TiltedAxis.sources
    if active:
        def nearest(axis: TiltedAxis, row: int):
            rows = np.rint(axis.exact_rows(row)).astype(np.int64)[None]
            return rows, np.ones(rows.shape)

        TiltedAxis.sources = nearest
    try:
        yield
    finally:
        TiltedAxis.sources = original


def _readings(args, argv: list[str] | None, angles: np.ndarray, bins: int, scan) -> int:
    """The tilt read off each scan: whole projections' centres of mass, the registration of opposite
    views (where the scan has them), and the rows one by one."""
    from pnp_stable.operators import (estimate_axis_from_opposite_views, estimate_axis_tilt, estimate_detector_offset,
                                      fit_axis_line, opposite_view_pairs)
    from pnp_stable.operators.axis_registration import MAX_PAIRS
    from pnp_stable.volume import row_sinogram

    reference = (args.rows - 1) / 2.0
    true_axis = (bins - 1) / 2.0 - args.offset
    pairs = opposite_view_pairs(angles, at_most=MAX_PAIRS)
    print("| tilt (deg) | data | whole projections: tilt | axis error (bins) | opposite views: tilt | axis error "
          "(bins) | seconds | rows one by one: tilt | rows read |")
    print("|---|---|---|---|---|---|---|---|---|")
    records = []
    for tilt in args.tilts:
        clean = projections(args.size, args.rows, angles, bins, tilt, args.offset, args.subpixels)
        for label, data in (("noise-free", clean), (f"{args.photons:g} photons", scan(tilt, clean)[0])):
            record = {"tilt_deg": tilt, "data": label}
            try:
                whole = estimate_axis_tilt(((r, row_sinogram(data, r)) for r in range(args.rows)), angles, reference)
                record["whole"] = whole._asdict()
                whole_text = (f"{whole.tilt_deg:+.3f} (+- {whole.tilt_error_deg:.3f}) | "
                              f"{whole.axis_bin - true_axis:+.3f}")
            except ValueError as error:
                record["whole"] = str(error)
                whole_text = "refused | -"
            opposite_text = "- | - | -"
            if pairs:
                started = time.perf_counter()
                opposite = estimate_axis_from_opposite_views([(data[i], data[j]) for i, j in pairs], reference)
                seconds = time.perf_counter() - started
                record["opposite"] = {**opposite._asdict(), "seconds": seconds}
                opposite_text = (f"{opposite.tilt_deg:+.3f} (+- {opposite.tilt_error_deg:.3f}) | "
                                 f"{opposite.axis_bin - true_axis:+.3f} | {seconds:.1f}")
            found = {}
            for r in range(args.rows):
                try:
                    found[r] = estimate_detector_offset(row_sinogram(data, r), angles).axis_bin
                except ValueError:  # a row without the object
                    pass
            line = fit_axis_line(list(found), list(found.values()), reference)
            by_rows = math.degrees(math.atan(line.slope))
            print(f"| {tilt:g} | {label} | {whole_text} | {opposite_text} | {by_rows:+.3f} | {line.rows_used} |",
                  flush=True)
            records.append({**record, "rows_fit": line._asdict(), "rows_tilt_deg": by_rows})
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run_record(__file__, argv, records=records), indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tilts", type=float, nargs="+", default=[0.5, 1.5])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rows", type=int, default=72)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--photons", type=float, default=1e4)
    parser.add_argument("--offset", type=float, default=1.7)
    parser.add_argument("--turn", type=float, default=180.0, choices=(180.0, 360.0),
                        help="the views over [0, TURN) degrees (360: a full turn, whose views pair half a turn apart)")
    parser.add_argument("--eval-rows", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--denoiser", default="gray", help="NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--readings-only", action="store_true")
    parser.add_argument("--subpixels", type=int, default=SUBPIXELS,
                        help="points per detector pixel along each side (1: point samples)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pnp_stable.denoisers import load
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import psnr
    from pnp_stable.volume import TiltedAxis, reconstruct_volume

    view_angles = np.arange(args.angles) * (args.turn / args.angles)
    op = ParallelBeamCT(args.size, angles=view_angles, detector_offset=args.offset)
    angles, bins = op.angles_deg, op.n_detectors
    # the analytic projector agrees with the operator on a slice (else the conventions differ)
    k = args.rows // 2
    numeric = op.A(torch.from_numpy(phantom_slice(args.size, k - (args.rows - 1) / 2.0))[None, None])
    analytic = projections(args.size, args.rows, angles, bins, 0.0, args.offset, args.subpixels)[:, k].T
    mismatch = float(np.abs(numeric[0, 0].numpy() - analytic).mean() / np.abs(analytic).mean())
    print(f"analytic against the operator's projections of slice {k}: {mismatch:.3%} mean relative difference")
    if mismatch > 0.05:
        raise SystemExit("the analytic projector does not match the operator's conventions")
    rng_seed = 0

    def scan(tilt: float, clean: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        if clean is None:
            clean = projections(args.size, args.rows, angles, bins, tilt, args.offset, args.subpixels)
        mu = 3.0 / float(clean.max())
        counts = np.random.default_rng(rng_seed).poisson(args.photons * np.exp(-mu * clean))
        return -np.log(np.maximum(counts, 1) / args.photons), mu

    if args.readings_only:
        return _readings(args, argv, angles, bins, scan)
    denoiser = load(args.denoiser)

    records, table = [], []
    print("| tilt (deg) | method | mean PSNR | min | max | tilt read | offset read | monotone | s per slice |")
    print("|---|---|---|---|---|---|---|---|---|")
    common = dict(photons=args.photons, denoiser=denoiser, max_iter=300, progress=False, angles=list(angles))
    truths: dict[int, np.ndarray] = {}
    for tilt in args.tilts:
        # the rows every method reconstructs: those whose slices stay on the detector at this tilt
        axis = TiltedAxis(tilt, (bins - 1) / 2.0 - args.offset, (args.rows - 1) / 2.0, args.rows, bins)
        # ... and cut the object (its outer ellipsoid reaches z = +-0.81)
        reach = 0.81 * OBJECT_SCALE * args.size / 2.0 - 1.0
        inside = [r for r in range(args.rows) if axis.inside(r) and abs(r - (args.rows - 1) / 2.0) < reach]
        chosen = sorted({inside[i] for i in np.linspace(0, len(inside) - 1, args.eval_rows).round().astype(int)})
        stack, mu = scan(tilt)
        for method in args.methods:
            if method == "untilted" and tilt != args.tilts[0]:
                continue
            started = time.perf_counter()
            data = scan(0.0)[0] if method == "untilted" else stack
            extra = {"untilted": dict(detector_offset=args.offset), "ignored": dict(detector_offset="auto"),
                     "told": dict(detector_offset=args.offset, axis_tilt=tilt),
                     "told-nearest": dict(detector_offset=args.offset, axis_tilt=tilt),
                     "auto": dict(detector_offset="auto", axis_tilt="auto")}[method]
            with _nearest_rows(method == "told-nearest"):
                result = reconstruct_volume(data, rows=chosen, **extra, **common)
            seconds = (time.perf_counter() - started) / len(chosen)
            scores = []
            for i, row in enumerate(result.rows):
                if row not in truths:
                    truths[row] = phantom_slice(args.size, row - (args.rows - 1) / 2.0)
                estimate = (result.volume[i] / mu).clamp(0, 1)[None, None]
                scores.append(psnr(estimate, torch.from_numpy(truths[row]).float()[None, None]))
            monotone = sum(r["solver"]["monotone"] for r in result.reports)
            tilt_read = result.shared.get("axis_tilt")
            offset_read = result.shared.get("detector_offset", args.offset)
            label = "-" if method == "untilted" else f"{tilt:g}"
            row_text = (f"| {label} | {method} | {np.mean(scores):.2f} | {min(scores):.2f} | {max(scores):.2f} | "
                        f"{'-' if tilt_read is None else f'{tilt_read:+.3f}'} | {offset_read:+.3f} | "
                        f"{monotone}/{len(result.rows)} | {seconds:.1f} |")
            print(row_text, flush=True)
            table.append(row_text)
            records.append({"tilt_deg": tilt, "method": method, "rows": result.rows,
                            "psnr": [float(s) for s in scores], "mean_psnr": float(np.mean(scores)),
                            "shared": result.shared, "notes": result.notes, "monotone": monotone,
                            "guaranteed": sum(r["solver"]["guarantee"]["holds"] for r in result.reports),
                            "iterations": [r["solver"]["iterations"] for r in result.reports],
                            "seconds_per_slice": seconds})
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run_record(__file__, argv, records=records, table=table), indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

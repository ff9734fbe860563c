"""A volume from a stack of parallel-beam projections, slice by slice.

A parallel-beam scan with a 2-D detector records one projection per angle, ``n_angles x n_rows x
n_cols``: the detector's rows lie along the rotation axis, so row ``r`` of every projection is the
sinogram of slice ``r`` of the object (``n_cols`` bins by ``n_angles`` views), and the volume is
``n_rows`` independent 2-D reconstructions. This is the synchrotron workflow: projections,
flat-field frames and dark frames, reconstructed slice by slice.

What the slices share is measured once, from the whole stack rather than from one noisy row, so
that any rows reconstructed (in one run or in several) get the same values: the detector's gain
(photon transfer over every bin of two or more flat frames, or the median of the readings off the
noise of ``SHARED_SAMPLE_ROWS`` rows spread evenly over the stack), a post-log stack's photon count
(likewise) and the rotation axis (from those rows' mean sinogram, whose noise is one row's over the
square root of their count). Each slice is then :func:`~pnp_stable.restore.reconstruct_ct` with
those values and its own scale, noise level, parameters and convergence verdict.

A cone beam (a fan beam with a 2-D detector) does not separate into slices: refused here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["TiltedAxis", "VolumeReconstruction", "reconstruct_volume", "row_sinogram", "selected_rows"]

# rows sampled (evenly over the stack) for what the slices share: enough for the mean sinogram's noise
# to fall 4x below a row's, few enough to cost a few flat-field corrections
SHARED_SAMPLE_ROWS = 16
# the largest axis tilt taken (degrees): beyond it the slices' pixels grow by more than 0.4 % (1 / cos), and
# the end rows whose slices leave the detector number more than a twelfth of its columns (tan x columns)
MAX_AXIS_TILT_DEG = 5.0
# a slice's line within this many rows of the detector's first or last row still counts as on it
# (a tilt of a millionth of a degree must not cost the end rows)
EDGE_TOLERANCE_ROWS = 1e-6
# with the tilt read and the offset given, a note where the projections put the axis farther than this (bins)
AXIS_DISAGREEMENT_BINS = 0.1
VOLUME_STATE_FORMAT = "pnp-stable volume state 1"
# a volume checkpoint FILE's files: FILE, its slices, their reports, the slice in progress (one process);
# with workers, FILE.slice.ROW for each slice in progress (is_checkpoint_file)
CHECKPOINT_SUFFIXES = ("", ".slices.npy", ".reports.jsonl", ".slice")


@dataclass
class VolumeReconstruction:
    """``volume``: the reconstructed slices, ``len(rows) x N x N`` (float32, on the data's scale, clipped
    below at 0), slice ``i`` from detector row ``rows[i]``; ``reports``: each slice's
    :class:`~pnp_stable.restore.Restoration` report (its ``"row"``, its notes under ``"notes"``, without
    the per-iteration history); ``shared``:
    the values measured once for every slice (``gain`` and its source, ``photons``, ``detector_offset``
    and its fit, ``data_scale`` with ``shared_scale``; with a tilted axis ``axis_tilt``,
    ``axis_reference_row``, the reading's ``axis_fit`` and the end rows left out, ``rows_left_out``);
    ``stopped``: ``"interrupted"`` when a stop
    (Ctrl-C) ended the run early, ``"non-finite"`` when a slice's iteration diverged (its report is the
    last; it is not kept), else None (``rows`` lists the slices finished)."""

    volume: torch.Tensor
    rows: list[int]
    reports: list[dict[str, Any]]
    shared: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def all_guaranteed(self) -> bool:
        """Whether every slice's solve was covered by the convergence theorem and its residual stayed
        monotone (each report's ``guarantee``)."""
        return bool(self.reports) and all(r["solver"]["guarantee"]["holds"] and r["solver"]["monotone"]
                                          for r in self.reports)


def selected_rows(rows: int | Sequence[int] | slice | range | None, n_rows: int) -> list[int]:
    """The detector rows to reconstruct, in increasing order: all (None), one, a slice or a
    sequence; ValueError for a row outside ``[0, n_rows)`` or an empty selection."""
    if rows is None:
        chosen = list(range(n_rows))
    elif isinstance(rows, slice):
        for end in (rows.start, rows.stop):
            if end is not None and not 0 <= end <= n_rows:
                raise ValueError(f"row range {rows.start}:{rows.stop} runs outside the projections' {n_rows} "
                                 f"detector rows (0 to {n_rows - 1})")
        chosen = list(range(n_rows))[rows]
    elif isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        chosen = [int(rows)]
    else:
        chosen = [int(r) for r in rows]
    if not chosen:
        raise ValueError(f"no detector rows selected (the projections have {n_rows})")
    outside = [r for r in chosen if not 0 <= r < n_rows]
    if outside:
        raise ValueError(f"row {outside[0]} lies outside the projections' {n_rows} detector rows (0 to {n_rows - 1})")
    return sorted(set(chosen))


def _checked_axis_tilt(axis_tilt: Any) -> float | str | None:
    if axis_tilt is None or isinstance(axis_tilt, str) and axis_tilt == "auto":
        return axis_tilt
    if isinstance(axis_tilt, (bool, str)) or not isinstance(axis_tilt, (int, float, np.number)):
        raise ValueError(f"axis_tilt must be a number of degrees or 'auto', got {axis_tilt!r}")
    if not math.isfinite(axis_tilt) or abs(axis_tilt) > MAX_AXIS_TILT_DEG:
        raise ValueError(f"axis_tilt must be a finite number of degrees within +-{MAX_AXIS_TILT_DEG:g}, got "
                         f"{axis_tilt}")
    return float(axis_tilt)


def _stack(values: Any, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got {array.dtype}")
    return array


def _frames_of(values: Any, name: str, shape: tuple[int, int]) -> np.ndarray | float | None:
    """A flat or dark field as given for a stack: None, a number, one frame ``n_rows x n_cols`` or
    frames ``k x n_rows x n_cols``, as ``k x n_rows x n_cols`` (a number stays one)."""
    if values is None:
        return None
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        return float(values)
    if isinstance(values, (bool, str)):
        raise ValueError(f"{name} must be a number or an array of detector readings, got {type(values).__name__}")
    array = _stack(values, name)
    if array.ndim == 0:
        return float(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != shape:
        raise ValueError(f"{name} must be one frame of the detector ({shape[0]} x {shape[1]}) or frames "
                         f"k x {shape[0]} x {shape[1]}, got shape {tuple(array.shape)}")
    return array


def row_sinogram(projections: np.ndarray, row: int | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Detector row ``row`` of a projection stack (``n_angles x n_rows x n_cols``) as a sinogram,
    ``n_cols`` bins by ``n_angles`` views (float64); ``row`` a pair ``(rows, weights)``, each
    ``k x n_cols``, reads each column as the weighted sum of its rows (a slice of a tilted axis:
    :meth:`TiltedAxis.sources`)."""
    return np.ascontiguousarray(np.asarray(_across_rows(projections, row), dtype=np.float64).T)


def _across_rows(frames: np.ndarray, row: int | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    if isinstance(row, tuple):  # per column, rows and their weights (k x n_cols each)
        rows, weights = row
        columns = np.arange(frames.shape[2])
        return sum(w * np.asarray(frames[:, r, columns], dtype=np.float64) for r, w in zip(rows, weights))
    return frames[:, row, :]


def _row_frames(frames: np.ndarray | float | None, row: int | np.ndarray) -> np.ndarray | float | None:
    """A row's flat or dark field as :func:`~pnp_stable.transmission.flat_field_correction` takes it:
    frames side by side, ``n_cols x k`` (``row``: as :func:`row_sinogram`'s)."""
    if frames is None or isinstance(frames, float):
        return frames
    return np.asarray(_across_rows(frames, row), dtype=np.float64).T


@dataclass(frozen=True)
class TiltedAxis:
    """A rotation axis whose image on the detector turns ``tilt_deg`` degrees from the columns
    (positive: its bin grows with the row), crossing row ``reference_row`` (the detector's middle) at
    bin ``axis_bin``; the tilt lies in the detector's plane (a tilt towards the beam is not modelled).

    The object's slices are then the planes perpendicular to the axis, one row apart along it, slice
    ``r`` crossing the axis ``r - reference_row`` rows from the reference; each projects onto a line
    of the detector at ``tilt_deg`` from its rows. A slice's sinogram reads each column on that line,
    between the two detector rows it crosses, linearly (:meth:`sources`): as rotating the projections
    by the tilt would, along the rows only. Reading the nearest row instead, every bin one reading,
    measured 4.6 and 4.7 dB worse than this at 1.5 and 3 degrees, and at 1.5 worse than ignoring the
    tilt (a staircase half a row high along every slice; docs/benchmarks.md, "A tilted rotation
    axis"). A bin between two rows
    averages two readings: its noise is ``sqrt((1 - w)^2 + w^2)`` of theirs (down to 0.71 midway),
    which the statistical weights, read off the averaged counts, do not know. Along the line the bins
    lie ``1 / cos(tilt)`` apart, read as 1: the slice comes out on pixels that much larger (1.00015 at
    1 degree) and its attenuation per pixel scaled alike, a uniform scale of every slice."""

    tilt_deg: float
    axis_bin: float
    reference_row: float
    n_rows: int
    n_cols: int

    def exact_rows(self, row: int) -> np.ndarray:
        """Per detector column, where slice ``row``'s line crosses it (a fractional row; may lie off
        the detector: see :meth:`inside`)."""
        phi = math.radians(self.tilt_deg)
        columns = np.arange(self.n_cols, dtype=np.float64)
        return (self.reference_row + (row - self.reference_row) / math.cos(phi)
                - (columns - self.axis_bin) * math.tan(phi))

    def inside(self, row: int) -> bool:
        """Whether slice ``row``'s line stays on the detector (its end rows do not, at a tilt)."""
        exact = self.exact_rows(row)
        return bool(exact.min() >= -EDGE_TOLERANCE_ROWS and exact.max() <= self.n_rows - 1 + EDGE_TOLERANCE_ROWS)

    def axis_bin_of(self, row: int) -> float:
        """Where the axis lies in slice ``row``'s sinogram (bin)."""
        return self.axis_bin + (row - self.reference_row) * math.sin(math.radians(self.tilt_deg))

    def detector_offset(self, row: int) -> float:
        """Slice ``row``'s ``detector_offset`` (to a thousandth of a bin, as the estimates are kept)."""
        return round((self.n_cols - 1) / 2.0 - self.axis_bin_of(row), 3)

    def sources(self, row: int) -> int | tuple[np.ndarray, np.ndarray]:
        """What :func:`row_sinogram` reads for slice ``row``: the row itself without a tilt, else per
        column the two rows its line crosses (``2 x n_cols``) and their weights."""
        if self.tilt_deg == 0:
            return row
        if not self.inside(row):
            raise ValueError(f"slice {row}'s line leaves the detector at an axis tilt of {self.tilt_deg:+.3g} degrees")
        exact = np.clip(self.exact_rows(row), 0, self.n_rows - 1)
        lower = np.floor(exact).astype(np.int64)
        upper = np.minimum(lower + 1, self.n_rows - 1)
        weight = exact - lower
        return np.stack([lower, upper]), np.stack([1.0 - weight, weight])


def _sample(rows: list[int]) -> list[int]:
    if len(rows) <= SHARED_SAMPLE_ROWS:
        return rows
    picks = np.linspace(0, len(rows) - 1, SHARED_SAMPLE_ROWS).round().astype(int)
    return [rows[i] for i in sorted(set(picks.tolist()))]


def reconstruct_volume(
    projections: Any,
    *,
    rows: int | Sequence[int] | slice | range | None = None,
    flat: Any = None,
    dark: Any = None,
    gain: float | None = None,
    photons: float | str | None = None,
    angles: int | Sequence[float] | None = None,
    detector_offset: float | str | None = None,
    axis_tilt: float | str | None = None,
    denoiser: str | torch.nn.Module | None = None,
    device: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    shared_scale: bool = False,
    workers: int | str = 1,
    **options: Any,
) -> VolumeReconstruction:
    """Reconstruct the slices ``rows`` (default: all) of a parallel-beam projection stack
    ``projections`` (``n_angles x n_rows x n_cols``, one projection per angle), each by
    :func:`~pnp_stable.restore.reconstruct_ct` from its row of every projection.

    ``flat``/``dark``: the stack is raw detector readings and these its flat and dark fields (a
    number, one frame ``n_rows x n_cols``, or frames ``k x n_rows x n_cols``), as ``reconstruct_ct``
    takes a sinogram's; without ``flat`` the stack holds post-log line integrals (``photons``: their
    incident count, or ``"auto"``). ``gain`` (units per photon), ``photons="auto"``,
    ``detector_offset="auto"`` and the data scale are measured once for every slice, from the whole
    stack (the module docstring): the gain by :func:`~pnp_stable.transmission.estimate_gain` over all
    the flat frames' bins (two or more frames) or as the median of the readings off the sampled rows'
    noise, the photon count likewise, the axis by
    :func:`~pnp_stable.operators.estimate_detector_offset` on the sampled rows' mean sinogram.
    ``axis_tilt``: the rotation axis turns on the detector by this many degrees from its columns
    (positive: its bin grows with the row; at most ``MAX_AXIS_TILT_DEG``), or ``"auto"`` to read the
    tilt off the data; slice ``r`` is then the plane perpendicular to the axis ``r - (n_rows - 1)/2``
    rows from the detector's middle row, read along its line on the detector (:class:`TiltedAxis`),
    ``detector_offset`` the axis's offset at the middle row, each slice's own from the tilt.
    ``"auto"`` reads the tilt (and with ``detector_offset="auto"`` the axis) off views half a turn
    apart where the scan has them (a full turn of an even number of views, or a last view at 180 degrees:
    :func:`~pnp_stable.operators.estimate_axis_from_opposite_views`, any object, one longer than the
    detector too), else off the centres of mass of whole projections
    (:func:`~pnp_stable.operators.estimate_axis_tilt`: the object whole on the detector, off the
    axis); a tilt given with ``detector_offset="auto"`` puts the axis on the line of
    that slope through the axes of the sampled slices (``_read_tilted_axis``). The end rows whose lines
    leave the detector are left out when ``rows`` is None, refused when asked for.
    ``angles``: as ``reconstruct_ct``'s (default: ``n_angles`` uniform over [0, 180)); ``options``:
    its other arguments (``method``, ``max_iter``, ``tol``, ``image_size``, ``detector``, ...), the
    same for every slice. The denoiser is loaded once.

    ``workers``: the number of processes solving slices at once (``"auto"``: one per usable core on the
    CPU, one on a GPU), each with its share of the cores' torch threads; on the CPU only. One process
    leaves most cores idle: the Radon transform and its adjoint, most of a CT solve, run on one core for
    one slice (:mod:`pnp_stable.worker_pool`). Every slice is the same solve whatever the number of
    workers (the same values to float rounding, which the number of threads can change); each worker
    holds its own copy of the denoiser and of the CT operator's sampling grids, and is spawned: a script
    calling this with workers must do so under ``if __name__ == "__main__":``.

    ``checkpoint``: the finished slices are kept in four files (``_VolumeState``: the fingerprint of
    the data and options, ``<checkpoint>.slices.npy`` memory-mapped, ``<checkpoint>.reports.jsonl``,
    and ``<checkpoint>.slice``, the solver state of the slice in progress, ``<checkpoint>.slice.<row>``
    for each slice in progress with workers); ``resume=True`` continues from them after a stop, with any
    number of workers, refusing a state written for other data or options. A
    stop (Ctrl-C) returns the slices finished with ``stopped="interrupted"`` (with workers, the slices in
    progress stop too, their solver states saved); a slice that diverges
    ends the run with ``stopped="non-finite"``. A row with NaN or infinite values is refused before any
    work, and a slice ``reconstruct_ct`` refuses raises its ValueError prefixed with ``row R:``.
    Each slice is brought to the denoiser's [0, 1] by its own FBP's scale, as ``reconstruct_ct`` does;
    ``shared_scale=True`` divides every slice by the volume's instead (the 99.9th percentile of the
    sampled rows' FBPs), which measured 0.01 to 0.04 dB lower (docs/benchmarks.md, "A volume from
    projections").

    Guarantee: each slice carries its own convergence verdict and monotone-residual check
    (``reports[i]["solver"]``; :attr:`VolumeReconstruction.all_guaranteed`). Assumes a parallel
    beam whose rotation axis lies in a plane parallel to the detector, along its columns or at
    ``axis_tilt`` from them (a tilt towards the beam is not modelled), and a detector whose rows are
    the object's slices (``geometry="fan"``, a cone beam, is refused).
    """
    from pnp_stable.restore import _check_strength, _size_from_detectors, load_denoiser, resolve_device

    if options.get("geometry", "parallel") != "parallel":
        raise ValueError("a stack of fan-beam projections is a cone beam, which does not separate into slices: "
                         "reconstruct_volume takes parallel-beam projections")
    for name in ("simulate", "data_scale"):
        if name in options:
            raise ValueError(f"{name} is not an option of reconstruct_volume's slices")
    stack = _stack(projections, "projections")
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise ValueError(f"projections must be a stack n_angles x n_rows x n_cols of two or more angles, got shape "
                         f"{tuple(stack.shape)}")
    n_angles, n_rows, n_cols = stack.shape
    chosen = selected_rows(rows, n_rows)
    axis_tilt = _checked_axis_tilt(axis_tilt)
    dev = resolve_device(device)
    workers = 1 if workers == "auto" and dev.type != "cpu" else _checked_workers(workers)
    if workers > 1 and dev.type != "cpu":
        raise ValueError(f"workers (--workers) solve slices in processes on the CPU, but the device is {dev.type}: "
                         "choose the CPU (device='cpu', --device cpu) or one worker, which keeps the GPU busy")
    # before any work: what the slices would refuse one by one, and the checkpoint's files
    size = options.get("image_size") or _size_from_detectors(n_cols, options.get("detector", "full"))
    slice_state = None if checkpoint is None else Path(f"{os.fspath(checkpoint)}.slice")
    _check_strength(options.get("strength", "rule"), options.get("sigma_den"), options.get("step"), slice_state,
                    False)
    kept = _VolumeState(checkpoint, chosen, size, resume)
    flats = _frames_of(flat, "flat", (n_rows, n_cols))
    darks = _frames_of(dark, "dark", (n_rows, n_cols))
    if flats is None and (darks is not None or gain is not None):
        raise ValueError("dark and gain describe raw readings: give their flat field (flat=) too")
    if flats is not None and photons is not None:
        raise ValueError("photons describes post-log data; raw readings with a flat field have their own counts")
    from pnp_stable.transmission import check_flat_noise_options

    # what each slice would refuse at its start, here before the shared values and the checkpoint
    check_flat_noise_options(flats, options.get("weighting"), options.get("flat_exposures"),
                             frames=flats.shape[0] if isinstance(flats, np.ndarray) else None)
    for name, frames in (("flat", flats), ("dark", darks)):
        if isinstance(frames, np.ndarray) and not np.all(np.isfinite(frames)):
            raise ValueError(f"the {name} field contains NaN or infinite values")
    for row in chosen:  # one pass over the rows, before hours of work stop at a damaged one
        if not np.all(np.isfinite(stack[:, row, :])):
            raise ValueError(f"row {row} of the projections contains NaN or infinite values")

    if options.get("angle_range") is not None:  # the views' angles, as reconstruct_ct would spread them
        if angles is not None and not isinstance(angles, (int, np.integer)):
            raise ValueError("angle_range spreads a count of angles; the angles listed already have their range")
        span = float(options.pop("angle_range"))
        angles = [k * span / n_angles for k in range(n_angles)]
    shared, notes, axis = _shared_values(stack, flats, darks, gain, photons, angles, detector_offset, axis_tilt,
                                         size, options, shared_scale)
    if axis is not None:
        inside = set(_slices_inside(axis))
        outside = [r for r in chosen if r not in inside]
        if outside and not (rows is None or isinstance(rows, (slice, range))):  # rows listed: asked for
            raise ValueError(f"row {outside[0]}'s slice leaves the detector at an axis tilt of {axis.tilt_deg:+.3g} "
                             f"degrees (its line runs over tan(tilt) x {n_cols} rows): rows {min(inside)} to "
                             f"{max(inside)} can be reconstructed")
        if outside:
            chosen = [r for r in chosen if r in inside]
            if not chosen:
                raise ValueError(f"none of the rows chosen stays on the detector at an axis tilt of "
                                 f"{axis.tilt_deg:+.3g} degrees: rows {min(inside)} to {max(inside)} can be "
                                 "reconstructed")
            notes.append(f"{len(outside)} end rows left out: their slices' lines leave the detector at this tilt "
                         f"(rows {min(inside)} to {max(inside)} can be reconstructed)")
            shared["rows_left_out"] = outside
        kept.restrict(chosen, size)
        crossed = set()
        for row in chosen if axis.tilt_deg else ():
            low, high = _rows_crossed(axis, row)
            crossed.update(range(low, high + 1))
        for row in sorted(crossed - set(chosen)):  # the rows beside the slices', which their lines cross
            if not np.all(np.isfinite(stack[:, row, :])):
                raise ValueError(f"row {row} of the projections, which the tilted slices' lines cross, contains NaN "
                                 "or infinite values")
    gain = shared.get("gain", gain)
    photons = shared.get("photons", photons)
    detector_offset = shared.get("detector_offset", detector_offset)
    data_scale = shared.get("data_scale")

    module, _ = load_denoiser(denoiser, dev, 1)
    if checkpoint is not None:  # reads every chosen row once more: only where a resume compares it
        kept.load(_fingerprint(stack, chosen, flats, darks, gain, photons, angles, detector_offset, axis, module,
                               {**options, "data_scale": data_scale}))
    done, reports = list(kept.rows), list(kept.reports)
    volume = None if kept.path is not None else torch.zeros(len(chosen), size, size)
    pending = [r for r in chosen if r not in done]
    workers = min(workers, len(pending)) or 1
    slices = {"denoiser": module, "device": device if workers == 1 else "cpu", "progress": progress and workers == 1,
              "options": {"angles": angles, "photons": photons, "gain": gain if flats is not None else None,
                          "data_scale": data_scale, **options}}

    def task(row: int) -> dict:
        """What a slice's solve needs besides ``slices``: its row's sinogram and frames, its axis, and its
        solver state (a stopped slice's own, or the one a run with the other number of workers left)."""
        sources = row if axis is None else axis.sources(row)
        state = kept.slice_state(row, workers)
        if state is not None and not state.exists():
            other = kept.slice_state(row, 1 if workers > 1 else 2)
            if other.exists() and (workers == 1 or row == pending[0]):  # a one-process run's: its first row's
                os.replace(other, state)
        return {"row": row, "raw": row_sinogram(stack, sources).astype(np.float32),
                "flat": _row_frames(flats, sources), "dark": _row_frames(darks, sources),
                "detector_offset": detector_offset if axis is None else axis.detector_offset(row),
                "detector_rows": None if axis is None else list(_rows_crossed(axis, row)),
                "checkpoint": None if state is None else os.fspath(state)}

    stopped, diverged = None, None
    bar = _progress(len(chosen), len(done), progress)

    def take(outcome: dict, stopping: bool = False) -> bool:
        """Keep a slice's outcome; True where it ends the run. ``stopping``: the run is ending already, and
        a slice's refusal is not what ends it (the stop's own cause is)."""
        nonlocal stopped, diverged
        row = outcome["row"]
        if "error" in outcome:
            if stopping:
                return True
            raise ValueError(f"row {row}: {outcome['error']}")
        state = kept.slice_state(row, workers)
        if outcome["stopped_by"] == "interrupted":
            stopped = stopped or "interrupted"
            return True
        if outcome["stopped_by"] == "non-finite":
            stopped, diverged = "non-finite", outcome["report"]  # why, for the caller; neither kept nor counted
            if state is not None:  # an earlier snapshot of the same diverging solve
                state.unlink(missing_ok=True)
            return True
        image = torch.from_numpy(outcome["image"])
        if kept.path is None:
            volume[chosen.index(row)] = image
        else:  # the slice, then its solver state gone, then counted: a stop between any two redoes it
            kept.store_slice(row, image)
            state.unlink(missing_ok=True)
            kept.record(outcome["report"])
        done.append(row)
        reports.append(outcome["report"])
        if bar is not None:
            bar.set_postfix_str(f"row {row}: {outcome['report']['solver']['iterations']} it", refresh=False)
            bar.update(1)
        return False

    try:
        if workers == 1:
            for row in pending:
                if take(_solve_slice(slices, task(row))):
                    break
        else:
            from pnp_stable.worker_pool import WorkerPool, usable_cores

            with WorkerPool(_solve_slice, slices, workers, threads=max(1, usable_cores() // workers)) as pool:
                try:
                    for outcome in pool.results(task(row) for row in pending):
                        if take(outcome):
                            break
                finally:  # the slices in progress stopped (their states saved); those that finished kept
                    for outcome in pool.stop():
                        take(outcome, stopping=True)
    except KeyboardInterrupt:  # between two slices, or in a worker: the finished ones are kept
        stopped = stopped or "interrupted"
    finally:
        if bar is not None:
            bar.close()
    finished = [i for i, r in enumerate(chosen) if r in done]
    if kept.path is not None:  # a copy: the checkpoint's slices stay as they were written
        volume = torch.from_numpy(np.asarray(kept.store[finished]))
    elif len(finished) < len(chosen):
        volume = volume[finished]
    by_row = {r["row"]: r for r in reports}
    extra = [diverged] if stopped == "non-finite" else []
    return VolumeReconstruction(volume, [chosen[i] for i in finished], [by_row[chosen[i]] for i in finished] + extra,
                                shared, notes, stopped)


def _checked_workers(workers: Any) -> int:
    """``workers``: a number of processes (at least 1) or ``"auto"`` (one per usable core)."""
    if workers == "auto":
        from pnp_stable.worker_pool import usable_cores

        return usable_cores()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a number of processes (1 or more) or 'auto', got {workers!r}")
    return int(workers)


def _solve_slice(slices: dict, task: dict) -> dict:
    """One slice: :func:`~pnp_stable.restore.reconstruct_ct` of its row's sinogram with what the slices
    share (``slices``), and what the volume keeps of it (``row``, ``report``, ``stopped_by``, ``image``
    as a float32 array; ``error``: the message of a ValueError it raised). Runs in the calling process,
    or in a worker (pnp_stable.worker_pool)."""
    from pnp_stable import restore

    row, state = task["row"], task["checkpoint"]
    try:
        restoration = restore.reconstruct_ct(
            torch.from_numpy(task["raw"])[None], detector_offset=task["detector_offset"], flat=task["flat"],
            dark=task["dark"], denoiser=slices["denoiser"], device=slices["device"], checkpoint=state,
            resume=state is not None and Path(state).is_file(), progress=slices["progress"], **slices["options"])
    except ValueError as error:
        return {"row": row, "error": str(error)}
    report = {"row": row, **{k: v for k, v in restoration.report.items() if k != "history"},
              "notes": list(restoration.notes)}
    if task["detector_rows"] is not None:
        report["detector_rows"] = task["detector_rows"]
    stopped_by = None if restoration.result is None else restoration.result.stopped_by
    image = None if stopped_by in ("interrupted", "non-finite") else \
        restoration.image[0].detach().cpu().float().numpy()
    return {"row": row, "report": report, "stopped_by": stopped_by, "image": image}


def _shared_values(stack: np.ndarray, flats, darks, gain: float | None, photons: float | str | None, angles,
                   detector_offset, axis_tilt, size: int, options: dict[str, Any], shared_scale: bool
                   ) -> tuple[dict[str, Any], list[str], TiltedAxis | None]:
    """The gain, photon count, detector offset, axis tilt (as a :class:`TiltedAxis`, None without one)
    and (``shared_scale``) data scale every slice shares (measured where asked), and notes on them.
    Sampled rows that cannot be read (no signal above the dark, not finite) are left out, with a note."""
    from pnp_stable.transmission import estimate_gain, flat_field_correction, photons_from_sinogram_noise

    shared: dict[str, Any] = {}
    notes: list[str] = []
    raw = flats is not None
    skipped: dict[int, str] = {}
    finite: dict[int, bool] = {}  # each sampled row checked once, when first read

    def usable(rows: list[int], read) -> list[tuple[int, Any]]:
        values = []
        for r in rows:
            try:
                if r not in finite:
                    finite[r] = bool(np.all(np.isfinite(stack[:, r, :])))
                if not finite[r]:
                    raise ValueError("NaN or infinite values")
                values.append((r, read(r)))
            except ValueError as error:
                skipped.setdefault(r, str(error))
        if not values:
            raise ValueError(f"none of the {len(rows)} rows sampled for the values every slice shares could be read "
                             f"(row {rows[0]}: {skipped[rows[0]]})")
        return values

    # the whole stack's rows: the same values for any rows chosen
    sample = _sample(list(range(stack.shape[1])))
    if raw and gain is None:
        if isinstance(flats, np.ndarray) and flats.shape[0] >= 2:
            frames = flats.reshape(flats.shape[0], -1).T
            dark_frames = None if darks is None or isinstance(darks, float) else darks.reshape(darks.shape[0], -1).T
            if isinstance(darks, float):  # a number: the same offset for every bin
                frames = frames - darks
            estimate = estimate_gain(frames, dark_frames)
            shared.update(gain=estimate.gain, gain_source=f"{estimate.flat_frames} flat frames, "
                                                          f"{estimate.bins_used} bins")
        else:
            readings = usable(sample, lambda r: flat_field_correction(
                row_sinogram(stack, r), _row_frames(flats, r), _row_frames(darks, r)).gain)
            shared.update(gain=float(np.median([g for _, g in readings])),
                          gain_source=f"read off the noise of {len(readings)} rows (median)")
        notes.append(f"detector gain {shared['gain']:.4g} units per photon ({shared['gain_source']}), shared by "
                     "every slice")
    elif raw:
        shared.update(gain=float(gain), gain_source="given")

    def line_integrals(sources: int | np.ndarray) -> np.ndarray:
        if not raw:
            return row_sinogram(stack, sources)
        return flat_field_correction(row_sinogram(stack, sources), _row_frames(flats, sources),
                                     _row_frames(darks, sources), gain=shared["gain"]).line_integrals.numpy()

    def note_skipped() -> None:
        if skipped:
            first = min(skipped)
            notes.append(f"{len(skipped)} of the rows sampled for the shared values left out (row {first}: "
                         f"{skipped[first]})")

    tilted = axis_tilt == "auto" or (axis_tilt is not None and axis_tilt != 0)
    n_rows, n_cols = stack.shape[1:]
    if tilted and detector_offset != "auto" and axis_tilt != "auto":  # the axis told: nothing to read
        axis = TiltedAxis(float(axis_tilt), (n_cols - 1) / 2.0 - float(detector_offset or 0.0), (n_rows - 1) / 2.0,
                          n_rows, n_cols)
        shared.update(axis_tilt=axis.tilt_deg, axis_reference_row=axis.reference_row)
    else:
        axis = None
    if not (detector_offset == "auto" or axis_tilt == "auto" or photons == "auto" or shared_scale):
        note_skipped()
        return shared, notes, axis  # nothing else to measure
    sinograms = usable(sample, line_integrals)
    if not raw and photons == "auto":  # read off the post-log rows just read
        by_row = dict(sinograms)
        reads = usable(list(by_row), lambda r: photons_from_sinogram_noise(by_row[r]).photons)
        shared.update(photons=float(np.median([p for _, p in reads])),
                      photons_source=f"read off the noise of {len(reads)} rows (median)")
        notes.append(f"{shared['photons']:.4g} incident photons per bin ({shared['photons_source']}), shared by "
                     "every slice")
    note_skipped()
    from pnp_stable.operators import estimate_detector_offset
    from pnp_stable.operators.ct import _angles_in_degrees

    views = stack.shape[0] if angles is None else angles
    slices = None  # the sampled slices' line integrals, where a tilted axis's reading read them
    if tilted and axis is None:
        axis, fit, slices = _read_tilted_axis(sinograms, line_integrals, _angles_in_degrees(views),
                                              detector_offset, axis_tilt, n_rows, n_cols)
        shared.update(detector_offset=round((n_cols - 1) / 2.0 - axis.axis_bin, 3), axis_tilt=axis.tilt_deg,
                      axis_reference_row=axis.reference_row, axis_fit=fit)
        where = f"{shared['detector_offset']:+.3f} bins off the detector's centre at row {axis.reference_row:g}"
        if axis_tilt == "auto":
            if detector_offset != "auto":
                where = (f"{shared['detector_offset']:+.3f} bins off the detector's centre at row "
                         f"{axis.reference_row:g} as given" if detector_offset is not None else
                         f"at the detector's centre at row {axis.reference_row:g} (detector_offset not given)")
            how = (f"read off {fit['pairs_used']} pairs of opposite views (registered)"
                   if fit["method"] == "opposite views' registration" else
                   f"read off the centres of mass of whole projections ({fit['rows_used']} rows)")
            notes.append(f"rotation axis tilted {axis.tilt_deg:+.3f} degrees (standard error "
                         f"{fit['tilt_error_deg']:.3f}) from the detector's columns, {how}; {where}; shared by every "
                         "slice")
            if fit.get("drift_modelled"):
                drift = max(abs(d) for d in fit["drift_rows"])
                notes.append(f"the object moved up to {drift:.2f} rows along the axis between opposite views (drift "
                             "during the scan), taken out of the tilt's reading: views far apart in time do not line "
                             "up, which no slice corrects")
            read_offset = (n_cols - 1) / 2.0 - fit["axis_bin"]
            if detector_offset != "auto" and abs(read_offset - shared["detector_offset"]) > AXIS_DISAGREEMENT_BINS:
                notes.append(f"the same projections put the axis {read_offset:+.3f} bins off the detector's centre at "
                             f"row {axis.reference_row:g}, not {shared['detector_offset']:+.3f}: detector_offset="
                             "'auto' (--detector-offset auto) takes it")
        else:
            notes.append(f"rotation axis {where} at the tilt given (read off {fit['rows_used']} slices' sinograms, "
                         f"{fit['residual']:.3f} bins root-mean-square from the line"
                         + (f", {fit['rows_left_out']} misread slices left out" if fit['rows_left_out'] else "")
                         + "), shared by every slice")
    elif detector_offset == "auto":
        estimate = estimate_detector_offset(np.mean([y for _, y in sinograms], axis=0), _angles_in_degrees(views))
        # to a thousandth of a bin, as reconstruct_ct rounds its own estimate
        shared.update(detector_offset=round(float(estimate.offset), 3), detector_offset_fit=estimate._asdict(),
                      detector_offset_rows=len(sinograms))
        notes.append(f"rotation axis {shared['detector_offset']:+.3f} bins off the detector's centre (read off the "
                     f"mean sinogram of {len(sinograms)} rows), shared by every slice")
    if not shared_scale:
        return shared, notes, axis
    offset = shared.get("detector_offset", detector_offset)
    if axis is not None:  # a tilted axis: its slices' sinograms, not the rows'
        sinograms = slices if slices is not None else _slice_sinograms(axis, line_integrals)
    shared["data_scale"] = _volume_scale(
        [(y, offset if axis is None else axis.detector_offset(r)) for r, y in sinograms], views, size, options)
    if shared["data_scale"] != 1.0:
        notes.append(f"the volume's FBP peaks near {shared['data_scale']:.4g} (over {len(sinograms)} rows), not 1: "
                     "every slice is divided by it for the denoiser (trained on [0, 1] images) and multiplied back")
    return shared, notes, axis


def _read_tilted_axis(sinograms: list[tuple[int, np.ndarray]], line_integrals, views_deg: np.ndarray,
                      detector_offset, axis_tilt, n_rows: int, n_cols: int
                      ) -> tuple[TiltedAxis, dict[str, Any], list[tuple[int, np.ndarray]] | None]:
    """The tilted axis, what of it is not given read off the data. ``axis_tilt="auto"``: the tilt and
    (``detector_offset="auto"``) the axis from the registration of views half a turn apart where the
    scan has them (:func:`~pnp_stable.operators.estimate_axis_from_opposite_views`), else from the
    centres of mass of whole projections (:func:`~pnp_stable.operators.estimate_axis_tilt`), over
    every row. A tilt given with
    ``detector_offset="auto"``: each sampled slice's axis bin
    (:func:`~pnp_stable.operators.estimate_detector_offset` on its sinogram, the slices drawn at the
    axis read off the rows' mean sinogram), and the line of the given slope through them
    (:func:`~pnp_stable.operators.fit_axis_line`). Returns the axis, the reading's record and the
    sampled slices' sinograms where it read them, else None (``sinograms``: the sampled rows' line
    integrals)."""
    from pnp_stable.operators import estimate_detector_offset, fit_axis_line, opposite_view_pairs
    from pnp_stable.operators.axis_registration import MAX_PAIRS

    reference, centre = (n_rows - 1) / 2.0, (n_cols - 1) / 2.0
    given_bin = None if detector_offset == "auto" else centre - float(detector_offset or 0.0)

    if axis_tilt == "auto":
        pairs = opposite_view_pairs(views_deg, at_most=MAX_PAIRS)
        if pairs:
            estimate, record = _tilt_from_opposite_views(pairs, line_integrals, reference, n_rows)
        else:
            estimate, record = _tilt_from_centres_of_mass(line_integrals, views_deg, reference, n_rows)
        if abs(estimate.tilt_deg) > MAX_AXIS_TILT_DEG - 1e-6:
            raise ValueError(f"the rotation axis reads as tilted {estimate.tilt_deg:+.2f} degrees from the detector's "
                             f"columns, at or beyond the {MAX_AXIS_TILT_DEG:g} this tool corrects: check the "
                             "projections' orientation (rows across the axis), or give the tilt")
        axis = TiltedAxis(round(estimate.tilt_deg, 4), estimate.axis_bin if given_bin is None else given_bin,
                          reference, n_rows, n_cols)
        return axis, record, None
    start = estimate_detector_offset(np.mean([y for _, y in sinograms], axis=0), views_deg).axis_bin
    read = _slice_sinograms(TiltedAxis(float(axis_tilt), start, reference, n_rows, n_cols), line_integrals)
    found = {}
    for r, y in read:
        try:
            found[r] = estimate_detector_offset(y, views_deg).axis_bin
        except ValueError:  # an empty or truncated slice locates nothing: the line does without it
            pass
    try:
        fit = fit_axis_line(list(found), list(found.values()), reference, slope=math.sin(math.radians(axis_tilt)))
    except ValueError as error:
        raise ValueError(f"the rotation axis could not be located ({len(found)} of {len(read)} sampled slices located "
                         f"it: {error}); give the detector offset") from None
    axis = TiltedAxis(float(axis_tilt), fit.axis_bin, reference, n_rows, n_cols)
    return axis, {"method": "slices' sinograms, the line of the given tilt", **fit._asdict()}, read


def _reading_the_tilt(read, way_out: str):
    """``read()``, its ValueError worded as the tilt's reading (with ``way_out`` where it has none)."""
    try:
        return read()
    except ValueError as error:
        message = str(error)
        if not message.startswith("reading"):
            message = f"reading the axis's tilt: {message}"
        if "give" not in message:  # a row that cannot be read
            message += f" ({way_out})"
        raise ValueError(message) from None


def _every_row(line_integrals, n_rows: int):
    """``(row, line integrals)`` of every detector row, a row that cannot be read (or not finite)
    stopping the tilt's reading."""
    for r in range(n_rows):
        try:
            y = line_integrals(r)
        except ValueError as error:
            raise ValueError(f"reading the axis's tilt: row {r}: {error}") from None
        if not np.all(np.isfinite(y)):
            raise ValueError(f"reading the axis's tilt: row {r} holds NaN or infinite values")
        yield r, y


def _tilt_from_centres_of_mass(line_integrals, views_deg: np.ndarray, reference: float, n_rows: int):
    """The tilt and axis off the centres of mass of whole projections
    (:func:`~pnp_stable.operators.estimate_axis_tilt`), and the reading's record."""
    from pnp_stable.operators import estimate_axis_tilt

    # every row: summing every s-th one aliases the object's ends, which move by fractions of a row from
    # view to view (a reviewer's flat-ended cylinder over 1100 rows read +0.30 degrees for +0.50 from
    # every third row)
    def read():
        try:
            return estimate_axis_tilt(_every_row(line_integrals, n_rows), views_deg, reference)
        except ValueError as error:
            if "reaches" not in str(error):
                raise
            raise ValueError(f"{error} (or scan views exactly half a turn apart, a full turn of an even number of "
                             "views or a last view at 180 degrees from the first: then the tilt is read off opposite "
                             "views, whole object or not)") from None

    estimate = _reading_the_tilt(read, "every row counts in a whole projection: repair the row, or give the tilt")
    return estimate, {"method": "whole projections' centres of mass", **estimate._asdict()}


def _tilt_from_opposite_views(used: list[tuple[int, int]], line_integrals, reference: float, n_rows: int):
    """The tilt and axis from the registration of the pairs ``used`` of views half a turn apart
    (:func:`~pnp_stable.operators.estimate_axis_from_opposite_views`), and the reading's record."""
    from pnp_stable.operators import estimate_axis_from_opposite_views

    views = [v for pair in used for v in pair]

    def read():
        images = None
        for r, y in _every_row(line_integrals, n_rows):
            if images is None:
                images = np.empty((len(views), n_rows, y.shape[0]), dtype=np.float32)
            images[:, r, :] = y[:, views].T
        return estimate_axis_from_opposite_views([(images[2 * k], images[2 * k + 1]) for k in range(len(used))],
                                                 reference, max_tilt_deg=MAX_AXIS_TILT_DEG)

    estimate = _reading_the_tilt(read, "the opposite views are read whole: repair the row, or give the tilt")
    return estimate, {"method": "opposite views' registration", "pairs": [list(p) for p in used],
                      **estimate._asdict()}


def _slice_sinograms(axis: TiltedAxis, line_integrals) -> list[tuple[int, np.ndarray]]:
    """The line integrals of ``SHARED_SAMPLE_ROWS`` slices spread over those on the detector; a slice
    that cannot be read (no signal above the dark, values not finite) is left out, as a sampled row
    is (ValueError when none can be read)."""
    read, why = [], ""
    for r in _sample(_slices_inside(axis)):
        try:
            y = line_integrals(axis.sources(r))
        except ValueError as error:
            why = why or f"slice {r}: {error}"
            continue
        if not np.all(np.isfinite(y)):
            why = why or f"slice {r}: NaN or infinite values"
            continue
        read.append((r, y))
    if not read:
        raise ValueError(f"none of the slices sampled for the values every slice shares could be read ({why})")
    return read


def _rows_crossed(axis: TiltedAxis, row: int) -> tuple[int, int]:
    """The first and last detector rows slice ``row``'s line runs over (on the detector)."""
    exact = axis.exact_rows(row)
    return (max(0, int(np.floor(exact.min()))), min(axis.n_rows - 1, int(np.ceil(exact.max()))))


def _slices_inside(axis: TiltedAxis) -> list[int]:
    """The slices whose lines stay on the detector (ValueError when none does)."""
    inside = [r for r in range(axis.n_rows) if axis.inside(r)]
    if not inside:
        raise ValueError(f"at an axis tilt of {axis.tilt_deg:+.3g} degrees no slice's line stays on the detector of "
                         f"{axis.n_rows} x {axis.n_cols} (rows x columns): each needs tan(tilt) x columns rows")
    return inside


def _volume_scale(sinograms: list[tuple[np.ndarray, float | None]], views, n: int, options: dict[str, Any]) -> float:
    """The divisor that brings the volume to the denoiser's [0, 1] scale: the 99.9th percentile of
    the sampled rows' FBPs together (each sinogram with its detector offset; 1 when it lies in
    ``ATTENUATION_PEAK_BAND`` or is not positive), as ``reconstruct_ct`` measures one sinogram's: one
    divisor for all (``shared_scale=True``)."""
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import ATTENUATION_PEAK_BAND

    # the union's k-th largest value lies among each row's k largest
    k = max(1, int(np.ceil(1e-3 * len(sinograms) * n * n)))
    tops, operators = [], {}
    for y, offset in sinograms:
        offset = 0.0 if offset is None else offset
        if offset not in operators:
            operators[offset] = ParallelBeamCT(n, angles=views, detector=options.get("detector", "full"),
                                               detector_offset=offset)
        op = operators[offset]
        tops.append(torch.topk(op.fbp(torch.from_numpy(y).double()[None, None]).flatten(), min(k, n * n)).values)
    peak = float(torch.topk(torch.cat(tops), k).values[-1])
    low, high = ATTENUATION_PEAK_BAND
    return 1.0 if not math.isfinite(peak) or peak <= 0 or low <= peak <= high else peak


def _fingerprint(stack, chosen, flats, darks, gain, photons, angles, detector_offset, axis, module, options) -> dict:
    from pnp_stable.digest import tensor_digest

    def digest(values) -> str | float | None:
        if values is None or isinstance(values, float):
            return values
        # a native float64 copy: memory-mapped files are read-only, and torch takes no big-endian data
        return tensor_digest([torch.from_numpy(np.array(values, dtype=np.float64))])

    weights = tensor_digest(module.parameters())
    rows_read = (r if axis is None else axis.sources(r) for r in chosen)
    fingerprint = {"projections": tensor_digest(torch.from_numpy(np.array(_across_rows(stack, r), dtype=np.float64))
                                                for r in rows_read),
                   "rows": chosen, "flat": digest(flats), "dark": digest(darks), "gain": gain, "photons": photons,
                   "angles": angles if angles is None or isinstance(angles, int) else [float(a) for a in angles],
                   "detector_offset": detector_offset, "denoiser": weights,
                   "options": {k: v for k, v in sorted(options.items()) if k not in ("max_iter", "tol", "tile")}}
    if axis is not None:  # (absent without a tilt: states written before tilts were taken still resume)
        fingerprint["axis"] = [axis.tilt_deg, round(axis.axis_bin, 6)]
    return fingerprint


def _row_state_of(name: str, checkpoint_name: str) -> bool:
    """Whether the file name ``name`` is that of a slice in progress with workers, ``<checkpoint>.slice.ROW``."""
    prefix = f"{checkpoint_name}.slice."
    row = name[len(prefix):] if name.startswith(prefix) else ""
    return row.isascii() and row.isdigit()


def is_checkpoint_file(path: Path, checkpoint: Path) -> bool:
    """Whether ``path`` is one of the files of the volume checkpoint ``checkpoint`` (``CHECKPOINT_SUFFIXES``,
    and a slice in progress with workers, ``<checkpoint>.slice.ROW``), whether or not it exists yet."""
    path, checkpoint = path.resolve(), checkpoint.resolve()
    if path.parent != checkpoint.parent:
        return False
    return path.name in {checkpoint.name + suffix for suffix in CHECKPOINT_SUFFIXES} or \
        _row_state_of(path.name, checkpoint.name)


class _VolumeState:
    """A volume's checkpoint, four files: ``path`` itself (the format, the fingerprint of the data and
    options, the volume's shape; written once, atomically, first), ``<path>.slices.npy`` (the slices,
    ``len(rows) x N x N`` float32, memory-mapped: each written in place and flushed when it ends),
    ``<path>.reports.jsonl`` (one line per finished slice, its report, appended after its slice is
    flushed and its solver state removed: a stop between any two redoes that slice; a torn last line
    is cut) and ``<path>.slice`` (the solver state of the slice in progress; ``<path>.slice.<row>``,
    one per slice in progress, when workers solve several at once). A slice costs its own writing,
    however many came before."""

    def __init__(self, path, chosen: list[int], size: int, resume: bool) -> None:
        """Checks what can be checked before any work: a state to resume, none to overwrite."""
        self.path = None if path is None else Path(path)
        self.chosen, self.shape, self.resume = chosen, (len(chosen), size, size), resume
        self.rows: list[int] = []
        self.reports: list[dict] = []
        self.store = None
        if self.path is None:
            if resume:
                raise ValueError("resuming needs the checkpoint file to resume from")
            return
        base = os.fspath(self.path)
        self.slices_path, self.reports_path = Path(f"{base}.slices.npy"), Path(f"{base}.reports.jsonl")
        if not resume:
            # (slices and reports without the state, written first, are a creation's leftovers: replaced)
            for existing in (self.path, Path(f"{base}.slice"), *self._row_states()):
                if existing.exists():
                    raise ValueError(f"checkpoint {existing} exists: resume it, or choose another file")
        elif not self.path.is_file():
            raise ValueError(f"no checkpoint to resume at {self.path}")

    def slice_state(self, row: int, workers: int) -> Path | None:
        """Where the solver state of ``row``'s slice in progress is kept: ``<path>.slice`` when one process
        solves the slices one after the other, ``<path>.slice.<row>`` when workers solve several at once."""
        if self.path is None:
            return None
        return Path(f"{os.fspath(self.path)}.slice" + ("" if workers == 1 else f".{row}"))

    def _row_states(self) -> list[Path]:
        """The states of slices a run with workers left in progress."""
        folder = self.path.parent
        names = os.listdir(folder) if folder.is_dir() else []
        return [folder / name for name in sorted(names) if _row_state_of(name, self.path.name)]

    def restrict(self, chosen: list[int], size: int) -> None:
        """The rows to reconstruct, narrowed after the shared values (a tilted axis's end rows left out)."""
        self.chosen, self.shape = chosen, (len(chosen), size, size)

    def load(self, fingerprint: dict) -> None:
        """Resuming: the slices finished, after checking that the state was written for these data and
        options (``fingerprint``). Otherwise: the state and an empty volume written."""
        from pnp_stable.fileio import atomic_output, read_npy, read_torch_file

        if not self.resume:
            with atomic_output(self.path) as tmp:  # first: what a resume finds names the rest
                torch.save({"format": VOLUME_STATE_FORMAT, "fingerprint": fingerprint, "shape": list(self.shape)},
                           tmp)
            self._create_slices_and_reports()
        else:
            state = read_torch_file(self.path, "a pnp-stable volume state")
            if not isinstance(state, dict) or state.get("format") != VOLUME_STATE_FORMAT:
                raise ValueError(f"{self.path} is not a pnp-stable volume state")
            if state["fingerprint"] != fingerprint:
                changed = sorted(k for k in set(state["fingerprint"]) | set(fingerprint)
                                 if state["fingerprint"].get(k) != fingerprint.get(k))
                raise ValueError(f"{self.path} was written for another volume (different {', '.join(changed)}); "
                                 "resume with the same data and options, or choose another checkpoint")
            if not self.reports_path.exists() or self.reports_path.stat().st_size == 0:
                self._create_slices_and_reports()  # no slice counted yet (or stopped while creating them)
        try:
            store = np.load(self.slices_path, mmap_mode="r+", allow_pickle=False)
        except FileNotFoundError:
            raise ValueError(f"{self.slices_path}, the slices of {self.path}, is missing: cannot resume") from None
        except Exception:  # noqa: BLE001 - numpy raises many types for damaged files
            read_npy(self.slices_path)  # the one-line error naming the file
            raise
        if tuple(store.shape) != self.shape or store.dtype != np.float32:
            raise ValueError(f"{self.slices_path} holds {store.dtype} slices of shape {tuple(store.shape)}, not this "
                             f"volume's {self.shape}")
        self.store = store
        if self.resume:
            self._read_reports()

    def _create_slices_and_reports(self) -> None:
        from numpy.lib.format import open_memmap

        from pnp_stable.fileio import atomic_output, atomic_write_bytes

        with atomic_output(self.slices_path) as tmp:  # created whole, then filled in place
            open_memmap(tmp, mode="w+", dtype=np.float32, shape=self.shape).flush()
        atomic_write_bytes(self.reports_path, b"")

    def _read_reports(self) -> None:
        import json

        if not self.reports_path.is_file():
            raise ValueError(f"{self.reports_path}, the reports of {self.path}, is missing: cannot resume")
        text = self.reports_path.read_bytes()
        complete = text[:text.rfind(b"\n") + 1]
        if len(complete) < len(text):  # a line torn by a crash: cut, so that the next one starts clean
            with open(self.reports_path, "r+b") as handle:
                handle.truncate(len(complete))
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(report, dict) and report.get("row") in self.chosen and report["row"] not in self.rows:
                self.rows.append(report["row"])
                self.reports.append(report)

    def store_slice(self, row: int, image: torch.Tensor) -> None:
        """Write a finished slice in place (not yet counted: :meth:`record` counts it)."""
        self.store[self.chosen.index(row)] = image.numpy()
        self.store.flush()

    def record(self, report: dict) -> None:
        """Count a stored slice as finished: its report appended (a line, synced)."""
        import json

        from pnp_stable.fileio import json_safe

        with open(self.reports_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(json_safe(report), default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _progress(total: int, finished: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=finished, desc="slices", unit="slice", dynamic_ncols=True,
                leave=True, mininterval=0.5)


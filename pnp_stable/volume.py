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

__all__ = ["VolumeReconstruction", "reconstruct_volume", "row_sinogram", "selected_rows"]

# rows sampled (evenly over the stack) for what the slices share: enough for the mean sinogram's noise
# to fall 4x below a row's, few enough to cost a few flat-field corrections
SHARED_SAMPLE_ROWS = 16
VOLUME_STATE_FORMAT = "pnp-stable volume state 1"


@dataclass
class VolumeReconstruction:
    """``volume``: the reconstructed slices, ``len(rows) x N x N`` (float32, on the data's scale, clipped
    below at 0), slice ``i`` from detector row ``rows[i]``; ``reports``: each slice's
    :class:`~pnp_stable.restore.Restoration` report (its ``"row"``, its notes under ``"notes"``, without
    the per-iteration history); ``shared``:
    the values measured once for every slice (``gain`` and its source, ``photons``, ``detector_offset``
    and its fit, ``data_scale`` with ``shared_scale``); ``stopped``: ``"interrupted"`` when a stop
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


def row_sinogram(projections: np.ndarray, row: int) -> np.ndarray:
    """Detector row ``row`` of a projection stack (``n_angles x n_rows x n_cols``) as a sinogram,
    ``n_cols`` bins by ``n_angles`` views (float64)."""
    return np.ascontiguousarray(np.asarray(projections[:, row, :], dtype=np.float64).T)


def _row_frames(frames: np.ndarray | float | None, row: int) -> np.ndarray | float | None:
    """A row's flat or dark field as :func:`~pnp_stable.transmission.flat_field_correction` takes it:
    frames side by side, ``n_cols x k``."""
    if frames is None or isinstance(frames, float):
        return frames
    return np.asarray(frames[:, row, :], dtype=np.float64).T


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
    denoiser: str | torch.nn.Module | None = None,
    device: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    shared_scale: bool = False,
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
    ``angles``: as ``reconstruct_ct``'s (default: ``n_angles`` uniform over [0, 180)); ``options``:
    its other arguments (``method``, ``max_iter``, ``tol``, ``image_size``, ``detector``, ...), the
    same for every slice. The denoiser is loaded once.

    ``checkpoint``: the finished slices are kept in four files (``_VolumeState``: the fingerprint of
    the data and options, ``<checkpoint>.slices.npy`` memory-mapped, ``<checkpoint>.reports.jsonl``,
    and ``<checkpoint>.slice``, the solver state of the slice in progress); ``resume=True`` continues
    from them after a stop, refusing a state written for other data or options. A
    stop (Ctrl-C) returns the slices finished with ``stopped="interrupted"``; a slice that diverges
    ends the run with ``stopped="non-finite"``. A row with NaN or infinite values is refused before any
    work, and a slice ``reconstruct_ct`` refuses raises its ValueError prefixed with ``row R:``.
    Each slice is brought to the denoiser's [0, 1] by its own FBP's scale, as ``reconstruct_ct`` does;
    ``shared_scale=True`` divides every slice by the volume's instead (the 99.9th percentile of the
    sampled rows' FBPs), which measured 0.01 to 0.04 dB lower (docs/benchmarks.md, "A volume from
    projections").

    Guarantee: each slice carries its own convergence verdict and monotone-residual check
    (``reports[i]["solver"]``; :attr:`VolumeReconstruction.all_guaranteed`). Assumes a parallel
    beam whose rotation axis is parallel to the detector's columns (no tilt) and a detector whose
    rows are the object's slices (``geometry="fan"``, a cone beam, is refused).
    """
    from pnp_stable.restore import _check_strength, _size_from_detectors, load_denoiser, reconstruct_ct, \
        resolve_device

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
    shared, notes = _shared_values(stack, flats, darks, gain, photons, angles, detector_offset, size, options,
                                   shared_scale)
    gain = shared.get("gain", gain)
    photons = shared.get("photons", photons)
    detector_offset = shared.get("detector_offset", detector_offset)
    data_scale = shared.get("data_scale")

    dev = resolve_device(device)
    module, _ = load_denoiser(denoiser, dev, 1)
    if checkpoint is not None:  # reads every chosen row once more: only where a resume compares it
        kept.load(_fingerprint(stack, chosen, flats, darks, gain, photons, angles, detector_offset, module,
                               {**options, "data_scale": data_scale}))
    done, reports = list(kept.rows), list(kept.reports)
    volume = None if kept.path is not None else torch.zeros(len(chosen), size, size)

    stopped = None
    bar = _progress(len(chosen), len(done), progress)
    try:
        for row in (r for r in chosen if r not in done):
            raw = torch.from_numpy(row_sinogram(stack, row).astype(np.float32))[None]
            try:
                restoration = reconstruct_ct(
                    raw, angles=angles, detector_offset=detector_offset, photons=photons, denoiser=module,
                    device=device, flat=_row_frames(flats, row), dark=_row_frames(darks, row),
                    gain=gain if flats is not None else None, data_scale=data_scale, checkpoint=slice_state,
                    resume=slice_state is not None and slice_state.is_file(), progress=progress, **options)
            except ValueError as error:
                raise ValueError(f"row {row}: {error}") from None
            report = {"row": row, **{k: v for k, v in restoration.report.items() if k != "history"},
                      "notes": list(restoration.notes)}
            stopped_by = None if restoration.result is None else restoration.result.stopped_by
            if stopped_by in ("interrupted", "non-finite"):
                stopped = stopped_by
                if stopped == "non-finite":
                    reports.append(report)  # why, for the caller; neither kept nor counted as done
                    if slice_state is not None:  # an earlier snapshot of the same diverging solve
                        slice_state.unlink(missing_ok=True)
                break
            image = restoration.image[0].detach().cpu().float()
            if kept.path is None:
                volume[chosen.index(row)] = image
            else:  # the slice, then its solver state gone, then counted: a stop between any two redoes it
                kept.store_slice(row, image)
                slice_state.unlink(missing_ok=True)
                kept.record(report)
            done.append(row)
            reports.append(report)
            if bar is not None:
                bar.set_postfix_str(f"row {row}: {restoration.result.iterations} it", refresh=False)
                bar.update(1)
    except KeyboardInterrupt:  # between two slices: the finished ones are kept
        stopped = "interrupted"
    finally:
        if bar is not None:
            bar.close()
    finished = [i for i, r in enumerate(chosen) if r in done]
    if kept.path is not None:  # a copy: the checkpoint's slices stay as they were written
        volume = torch.from_numpy(np.asarray(kept.store[finished]))
    elif len(finished) < len(chosen):
        volume = volume[finished]
    by_row = {r["row"]: r for r in reports}
    extra = [reports[-1]] if stopped == "non-finite" else []
    return VolumeReconstruction(volume, [chosen[i] for i in finished], [by_row[chosen[i]] for i in finished] + extra,
                                shared, notes, stopped)


def _shared_values(stack: np.ndarray, flats, darks, gain: float | None, photons: float | str | None, angles,
                   detector_offset, size: int, options: dict[str, Any], shared_scale: bool
                   ) -> tuple[dict[str, Any], list[str]]:
    """The gain, photon count, detector offset and (``shared_scale``) data scale every slice shares
    (measured where asked), and notes on them. Sampled rows that cannot be read (no signal above the dark, not
    finite) are left out, with a note."""
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

    def line_integrals(r: int) -> np.ndarray:
        if not raw:
            return row_sinogram(stack, r)
        return flat_field_correction(row_sinogram(stack, r), _row_frames(flats, r), _row_frames(darks, r),
                                     gain=shared["gain"]).line_integrals.numpy()

    def note_skipped() -> None:
        if skipped:
            first = min(skipped)
            notes.append(f"{len(skipped)} of the rows sampled for the shared values left out (row {first}: "
                         f"{skipped[first]})")

    if not (detector_offset == "auto" or photons == "auto" or shared_scale):
        note_skipped()
        return shared, notes  # nothing else to measure
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
    if detector_offset == "auto":
        estimate = estimate_detector_offset(np.mean([y for _, y in sinograms], axis=0), _angles_in_degrees(views))
        # to a thousandth of a bin, as reconstruct_ct rounds its own estimate
        shared.update(detector_offset=round(float(estimate.offset), 3), detector_offset_fit=estimate._asdict(),
                      detector_offset_rows=len(sinograms))
        notes.append(f"rotation axis {shared['detector_offset']:+.3f} bins off the detector's centre (read off the "
                     f"mean sinogram of {len(sinograms)} rows), shared by every slice")
    if not shared_scale:
        return shared, notes
    shared["data_scale"] = _volume_scale([y for _, y in sinograms], views,
                                         shared.get("detector_offset", detector_offset), size, options)
    if shared["data_scale"] != 1.0:
        notes.append(f"the volume's FBP peaks near {shared['data_scale']:.4g} (over {len(sinograms)} rows), not 1: "
                     "every slice is divided by it for the denoiser (trained on [0, 1] images) and multiplied back")
    return shared, notes


def _volume_scale(sinograms: list[np.ndarray], views, offset, n: int, options: dict[str, Any]) -> float:
    """The divisor that brings the volume to the denoiser's [0, 1] scale: the 99.9th percentile of
    the sampled rows' FBPs together (1 when it lies in ``ATTENUATION_PEAK_BAND`` or is not positive),
    as ``reconstruct_ct`` measures one sinogram's: one divisor for all (``shared_scale=True``)."""
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import ATTENUATION_PEAK_BAND

    op = ParallelBeamCT(n, angles=views, detector=options.get("detector", "full"),
                        detector_offset=0.0 if offset is None else offset)
    # the union's k-th largest value lies among each row's k largest
    k = max(1, int(np.ceil(1e-3 * len(sinograms) * n * n)))
    tops = [torch.topk(op.fbp(torch.from_numpy(y).double()[None, None]).flatten(), min(k, n * n)).values
            for y in sinograms]
    peak = float(torch.topk(torch.cat(tops), k).values[-1])
    low, high = ATTENUATION_PEAK_BAND
    return 1.0 if not math.isfinite(peak) or peak <= 0 or low <= peak <= high else peak


def _fingerprint(stack, chosen, flats, darks, gain, photons, angles, detector_offset, module, options) -> dict:
    from pnp_stable.digest import tensor_digest

    def digest(values) -> str | float | None:
        if values is None or isinstance(values, float):
            return values
        # a native float64 copy: memory-mapped files are read-only, and torch takes no big-endian data
        return tensor_digest([torch.from_numpy(np.array(values, dtype=np.float64))])

    weights = tensor_digest(module.parameters())
    return {"projections": tensor_digest(torch.from_numpy(np.array(stack[:, r, :], dtype=np.float64))
                                         for r in chosen),
            "rows": chosen, "flat": digest(flats), "dark": digest(darks), "gain": gain, "photons": photons,
            "angles": angles if angles is None or isinstance(angles, int) else [float(a) for a in angles],
            "detector_offset": detector_offset, "denoiser": weights,
            "options": {k: v for k, v in sorted(options.items()) if k not in ("max_iter", "tol", "tile")}}


class _VolumeState:
    """A volume's checkpoint, four files: ``path`` itself (the format, the fingerprint of the data and
    options, the volume's shape; written once, atomically, first), ``<path>.slices.npy`` (the slices,
    ``len(rows) x N x N`` float32, memory-mapped: each written in place and flushed when it ends),
    ``<path>.reports.jsonl`` (one line per finished slice, its report, appended after its slice is
    flushed and its solver state removed: a stop between any two redoes that slice; a torn last line
    is cut) and ``<path>.slice`` (the solver state of the slice in progress). A slice costs its own
    writing, however many came before."""

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
            for existing in (self.path, Path(f"{base}.slice")):
                if existing.exists():
                    raise ValueError(f"checkpoint {existing} exists: resume it, or choose another file")
        elif not self.path.is_file():
            raise ValueError(f"no checkpoint to resume at {self.path}")

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


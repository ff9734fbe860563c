"""``pnp-stable ct PROJECTIONS --projections``: a volume, slice by slice, from a stack of parallel-beam
projections (:func:`pnp_stable.volume.reconstruct_volume`), with its flat and dark frames."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pnp_stable.cli.errors import UserError

# what a volume is written as: its values on the data's scale (attenuation per pixel), float32
VOLUME_SUFFIXES = (".npy", ".tif", ".tiff")
# from this many slices on, the first line says that --workers would use the cores left idle
SLICES_WORTH_WORKERS = 4


def parse_rows(text: str | None) -> slice | int | None:
    """``--rows``: one detector row ``R``, or ``A:B`` (rows A to B-1; either end may be left out),
    counted from 0."""
    if text is None:
        return None
    value = text.strip()
    first, colon, last = value.partition(":")
    ends = [part.strip() for part in ((first, last) if colon else (first,))]
    if not all(part == "" or (part.isascii() and part.isdigit()) for part in ends) or not colon and not ends[0]:
        raise UserError(f"--rows {text!r}: give a row R or a range A:B of detector rows (from 0; B excluded)")
    if not colon:
        return int(ends[0])
    start, stop = (int(part) if part else None for part in ends)
    if start is not None and stop is not None and stop <= start:
        raise UserError(f"--rows {text}: the range is empty (A:B holds rows A to B-1)")
    return slice(start, stop)


def _check_frames(frames, what: str, shape: tuple[int, int], name: str) -> None:
    if frames is None or isinstance(frames, float):
        return
    import numpy as np

    if tuple(frames.shape[1:]) != shape:
        raise UserError(f"{what} {name} holds frames of {frames.shape[1]} x {frames.shape[2]}, but the projections' "
                        f"detector is {shape[0]} x {shape[1]} (rows x columns)")
    if not np.all(np.isfinite(frames)):
        raise UserError(f"{what} {name} contains NaN or infinite values")


def default_volume_output(data: Path) -> Path:
    """``<stem>_reconstructed.npy`` beside the projections (``.tif`` for a TIFF stack, and beside a
    folder of frames)."""
    data = data.resolve()  # "." and ".." name their folder
    if data.is_dir():
        return data.with_name(f"{data.name}_reconstructed.tif")
    suffix = ".tif" if data.suffix.lower() in (".tif", ".tiff") else ".npy"
    return data.with_name(f"{data.stem}_reconstructed{suffix}")


def write_volume(path: Path, volume, protect: tuple[Path, ...]) -> None:
    """The volume (``slices x N x N``, float32) as a ``.npy`` or a multi-page float TIFF, atomically."""
    import numpy as np

    from pnp_stable.fileio import atomic_output

    if any(path.resolve() == p.resolve() for p in protect):
        raise UserError(f"refusing to overwrite the input {path.name}")
    array = np.ascontiguousarray(volume.numpy(), dtype=np.float32)
    try:
        with atomic_output(path) as tmp:
            if path.suffix.lower() == ".npy":
                with open(tmp, "wb") as handle:
                    np.save(handle, array)
            else:
                import tifffile

                tifffile.imwrite(tmp, array, photometric="minisblack")
    except ValueError as error:
        raise UserError(str(error)) from None


def reconstruct_projection_stack(data: Path, *, rows: str | None, flat, dark, gain: float | None,
                                 photons: float | str | None, angles, count_given: int | None,
                                 options: dict[str, Any], checkpoint: str | None, resume: bool, out: str | None,
                                 report: str | None, shown: dict[str, Any], quiet: bool) -> None:
    """Reconstruct ``--rows`` of the projection stack ``data`` and write the volume, the report and
    the summary; exit 130 after a stop (the slices finished kept in ``--checkpoint``)."""
    from pnp_stable.cli.reporting import check_outputs

    if not data.exists():
        raise UserError(f"{data} not found")
    out_path = Path(out) if out else default_volume_output(data)
    if out_path.suffix.lower() not in VOLUME_SUFFIXES:
        raise UserError(f"--out {out_path.name}: a volume is written as .npy or a multi-page .tif (float32 values on "
                        "the data's scale)")
    inputs = [data, *(p for p in (flat, dark) if isinstance(p, Path))]
    if not isinstance(angles, int) and angles is not None:
        inputs.append(Path(click.get_current_context().params["angles"]))
    for source in inputs:  # each destination writable, none an input, no two the same
        check_outputs(source, out_given=bool(out), out=out_path, report=report, checkpoint=checkpoint)
    from pnp_stable.volume import CHECKPOINT_SUFFIXES, is_checkpoint_file, reconstruct_volume, selected_rows

    state_files = [] if checkpoint is None else [Path(f"{checkpoint}{suffix}") for suffix in CHECKPOINT_SUFFIXES]
    for option, target in (("--out", out_path), ("--report", report)):
        if checkpoint is not None and target is not None and is_checkpoint_file(Path(target), Path(checkpoint)):
            raise UserError(f"{option} {target} is a file of --checkpoint {checkpoint} (its state, slices, reports "
                            "and the slices in progress: FILE, FILE.slices.npy, FILE.reports.jsonl, FILE.slice, "
                            "FILE.slice.ROW with --workers)")
    if checkpoint is not None and not resume and Path(checkpoint).exists():
        raise UserError(f"checkpoint {checkpoint} exists: resume it (--resume), or choose another --checkpoint")
    for folder in (p for p in inputs if p.is_dir()):
        for option, target in (("--out", out_path), *(("--checkpoint", f) for f in state_files)):
            if target.resolve().parent == folder.resolve():
                raise UserError(f"{option} {target} lies in the folder of frames {folder}, where the next run would "
                                "read it as a frame", hint=f"write it beside the folder ({folder.parent})")

    from pnp_stable.cli.images import read_stack
    from pnp_stable.cli.options import read_option_file

    for option, source in (("--flat", flat), ("--dark", dark)):
        if isinstance(source, Path) and source.resolve() == data.resolve():
            raise UserError(f"{option} {source} is the projections themselves")

    def read_excluding_the_others(path: Path):  # a folder's images that are other inputs are no frames
        return read_stack(path, exclude=tuple(p for p in inputs if p.resolve() != path.resolve()))

    stack = read_option_file(data, "projections", read_excluding_the_others)
    n_angles, n_rows, n_cols = stack.shape
    if n_angles < 2:
        raise UserError(f"{data.name} holds one 2-D image, not a stack of projections (angles x rows x columns); a "
                        "sinogram is read without --projections")
    if count_given is not None and count_given != n_angles:
        raise UserError(f"{data.name} holds {n_angles} projections (its first axis: angles x rows x columns) but "
                        f"--angles is {count_given}")
    flats = read_option_file(flat, "--flat", read_excluding_the_others)
    darks = read_option_file(dark, "--dark", read_excluding_the_others)
    _check_frames(flats, "--flat", (n_rows, n_cols), getattr(flat, "name", ""))
    _check_frames(darks, "--dark", (n_rows, n_cols), getattr(dark, "name", ""))
    selection = parse_rows(rows)
    try:
        chosen = selected_rows(selection, n_rows)
    except ValueError as error:
        raise UserError(f"--rows {rows}: {error}") from None
    if not quiet:
        files, doubt = "", None
        if data.is_dir():
            from pnp_stable.cli.images import frame_files, frame_order_doubt

            listed = frame_files(data, tuple(inputs[1:]))
            files = f" (files {listed[0].name} to {listed[-1].name}, in the order of their names)"
            doubt = frame_order_doubt(listed)
        import torch

        from pnp_stable.worker_pool import usable_cores

        cores = usable_cores()
        on_cpu = options.get("device") == "cpu" or options.get("device") == "auto" and not torch.cuda.is_available()
        # (worth a few seconds' start only for more than a few slices)
        idle = f" (one at a time: --workers auto solves up to {cores} at once)" if (
            on_cpu and shown.get("workers") is None and cores > 1 and len(chosen) >= SLICES_WORTH_WORKERS) else ""
        click.echo(f"{data.resolve().name}: {n_angles} projections of {n_rows} x {n_cols} detector pixels{files}; "
                   f"reconstructing {_rows_text(chosen)}{idle}", err=True)
        if doubt and not isinstance(angles, list):
            click.echo(f"note: the frames are taken as uniform angles in the order of their names, but {doubt}: "
                       "check the order, or list the angles (--angles FILE)", err=True)
    from pnp_stable.cli.reporting import solver_warnings

    with solver_warnings(True):  # per-slice residual warnings: the summary counts them
        result = reconstruct_volume(stack, rows=selection, flat=flats, dark=darks, gain=gain, photons=photons,
                                    angles=None if isinstance(angles, int) else angles, checkpoint=checkpoint,
                                    resume=resume, progress=not quiet, **options)
    if not quiet:
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
    if result.stopped == "interrupted":
        kept = f"kept in {checkpoint}: the same command with --resume continues" if checkpoint else \
            "lost (no --checkpoint)"
        planned = len(chosen) - len(result.shared.get("rows_left_out", ()))  # (a tilt's end rows left out)
        click.echo(f"interrupted: {len(result.rows)} of {planned} slices reconstructed, {kept}", err=True)
        sys.exit(130)
    if result.stopped == "non-finite":
        # a resume takes the same options, which diverge again: the remedy is a new run
        raise UserError(f"the iteration diverged on row {result.reports[-1]['row']} (non-finite values); nothing was "
                        "written", hint="run again with a smaller --step, or leave it to the automatic rule"
                        + (" (a new --checkpoint: this one holds these options)" if checkpoint else ""))
    write_volume(out_path, result.volume, tuple(inputs))
    slices = [_slice_summary(r) for r in result.reports]
    if report:
        from pnp_stable.fileio import atomic_write_json

        payload = {"command": "ct", "input": str(data), "output": str(out_path), "options": shown,
                   "projections": {"shape": [n_angles, n_rows, n_cols], "dtype": str(stack.dtype),
                                   "angles_deg": result.reports[0]["operator"]["angles_deg"]},
                   "volume": {"shape": list(result.volume.shape), "rows": result.rows},
                   "shared": result.shared, "notes": result.notes, "all_guaranteed": result.all_guaranteed,
                   "slices": slices}
        try:
            atomic_write_json(Path(report), payload, default=str)
        except ValueError as error:
            raise UserError(str(error)) from None
    if not quiet:
        for s in slices:
            if not s["guaranteed"]:
                click.echo(f"warning: row {s['row']}: no convergence guarantee ({s['reason']})", err=True)
    click.echo(_summary_line(out_path, result, slices))


def _rows_text(rows: list[int]) -> str:
    if len(rows) == 1:
        return f"row {rows[0]}"
    contiguous = rows == list(range(rows[0], rows[-1] + 1))
    return f"{len(rows)} rows ({rows[0]}-{rows[-1]}{'' if contiguous else ', not contiguous'})"


def _slice_summary(report: dict[str, Any]) -> dict[str, Any]:
    solver = report["solver"]
    guarantee = solver["guarantee"]
    return {"row": report["row"], "iterations": solver["iterations"], "converged": solver["converged"],
            "stopped_by": solver["stopped_by"], "monotone": solver["monotone"],
            "guaranteed": guarantee["holds"], "proven": guarantee["proven"], "reason": guarantee["reason"],
            "noise": report["noise"], "time_s": report.get("metrics", {}).get("time_s"), "notes": report["notes"],
            **({"detector_rows": report["detector_rows"]} if "detector_rows" in report else {})}


def _summary_line(out_path: Path, result, slices: list[dict[str, Any]]) -> str:
    from pnp_stable.layers.certificates import format_upper_bound

    count = len(slices)
    iterations = [s["iterations"] for s in slices]
    spread = f"{min(iterations)}" if min(iterations) == max(iterations) else f"{min(iterations)}-{max(iterations)}"
    converged = sum(s["converged"] for s in slices)
    monotone = sum(s["monotone"] for s in slices)
    guaranteed = sum(s["guaranteed"] for s in slices)
    first = result.reports[0]["solver"]
    alpha = first["guarantee"]["constants"].get("alpha_denoiser")
    what = first["method"].upper() + (f" with {format_upper_bound(alpha)}-averaged denoiser" if alpha is not None
                                      else "")
    if guaranteed == count:
        verdict = ("guaranteed" if all(s["proven"] for s in slices) else "guaranteed if assumptions hold") + f": {what}"
    else:
        verdict = f"convergence guaranteed in {guaranteed}/{count}"
    n = result.volume.shape[-1]
    counted = f"{count} slice{'s' if count > 1 else ''}"
    return (f"reconstructed {out_path}  {counted} of {n}x{n} ({_rows_text(result.rows)})  {spread} it  "
            f"converged {converged}/{count} (monotone {monotone}/{count}, {verdict})")

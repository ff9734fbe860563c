"""Writing a restoration's outputs (image, JSON report, plot) and its one-line summary."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

import click

from pnp_stable.cli.errors import UserError
from pnp_stable.fileio import atomic_write_json, destination_problem, figure_format


@contextlib.contextmanager
def solver_warnings(quiet: bool) -> Iterator[None]:
    """With ``--quiet`` only the summary line is printed: it already counts the fixed-point
    residual's increases (``MonotonicityWarning``), and a kernel's renormalisation to sum 1
    (``KernelNormalizationWarning``) is a note. Those warnings are dropped; others pass."""
    with warnings.catch_warnings():
        # a diverged solve is refused with one error line that says so (refuse_diverged)
        warnings.filterwarnings("ignore", message=r".* produced non-finite values", category=RuntimeWarning)
        if quiet:
            from pnp_stable.operators.kernels import KernelNormalizationWarning
            from pnp_stable.solvers import MonotonicityWarning

            warnings.simplefilter("ignore", MonotonicityWarning)
            warnings.simplefilter("ignore", KernelNormalizationWarning)
        yield


def check_outputs(input_path: Path | None, *, out_given: bool = True, **targets: str | Path | None) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy something: each of
    ``targets`` (option name -> path, None skipped; ``out`` for ``--out`` ...) must not be the input,
    must not be another target, must have a folder that exists, and ``out`` / ``plot`` a type we
    write. One-line user errors (exit code 2) naming the option (``out_given`` False: the restored
    image's default name, which no option gave, is named as such)."""
    from pnp_stable.cli.images import IMAGE_SUFFIXES

    seen: dict[Path, str] = {}
    for option, target in targets.items():
        if target is None:
            continue
        flag = f"--{option}" if option != "out" or out_given else "the output"
        path = Path(target)
        resolved = path.resolve()
        if input_path is not None and resolved == Path(input_path).resolve():
            raise UserError(f"refusing to overwrite the input {Path(input_path).name}",
                            hint=f"choose another {flag} name")
        if resolved in seen:
            raise UserError(f"{seen[resolved]} and {flag} name the same file ({path})")
        seen[resolved] = flag
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.exists():
            raise UserError(f"output folder '{folder}' of {flag} does not exist")
        if not folder.is_dir():
            raise UserError(f"cannot write {path} ({flag}): '{folder}' is not a folder")
        if path.is_dir():
            raise UserError(f"{flag} {path} is a folder; name a file")
        # a folder that exists but cannot be written (permissions, a read-only file system such as
        # /sys) would otherwise only fail after the solve, with some outputs already written
        problem = destination_problem(path)
        if problem:
            raise UserError(f"cannot write {flag} {path}{problem}")
        if option == "out" and path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{flag} {path.name}: unsupported type {path.suffix or '(none)'}; use "
                            + ", ".join(IMAGE_SUFFIXES))
        if option == "plot":
            try:
                figure_format(path)
            except ValueError as error:
                raise UserError(f"{flag} {error}") from None
        if option == "checkpoint" and path.suffix.lower() in IMAGE_SUFFIXES:
            # a solver state named like an image would be read as one by the next run on its folder
            raise UserError(f"{flag} {path.name}: a solver state is no image; name it e.g. {path.stem}.state")


def finish_restoration(command: str, restoration, loaded, input_path, out_path: Path, report, plot,
                       options: dict[str, Any], quiet: bool, output_bit_depth: int | None = None,
                       resume_hint: str | None = None) -> None:
    """Write the restored image in the input's bit depth (or ``output_bit_depth``), the report and the
    plot (a restoration of :mod:`pnp_stable.restore`; a denoising has no plot); print the summary.
    A CT reconstruction on another scale than [0, 1] (``report["operator"]["data_scale"]``) keeps its
    values in a ``.npy`` and is written divided by that scale in an image file (a note says so)."""
    from pnp_stable.cli.images import write_image

    refuse_diverged(restoration)
    img = restoration.image
    data_scale = restoration.report.get("operator", {}).get("data_scale", 1.0)
    peak = float(img.max()) if img.numel() else 0.0
    if out_path.suffix.lower() != ".npy" and (data_scale != 1.0 or peak > 1.0):
        # a CT reconstruction of real data may exceed its data scale (a percentile, not a maximum):
        # divided by the larger of the two, nothing saturates
        divisor = max(data_scale, peak)
        img = img / divisor
        restoration.notes.append(f"{out_path.name} holds the reconstruction divided by {divisor:.4g} (an image "
                                 "file holds [0, 1]); write a .npy for the values on the sinogram's scale")
    arr = img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy()
    protect = tuple(p for p in [input_path] if p is not None)
    depth = output_bit_depth or loaded.bit_depth
    write_image(out_path, arr, depth if out_path.suffix.lower() != ".npy" else None, protect=protect)
    if report:
        payload = {
            "command": command,
            "input": None if input_path is None else str(input_path),
            "output": str(out_path),
            "options": options,
            "image": {"shape": list(restoration.image.shape), "bit_depth": loaded.bit_depth,
                      "notes": list(loaded.notes)},
            **restoration.report,
        }
        atomic_write_json(Path(report), payload, default=str)
    if plot:
        restoration.plot(plot)
    if not quiet:
        for note in list(loaded.notes) + list(restoration.notes):
            click.echo(f"note: {note}", err=True)
        g = restoration.guarantee  # None for a denoising (no iterations)
        if g is not None and not g.holds:
            click.echo(f"warning: {g.reason[0].lower()}{g.reason[1:]}", err=True)
    click.echo(restoration.summary_line(str(out_path)))
    saved = restoration.report.get("checkpoint")
    if saved and not restoration.result.converged and not quiet:  # --quiet: the summary line only
        # --max-iter is the total over the invocations: a run stopped at it continues only with a larger one
        hint = resume_hint or ("the same command with a larger --max-iter and --resume continues it"
                               if restoration.result.stopped_by == "max_iter" else
                               "the same command with --resume continues it")
        click.echo(f"solver state saved to {saved['path']}: {hint}", err=True)


def refuse_diverged(restoration) -> None:
    """A solve stopped because its iterates became non-finite has no restored image: writing its
    NaNs cast to an image file gives a black picture and a numpy cast warning, with exit code 0.
    Refuse (one line, exit 2) naming why, before any output is written."""
    result = getattr(restoration, "result", None)
    if result is None or result.stopped_by != "non-finite":
        return
    g = restoration.guarantee
    why = ""
    if g is not None and not g.holds:
        reason = g.reason.rstrip(".")
        head, sep, rest = reason.partition(":")
        if sep and head.strip().lower() == "no convergence guarantee":
            reason = rest.strip()
        why = f": no convergence guarantee at these settings ({reason})"
    raise UserError(f"the iteration diverged (non-finite values after {result.iterations} iteration(s)){why}; "
                    "nothing was written", hint="use a smaller --step, or leave it to the automatic rule")

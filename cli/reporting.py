"""Writing a restoration's outputs (image, JSON report, plot) and its one-line summary."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import click

from pnp_stable.cli.errors import UserError


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from pnp_stable.solvers.result import _finite_or_none

    data = json.dumps(_finite_or_none(payload), indent=2, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def solver_warnings(quiet: bool) -> Iterator[None]:
    """With ``--quiet`` only the summary line is printed, and it already counts the fixed-point
    residual's increases: their warnings (``MonotonicityWarning``) are dropped. Other warnings pass."""
    with warnings.catch_warnings():
        if quiet:
            from pnp_stable.solvers import MonotonicityWarning

            warnings.simplefilter("ignore", MonotonicityWarning)
        yield


def refuse_to_overwrite(input_path: Path | None, *targets) -> None:
    """A one-line user error if any of ``targets`` (output, report, plot, checkpoint; None skipped)
    is the input file itself."""
    if input_path is None:
        return
    for target in targets:
        if target is not None and Path(target).resolve() == Path(input_path).resolve():
            raise UserError(f"refusing to overwrite the input {Path(input_path).name}",
                            hint="choose another output name")


def finish_restoration(command: str, restoration, loaded, input_path, out_path: Path, report, plot,
                       options: dict[str, Any], quiet: bool) -> None:
    """Write the restored image in the input's bit depth, the report and the plot; print the summary."""
    from pnp_stable.cli.images import write_image

    img = restoration.image
    arr = img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy()
    protect = tuple(p for p in [input_path] if p is not None)
    write_image(out_path, arr, loaded.bit_depth if out_path.suffix.lower() != ".npy" else None, protect=protect)
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
        _write_json(Path(report), payload)
    if plot:
        restoration.result.plot(plot)
    if not quiet:
        for note in list(loaded.notes) + list(restoration.notes):
            click.echo(f"note: {note}", err=True)
        g = restoration.result.guarantee
        if not g.holds:
            click.echo(f"warning: {g.reason[0].lower()}{g.reason[1:]}", err=True)
    click.echo(restoration.summary_line(str(out_path)))
    saved = restoration.report.get("checkpoint")
    if saved and not restoration.result.converged:
        click.echo(f"solver state saved to {saved['path']}: the same command with --resume continues it", err=True)

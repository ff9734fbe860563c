"""Output helpers shared by the example scripts: the output folder, atomic writes, Agg figures,
and the argument parser whose errors are one line with exit code 2.

Every file an example produces goes through :func:`pnp_stable.fileio.atomic_output` (a temporary
name in the same folder, flushed to disk, then moved into place with ``os.replace``), so an
interrupted run never leaves a half-written figure or summary.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # examples run headless (CI, ssh); must precede any pyplot import

from matplotlib.figure import Figure  # noqa: E402

from pnp_stable.fileio import atomic_output, destination_problem, figure_format  # noqa: E402

__all__ = [
    "ExampleParser",
    "fill_quick_defaults",
    "markdown_table",
    "moving_average",
    "non_negative_float",
    "output_dir",
    "positive_float",
    "positive_int",
    "save_figure_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

EXAMPLES_DIR = Path(__file__).resolve().parent


def output_dir(out: str | os.PathLike | None, name: str) -> Path:
    """The folder an example writes into: ``out`` if given, else ``examples/output/<name>/``."""
    path = Path(out) if out is not None else EXAMPLES_DIR / "output" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> Path:
    """Call ``write(handle)`` on a binary handle of a temporary file that replaces ``path`` only if
    ``write`` returns (the package's :func:`~pnp_stable.fileio.atomic_output`)."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return path


# -- command line --------------------------------------------------------------------------
def _number(cast: Callable[[str], Any], test: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a positive number")
non_negative_float = _number(float, lambda v: v >= 0 and v != float("inf"), "a non-negative number")


class ExampleParser(argparse.ArgumentParser):
    """``argparse`` with one-line errors (``<script>: error: ...``, exit code 2, no usage dump)
    and an ``--out`` that must be a folder (or not exist yet)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        out = getattr(parsed, "out", None)
        problem = None if out is None else destination_problem(out, folder=True)
        if problem:
            self.error(f"--out {out}{problem}")
        return parsed


def fill_quick_defaults(args: argparse.Namespace, **defaults: tuple[Any, Any]) -> None:
    """Set each option left unset (None) to its ``(quick, full)`` default, by ``args.quick``."""
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write(Path(path), lambda h: h.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_figure_atomic(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure (format from the suffix) atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = figure_format(path)
    try:
        return _atomic_write(path, lambda h: fig.savefig(h, format=fmt, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed with 4 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` entries (shorter at the start), for noisy loss curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out

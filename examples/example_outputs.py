"""Output helpers shared by the example scripts: the output folder, atomic writes, Agg figures.

Every file an example produces is written to a temporary name in the same folder and moved into
place with ``os.replace``, so an interrupted run never leaves a half-written figure or summary.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # examples run headless (CI, ssh); must precede any pyplot import

from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "markdown_table",
    "moving_average",
    "output_dir",
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


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    # a fresh name in the same folder (same filesystem, so os.replace is atomic); opened with
    # "xb" rather than mkstemp so the file gets the user's umask, not mode 0600
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
    fmt = path.suffix.lstrip(".") or "png"
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

"""Accuracy-versus-eps plot of several models (cf. Figure 14 of the companion chapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pnp_stable.classify.evaluation import RobustnessReport
from pnp_stable.fileio import atomic_output, figure_format

__all__ = ["plot_robustness"]


def plot_robustness(reports: Mapping[str, RobustnessReport], path: str | Path, title: str | None = None) -> Path:
    """Plot PGD accuracy (solid) and certified accuracy (dashed) against eps, eps = 0 being the
    clean accuracy, one colour per model; written atomically to ``path`` (format from its suffix,
    see :func:`pnp_stable.fileio.figure_format`)."""
    # the object-oriented API needs no pyplot backend (and leaves the user's backend alone)
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = figure_format(path)
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    for i, (name, r) in enumerate(reports.items()):
        colour = f"C{i}"
        eps = [0.0, *r.eps]
        ax.plot(eps, [100 * a for a in (r.clean_accuracy, *r.pgd_accuracy)], "-o", color=colour, ms=3,
                label=f"{name}: l2-PGD ({r.pgd.get('steps', '?')} steps)")
        if r.certified_accuracy is not None and max(r.certified_accuracy, default=0.0) > 0:
            ax.plot(eps, [100 * a for a in (r.clean_accuracy, *r.certified_accuracy)], "--", color=colour,
                    label=f"{name}: certified (L = {r.lipschitz_bound:.3g})")
    ax.set_xlabel("l2 radius eps (pixels in [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_output(path, make_parents=True) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return path

"""The result of a PnP solve: the image, the guarantee, and the residual history; JSON, plots, and a
resumable state file."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from pnp_stable.fileio import atomic_write_bytes, atomic_write_json, figure_format, read_torch_file
from pnp_stable.solvers.guarantee import Guarantee

__all__ = ["SOLVE_STATE_FORMAT", "SolveResult", "load_solve_state", "save_solve_state"]


@dataclass
class SolveResult:
    """Outcome of :func:`pnp_stable.solvers.solve`.

    ``x`` is the restored batch (the denoiser output at the final iterate), ``state`` the
    governing variable (x for FB, w = x + u for ADMM, z for DRS) to resume from. ``iterations``
    and ``converged`` summarise the batch (max / all); the ``*_per_image`` lists give details.
    ``history`` holds one dict per iteration with per-image lists (``None`` once an image has
    stopped): ``residual`` (absolute ``||T w_k - w_k||``), ``relative_residual``, ``psnr``/``ssim``
    when ``x_true`` was given, ``update`` (how ``w_k`` was reached: start/plain/anderson), plus
    ``evaluations`` (cumulative evaluations of ``T``), ``time`` (seconds since start) and
    ``iteration_time``. ``monotone`` is True if no image's absolute residual increased beyond
    floating-point tolerance. ``continuation`` holds what ``resume`` needs to continue bit for bit:
    ``T~ state`` (``t_state``), its certified error bounds (``t_error``) and the operator's CG warm
    start (``warm_start``) as of the last recorded iterate.
    """

    x: torch.Tensor
    state: torch.Tensor
    method: str
    iterations: int
    converged: bool
    history: list[dict[str, Any]]
    guarantee: Guarantee
    monotone: bool
    iterations_per_image: list[int]
    converged_per_image: list[bool]
    monotonicity_violations: list[int]
    first_violation: list[int | None]
    parameters: dict[str, Any]
    evaluations: int
    wall_time: float
    stopped_by: str
    anderson: dict[str, Any] | None = None
    certificate: dict[str, Any] | None = None
    tol: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # what a resumed solve needs to continue bit for bit (T~ state, its certified error bounds, the
    # operator's CG warm start); None for results written before it was kept
    continuation: dict[str, Any] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # the dataclass default would print both tensors and every history row
        # as the command line's summary says it: a guarantee resting on an assumption (an estimated
        # norm, an inexact prox) is not printed as a proven one
        verdict = ("NO guarantee" if not self.guarantee.holds else
                   "guaranteed" if self.guarantee.proven else "guaranteed if assumptions hold")
        return (f"SolveResult({self.method}, x {tuple(self.x.shape)}, {self.iterations} it, "
                f"{self.stopped_by}, {'monotone' if self.monotone else 'residual increased'}, {verdict})")

    def final_residuals(self) -> list[float | None]:
        """The last recorded absolute residual of each image."""
        out: list[float | None] = [None] * len(self.iterations_per_image)
        for row in self.history:
            for i, r in enumerate(row["residual"]):
                if r is not None:
                    out[i] = r
        return out

    def summary(self) -> dict[str, Any]:
        """Everything but the tensors and the per-iteration history."""
        return {
            "method": self.method,
            "iterations": self.iterations,
            "converged": self.converged,
            "monotone": self.monotone,
            "iterations_per_image": self.iterations_per_image,
            "converged_per_image": self.converged_per_image,
            "monotonicity_violations": self.monotonicity_violations,
            "first_violation": self.first_violation,
            "final_residuals": self.final_residuals(),
            "evaluations": self.evaluations,
            "wall_time": self.wall_time,
            "stopped_by": self.stopped_by,
            "tol": self.tol,
            "parameters": self.parameters,
            "guarantee": self.guarantee.as_dict(),
            "certificate": self.certificate,
            "anderson": self.anderson,
            "shape": list(self.x.shape),
            "dtype": str(self.x.dtype).replace("torch.", ""),
            **self.extra,
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the summary and the full history as JSON (atomically; non-finite numbers as null)."""
        atomic_write_json(path, {**self.summary(), "history": self.history}, default=str)

    def plot(self, path: str | os.PathLike | None = None):
        """Plot the absolute residual on a log scale (and PSNR if recorded); returns the matplotlib
        ``Figure`` (for a notebook: display it, or ``fig.savefig``).

        With ``path`` the figure is also written there, atomically; the file format follows its
        suffix (png, pdf, svg, jpg, ...: :func:`pnp_stable.fileio.figure_format`). Increases beyond float tolerance are marked with red crosses.
        """
        fmt = None if path is None else figure_format(path)
        # the Agg canvas is used directly: no pyplot, no change to the user's global backend
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        has_psnr = any(row.get("psnr") for row in self.history)
        fig = Figure(figsize=(7, 6 if has_psnr else 3.6))
        FigureCanvasAgg(fig)
        axes = fig.subplots(2 if has_psnr else 1, 1, sharex=True, squeeze=False)[:, 0]
        batch = len(self.iterations_per_image)
        for i in range(batch):
            rows = [row for row in self.history if row["residual"][i] is not None]
            its = [row["iteration"] for row in rows]
            res = [max(row["residual"][i], 1e-300) for row in rows]
            label = f"image {i}" if batch > 1 else "||w_{k+1} - w_k||"
            line = axes[0].semilogy(its, res, label=label)[0]
            bad = [(k, r) for k, r, row in zip(its, res, rows) if row.get("increase") and row["increase"][i]]
            if bad:
                axes[0].plot([k for k, _ in bad], [r for _, r in bad], "x", color="red")
            if has_psnr:
                ps = [row["psnr"][i] for row in self.history if row.get("psnr") and row["psnr"][i] is not None]
                pit = [row["iteration"] for row in self.history if row.get("psnr") and row["psnr"][i] is not None]
                axes[1].plot(pit, ps, color=line.get_color())
        status = "proven" if self.guarantee.proven else ("conditional" if self.guarantee.holds else "no guarantee")
        axes[0].set_title(f"{self.method.upper()}: absolute fixed-point residual ({status}; monotone={self.monotone})")
        axes[0].set_ylabel("residual")
        axes[0].grid(True, which="both", alpha=0.3)
        if batch > 1:
            axes[0].legend(fontsize="small")
        if has_psnr:
            axes[1].set_ylabel("PSNR (dB)")
            axes[1].grid(True, alpha=0.3)
        axes[-1].set_xlabel("iteration")
        fig.tight_layout()
        if path is not None:
            buffer = io.BytesIO()
            # a PNG says what it is, so that a folder run does not take an earlier run's plot for an image
            fig.savefig(buffer, format=fmt, **({"metadata": {"Software": PLOT_SOFTWARE}} if fmt == "png" else {}))
            atomic_write_bytes(path, buffer.getvalue())
        return fig



SOLVE_STATE_FORMAT = "pnp-stable-solve/1"
# the Software text of a residual plot written as PNG (SolveResult.plot)
PLOT_SOFTWARE = "pnp-stable residual plot"

# the dataclass fields stored as they are (plain numbers, strings, lists and dicts of them)
_PLAIN_FIELDS = ("method", "iterations", "converged", "history", "monotone", "iterations_per_image",
                 "converged_per_image", "monotonicity_violations", "first_violation", "parameters", "evaluations",
                 "wall_time", "stopped_by", "anderson", "certificate", "tol", "extra")


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor (in nested dicts and lists) detached and on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def save_solve_state(path: str | os.PathLike, result: SolveResult, metadata: dict[str, Any] | None = None) -> None:
    """Write ``result`` (a finished, interrupted or snapshot solve) so that :func:`load_solve_state`
    gives back a valid ``solve(..., resume=...)``; atomically, so a crash mid-write leaves the
    previous file intact. ``metadata`` (plain values) is stored beside it, e.g. what identifies the
    problem. Only tensors and plain Python values are written, so loading needs no pickle trust."""
    payload = {
        "format": SOLVE_STATE_FORMAT,
        "x": result.x.detach().cpu(),
        "state": result.state.detach().cpu(),
        "guarantee": result.guarantee.as_dict(),
        "metadata": dict(metadata or {}),
        "continuation": _to_cpu(result.continuation),
        **{name: getattr(result, name) for name in _PLAIN_FIELDS},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_solve_state(path: str | os.PathLike) -> tuple[SolveResult, dict[str, Any]]:
    """Read a file written by :func:`save_solve_state`: ``(result, metadata)``; ValueError if it
    cannot be read or is not one."""
    payload = read_torch_file(path, "a pnp-stable solver state")
    if not isinstance(payload, dict) or payload.get("format") != SOLVE_STATE_FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a pnp-stable solver state")
    g = payload["guarantee"]
    guarantee = Guarantee(holds=g["holds"], reason=g["reason"], method=g["method"], theorem=g["theorem"],
                          constants=dict(g["constants"]), assumptions=tuple(g["assumptions"]),
                          actions=tuple(g["actions"]))
    result = SolveResult(x=payload["x"], state=payload["state"], guarantee=guarantee,
                         continuation=payload.get("continuation"),
                         **{name: payload[name] for name in _PLAIN_FIELDS})
    return result, dict(payload["metadata"])

"""Shared pieces of the solver benchmarks: data of DESIGN.md §5 deblur-quick, denoisers, deepinv runs.

Only the benchmarks import this file. Data come from ``--data`` (default ``../shared/data``
relative to the repository root).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
QUICK_IMAGES = ("test001", "test002", "test003", "test004")
QUICK_KERNELS = ("levin_1", "levin_5", "gaussian_25x25_sigma1.6", "uniform_9x9")
QUICK_NOISE = 0.01
CROP = 256


def load_gray(path: Path) -> torch.Tensor:
    """``1 x 1 x H x W`` float64 in [0, 1] (colour images converted with PIL's ITU-R 601 luma)."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr)[None, None]


def load_rgb(path: Path) -> torch.Tensor:
    """``1 x 3 x H x W`` float64 in [0, 1]."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def cbsd68_file(data: Path, gray_name: str) -> Path:
    """The CBSD68 colour file of BSD68 image ``gray_name`` (e.g. ``test001``), from the shared index CSV."""
    import csv

    index = data / "denoising" / "cbsd68_index.csv"
    if not index.is_file():
        raise ValueError(f"{index} not found (is --data the shared data folder?)")
    with open(index, newline="") as f:
        for row in csv.DictReader(f):
            if Path(row["bsd68_gray_file"]).stem == gray_name:
                return data / "denoising" / "cbsd68" / row["cbsd68_file"]
    raise ValueError(f"{gray_name} has no CBSD68 counterpart in {index}")


def centre_crop(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def load_kernel(data: Path, name: str) -> np.ndarray:
    path = data / "kernels" / "npy" / f"{name}.npy"
    if not path.is_file():
        raise ValueError(f"kernel file {path} not found (is --data the shared data folder?)")
    return np.load(path).astype(np.float64)


@dataclass
class Problem:
    image: str
    kernel: str
    x: torch.Tensor
    y: torch.Tensor
    operator: Any


def deblur_problems(
    data: Path, images: tuple[str, ...], kernels: tuple[str, ...], folder: str, noise: float, dtype: torch.dtype,
    crop: int | None = CROP, color: str | None = None, first_index: int = 0,
) -> list[Problem]:
    """Circular-blur problems; the noise generator of image number ``i`` (0-based in ``images``, counted
    from ``first_index``) is seeded with ``i``. ``crop=None`` keeps the full images.

    ``color`` reads the images in RGB (for ``denoising/bsd68``, which is gray, the CBSD68 colour
    version of each image) and shapes the problem for a colour mode: ``"opponent"`` one ``1 x 3 x H x W`` problem, ``"per-channel"`` a batch of
    three gray problems ``3 x 1 x H x W`` (the same observation, blurred and noised once in RGB).
    """
    from pnp_stable.operators import Blur

    problems = []
    for index, name in enumerate(images, start=first_index):
        if color is not None and folder == "denoising/bsd68":  # BSD68 is gray: its colour originals are CBSD68's
            path = cbsd68_file(data, name)
            if not path.is_file():
                raise ValueError(f"colour image {path} not found")
        else:
            candidates = sorted((data / folder).glob(f"{name}.*"))
            if not candidates:
                raise ValueError(f"image {name} not found in {data / folder}")
            path = candidates[0]
        x = load_gray(path) if color is None else load_rgb(path)
        x = (x if crop is None else centre_crop(x, crop)).to(dtype)
        channels, h, w = x.shape[1:]
        for kernel_name in kernels:
            k = load_kernel(data, kernel_name)
            op = Blur(k, (channels, h, w), boundary="circular")
            y = op.simulate(x, noise, seed=index)
            if color == "per-channel":
                x_b, y_b = x.reshape(channels, 1, h, w), y.reshape(channels, 1, h, w)
                problems.append(Problem(name, kernel_name, x_b, y_b, Blur(k, (1, h, w), boundary="circular")))
            else:
                problems.append(Problem(name, kernel_name, x, y, op))
    return problems


def add_solver_arguments(parser: Any, denoiser_default: str) -> None:
    """The options every deblurring benchmark takes: data folder, denoiser, method, acceleration,
    stopping rule."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--denoiser", default=denoiser_default,
                        help="tv | random-certified | NAME | PATH (pnp_stable.denoisers.load)")
    parser.add_argument("--method", default="admm", choices=["fb", "admm", "drs"])
    parser.add_argument("--accelerate", default="anderson", choices=["none", "anderson"])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=500)


def solve_problem(problem: Problem, denoiser: torch.nn.Module, method: str, tol: float, max_iter: int,
                  accelerate: str | None, noise_level: float | None = None, rule: Any = None) -> tuple[dict[str, Any], Any]:
    """Solve one problem with ``pnp_stable.solve`` (parameters automatic unless ``rule``; noise level
    estimated unless given) and return the benchmark record of the run, with the solver's result."""
    from pnp_stable.solvers import solve

    reset_denoiser_state(denoiser)
    start = time.perf_counter()
    res = solve(problem.y, problem.operator, denoiser, method=method, tol=tol, max_iter=max_iter,
                accelerate=accelerate, progress=False, noise_level=noise_level, rule=rule)
    wall = time.perf_counter() - start
    run = {
        "image": problem.image, "kernel": problem.kernel, "psnr": psnr(res.x, problem.x), "iterations": res.iterations,
        "evaluations": res.evaluations, "wall": wall, "converged": res.converged, "monotone": res.monotone,
        "violations": sum(res.monotonicity_violations), "guarantee": res.guarantee.holds,
        "proven": res.guarantee.proven,
        "parameters": {k: res.parameters[k] for k in ("step", "sigma_den", "relaxation", "km_relaxation")},
        "noise_level": (res.parameters["automatic"] or {}).get("noise_level"),
    }
    return run, res


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean PSNR, iterations and evaluations, total wall time, and the counts the protocols report."""
    n = len(runs)
    return {
        "runs": n,
        "mean_psnr": sum(r["psnr"] for r in runs) / n,
        "mean_iterations": sum(r["iterations"] for r in runs) / n,
        "mean_evaluations": sum(r["evaluations"] for r in runs) / n,
        "total_wall": sum(r["wall"] for r in runs),
        "monotone_runs": sum(r["monotone"] for r in runs),
        "converged_runs": sum(r["converged"] for r in runs),
        "guarantee": all(r["guarantee"] for r in runs), "proven": all(r["proven"] for r in runs),
    }


def in_colour_mode(denoiser: torch.nn.Module, description: str, color: str | None) -> tuple[torch.nn.Module, str]:
    """The denoiser that restores the problems of ``deblur_problems(..., color=color)``.

    A colour model (one that takes RGB images) runs as it is, in opponent mode only; a gray model
    is wrapped in ``OpponentColorDenoiser`` for ``"opponent"`` and used as it is for
    ``"per-channel"`` (three gray problems) or without a colour mode. Raises ``ValueError`` for a
    colour model asked to restore channels one by one or gray images.
    """
    from pnp_stable.protocols import denoiser_channels

    if denoiser_channels(denoiser) == 3:
        if color != "opponent":
            raise ValueError(f"{description} is a colour model: it restores RGB images as they are (--color opponent)")
        return denoiser, f"{description} (a colour model)"
    if color == "opponent":
        from pnp_stable.denoisers import OpponentColorDenoiser

        return OpponentColorDenoiser(denoiser), f"{description} in opponent colour space"
    if color == "per-channel":
        return denoiser, f"{description}, R, G, B as three gray problems"
    return denoiser, description


def make_denoiser(spec: str, dtype: torch.dtype) -> tuple[torch.nn.Module, str]:
    """``tv`` (deepinv's TVDenoiser declared a prox), ``random-certified`` (untrained), or a shipped NAME/PATH."""
    if spec == "tv":
        from deepinv.models import TVDenoiser

        from pnp_stable.solvers import ProximalDenoiser

        tv = TVDenoiser(n_it_max=1000, crit=1e-5)
        # x2, u2 (primal/dual warm start) and restart are TVDenoiser's state between calls: declared so
        # that a rejected Anderson candidate does not move the warm start of the plain iteration
        return ProximalDenoiser(tv, name="TVDenoiser", inexact="by warm-started Chambolle-Pock (<= 1000 steps, crit 1e-5)",
                                warm_start=("x2", "u2", "restart")), \
            "deepinv TVDenoiser (declared prox)"
    if spec == "random-certified":
        from pnp_stable.layers import CertifiedSequential, Lift, Projection, conv_block

        torch.manual_seed(0)
        net = CertifiedSequential(Lift(1, 16), *[conv_block(16) for _ in range(4)], Projection(16, 1))
        return net.to(dtype).eval(), "untrained random certified network (16 ch, 4 blocks)"
    from pnp_stable.denoisers import load

    model = load(spec)
    return model.to(dtype).eval(), f"pnp_stable.denoisers.load({spec!r})"


def reset_denoiser_state(denoiser: torch.nn.Module) -> None:
    """Forget warm starts kept between calls (deepinv's TVDenoiser), so runs are independent."""
    for m in denoiser.modules():
        if hasattr(m, "restart") and hasattr(m, "x2"):
            m.restart = True
            m.x2 = m.u2 = None


class CallCounter(torch.nn.Module):
    """Counts calls of a deepinv-facing denoiser (deepinv's loops do not report iteration counts)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: Any = None, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        return self.inner(x, sigma)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float((x.clamp(0, 1) - ref).to(torch.float64).pow(2).mean())
    return -10.0 * np.log10(mse)


def run_deepinv(method: str, problem: Problem, denoiser: torch.nn.Module, params: dict[str, Any], tol: float,
                max_iter: int) -> dict[str, Any]:
    """deepinv's own PGD/ADMM/DRS loop with the same (relaxed) denoiser, step and noise level.

    Its stopping test is deepinv's: mean relative change of x below ``tol`` (``early_stop=True``).
    """
    import deepinv as dinv

    from pnp_stable.solvers.interop import to_deepinv_denoiser, to_deepinv_physics

    counter = CallCounter(to_deepinv_denoiser(denoiser, relaxation=params["relaxation"]))
    common = dict(
        prior=dinv.optim.prior.PnP(denoiser=counter),
        data_fidelity=dinv.optim.data_fidelity.L2(),
        stepsize=params["step"],
        sigma_denoiser=params["sigma_den"],
        max_iter=max_iter,
        early_stop=True,
        thres_conv=tol,
        crit_conv="residual",
    )
    if method == "fb":
        if params["km_relaxation"] != 1.0:
            raise ValueError("deepinv's PGD has no Krasnosel'skii-Mann averaging: cannot compare")
        solver = dinv.optim.PGD(**common)
    elif method == "admm":
        solver = dinv.optim.ADMM(**common)
    else:
        solver = dinv.optim.DRS(**common)
    physics = to_deepinv_physics(problem.operator)
    reset_denoiser_state(denoiser)
    start = time.perf_counter()
    with torch.no_grad():
        x = solver(problem.y, physics)
    wall = time.perf_counter() - start
    return {"psnr": psnr(x, problem.x), "iterations": counter.calls, "wall": wall, "converged": counter.calls < max_iter}

"""High-level restoration tasks: deblurring, super-resolution, inpainting, CT reconstruction, denoising.

Each task builds the operator, picks the denoiser, chooses or estimates the noise level, runs
:func:`pnp_stable.solvers.solve` and returns a :class:`Restoration` holding the image, the solver
result (with its convergence guarantee) and a JSON-able report. The command line is a thin shell
around these functions.

Colour images with a gray denoiser are restored, by default (``color="opponent"``), as one RGB
problem whose denoiser is the gray model applied in an orthonormal opponent colour space
(:class:`pnp_stable.denoisers.OpponentColorDenoiser`: same certificate, better than channel by
channel on colour photographs; docs/denoisers.md). ``color="per-channel"`` restores the three
channels as a batch of three gray problems, each with its own monitored residual and stopping.
When no denoiser is named, gray images get ``gray`` and RGB images in the opponent mode get the
shipped ``color`` (:func:`default_denoiser`): gray weights trained inside that colour denoiser.

Long restorations can be stopped and resumed: with ``checkpoint=PATH`` the solver state is written
(atomically) every ``checkpoint_every`` seconds and when the solve ends or is interrupted, together
with a fingerprint of the problem (observation, operator, denoiser weights, method, parameters);
``resume=True`` continues from it, exactly as if never stopped without acceleration (the state
keeps the CG prox's warm start; with acceleration the Anderson memory restarts), and refuses a file
written for another problem.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pnp_stable.observations import (
    default_super_resolution_kernel, fill_missing, interpolate_samples, observed_mask, rounding_level_floor,
    without_missing_values,
)
from pnp_stable.digest import tensor_digest as _digest
from pnp_stable.fileio import exclusive_use, remove_stale_temporaries

__all__ = ["Restoration", "deblur", "super_resolve", "inpaint", "reconstruct_ct", "denoise", "load_denoiser", "psnr",
           "ssim", "resolve_device", "DEFAULT_DENOISER", "DEFAULT_COLOR_DENOISER", "default_denoiser", "check_unit_range",
           "check_denoiser_channels"]

DEFAULT_DENOISER = "gray"
# the same architecture and certificate as `gray`, trained on RGB images inside the opponent-colour
# denoiser: better than `gray` there (docs/benchmarks.md, "Colour images")
DEFAULT_COLOR_DENOISER = "color"


def default_denoiser(channels: int, color: str = "opponent") -> str:
    """The shipped denoiser the tasks use when none is named: ``DEFAULT_COLOR_DENOISER`` for RGB
    images (``channels == 3``) in the opponent mode, if it is shipped; ``DEFAULT_DENOISER`` otherwise."""
    if channels == 3 and color == "opponent":
        from pnp_stable.denoisers.io import pretrained_dir

        if (pretrained_dir() / f"{DEFAULT_COLOR_DENOISER}.pt").is_file():
            return DEFAULT_COLOR_DENOISER
    return DEFAULT_DENOISER


@dataclass
class Restoration:
    """A restored image with everything needed to report on it.

    Every task returns one: :func:`deblur`, :func:`super_resolve`, :func:`inpaint`,
    :func:`reconstruct_ct` and :func:`denoise`.
    ``image`` is ``C x H x W`` (float32, clipped to [0, 1]; for a CT sinogram on another scale,
    ``report["operator"]["data_scale"]`` times the reconstruction, clipped below at 0); ``observation`` what was restored
    from; ``ground_truth`` set when the problem was simulated. ``result`` is the solver's
    :class:`~pnp_stable.solvers.SolveResult`, or None for :func:`denoise` (one application of the
    denoiser, no iterations). ``report`` is JSON-able.
    """

    image: torch.Tensor
    observation: torch.Tensor
    ground_truth: torch.Tensor | None
    result: Any  # pnp_stable.solvers.SolveResult, None for a denoising
    report: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def psnr(self) -> float | None:
        """PSNR (dB, peak 1) against the ground truth, when the problem was simulated; else None."""
        return self.report.get("metrics", {}).get("psnr")

    @property
    def guarantee(self):  # -> pnp_stable.solvers.Guarantee | None
        """The convergence verdict of the solve (``result.guarantee``); None for a denoising, which
        runs no iteration (the denoiser's own constants are in ``report["denoiser"]``)."""
        return None if self.result is None else self.result.guarantee

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the report (inputs, operator, denoiser, guarantee, metrics, history) as JSON, atomically."""
        from pnp_stable.fileio import atomic_write_json

        atomic_write_json(path, self.report, default=str)

    def plot(self, path: str | os.PathLike | None = None):
        """The residual (and PSNR when known) plot of the solve, a matplotlib ``Figure`` (also written
        to ``path`` if given); see ``SolveResult.plot``. A denoising has no iterations to plot."""
        if self.result is None:
            raise ValueError("a denoising has no iterations to plot (the denoiser is applied once)")
        return self.result.plot(path)

    def __repr__(self) -> str:
        return f"Restoration({self.summary_line()})"

    def summary_line(self, output: str | None = None) -> str:
        """One line: output, PSNR, iterations, convergence and the guarantee in words."""
        from pnp_stable.layers.certificates import format_upper_bound

        r = self.result
        verb = "restored" if r is not None else "denoised"
        parts = [f"{verb} {output}" if output else verb]
        m = self.report.get("metrics", {})
        if m.get("psnr") is not None:
            # the reference the PSNR gain is read against: the observation, or the FBP, the bicubic
            # interpolation ... when the observation is no image of the same size
            parts.append(f"PSNR {m['psnr']:.2f} dB ({m.get('input', 'input')} {m['psnr_input']:.2f})"
                         if m.get("psnr_input") is not None
                         else f"PSNR {m['psnr']:.2f} dB")
        if r is None:
            level = self.report["noise"]["sigma"]
            parts.append(f"noise level {level * 255:.2f}/255")
            parts.append(f"{m['time_s']:.2f} s")
            return "  ".join(parts)
        parts.append(f"{r.iterations} it")
        g = r.guarantee
        status = "converged" if r.converged else f"stopped ({r.stopped_by})"
        mono = "monotone" if r.monotone else f"residual increased {sum(r.monotonicity_violations)}x"
        alpha = g.constants.get("alpha_denoiser")
        if g.holds:
            kind = "guaranteed" if g.proven else "guaranteed if assumptions hold"
            what = f"{r.method.upper()} with {format_upper_bound(alpha)}-averaged denoiser" if alpha is not None else r.method.upper()
            verdict = f"{kind}: {what}"
        else:
            verdict = "NO convergence guarantee"
        parts.append(f"{status} ({mono}, {verdict})")
        return "  ".join(parts)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; an explicit ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but no CUDA GPU is available; use 'cpu'")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def load_denoiser(denoiser: str | nn.Module | None, device: torch.device, channels: int = 1,
                  color: str = "opponent") -> tuple[nn.Module, dict[str, Any]]:
    """A denoiser module (by shipped name, file path, or as given; None: :func:`default_denoiser`
    for images of ``channels`` channels in ``color`` mode) and a description for reports."""
    if denoiser is None:
        denoiser = default_denoiser(channels, color)
    if isinstance(denoiser, nn.Module):
        module, name = denoiser, type(denoiser).__name__
    else:
        from pnp_stable.denoisers import load

        module, name = load(denoiser, device=device), str(denoiser)
    module = module.to(device).eval()
    from pnp_stable.layers.certificates import certificate_of

    cert = certificate_of(module)
    info: dict[str, Any] = {"name": name, "certified": cert is not None}
    if cert is not None:
        info["certificate"] = {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness,
                               "blocks": [dict(d) for d in cert.details]}
    meta = getattr(module, "metadata", None)
    if isinstance(meta, dict):
        info["channels"] = meta.get("channels")
        info["sigma_range_255"] = meta.get("sigma_range_255")
    return module, info


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR with peak 1 of ``x`` clipped to [0, 1] against ``ref`` (DESIGN.md §5 convention)."""
    mse = float((x.clamp(0, 1).double() - ref.double()).pow(2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float | None:
    """Mean SSIM (data range 1) over channels, computed on ``C x H x W`` images (in bounded memory:
    :func:`pnp_stable.metrics.ssim_per_image`); None for an image of at most ``SSIM_WINDOW_RADIUS``
    rows or columns, which its window's reflect padding cannot take."""
    from pnp_stable.metrics import SSIM_WINDOW_RADIUS, ssim_per_image

    if min(x.shape[-2:]) <= SSIM_WINDOW_RADIUS:
        return None

    a = x.clamp(0, 1).reshape(-1, 1, *x.shape[-2:]).float()
    b = ref.reshape(-1, 1, *ref.shape[-2:]).float()
    return float(ssim_per_image(a, b).mean())


def _as_batch(image: torch.Tensor, module: nn.Module, notes: list[str], den_info: dict[str, Any],
              color: str = "opponent") -> tuple[torch.Tensor, bool, nn.Module]:
    """``C x H x W`` -> (the batch the denoiser can take, True if channels were split, the denoiser).

    An RGB image with a gray model: ``color="opponent"`` wraps the model in the opponent-colour
    denoiser (one RGB problem); ``"per-channel"``, or a model that takes no noise level, splits
    the channels into a batch of gray problems.
    """
    from pnp_stable.denoisers.color import COLOR_MODES, OpponentColorDenoiser
    from pnp_stable.protocols import accepts_noise_level, denoiser_channels

    if color not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {color!r}; choose one of {', '.join(COLOR_MODES)}")
    channels = image.shape[0]
    model_channels = denoiser_channels(module)
    if channels == 3 and model_channels == 1:
        if color == "opponent" and accepts_noise_level(module):
            notes.append("RGB image restored in an opponent colour space with the gray denoiser (certificate unchanged)")
            den_info["color"] = "opponent"
            return image[None], False, OpponentColorDenoiser(module)
        why = "" if color == "per-channel" else " (the model takes no noise level, which the opponent mode needs)"
        notes.append(f"RGB image restored channel by channel with the gray denoiser{why}")
        den_info["color"] = "per-channel"
        return image[:, None], True, module
    check_denoiser_channels(module, channels)
    return image[None], False, module


def check_denoiser_channels(module: nn.Module, channels: int) -> None:
    """Refuse (ValueError) a denoiser that cannot restore images of ``channels`` channels: one
    declaring another count, but for a gray model and an RGB image (wrapped in the opponent colour
    space or split channel by channel)."""
    from pnp_stable.protocols import denoiser_channels

    model_channels = denoiser_channels(module)
    if model_channels is not None and channels != model_channels and not (channels == 3 and model_channels == 1):
        raise ValueError(f"the denoiser expects {model_channels}-channel images but the image has {channels}")


def _tiled(module: nn.Module, batch_shape: tuple[int, ...], tile: int | None, notes: list[str],
           den_info: dict[str, Any]) -> nn.Module:
    """``module``, or a :class:`~pnp_stable.denoisers.tiling.TiledDenoiser` of it (the same output
    and certificate in bounded memory). ``tile``: None tiles (by ``default_tile`` for the module's
    device) when one call would denoise more than ``AUTO_TILE_PIXELS`` pixels and the receptive
    field is known, 0 never, ``N`` in ``N x N`` tiles."""
    from pnp_stable.denoisers.tiling import AUTO_TILE_PIXELS, TiledDenoiser, default_tile, receptive_field

    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
        raise ValueError(f"tile must be a number of pixels >= 0 (0: no tiling), got {tile!r}")
    if tile == 0:
        return module
    batch, height, width = batch_shape[0], batch_shape[-2], batch_shape[-1]
    field = receptive_field(module)
    if tile is None:
        if batch * height * width <= AUTO_TILE_PIXELS or field is None:
            return module
        parameter = next(module.parameters(), None) if isinstance(module, nn.Module) else None
        tile = default_tile(parameter.device if parameter is not None else "cpu")
    if height <= tile and width <= tile:
        return module
    if field is None:
        raise ValueError("this denoiser's receptive field is unknown, so it cannot be tiled exactly; "
                         "use tile 0 (no tiling)")
    tiled = TiledDenoiser(module, tile)
    count = len(tiled.tiles(height, width))
    notes.append(f"denoiser applied in {count} tiles of {tiled.tile} px with a {tiled.margin}-pixel margin "
                 "(exact: the same output and certificate as one call)")
    den_info["tiling"] = {"tile": tiled.tile, "margin": tiled.margin, "tiles": count}
    return tiled


def _problem_fingerprint(task: str, y: torch.Tensor, operator: dict[str, Any], module: nn.Module, method: str,
                         noise: float, sigma_den: float | None, step: float | None) -> dict[str, Any]:
    """What must not change between a checkpoint and its resumption (tiling, progress, ``max_iter``
    and ``tol`` may)."""
    from pnp_stable.denoisers.tiling import TiledDenoiser

    inner = module.denoiser if isinstance(module, TiledDenoiser) else module  # tiled: the same map
    # parameters only: buffers such as power-iteration vectors move on every norm estimate
    weights = _digest(inner.parameters()) if isinstance(inner, nn.Module) else type(inner).__name__
    return {"task": task, "observation": f"sha256 {_digest([y])}", "operator": operator,
            "denoiser": f"{type(inner).__name__}, weights sha256 {weights}", "method": method,
            "noise level": float(noise), "denoiser noise level": sigma_den, "step": step}


def _checkpointing(checkpoint: str | Path | None, resume: bool, fingerprint: Callable[[], dict[str, Any]],
                   estimated_noise: bool = False, noise_source: str = "given"):
    """(the result to resume or None, the function that saves a state or None, the checkpoint's
    noise level when it replaces this run's estimate or None). ``fingerprint`` is only computed
    (hashing the observation and the weights) when there is a checkpoint. An *estimated* noise
    level that differs from the checkpoint's (a newer version reads the data otherwise: sinograms
    since 2026-12-06) gives way to the checkpoint's, which its parameters were chosen from; a given
    one must match."""
    from pnp_stable.solvers import load_solve_state, save_solve_state

    if checkpoint is None:
        if resume:
            raise ValueError("resuming needs the checkpoint file to resume from")
        return None, None, None
    problem = fingerprint()
    path = Path(checkpoint)
    previous = kept_noise = None
    if resume:
        if not path.is_file():
            raise ValueError(f"no checkpoint to resume at {path}")
        previous, meta = load_solve_state(path)
        stored = meta.get("problem", {})
        changed = sorted(k for k in set(stored) | set(problem) if stored.get(k) != problem.get(k))
        if changed == ["noise level"] and estimated_noise and isinstance(stored.get("noise level"), (int, float)):
            kept_noise = float(stored["noise level"])
            problem = {**problem, "noise level": kept_noise}
        elif changed:
            given = ("" if changed != ["noise level"] else
                     "; its noise level came from other photon counts: resume with the same --photons (photons=)"
                     if noise_source == "photon counts" else
                     f"; it was solved at noise level {stored['noise level']!r}: pass that level to resume")
            raise ValueError(f"{path} was written for another problem (different {', '.join(changed)}){given}; "
                             "resume with the same input and options, or choose another checkpoint")
    elif path.exists():
        raise ValueError(f"checkpoint {path} exists: resume it, or choose another file")

    def save(result) -> None:
        save_solve_state(path, result, {"problem": problem})

    return previous, save, kept_noise


def _solve_and_report(y_batch, op, module, den_info, method, max_iter, tol, accelerate, noise, noise_source,
                      x_true_batch, progress, x0=None, sigma_den=None, step=None, checkpoint=None, resume=False,
                      checkpoint_every=60.0, task="", operator_info=None, prox_error_ratio=0.03, strength="rule",
                      noise_raised_from=None, notes=None):
    from pnp_stable.solvers import solve

    if strength == "sure":  # several solves, never checkpointed (_check_strength refused a checkpoint)
        from pnp_stable.solvers.strength import select_strength

        previous = save = None
        res = select_strength(y_batch, op, module, method, noise_level=noise, max_iter=max_iter, tol=tol,
                              x_true=x_true_batch, accelerate="anderson" if accelerate else None, progress=progress,
                              prox_error_ratio=prox_error_ratio, x0=x0)
    else:
        previous, save, kept_noise = _checkpointing(checkpoint, resume, lambda: _problem_fingerprint(
            task, y_batch, operator_info or {}, module, method, noise, sigma_den, step),
            estimated_noise=noise_source == "estimated", noise_source=noise_source)
        if kept_noise is not None:
            if notes is not None:
                notes.append(f"noise level {kept_noise:.4g} kept from the checkpoint, whose parameters were chosen "
                             f"from it (this version estimates {noise:.4g} on this solve's scale)")
            noise = kept_noise
        if previous is not None:
            # max_iter is the total over the invocations: the same call with resume=True stops where
            # the uninterrupted one would have (a folder's stopped image got k + max_iter iterations)
            max_iter = max(0, int(max_iter) - int(previous.iterations))
        # two processes saving one state would each continue the other's iterates
        with exclusive_use(Path(checkpoint), "checkpoint") if checkpoint is not None else contextlib.nullcontext() \
                as held:
            if held:  # a killed run's temporary state files (only while no other process can be writing)
                remove_stale_temporaries(checkpoint)
            res = solve(y_batch, op, module, method=method, x0=x0, max_iter=max_iter, tol=tol, x_true=x_true_batch,
                        accelerate="anderson" if accelerate else None, progress=progress, noise_level=noise,
                        sigma_den=sigma_den, step=step, resume=previous, checkpoint=save,
                        checkpoint_every=checkpoint_every, prox_error_ratio=prox_error_ratio)
            if save is not None and res.stopped_by != "non-finite":
                # a diverged solve has nothing worth continuing: the last finite state (if one was
                # saved on the way) is kept, rather than replaced by one a resume would only diverge from
                save(res)
    report = {
        # raised_from: the level given or estimated, when the rounding-level floor replaced it
        "noise": {"sigma": noise, "source": noise_source,
                  **({} if noise_raised_from is None else {"raised_from": noise_raised_from})},
        "denoiser": den_info,
        "solver": res.summary(),
        "history": res.history,
    }
    if save is not None and res.stopped_by != "non-finite":
        report["checkpoint"] = {"path": str(checkpoint), "resumed_from_iteration":
                                previous.iterations if previous is not None else None}
    return res, report


STRENGTHS = ("rule", "sure")


def _check_strength(strength: object, sigma_den, step, checkpoint, resume) -> str:
    """``strength`` checked against the options it cannot be combined with (before any work)."""
    if strength not in STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; choose one of {', '.join(STRENGTHS)}")
    if strength == "sure":
        for name, value in (("sigma_den", sigma_den), ("step", step)):
            if value is not None:
                raise ValueError(f"strength 'sure' chooses the regularisation itself: it cannot be combined with {name}")
        if checkpoint is not None or resume:
            raise ValueError("strength 'sure' runs several solves and cannot be checkpointed or resumed; "
                             "use the default strength ('rule') with a checkpoint")
    return strength


def _strength_note(res, notes: list[str]) -> None:
    chosen = res.parameters.get("strength")
    if not chosen:
        return
    by_factor = {row["factor"]: row["sure"] for row in chosen["tried"]}
    factor = chosen["chosen_factor"]
    if factor == 1.0:
        notes.append(f"strength by SURE: the rule's kept (a stronger one did not lower the estimated risk by "
                     f"{1 - chosen['margin']:.0%}; {len(chosen['tried'])} settings tried)")
    else:
        notes.append(f"strength by SURE: {factor:g} x the rule's balance, estimated risk {by_factor[factor]:.3g} "
                     f"against {by_factor[1.0]:.3g} with the rule")


def _check_noise_level(level: object, name: str = "noise_level", unit_scale: bool = True,
                       allow_zero: bool = False) -> float:
    """``level`` as a float, refused unless a positive finite number, and with ``unit_scale`` at most
    1: images are on the [0, 1] scale, and a level above 1 is almost always one on the 0..255 scale
    (the message gives its /255 reading)."""
    try:
        value = float(level) if not isinstance(level, (bool, str)) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if math.isfinite(value) and (value > 0 or (allow_zero and value == 0)) and (value <= 1 or not unit_scale):
        return value
    hint = f" (e.g. {value:g}/255 = {value / 255:.4g})" if math.isfinite(value) and value > 1 else ""
    scale = "on the [0, 1] scale" if unit_scale else "(on the data's scale)"
    kind = "a non-negative" if allow_zero else "a positive"
    raise ValueError(f"{name} must be {kind} number {scale}, got {level!r}{hint}")


def _noise(y_batch: torch.Tensor, noise: float | None, notes: list[str], image_scale: bool = True,
           defaulted: bool = False, allow_zero: bool = False,
           observed: torch.Tensor | None = None, display_scale: float = 1.0,
           sinogram: bool = False) -> tuple[float, str]:
    """The noise level and where it came from ("given", "default" for a simulation's default,
    "estimated"); ``image_scale`` False for data not on the [0, 1] image scale (a sinogram), whose
    level in /255 would mean nothing; ``observed``: the measured entries an estimate may read (an
    inpainting's); ``display_scale``: what the note multiplies an estimate by (``y_batch`` divided
    by it, a rescaled sinogram: the note speaks the data's own units); ``sinogram``: read it as
    ``solve`` reads a CT operator's data (:func:`~pnp_stable.solvers.estimate_noise_level_for_parameters`)."""
    if noise is not None:
        return (_check_noise_level(noise, unit_scale=image_scale, allow_zero=allow_zero),
                "default" if defaulted else "given")
    from pnp_stable.solvers import estimate_noise_level_for_parameters, noise_estimate_caveats

    est = estimate_noise_level_for_parameters(y_batch, "ct" if sinogram else None, observed=observed)
    value = float(np.median(est))
    read_from = "the fully observed pixels" if observed is not None else "the image" if image_scale else "the data"
    how = _sinogram_reading_note(y_batch, value, display_scale) if sinogram and y_batch.shape[-2] >= 3 else ""
    if not math.isfinite(value):
        raise ValueError("could not estimate the noise level: the data hold NaN or infinite values")
    if not value > 0:
        if not image_scale:  # a sinogram: perhaps an image given without --simulate
            raise ValueError("could not estimate the sinogram's noise level (it looks noise-free): give it "
                             "(noise_level=, --noise), or simulate (simulate=True, --simulate) if the data is "
                             "an image to project")
        # the flattest regions of a clean 8-bit image hold no noise above its rounding: the image
        # tasks floor the level at that (rounding_level_floor), with a note
        notes.append(f"noise level estimated from {read_from}: 0 (it looks noise-free; give noise_level=, --noise, "
                     "if you know it)")
        return 0.0, "estimated"
    in_255 = f" ({value * 255:.2f}/255)" if image_scale else ""
    notes.append(f"noise level estimated from {read_from}: {value * display_scale:.4g}{in_255}{how}")
    notes.extend(f"{caveat}; give the level if you know it"
                 for caveat in noise_estimate_caveats(y_batch, value, observed))
    return value, "estimated"


def _sinogram_reading_note(y: torch.Tensor, value: float, display_scale: float) -> str:
    """Which of a sinogram's two noise readings the level is (for the note): both are given, since
    the one along the detectors is the noise itself and the floor, when it applies, is not."""
    from pnp_stable.solvers import estimate_noise_level, estimate_sinogram_noise_level
    from pnp_stable.solvers.noise_estimation import SINOGRAM_NOISE_FLOOR_SHARE

    along = float(np.median(estimate_sinogram_noise_level(y))) * display_scale
    two_d = float(np.median(estimate_noise_level(y))) * display_scale
    if math.isclose(value * display_scale, along, rel_tol=1e-6):
        return f" (read along the detectors; the 2-D reading is {two_d:.4g})"
    return (f" ({SINOGRAM_NOISE_FLOOR_SHARE:g} x the 2-D reading {two_d:.4g}, above the reading along the "
            f"detectors, {along:.4g}, which is the noise itself if the data follow this tool's forward model)")


def deblur(
    image: torch.Tensor,
    kernel: Any,
    *,
    noise_level: float | None = None,
    simulate: bool = False,
    seed: int = 0,
    boundary: str = "auto",
    method: str = "admm",
    denoiser: str | nn.Module | None = None,
    max_iter: int = 500,
    tol: float = 1e-5,
    accelerate: bool = True,
    device: str = "auto",
    progress: bool = True,
    color: str = "opponent",
    sigma_den: float | None = None,
    step: float | None = None,
    tile: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    prox_error_ratio: float = 0.03,
    strength: str = "rule",
) -> Restoration:
    """Deblur ``image`` (``C x H x W`` in [0, 1]) blurred by ``kernel`` (array or CLI spec string).

    With ``simulate=True`` the image is a clean ground truth: it is blurred, corrupted by Gaussian
    noise of std ``noise_level`` (seeded), restored, and PSNR/SSIM are reported. Otherwise
    ``noise_level`` is the observation's noise std (estimated when None). For the parameter rule an
    estimate below the 8-bit rounding level is replaced by it, as in :func:`super_resolve` and
    :func:`inpaint`, and a given level below ``MIN_DEBLUR_NOISE_LEVEL`` (1e-5) by that (a note
    each). ``method``: ``"admm"``
    (the default, as for the command: 0.25 dB better than FB on deblur-quick in a third of the
    iterations), ``"fb"`` or ``"drs"``. The convergence guarantee is in ``result.guarantee``.
    ``color``: how an RGB image is treated with a gray denoiser (see the module docstring).
    ``denoiser``: a name, a path, a module, or None for :func:`default_denoiser`. ``sigma_den`` (the
    denoiser's noise level) and ``step`` (FB ``tau``, ADMM/DRS ``gamma``) replace the automatic
    choice (:func:`pnp_stable.solvers.solve`); the guarantee is re-derived for them. ``tile``: the
    denoiser runs in ``tile x tile`` crops with the margin its receptive field needs, which changes
    neither the result nor the certificate and bounds memory (None: automatic above ~1 Mpixel per
    call, 0: never; :class:`~pnp_stable.denoisers.tiling.TiledDenoiser`). ``checkpoint``,
    ``resume``, ``checkpoint_every``: stop and resume (see the module docstring). ``boundary``: how
    the blur treats the image's edges; ``"auto"`` is ``"circular"`` for a simulation (the model that
    made the observation) and ``"reflect"`` for a real image, whose scene goes on beyond its frame
    (docs/benchmarks.md, "Boundaries for photographs": +3.7 dB over circular on average).
    ``prox_error_ratio``: the budget of an iterative (CG) data prox relative to the monitored
    residual (:func:`pnp_stable.solvers.solve`; 0: exact to rounding). ``strength``: ``"rule"``
    (default) regularises as the automatic rule says; ``"sure"`` also tries stronger settings and
    keeps one only when Stein's unbiased risk estimate falls clearly
    (:func:`pnp_stable.solvers.strength.select_strength`: for images with little to restore, such
    as flat regions, at two to four times the cost); not with ``sigma_den``, ``step`` or a checkpoint.
    """
    from pnp_stable.operators import Blur
    from pnp_stable.operators.kernels import parse_kernel_spec

    strength = _check_strength(strength, sigma_den, step, checkpoint, resume)
    notes: list[str] = []
    boundary = _auto_boundary(boundary, simulate, notes)
    dev = resolve_device(device)
    k = parse_kernel_spec(kernel) if isinstance(kernel, str) else np.asarray(kernel, dtype=np.float64)
    image = _check_image(image, notes).to(dev)
    module, den_info = load_denoiser(denoiser, dev, image.shape[0], color)
    batch, split, module = _as_batch(image, module, notes, den_info, color)
    module = _tiled(module, tuple(batch.shape), tile, notes, den_info)
    noise_level, defaulted = _simulation_noise_level(noise_level, simulate, notes)
    if simulate:
        clean = batch
        op = Blur(k, tuple(batch.shape[1:]), boundary=boundary).to(dev)
        y = op.simulate(clean, noise_level, seed=seed)
    else:
        clean = None
        op = Blur(k, tuple(batch.shape[1:]), boundary=boundary).to(dev)
        if boundary == "valid":
            raise ValueError("boundary 'valid' needs a simulated observation (it is smaller than the image); "
                             "use --simulate or another boundary")
        y = batch
    sigma, source = _noise(y, noise_level, notes, defaulted=defaulted)
    raised_from = None
    if source == "estimated":
        sigma, raised_from = rounding_level_floor(sigma, notes)
    elif sigma < MIN_DEBLUR_NOISE_LEVEL:
        notes.append(f"a noise level of {sigma:.3g} is below {MIN_DEBLUR_NOISE_LEVEL:g}: the regularisation is "
                     f"balanced against {MIN_DEBLUR_NOISE_LEVEL:g} instead")
        sigma, raised_from = MIN_DEBLUR_NOISE_LEVEL, sigma
    t0 = time.perf_counter()
    operator_info = {"type": "Blur", "boundary": boundary, "kernel_sha256": _digest([torch.from_numpy(k)]),
                     "shape": list(batch.shape)}
    res, report = _solve_and_report(y, op, module, den_info, method, max_iter, tol, accelerate, sigma, source,
                                    clean, progress, sigma_den=sigma_den, step=step, checkpoint=checkpoint,
                                    resume=resume, checkpoint_every=checkpoint_every, task="deblur",
                                    prox_error_ratio=prox_error_ratio, strength=strength,
                                    operator_info=operator_info, noise_raised_from=raised_from, notes=notes)
    operator_report = {"type": "Blur", "boundary": boundary, "kernel_shape": list(k.shape),
                       "kernel": kernel if isinstance(kernel, str) else "array",
                       "norm": float(op.norm()), "norm_kind": op.norm_kind}
    return _image_restoration(res, report, y, clean, split, notes, t0, operator_report)


def _image_restoration(res, report: dict[str, Any], y: torch.Tensor, clean: torch.Tensor | None, split: bool,
                       notes: list[str], started: float, operator_report: dict[str, Any],
                       reference: torch.Tensor | None = None, reference_label: str = "input") -> Restoration:
    """The :class:`Restoration` of an image task solved as ``res`` from the batch ``y`` (``split``:
    the channels of one image were a batch of gray problems). With a ground truth ``clean``, PSNR
    and SSIM of the result and of ``reference`` (a batch on the image grid, e.g. an interpolation;
    by default the observation when it has the image's size), named ``reference_label``."""
    _strength_note(res, notes)

    def one_image(batch: torch.Tensor) -> torch.Tensor:
        return batch[:, 0] if split else batch[0]

    restored, obs = one_image(res.x.clamp(0, 1)), one_image(y)
    report["operator"] = operator_report
    report["metrics"] = {"time_s": time.perf_counter() - started}
    truth = None
    if clean is not None:
        truth = one_image(clean)
        report["metrics"].update(psnr=psnr(restored, truth), ssim=ssim(restored, truth))
        baseline = obs if reference is None else one_image(reference.clamp(0, 1))
        if baseline.shape == truth.shape:
            report["metrics"].update(psnr_input=psnr(baseline, truth), ssim_input=ssim(baseline, truth))
            if reference is not None:
                report["metrics"]["input"] = reference_label
    report["notes"] = notes
    return Restoration(restored.cpu(), obs.cpu(), None if truth is None else truth.cpu(), res, report, notes)


def _check_factor(factor: object) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 2:
        hint = " (factor 1 is deblurring: use deblur)" if factor == 1 else ""
        raise ValueError(f"the super-resolution factor must be an integer >= 2, got {factor!r}{hint}")
    return int(factor)


def super_resolve(
    image: torch.Tensor,
    factor: int = 2,
    *,
    kernel: Any = None,
    noise_level: float | None = None,
    simulate: bool = False,
    seed: int = 0,
    boundary: str = "auto",
    method: str = "admm",
    denoiser: str | nn.Module | None = None,
    max_iter: int = 500,
    tol: float = 1e-5,
    accelerate: bool = True,
    device: str = "auto",
    progress: bool = True,
    color: str = "opponent",
    sigma_den: float | None = None,
    step: float | None = None,
    tile: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    prox_error_ratio: float = 0.03,
    strength: str = "rule",
) -> Restoration:
    """Super-resolve ``image`` (``C x h x w`` in [0, 1]) by ``factor``: the result is
    ``C x (factor h) x (factor w)``, the image whose blurred (``kernel``) and sampled (every
    ``factor``-th row and column, from the first) version best explains the observation under the
    certified denoiser's prior (:class:`~pnp_stable.operators.Downsample`).

    ``kernel``: the blur before sampling (array or spec string); None assumes
    :func:`~pnp_stable.observations.default_super_resolution_kernel` (a Gaussian of std
    ``factor / 2``). With ``simulate=True`` the image is the clean high-resolution ground truth: it
    is blurred, sampled and corrupted by Gaussian noise of std ``noise_level`` (default 2.55/255,
    seeded; 0: none), restored, and PSNR/SSIM are reported against the bicubic interpolation of the
    observation. The solve starts from that interpolation (aligned with the sampling grid:
    :func:`~pnp_stable.observations.interpolate_samples`). The other arguments are those of
    :func:`deblur`, and so is the guarantee (``result.guarantee``): the operator's norm and prox are
    exact for a circular boundary (the simulation's default), certified with a conjugate-gradient
    prox whose error is budgeted otherwise (a real image's default boundary is ``"reflect"``). A
    noise level below the 8-bit rounding level (0 included) is replaced by
    ``pnp_stable.observations.QUANTISATION_NOISE_LEVEL`` for the parameter rule, as in
    :func:`inpaint`.
    """
    from pnp_stable.operators import Downsample
    from pnp_stable.operators.kernels import parse_kernel_spec

    factor = _check_factor(factor)
    strength = _check_strength(strength, sigma_den, step, checkpoint, resume)
    if noise_level is not None:
        noise_level = _check_noise_level(noise_level, allow_zero=True)  # 0: exact up to 8-bit rounding
    notes: list[str] = []
    boundary = _auto_boundary(boundary, simulate, notes)
    if boundary == "valid" and not simulate:
        raise ValueError("boundary 'valid' needs a simulated observation (the sampled image is smaller than the "
                         "scene); use --simulate or another boundary")
    dev = resolve_device(device)
    spec = default_super_resolution_kernel(factor) if kernel is None else kernel
    k = parse_kernel_spec(spec) if isinstance(spec, str) else np.asarray(spec, dtype=np.float64)
    image = _check_image(image, notes).to(dev)
    module, den_info = load_denoiser(denoiser, dev, image.shape[0], color)
    batch, split, module = _as_batch(image, module, notes, den_info, color)
    noise_level, defaulted = _simulation_noise_level(noise_level, simulate, notes)
    if simulate:
        clean = batch
        op = Downsample(factor, k, tuple(batch.shape[1:]), boundary=boundary).to(dev)
        y = op.simulate(clean, noise_level, seed=seed)
    else:
        clean, y = None, batch
        op = Downsample(factor, k, (batch.shape[1], factor * batch.shape[2], factor * batch.shape[3]),
                        boundary=boundary).to(dev)
    fine = (batch.shape[0], batch.shape[1], *op.image_hw)
    module = _tiled(module, fine, tile, notes, den_info)
    sigma, source = _noise(y, noise_level, notes, defaulted=defaulted, allow_zero=True)
    sigma, raised_from = rounding_level_floor(sigma, notes)
    if source == "estimated" and raised_from is None:
        # a sampled image keeps its fine texture, which the estimator can read as noise (a blurred
        # one has little): on clean 8-bit samples of four BSDS500 train crops it read 0.3 to
        # 3.2/255 and cost 0 to 0.6 dB against a given 0.5/255 (docs/benchmarks.md)
        notes.append("a sharp image's fine texture reads as noise: if the image is clean, give a small level "
                     "(noise_level=0.5/255, --noise 0.5/255)")
    x0 = interpolate_samples(y, factor, op.image_hw, op.first_sample).clamp(0, 1)
    t0 = time.perf_counter()
    operator_info = {"type": "Downsample", "factor": factor, "boundary": boundary,
                     "kernel_sha256": _digest([torch.from_numpy(k)]), "shape": list(fine)}
    res, report = _solve_and_report(y, op, module, den_info, method, max_iter, tol, accelerate, sigma, source,
                                    clean, progress, x0=x0, sigma_den=sigma_den, step=step, checkpoint=checkpoint,
                                    resume=resume, checkpoint_every=checkpoint_every, task="super-resolve",
                                    prox_error_ratio=prox_error_ratio, strength=strength,
                                    operator_info=operator_info, noise_raised_from=raised_from, notes=notes)
    operator_report = {"type": "Downsample", "factor": factor, "boundary": boundary, "kernel_shape": list(k.shape),
                       "kernel": spec if isinstance(spec, str) else "array", "norm": float(op.norm()),
                       "norm_kind": op.norm_kind, "output_shape": [image.shape[0], *op.image_hw]}
    return _image_restoration(res, report, y, clean, split, notes, t0, operator_report, reference=x0,
                              reference_label="bicubic")


def inpaint(
    image: torch.Tensor,
    missing: Any = None,
    *,
    observed_fraction: float = 0.5,
    noise_level: float | None = None,
    simulate: bool = False,
    seed: int = 0,
    method: str = "admm",
    denoiser: str | nn.Module | None = None,
    max_iter: int = 500,
    tol: float = 1e-5,
    accelerate: bool = True,
    device: str = "auto",
    progress: bool = True,
    color: str = "opponent",
    sigma_den: float | None = None,
    step: float | None = None,
    tile: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    prox_error_ratio: float = 0.03,
    strength: str = "rule",
) -> Restoration:
    """Fill the missing pixels of ``image`` (``C x H x W`` in [0, 1]) and denoise the others, by PnP
    with the inpainting operator ``A x = m * x`` (:class:`~pnp_stable.operators.Inpainting`: exact
    norm and prox, so the guarantee is proven, as for :func:`deblur`).

    ``missing``: ``H x W`` (all channels) or ``C x H x W``, True or nonzero where a pixel is missing
    (the values of ``image`` there are ignored, and may be NaN). With ``simulate=True`` the image
    is a clean ground truth, whole (the mask removes its pixels; PSNR/SSIM count them); without
    ``missing``, each pixel is kept with probability ``observed_fraction`` (seeded);
    noise of std ``noise_level`` (default 0: none) is added to the kept ones, and PSNR/SSIM are
    reported against the smooth fill the solve starts from
    (:func:`~pnp_stable.observations.fill_missing`). Otherwise ``missing`` is required and
    ``noise_level`` is estimated from the fully observed 2x2 blocks
    (:func:`~pnp_stable.solvers.estimate_noise_level`) when None. A level of 0, or an
    estimate below it, is replaced by the 8-bit rounding level
    ``pnp_stable.observations.QUANTISATION_NOISE_LEVEL`` (the rule balances the regularisation
    against a positive level). The other arguments are those of :func:`deblur`.
    """
    from pnp_stable.operators import Inpainting

    strength = _check_strength(strength, sigma_den, step, checkpoint, resume)
    if noise_level is not None:
        noise_level = _check_noise_level(noise_level, allow_zero=True)  # 0: noise-free data
    notes: list[str] = []
    dev = resolve_device(device)
    # the values under a real observation's mask are no data: NaN or anything may mark them; a
    # simulation's image is the ground truth whole, holes included (its PSNR is measured there)
    observation_with_holes = missing is not None and not simulate
    if observation_with_holes:
        image = without_missing_values(image, missing)
    image = _check_image(image, notes, where=" where the mask marks no pixel missing" if observation_with_holes
                         else "").to(dev)
    if missing is None:
        if not simulate:
            raise ValueError("inpainting an image needs its missing pixels (missing=, --missing FILE); without them "
                             "only a simulation (simulate=True) can draw a random mask")
        fraction = float(observed_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"observed_fraction must lie in (0, 1], got {observed_fraction!r}")
        observed = Inpainting.random(tuple(image.shape[-2:]), fraction, seed=seed).mask[0]
        if not observed.any():
            raise ValueError(f"observed_fraction {fraction:g} kept no pixel of the {image.shape[-2]}x{image.shape[-1]} "
                             f"image (seed {seed}): there is nothing to inpaint from; keep a larger fraction")
        notes.append(f"random mask: each pixel kept with probability {fraction:g} (seed {seed})")
    else:
        observed = observed_mask(missing, image)
    if bool(observed.all()):
        notes.append("the mask marks no pixel missing: this restoration only denoises the image")
    module, den_info = load_denoiser(denoiser, dev, image.shape[0], color)
    batch, split, module = _as_batch(image, module, notes, den_info, color)
    if split and observed.shape[0] > 1:
        why = ("color='opponent', --color opponent" if den_info.get("color") == "per-channel" and color != "opponent"
               else "a denoiser that takes a noise level, which the opponent mode needs")
        raise ValueError(f"a mask per colour channel needs the opponent colour mode ({why}); channel by channel, "
                         "one H x W mask serves the three")
    op = Inpainting(observed).to(dev)
    module = _tiled(module, tuple(batch.shape), tile, notes, den_info)
    if simulate:
        clean = batch
        # noise on the kept pixels only: the holes of a simulation are zeros, as a real observation's
        y = op.A(op.simulate(clean, 0.0 if noise_level is None else noise_level, seed=seed))
        sigma, source = (noise_level or 0.0), "given" if noise_level is not None else "default"
    else:
        clean = None
        y = op.A(batch)
        sigma, source = _noise(y, noise_level, notes, allow_zero=True, observed=op.measured_entries(y))
    sigma, raised_from = rounding_level_floor(sigma, notes)
    x0 = fill_missing(y, op.mask)
    t0 = time.perf_counter()
    operator_info = {"type": "Inpainting", "mask_sha256": _digest([op.mask]), "shape": list(batch.shape)}
    res, report = _solve_and_report(y, op, module, den_info, method, max_iter, tol, accelerate, sigma, source,
                                    clean, progress, x0=x0, sigma_den=sigma_den, step=step, checkpoint=checkpoint,
                                    resume=resume, checkpoint_every=checkpoint_every, task="inpaint",
                                    prox_error_ratio=prox_error_ratio, strength=strength,
                                    operator_info=operator_info, noise_raised_from=raised_from, notes=notes)
    operator_report = {"type": "Inpainting", "observed_fraction": float(op.mask.mean()),
                       "mask_channels": int(observed.shape[0]), "norm": float(op.norm()), "norm_kind": op.norm_kind}
    return _image_restoration(res, report, y, clean, split, notes, t0, operator_report, reference=x0,
                              reference_label="fill")


def _simulation_noise_level(noise_level: float | None, simulate: bool, notes: list[str]) -> tuple[float | None, bool]:
    """The noise level to simulate with (2.55/255 when a simulation is not given one, with a note),
    and whether it was defaulted."""
    if not simulate or noise_level is not None:
        return noise_level, False
    notes.append("simulation noise level defaulted to 2.55/255")
    return 2.55 / 255, True


def _auto_boundary(boundary: str, simulate: bool, notes: list[str]) -> str:
    """``"auto"``: circular for a simulation (the model that made it), reflect for a real image."""
    if boundary != "auto":
        return boundary
    if simulate:
        return "circular"
    notes.append("boundary: reflect (a photograph's scene goes on beyond its frame; --boundary circular "
                 "for periodic data)")
    return "reflect"


def _check_image(image: torch.Tensor, notes: list[str], unit_range: bool = True, where: str = "") -> torch.Tensor:
    """``image`` as a float ``C x H x W`` tensor. With ``unit_range`` (an image, not a sinogram):
    8- and 16-bit integer samples are scaled to [0, 1] (a note says so), and float values far
    outside [0, 1] are refused: the denoisers know that scale, and a 0..255 image would otherwise
    be restored into garbage without a word. ``where`` says where values were checked (NaN message)."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image))
    if image.ndim == 2:
        image = image[None]
    if image.ndim == 4:  # one noise level and one parameter choice per task: a batch is several tasks
        raise ValueError(f"expected one image C x H x W (or H x W), got a batch of shape {tuple(image.shape)}: "
                         "restore its images one by one (or call pnp_stable.solve, which takes a batch)")
    if image.ndim != 3:
        raise ValueError(f"expected an image C x H x W (or H x W), got shape {tuple(image.shape)}")
    if image.is_complex():  # .float() would drop the imaginary part with only a torch warning
        raise ValueError(f"the image is complex ({image.dtype}); give its real values (e.g. .real or .abs())")
    if image.shape[0] not in (1, 3) and image.shape[-1] in (1, 3, 4):
        raise ValueError(f"expected channels first (C x H x W), got shape {tuple(image.shape)}: an H x W x C array "
                         "needs .permute(2, 0, 1) (numpy: .transpose(2, 0, 1))")
    if unit_range and image.dtype in (torch.uint8, torch.uint16):
        peak = 255 if image.dtype == torch.uint8 else 65535
        notes.append(f"{image.dtype} samples scaled from [0, {peak}] to [0, 1]")
        return image.float() / peak
    image = image.float()
    if not torch.isfinite(image).all():
        raise ValueError(f"the image contains NaN or infinite values{where}")
    if unit_range:
        check_unit_range(image)
    return image


def check_unit_range(image: torch.Tensor | np.ndarray, what: str = "the image") -> None:
    """Refuse an image clearly off the [0, 1] scale the denoisers know (a 0..255 image, a zero-mean
    one): ValueError naming ``what`` and its range.

    ``image`` is ``C x H x W`` or ``H x W``. The test is on the means of its 8 x 8 blocks (the last
    ones cut by the edge included), which must lie in [-0.25, 1.25], and on its values, which must
    lie in [-1.5, 2.5]. Noise takes single values well beyond [0, 1] (a black pixel with noise of
    std 50/255 reaches -0.6 one time in a thousand, -1.5 practically never) but not the mean of 64
    of them, while the blocks of a 0..255 image or of a zero-mean photograph (its dark regions at
    -0.5) are far out."""
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).detach()
    t = t.to(torch.float32)  # a mean of 64 values to 1e-7: float64 would only double the memory
    low, high = float(t.min()), float(t.max())
    planes = t.reshape(-1, 1, *t.shape[-2:]) if t.ndim >= 2 else t.reshape(1, 1, 1, -1)
    block = (min(8, planes.shape[-2]), min(8, planes.shape[-1]))
    means = torch.nn.functional.avg_pool2d(planes, block, ceil_mode=True)
    if float(means.min()) < -0.25 or float(means.max()) > 1.25 or low < -1.5 or high > 2.5:
        raise ValueError(f"{what} holds values in [{low:.4g}, {high:.4g}]; images must be scaled to [0, 1] "
                         "(e.g. divided by 255 or 65535, or by their maximum)")


def reconstruct_ct(
    data: torch.Tensor,
    *,
    angles: int | Sequence[float] | None = None,
    angle_range: float | str | None = None,
    simulate: bool = False,
    noise_level: float | None = None,
    relative_noise_level: float | None = None,
    seed: int = 0,
    image_size: int | None = None,
    detector: str = "full",
    geometry: str = "parallel",
    source_distance: float | None = None,
    detector_distance: float | None = None,
    detector_spacing: float | None = None,
    detector_shape: str | None = None,
    detector_offset: float | str | None = None,
    method: str = "admm",
    denoiser: str | nn.Module | None = None,
    max_iter: int = 300,
    tol: float = 1e-5,
    accelerate: bool = True,
    device: str = "auto",
    progress: bool = True,
    sigma_den: float | None = None,
    step: float | None = None,
    tile: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    prox_error_ratio: float = 0.03,
    strength: str = "rule",
    photons: float | str | None = None,
    weighting: str = "auto",
    attenuation: float | None = None,
    flat: Any = None,
    dark: Any = None,
    gain: float | None = None,
    data_scale: float | None = None,
    flat_exposures: int | None = None,
) -> Restoration:
    """CT reconstruction by PnP from a parallel-beam (or fan-beam) sinogram, initialised by FBP.

    ``angles``: a count of angles uniform over [0, 180) degrees, or the angles themselves (degrees).
    ``simulate=True``: ``data`` is a square gray image in [0, 1] (the phantom); its sinogram over
    ``angles`` (default 60) gets Gaussian noise of std ``noise_level``, or ``relative_noise_level`` times the
    clean sinogram's maximum (default 1%; give one of the two).
    Otherwise ``data`` is a sinogram ``n_detectors x n_angles`` (``image_size`` inferred when the
    detector count allows it); ``detector="full"`` has ``ceil(sqrt(2) n)`` detectors covering the
    whole square, ``"circle"`` has ``n`` and sees the inscribed disc only (``skimage.transform.radon``'s
    default ``circle=True``): the reconstruction is 0 outside that disc, which the data do not
    measure. Its columns are uniform over [0, 180) unless ``angles`` lists them (or ``angle_range`` spreads them),
    and an ``angles`` whose count differs from the column count is an error. A sinogram whose FBP
    does not peak in [0.5, 1] (line integrals in physical units) is divided by that peak for the
    solve and the reconstruction multiplied back (a note, and ``report["operator"]["data_scale"]``;
    ``data_scale`` gives that divisor instead, e.g. one for every slice of a volume);
    ``noise_level`` is on the sinogram's own scale. A reconstruction of real data is clipped at 0
    only. Notes flag a sinogram whose columns do not sum alike (transposed, or an image), one whose
    halves mirror each other (a 360-degree scan without its angles) and one largest at its
    detector edges (counts, not line integrals). ``method``: ``"admm"``
    (the default, as for the command: +1.2 dB over FB on ct-quick for about twice the time),
    ``"fb"`` or ``"drs"``. ``denoiser``: a name, a path, a module, or None for ``DEFAULT_DENOISER``.
    ``sigma_den`` and ``step`` replace the automatic parameters, ``tile`` tiles the denoiser and
    ``checkpoint``/``resume`` stop and resume, and ``prox_error_ratio`` budgets the CG prox of
    ADMM/DRS, and ``strength="sure"`` chooses the regularisation from the data, as in :func:`deblur`.

    A noise level below ``CT_NOISE_FLOOR_SHARE`` (1e-4) times the sinogram's maximum, given or
    estimated, is replaced by that for the parameter rule (a note says so).

    ``geometry="fan"``: a fan beam (:class:`~pnp_stable.operators.FanBeamCT`, distances in image
    pixels, its defaults where None; ``detector_shape`` ``"flat"``, the default, or ``"curved"``, an
    arc of cells equally spaced in fan angle as in clinical scanners): ``angles`` counts views over
    [0, 360) (default 120 for a simulation: 60 views per half-turn, as the parallel default); a
    sinogram's rows are the detector cells and ``image_size`` must be given. ``detector`` is the
    parallel beam's.

    ``detector_offset``: the detector's cells shifted along it by this many cells (a fan beam's
    quarter-cell offset; a parallel beam's misaligned rotation axis, which then projects onto bin
    ``(G - 1)/2 - detector_offset``); ``"auto"``, for a measured parallel-beam sinogram (full
    detector), reads it off the data (:func:`~pnp_stable.operators.estimate_detector_offset`, a
    note gives it and ``report["operator"]["detector_offset_estimate"]`` its fit).

    ``angle_range``: the views of a count (``angles``, the default count, or a sinogram's columns)
    are uniform over ``[0, angle_range)`` degrees instead of the half or full turn: a limited-angle
    scan, or for a fan beam ``"short"``, a short scan (180 degrees plus the fan angle,
    ``FanBeamCT.short_scan_range``), which measures every line.

    ``photons``: the incident photon count per detector bin (``I0``) of a transmission scan: the
    noise is Poisson in the counts, so a post-log sinogram ``y = -log(I / I0)`` has variances
    ``1 / I`` that differ from bin to bin. A simulation draws the counts (the phantom, scaled by
    ``attenuation`` per pixel; default: its longest ray attenuated by ``e^-4``); a sinogram given
    with ``photons`` is taken as such line integrals (``I = I0 e^-y``). The noise level then comes
    from the counts, not from an estimate, and ``weighting`` chooses the data term: ``"wls"``,
    weighted least squares with the counts as weights (:class:`RadonTomography`'s
    ``statistical_weights``: the weighted noise is white, its level ``1 / sqrt(mean I)`` in line
    integrals, ``1 / (attenuation sqrt(mean I))`` on a simulated phantom's scale);
    ``"none"``, plain least squares at the root-mean-square level ``sqrt(mean(1 / I))``;
    ``"gls"`` (raw data with a measured flat field only), weighted least squares that also models the
    flat's own noise, an error shared by every view of a bin (below); ``"auto"`` (default) is
    ``"gls"`` for raw data whose flat averages a known count of at most ``RING_MODEL_MAX_EXPOSURES``
    (2) exposures (its frames, or ``flat_exposures``), else ``"wls"`` (docs/benchmarks.md,
    "Photon-count noise in CT" and "Rings from the flat field's noise").
    ``photons="auto"``, for a measured post-log sinogram: ``I0`` read off its noise
    (:func:`~pnp_stable.transmission.photons_from_sinogram_noise`; ``report["noise"]["photons_source"]``
    says so), with a note, and a doubt when the noise does not grow with the attenuation as counts' does.

    ``flat``: ``data`` is a *raw* transmission sinogram (detector readings, before the logarithm) and
    ``flat`` the exposure without the object (a number, one value per detector bin, or frames side by
    side, ``n_detectors x k``), ``dark`` the detector's offset (likewise; default 0) and ``gain`` its
    units per photon (default: measured from two or more flat frames, else read off the sinogram's
    noise): :func:`~pnp_stable.transmission.flat_field_correction` turns them into line integrals
    ``-log((I - dark) / (flat - dark))`` and their precisions (the photon counts above the dark),
    which ``weighting`` uses as above, and from which the noise level follows.
    Dead detector bins (no flat signal) are interpolated and ignored by the weighted data term;
    ``report["noise"]["flat_field"]`` describes the correction. A measured flat averages ``k``
    exposures (its frames, or ``flat_exposures`` for a flat given averaged already), so each bin's
    line integrals share its error, of variance ``1 / (k N0)``, in every view: a ring in the
    reconstruction. ``weighting="gls"`` whitens it with the views' own noise in its detector
    frequencies of period below ``RING_PERIOD_BINS`` (``RadonTomography``'s ``shared_variance``, a
    covariance by :func:`~pnp_stable.transmission.ring_covariance`), the certificate unchanged: of
    the 0.4 to 1.3 dB a single exposure's rings cost, this gave back 0.25 to 0.65. A flat of one
    frame is taken for one exposure there (by the gain's reading off the noise too, when the gain is
    not given), and modelled by ``"auto"`` only when ``flat_exposures``
    says so (a mean of many given as one frame would be over-modelled); beyond two exposures the
    rings cost less than the model.
    """
    from pnp_stable.operators import FanBeamCT, ParallelBeamCT, estimate_detector_offset
    from pnp_stable.operators.ct import _angles_in_degrees, check_detector_offset, detector_count
    from pnp_stable.operators.fan_beam import DETECTOR_SHAPES

    strength = _check_strength(strength, sigma_den, step, checkpoint, resume)
    if detector not in ("full", "circle"):
        raise ValueError(f"detector must be 'full' or 'circle', got {detector!r}")
    if geometry not in ("parallel", "fan"):
        raise ValueError(f"geometry must be 'parallel' or 'fan', got {geometry!r}")
    fan = geometry == "fan"
    if fan and detector != "full":
        raise ValueError("detector='circle' is a parallel-beam detector; a fan beam's is set by n_detectors "
                         "(the sinogram's rows) and detector_spacing")
    if detector_shape is not None and detector_shape not in DETECTOR_SHAPES:
        raise ValueError(f"detector_shape must be one of {DETECTOR_SHAPES}, got {detector_shape!r}")
    # the fan beam's own keywords (named "distances" for the most of them)
    distances = {"source_distance": source_distance, "detector_distance": detector_distance,
                 "detector_spacing": detector_spacing, "detector_shape": detector_shape}
    if not fan and any(v is not None for v in distances.values()):
        given = [k for k, v in distances.items() if v is not None]
        raise ValueError(f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} a fan beam: pass "
                         "geometry='fan' (--geometry fan)")
    distances["detector_shape"] = detector_shape or "flat"
    estimate_offset = isinstance(detector_offset, str) and detector_offset.strip().lower() == "auto"
    if estimate_offset:
        if fan:
            raise ValueError("detector_offset='auto' locates a parallel beam's rotation axis; a fan beam's offset is "
                             "the scanner's (e.g. 0.25 cells): give it")
        if simulate:
            raise ValueError("detector_offset='auto' reads a measured sinogram's rotation axis; a simulation sets it: "
                             "give a number")
        if detector != "full":
            raise ValueError("detector_offset shifts the full detector's bins; the circle detector sees the disc "
                             "inscribed in the image, about its centre")
        offset = 0.0
    elif isinstance(detector_offset, str):
        raise ValueError(f"detector_offset must be a number of cells or 'auto', got {detector_offset!r}")
    else:
        offset = 0.0 if detector_offset is None else check_detector_offset(detector_offset)
    distances["detector_offset"] = offset
    if angle_range is not None:
        if angles is not None and not isinstance(angles, (int, np.integer)):
            raise ValueError("angle_range spreads a count of angles; the angles listed already have their range")
        if isinstance(angle_range, str) and angle_range != "short":
            raise ValueError(f"angle_range must be a number of degrees or 'short', got {angle_range!r}")
        if angle_range == "short" and not fan:
            raise ValueError("angle_range='short' is a fan beam's short scan (180 degrees plus the fan angle); a "
                             "parallel beam's every line is measured over 180 degrees")
        if angle_range != "short" and (isinstance(angle_range, bool) or not 0 < float(angle_range) <= 360):
            raise ValueError(f"angle_range must lie in (0, 360] degrees, got {angle_range!r}")
    if weighting not in ("auto", "gls", "wls", "none"):
        raise ValueError(f"weighting must be 'auto', 'gls', 'wls' or 'none', got {weighting!r}")
    from pnp_stable.transmission import check_flat_noise_options

    check_flat_noise_options(flat, weighting, flat_exposures)  # (the flat's frames are counted once it is read)
    photons_auto = isinstance(photons, str) and photons.strip().lower() == "auto"
    if photons_auto:
        if simulate:
            raise ValueError("photons='auto' reads a measured sinogram's photon count off its noise; a simulation "
                             "draws counts of a photon count you give")
    elif isinstance(photons, str):
        raise ValueError(f"photons must be a number of incident photons per bin or 'auto', got {photons!r}")
    if photons is not None:
        if not photons_auto and (isinstance(photons, bool) or not (0 < float(photons) <= MAX_PHOTONS)):
            raise ValueError(f"photons must be a positive number of incident photons per bin, at most "
                             f"{MAX_PHOTONS:g}, got {photons!r}")
        if noise_level is not None or relative_noise_level is not None:
            raise ValueError("give photons (Poisson counts) or a noise level (Gaussian), not both: with photons the "
                             "noise level follows from the counts")
    elif weighting != "auto" and flat is None:
        raise ValueError("weighting applies to photon-count data: pass photons= (--photons)")
    if flat is not None:
        if simulate:
            raise ValueError("flat is the flat field of a measured raw sinogram; a simulation makes its own data "
                             "(photons= draws counts)")
        if photons is not None:
            raise ValueError("give photons (post-log data of I0 photons per bin) or flat (raw data and their flat "
                             "field, which says each bin's I0), not both")
        if noise_level is not None or relative_noise_level is not None:
            raise ValueError("with flat the noise follows from the photon counts: give no noise level (the gain, if "
                             "you know it)")
    elif dark is not None or gain is not None:
        raise ValueError(f"{'dark' if dark is not None else 'gain'} describes raw detector readings: pass their "
                         "flat field (flat=, --flat) too")
    if attenuation is not None:
        if photons is None or not simulate:
            raise ValueError("attenuation scales a phantom for a photon-count simulation: pass simulate=True and "
                             "photons=")
        if isinstance(attenuation, bool) or not (float(attenuation) > 0 and math.isfinite(float(attenuation))):
            raise ValueError(f"attenuation must be a positive number per pixel, got {attenuation!r}")
    if data_scale is not None:
        if simulate:
            raise ValueError("data_scale divides a measured sinogram; a simulated phantom is on the [0, 1] scale")
        if isinstance(data_scale, bool) or not (float(data_scale) > 0 and math.isfinite(float(data_scale))):
            raise ValueError(f"data_scale must be a positive number, got {data_scale!r}")
    notes: list[str] = []
    photons_source = "given"
    dev = resolve_device(device)
    module, den_info = load_denoiser(denoiser, dev)
    from pnp_stable.protocols import denoiser_channels

    if denoiser_channels(module) not in (None, 1):  # found before the noise estimate and the operator's norm
        raise ValueError(f"the denoiser takes {denoiser_channels(module)}-channel images; a CT reconstruction is "
                         "gray: use a gray denoiser (e.g. gray)")
    data = _check_image(data, notes, unit_range=simulate).to(dev)  # a phantom is an image; a sinogram is not
    if data.shape[0] != 1:
        raise ValueError("CT data must be single-channel (gray)")
    if relative_noise_level is not None and not simulate:
        raise ValueError("a noise level relative to the clean sinogram needs a simulation")
    if noise_level is not None and relative_noise_level is not None:
        raise ValueError("give noise_level (absolute) or relative_noise_level, not both")
    defaulted = simulate and noise_level is None and relative_noise_level is None
    if simulate:
        n = data.shape[-1]
        if data.shape[-2] != n:
            raise ValueError(f"the phantom must be square for CT, got {data.shape[-2]}x{n}; crop it")
        if angle_range is not None:
            angles = _angles_over_range((120 if fan else 60) if angles is None else angles, angle_range, n, None,
                                        distances)
        op = (FanBeamCT(n, angles=120 if angles is None else angles, **distances, device=dev) if fan else
              ParallelBeamCT(n, angles=60 if angles is None else angles, detector=detector, device=dev,
                             detector_offset=offset))
        clean = data[None]
        outside = float((clean * (1 - op.object_support(clean.dtype, dev))).abs().max())
        if outside > 0:
            notes.append(f"the phantom is not 0 outside the inscribed disc (up to {outside:.3g}), which the circle "
                         "detector does not see: the reconstruction is 0 there, and PSNR/SSIM count those pixels")
        if photons is not None:
            y, counts, mu = _photon_count_simulation(op, clean, float(photons), attenuation, seed, notes)
        else:
            if noise_level is None:
                fraction = 0.01 if relative_noise_level is None else float(relative_noise_level)
                noise_level = fraction * float(op.A(clean).abs().max())
                notes.append(f"simulation noise: {fraction:.3g} x the sinogram maximum ({noise_level:.4g})")
            y = op.simulate(clean, noise_level, seed=seed)
    else:
        sino = data[0]
        n_det, n_ang = sino.shape
        count = None if angles is None else angles if isinstance(angles, int) else len(angles)
        if count is not None and count != n_ang:
            raise ValueError(f"the sinogram has {n_ang} angles (columns; n_detectors x n_angles) but {count} were "
                             "given")
        if fan and image_size is None:  # the cells' count and spacing leave the image's side open
            raise ValueError("a fan-beam sinogram needs the image size: pass --size (image_size=)")
        n = image_size or _size_from_detectors(n_det, detector)
        if angle_range is not None:
            angles = _angles_over_range(n_ang, angle_range, n, n_det if fan else None, distances)
        if flat is not None:
            transmission = _flat_field_corrected(sino, flat, dark, gain, weighting, notes, flat_exposures)
            sino = transmission.line_integrals.to(sino.dtype).to(dev)
        notes.extend(_sinogram_doubts(sino, angles is None, fan, axis_offset=0.0 if estimate_offset else offset))
        if fan:
            op = FanBeamCT(n, angles=n_ang if angles is None or isinstance(angles, int) else angles,
                           n_detectors=n_det, **distances, device=dev)
        else:
            # checked before the operator is built: its rotation grids for a wrong, large size alone can
            # exhaust the memory (a 91-detector sinogram with --size 8192 asked for ~32 GB)
            needed = detector_count(n, detector)
            if needed != n_det:
                other = "circle" if detector == "full" else "full"
                # the size fits the other detector: the likelier slip is the detector, not the size
                hint = f", or pass --detector {other} (detector=)" if detector_count(n, other) == n_det else ""
                raise ValueError(f"sinogram has {n_det} detectors but a {n}x{n} image needs {needed} with the "
                                 f"{detector} detector; check --size{hint}")
            views = n_ang if angles is None or isinstance(angles, int) else angles
            if estimate_offset:
                axis = estimate_detector_offset(sino, _angles_in_degrees(views))
                # to a thousandth of a bin (its accuracy is some hundredths): the slices of one scan then
                # share their operator's cached norm more often
                offset = round(axis.offset, 3)
                notes.append(f"rotation axis read off the sinogram: bin {axis.axis_bin:.2f} of {n_det} (detector offset "
                             f"{offset:+.3f}; the centres of mass fit their sinusoid to {axis.fit_residual:.2g} bins, "
                             f"the noise alone {axis.expected_residual:.2g})")
                if abs(axis.baseline) > 1e-3 * float(sino.abs().max()):
                    notes.append(f"the sinogram's air lies at {axis.baseline:.3g}, not 0: taken off for the axis's "
                                 "estimate (the reconstruction uses the data as given; check the flat field)")
                if axis.fit_residual > max(AXIS_FIT_DOUBT_BINS, AXIS_FIT_DOUBT_RATIO * axis.expected_residual):
                    notes.append(f"the projections' centres of mass stray {axis.fit_residual:.2g} bins from a parallel "
                                 "beam's sinusoid: the data may not be a parallel-beam scan of one still object, and the "
                                 "axis estimate is doubtful")
            op = ParallelBeamCT(n, angles=views, detector=detector, device=dev, detector_offset=offset)
        y = sino[None, None]
        notes.extend(_outside_shadow_doubt(y, op))
        clean = None
        if photons_auto:
            photons = _photons_read_off(sino, notes)
            photons_source = "sinogram noise"
        if photons is not None:
            counts, mu = _counts_of_post_log_data(y, float(photons), notes, photons_auto), 1.0
        elif flat is not None:
            counts, mu = transmission.precision.to(dev)[None, None], 1.0
    fbp = op.fbp(y)  # the initial iterate, and for a sinogram the measure of its scale
    observed = y  # the sinogram, as the Restoration reports it (not its weighted form)
    photon_counts = photons is not None or flat is not None  # the noise follows from counts
    if photon_counts:
        rings = flat is not None and _flat_rings_modelled(weighting, transmission, flat_exposures, notes)
        op, y, noise_level = _photon_count_weighting(op, y, counts, mu, weighting, notes,
                                                     transmission if rings else None)
    scale = 1.0 if simulate else _attenuation_scale(fbp, notes) if data_scale is None else float(data_scale)
    if scale != 1.0:  # A and the FBP are linear: y / s is the sinogram of x / s, on the denoiser's scale
        y, fbp = y / scale, fbp / scale
        noise_level = None if noise_level is None else _check_noise_level(noise_level, unit_scale=False) / scale
    # a note gives an estimate on the sinogram's own scale, as a user gives a level
    sigma, source = _noise(y, noise_level, notes, image_scale=False, defaulted=defaulted, display_scale=scale,
                           sinogram=True)
    if photon_counts:
        source = "photon counts"
    floor = CT_NOISE_FLOOR_SHARE * float(y.abs().max())
    raised_from = None
    if 0 < floor and sigma < floor:  # far below any calibration: the rule would leave the data unregularised
        notes.append(f"a noise level of {sigma * scale:.3g} is below {CT_NOISE_FLOOR_SHARE:g} x the sinogram's "
                     f"maximum: the regularisation is balanced against {floor * scale:.3g} instead")
        sigma, raised_from = floor, sigma
    module = _tiled(module, (1, 1, n, n), tile, notes, den_info)
    x0 = fbp.clamp(0, 1)
    t0 = time.perf_counter()
    res, report = _solve_and_report(y, op, module, den_info, method, max_iter, tol, accelerate, sigma, source,
                                    clean, progress, x0=x0, sigma_den=sigma_den, step=step, checkpoint=checkpoint,
                                    resume=resume, checkpoint_every=checkpoint_every, task="ct",
                                    prox_error_ratio=prox_error_ratio, strength=strength,
                                    operator_info=_ct_operator_info(op), noise_raised_from=raised_from,
                                    notes=notes)
    sigma = report["noise"]["sigma"]  # the checkpoint's, when a resume kept it
    _strength_note(res, notes)
    # a phantom lies in [0, 1]; of a real object only the sign is known (attenuation >= 0): its
    # FBP's percentile is no maximum, so a reconstruction may rise above it (clipping at 1 cut the
    # brightest parts of objects whose FBP peaked between 1 and 2, as the band let through before)
    restored = res.x.clamp(0, 1)[0] if simulate else res.x.clamp(min=0)[0] * scale
    if detector == "circle":  # no ray meets a pixel outside the disc: the data say nothing of it
        restored = restored * op.object_support(restored.dtype, restored.device)[0]
    report["operator"] = {"type": type(op).__name__, "image_size": n, "angles": len(op.angles_deg),
                          **({"detector": detector} if not fan else op.geometry_fields()),
                          **({"detector_offset": op.detector_offset} if not fan and op.detector_offset else {}),
                          **({"detector_offset_estimate": axis._asdict()} if estimate_offset else {}),
                          "angles_deg": [float(a) for a in op.angles_deg],
                          "norm": float(op.norm()), "norm_kind": op.norm_kind, "data_scale": scale,
                          "statistical_weights": "photon counts" if op.has_statistical_weights else None,
                          **({"shared_error": "the flat field's fine rings"} if op.has_shared_error else {})}
    if photon_counts:
        report["noise"] = {**report["noise"], "model": "poisson",
                           **({"photons": float(photons), "photons_source": photons_source} if photons is not None
                              else {"flat_field": transmission.summary()}),
                           "weighting": ("gls" if op.has_shared_error else "wls" if op.has_statistical_weights
                                         else "none"),
                           **({"attenuation": mu} if simulate else {})}
    if scale != 1.0:  # the level on the sinogram's own scale, and the one the solve used
        report["noise"] = {**report["noise"], "sigma": sigma * scale, "sigma_rescaled": sigma}
    report["metrics"] = {"time_s": time.perf_counter() - t0}
    truth = None
    if clean is not None:
        truth = clean[0]
        report["metrics"].update(psnr=psnr(restored, truth), ssim=ssim(restored, truth),
                                 psnr_input=psnr(x0[0], truth), ssim_input=ssim(x0[0], truth),
                                 input="FBP")
    report["notes"] = notes
    return Restoration(restored.cpu(), observed[0].cpu(), None if truth is None else truth.cpu(), res, report,
                       notes)


# The lowest given noise level deblur's automatic parameters use: about twice the 16-bit rounding
# level, far below any a camera gives. Below it the rule leaves the deconvolution unregularised (a
# given 1e-12 gave 5 dB, "converged", and 1e-9 still 32 dB on a 64 x 64 crop; review of 2026-12-06).
# An estimated level is floored at the 8-bit rounding level instead, as the other image tasks do.
MIN_DEBLUR_NOISE_LEVEL = 1e-5
# The lowest sinogram noise level the automatic parameters use, as a share of the sinogram's
# maximum: a decade below the CT rule's calibration (0.1 % to 3 %). Below it the rule's weight grows
# without bound (the data prox's system then needs more CG iterations than it is given) and a
# reconstruction is the noise-free least-squares one, unregularised: a given 1e-12 gave 26.2 dB
# where the FBP had 28.3 (review of 2026-12-06)
CT_NOISE_FLOOR_SHARE = 1e-4
# a parallel-beam scan's projections' centres of mass lie on a sinusoid, as near as the noise lets them;
# beyond this many bins from it on average, and this many times what the noise explains, the data are
# not one (measured on phantoms: 0.01 bins noise-free, 0.17 with 1 % noise, 0.47 with 3 %, each near what
# its noise explains; an object moved by 4 bins halfway through a scan: 0.87, 23 times that)
AXIS_FIT_DOUBT_BINS = 0.25
AXIS_FIT_DOUBT_RATIO = 3.0
# Every column of a parallel-beam sinogram sums to the object's mass (the integral over all rays of
# one view); a spread of the column sums above this share says the columns are not views
COLUMN_SUM_SPREAD = 0.1
# the relative difference under which a sinogram's second half is the mirror of its first
MIRRORED_HALVES = 0.05


def _ct_operator_info(op) -> dict:
    """What identifies a CT problem's geometry in a checkpoint's fingerprint (a parallel beam's as
    before fan beams existed, so that its checkpoints still resume)."""
    from pnp_stable.operators.ct import deepinv_axis_offset

    extra = ({"statistical_weights_sha256": op.geometry()["statistical_weights_sha256"]}
             if op.has_statistical_weights else {})
    if op.has_shared_error:
        extra["shared_variance_sha256"] = op.shared_variance_digest
    # the sizes whose rotation axis moved to the image centre (2026-12-06): an older checkpoint of
    # theirs was solved in another geometry and must not resume
    if getattr(op, "detector", "full") == "full" and deepinv_axis_offset(op.image_size):
        extra["rotation_axis"] = "image centre"
    if type(op).__name__ == "FanBeamCT":
        return {"type": "FanBeamCT", "image_size": op.image_size, "angles": [float(a) for a in op.angles_deg],
                **op.geometry_fields(), **extra}
    return {"type": "ParallelBeamCT", "image_size": op.image_size, "angles": [float(a) for a in op.angles_deg],
            **({"detector": op.detector} if op.detector != "full" else {}),
            **({"detector_offset": op.detector_offset} if op.detector_offset else {}), **extra}


# a simulation's default attenuation puts the phantom's longest ray at e^-4 (2 % of the photons
# through: a body's thickest path in clinical CT)
PHOTON_SIMULATION_PEAK_LINE_INTEGRAL = 4.0
# the most incident photons per bin: torch's Poisson sampler counts in int64 (9.2e18), and no scanner
# comes near (a clinical bin sees 1e4 to 1e6)
MAX_PHOTONS = 1e15
# post-log data of I0 photons lie above -this / sqrt(I0) (a bin beside the object, this many standard
# deviations of its count above I0)
POST_LOG_NOISE_SIGMAS = 8.0
# ... or above -this, whichever is lower: an air calibration off by a few percent
POST_LOG_CALIBRATION_SLACK = 0.05
# a raw sinogram whose every bin transmits less than e^-this of the flat field sees no air: the rays
# beside an object keep nearly all their photons (line integrals near 0), so such data are likelier
# line integrals already, or an object wider than the detector
FLAT_FIELD_NO_AIR = 2.0
# a simulation's longest ray must lose more than this share of a unit line integral and keep some photons
PHOTON_SIMULATION_LINE_INTEGRAL_RANGE = (1e-3, 50.0)


def _photon_count_simulation(op, clean: torch.Tensor, photons: float, attenuation: float | None, seed: int,
                             notes: list[str]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Poisson counts ``I ~ P(photons e^(-mu A x))`` of the phantom ``clean`` and the post-log
    sinogram they give, ``-log(I / photons) / mu``, on the phantom's scale; a bin that counts no
    photon is read as one (its logarithm is otherwise infinite). Returns the sinogram, the counts
    and ``mu``."""
    line_integrals = op.A(clean).double()
    peak = float(line_integrals.max())
    if not peak > 0:
        raise ValueError("the phantom's sinogram is zero: a photon-count simulation needs an attenuating object")
    mu = float(attenuation) if attenuation is not None else PHOTON_SIMULATION_PEAK_LINE_INTEGRAL / peak
    low, high = PHOTON_SIMULATION_LINE_INTEGRAL_RANGE
    if not low <= mu * peak <= high:
        raise ValueError(f"attenuation {mu:g} puts the phantom's longest ray at e^-{mu * peak:.3g}: the simulation "
                         f"needs a line integral between {low:g} and {high:g} there (the default gives "
                         f"{PHOTON_SIMULATION_PEAK_LINE_INTEGRAL:g})")
    generator = torch.Generator(device=line_integrals.device).manual_seed(int(seed))
    counts = torch.poisson(photons * torch.exp(-mu * line_integrals), generator=generator)
    empty = int((counts < 1).sum())
    counts = counts.clamp_min(1.0)
    y = (-torch.log(counts / photons) / mu).to(clean.dtype)
    notes.append(f"simulation noise: Poisson counts of {photons:g} photons per bin, attenuation {mu:.4g} per pixel "
                 f"(longest ray e^-{mu * peak:.3g}: {photons * math.exp(-mu * peak):.3g} photons expected)"
                 + (f"; {empty} bins counted no photon and are read as one" if empty else ""))
    return y, counts, mu


def _counts_of_post_log_data(y: torch.Tensor, photons: float, notes: list[str], read_off: bool = False
                             ) -> torch.Tensor:
    """The counts ``photons e^-y`` behind post-log line integrals ``y`` (physical units), at least one
    photon per bin (a note counts the bins whose value says fewer); refused when ``y`` cannot be such
    data (counts beyond float range: values far below 0)."""
    # beside the object a bin counts about I0 +- sqrt(I0) photons: its value lies within a few
    # 1 / sqrt(I0) of 0 (or a calibration's few percent), and nothing lies further below (it would
    # count more photons than were sent)
    lowest = -max(POST_LOG_NOISE_SIGMAS / math.sqrt(photons), POST_LOG_CALIBRATION_SLACK)
    if float(y.min()) < lowest:
        if read_off:  # no count was given: the air's level, or the noise's kind, is what is off
            notes.append(f"the sinogram holds values down to {float(y.min()):.4g}, below {lowest:.3g}, where the noise "
                         f"of the {photons:.4g} photons read off it reaches: post-log data put the air at 0 (-log(I/I0)); "
                         "check the air calibration (I0), or whether the noise is photon counts'")
        else:
            raise ValueError(f"the sinogram holds values down to {float(y.min()):.4g}, below {lowest:.3g}: post-log "
                             f"line integrals -log(I/I0) of {photons:g} photons lie above that; check the photon count "
                             "and that the data are -log(I/I0)")
    counts = float(photons) * torch.exp(-y.double())
    below = int((counts < 1).sum())
    if below:
        notes.append(f"{below} bins of the sinogram lie above log(I0) = {math.log(photons):.4g} (fewer than one of "
                     f"{photons:g} photons): they are read as one photon; check the photon count if they are many")
    return counts.clamp_min(1.0)


# weighting="auto" whitens a flat field's fine rings when the flat averages at most this many exposures:
# one exposure's rings cost 0.4 to 1.3 dB, of which the model gave back 0.25 to 0.65; with two it gained
# 0.06 dB on average, from four on it cost up to 0.08 (docs/benchmarks.md, "Rings from the flat field's noise")
RING_MODEL_MAX_EXPOSURES = 2


def _flat_rings_modelled(weighting: str, transmission, flat_exposures: int | None, notes: list[str]) -> bool:
    """Whether the data term whitens the flat field's rings (``weighting="gls"``, or ``"auto"`` for a
    flat of known exposures, at most ``RING_MODEL_MAX_EXPOSURES``); a note for a flat of one frame
    whose exposures are unknown (one value per bin may be a mean of many)."""
    if transmission.flat_variance is None or weighting not in ("gls", "auto"):
        return False
    if weighting == "gls":
        return True
    exposures = flat_exposures if flat_exposures is not None else (
        transmission.flat_frames if transmission.flat_frames >= 2 else None)
    if exposures is None:
        notes.append("the flat field is one frame (one value per bin): if it is a single exposure rather than a mean "
                     "of several, flat_exposures=1 (--flat-exposures 1) whitens its fine rings, the same in every view")
        return False
    return exposures <= RING_MODEL_MAX_EXPOSURES


def _photon_count_weighting(op, y: torch.Tensor, counts: torch.Tensor, mu: float, weighting: str,
                            notes: list[str], transmission=None):
    """The operator, data and noise level of photon-count data (post-log, on the scale ``1 / mu``
    of line integrals): weighted least squares with the counts as weights (``"wls"``, ``"auto"``), or
    plain least squares at the root-mean-square level (``"none"``). ``counts``: the bins' precisions
    (inverse variances, in photons: the photon counts where the noise is Poisson alone).
    ``transmission``: flat-field-corrected data whose flat's own noise (``flat_variance``) the
    weighted data term also whitens (generalized least squares), where it is known."""
    mean_count = float(counts.mean())
    if weighting == "none":
        # dead detector bins (precision ~0, their values interpolated) hold no noise of their own
        measured = counts[counts > 1e-6 * counts.mean()]
        level = math.sqrt(float((1.0 / measured).mean())) / mu
        notes.append(f"noise level from the photon counts: {level:.4g} (root mean square of 1/sqrt(I); plain "
                     "least squares)")
        return op, y, level
    weights = (counts / mean_count).cpu().numpy()[0, 0]
    shared = None
    if transmission is not None:  # (passed only where the flat's variance is modelled)
        from pnp_stable.transmission import RING_PERIOD_BINS, ring_covariance

        # in the relative weights' units: what a bin of weight 1 (mean_count photons) has
        shared = ring_covariance(transmission.flat_variance, RING_PERIOD_BINS) * mean_count
    weighted = op.with_statistical_weights(weights, shared)
    level = 1.0 / (mu * math.sqrt(mean_count))
    notes.append(f"weighted least squares with the photon counts as weights (mean {mean_count:.4g}): the weighted "
                 f"noise is white, level {level:.4g}")
    if shared is not None:
        exposures = transmission.flat_exposures
        notes.append(f"the flat field's own noise ({exposures} exposure{'s' if exposures != 1 else ''}) is the same "
                     f"in every view of a detector bin: its rings finer than {RING_PERIOD_BINS:g} bins are whitened "
                     "with the views' noise (generalized least squares), so that the denoiser removes them")
    return weighted, weighted.statistical_weighting(y), level


def _photons_read_off(sino: torch.Tensor, notes: list[str]) -> float:
    """``photons="auto"``: a post-log sinogram's incident photons per bin read off its noise
    (:func:`~pnp_stable.transmission.photons_from_sinogram_noise`), with a note, and a doubt when
    its noise does not grow with the attenuation as counts' does."""
    from pnp_stable.transmission import photons_from_sinogram_noise

    estimate = photons_from_sinogram_noise(sino)
    if not 0 < estimate.photons <= MAX_PHOTONS:
        raise ValueError(f"the photon count read off the sinogram's noise, {estimate.photons:.3g}, is no count of "
                         "incident photons: give it (photons=, --photons)")
    notes.append(f"incident photons per bin read off the sinogram's noise: {estimate.photons:.4g} (give --photons if "
                 "you know it)")
    if estimate.clipped_share >= 0.01:
        notes.append(f"{100 * estimate.clipped_share:.0f} % of the sinogram sits at its minimum (clipped, e.g. negative "
                     "values set to 0?): the noise is cut there, so the photon count read is unreliable; give it "
                     "(--photons I0) if you know it")
    if not estimate.poisson_like:
        notes.append(f"the sinogram's noise grows {estimate.growth:.2g} times from its least to its most attenuating "
                     f"bins, where photon counts' grows {estimate.expected_growth:.2g} times: its noise may not be "
                     "photon counts' (or the data are not unscaled line integrals -log(I/I0)); without --photons it "
                     "is read as Gaussian")
    return float(estimate.photons)


def _flat_field_corrected(sino: torch.Tensor, flat: Any, dark: Any, gain: float | None, weighting: str,
                          notes: list[str], flat_exposures: int | None = None):
    """:func:`~pnp_stable.transmission.flat_field_correction` of a raw sinogram, with notes on what
    it found: the gain's source, dead detector bins, starved bins, and data that look post-log already."""
    from pnp_stable.transmission import _frames, flat_field_correction

    if weighting == "gls" and flat_exposures is None and _frames(flat, "flat", sino.shape[0]).shape[1] == 1:
        flat_exposures = 1  # gls takes one frame for one exposure: a gain read off the noise models its noise too
    result = flat_field_correction(sino, flat, dark, gain, flat_exposures=flat_exposures)
    electronic = (f", electronic noise {result.read_noise:.3g} photons ({result.dark_frames} dark frames)"
                  if result.read_noise is not None else "")
    if result.gain_source == "flat frames":
        notes.append(f"detector gain measured from the {result.flat_frames} flat frames: {result.gain:.4g} units per "
                     f"photon{electronic}")
    elif result.gain_source == "sinogram noise":
        notes.append(f"detector gain read off the sinogram's noise: {result.gain:.4g} units per photon{electronic}; "
                     "give it (gain=, --gain) or two or more flat frames if you know better")
    if result.dead_detectors:
        shown = ", ".join(str(b) for b in result.dead_detectors[:8]) + (", ..." if len(result.dead_detectors) > 8
                                                                         else "")
        notes.append(f"{len(result.dead_detectors)} detector bins have no flat signal above the dark (dead: {shown}): "
                     "their line integrals are interpolated from their neighbours"
                     + (" (plain least squares fits those too)" if weighting == "none" else
                        " and the weighted data term ignores them"))
    if result.starved_bins:
        notes.append(f"{result.starved_bins} bins of the sinogram hold less than one photon above the dark (photon "
                     "starvation): read as one photon")
    live = np.ones(result.line_integrals.shape[0], dtype=bool)
    live[list(result.dead_detectors)] = False
    if float(result.line_integrals[live].min()) > FLAT_FIELD_NO_AIR:
        notes.append(f"no bin of the sinogram transmits more than e^-{FLAT_FIELD_NO_AIR:g} of the flat field: if the "
                     "data are line integrals already (post-log), drop the flat field; if the sinogram and the flat "
                     "are on different scales (one file scaled to [0, 1]), give both as the detector's readings; "
                     "else the object fills the detector")
    return result


def _angles_over_range(count: int, angle_range: float | str, n: int, n_detectors: int | None,
                       distances: dict[str, float | None]) -> list[float]:
    """``count`` angles uniform over ``[0, angle_range)`` degrees; ``"short"``: over a fan beam's short
    scan, for its geometry (``n_detectors`` None: the default detector)."""
    if angle_range == "short":
        from pnp_stable.operators import FanBeamCT

        probe = FanBeamCT(n, angles=1, n_detectors=n_detectors, **distances)  # one view: the geometry only
        if not probe.covers_both_sides():
            raise ValueError("a short scan measures every line only with a detector that covers the image on both "
                             "sides of the central ray; this offset detector is displaced (one side short): it needs "
                             "a full turn")
        angle_range = probe.short_scan_range
    return [float(k) * float(angle_range) / int(count) for k in range(int(count))]


def _sinogram_doubts(sino: torch.Tensor, uniform_angles: bool, fan: bool = False, axis_offset: float = 0.0
                     ) -> list[str]:
    """Notes on a sinogram (``n_detectors x n_angles``) that is probably not what it will be taken
    for: its columns not views (transposed, or an image: the column sums differ, where every view
    of an object sums to its mass), a 360-degree scan read as 180 degrees (its second half mirrors
    its first, p(theta + 180, s) = p(theta, -s)), or detector counts instead of line integrals
    (largest at the detector edges, where the rays miss the object). A fan beam's views neither
    sum alike (the magnification of an off-centre object turns with the source) nor mirror: only
    the last check applies to it. ``axis_offset``: a parallel beam's detector offset, about whose
    axis the halves mirror."""
    notes = []
    data = sino.double()
    if fan:
        return _counts_doubt(data)
    sums = data.sum(dim=0)
    mean = float(sums.mean())
    if mean > 0 and sums.numel() > 1:
        spread = float(sums.std()) / mean
        if spread > COLUMN_SUM_SPREAD:
            notes.append(f"the sinogram's columns (its angles) do not sum to the same total (spread {100 * spread:.0f} "
                         "%; every view of an object sums to its mass): if its rows are the angles, transpose it; "
                         "an image to project needs --simulate")
    n_ang = data.shape[1]
    if uniform_angles and n_ang >= 4 and n_ang % 2 == 0:
        second = data[:, n_ang // 2:]
        if axis_offset:
            # mirrored about the axis's bin (G - 1)/2 - offset: bin b reads what bin b - 2 offset held
            bins = torch.arange(data.shape[0], dtype=torch.float64)
            source = (bins - 2.0 * axis_offset).numpy()
            second = torch.stack([torch.from_numpy(np.interp(source, bins.numpy(), column.numpy(), left=0.0, right=0.0))
                                  for column in second.T], dim=1)
        first, second = data[:, : n_ang // 2], second.flip(0)
        scale = float(first.norm())
        # views that do not depend on the angle (a centred disc, a water phantom) mirror anyway
        turned = data.roll(n_ang // 4, dims=1)[:, : n_ang // 2]
        if scale > 0 and float((first - second).norm()) <= MIRRORED_HALVES * scale \
                and float((first - turned).norm()) > MIRRORED_HALVES * scale:
            notes.append("the sinogram's second half mirrors its first, as a 360-degree scan's does, but its angles "
                         "are taken as uniform over [0, 180): give them (--angles FILE, the API's angles=) or keep "
                         "the first half")
    return notes + _counts_doubt(data)


def _counts_doubt(data: torch.Tensor) -> list[str]:
    top, edges = float(data.max()), torch.cat([data[0], data[-1]])
    if top > 0 and float(data.min()) > 0 and float(edges.mean()) > 0.5 * top:
        return ["the sinogram is largest at its detector edges, where rays miss the object: if it holds "
                "detector counts or intensities I, reconstruct line integrals -log(I / I0)"]
    return []


# An FBP of a sinogram of a [0, 1] image peaks near 1 (the 99.9th percentile: a few noisy pixels
# aside); far outside this band the data are on another scale (attenuation in 1/mm, counts ...)
ATTENUATION_PEAK_BAND = (0.5, 1.0)


def _attenuation_scale(fbp: torch.Tensor, notes: list[str]) -> float:
    """The factor ``s`` that brings a sinogram's image to the [0, 1] scale the denoisers were trained
    on: the 99.9th percentile of its FBP (``fbp``) when that lies outside ``ATTENUATION_PEAK_BAND``,
    else 1.
    PnP is not scale-equivariant: a denoiser shown an image peaking at 5 or at 0.02 treats noise
    and structure at the wrong level (measured on a 64 x 64 phantom: 12 % relative error where
    scale 1 gave 8 %). The band's top is 1: with 2, objects peaking up to 2.3 kept their scale and
    were clipped at 1 (15.8 to 33.3 % error; docs/cli.md, ``pnp-stable ct``)."""
    values = fbp.flatten()
    peak = float(values.kthvalue(max(1, int(math.ceil(0.999 * values.numel())))).values)
    low, high = ATTENUATION_PEAK_BAND
    if not math.isfinite(peak) or peak <= 0 or low <= peak <= high:
        return 1.0
    notes.append(f"the sinogram's FBP peaks near {peak:.4g}, not 1: the data are divided by {peak:.4g} for the "
                 "denoiser (trained on [0, 1] images) and the reconstruction multiplied back")
    return peak


# the share of a sinogram's mass on detector bins that no pixel of the image reaches, above which
# the geometry (the image size, the detector) is doubted when that mass is also far above what noise
# gives: OUTSIDE_SHADOW_SIGMAS standard deviations of a sum of that much zero-mean noise
OUTSIDE_SHADOW_SHARE = 0.005
OUTSIDE_SHADOW_SIGMAS = 10.0


def _outside_shadow_doubt(y: torch.Tensor, op) -> list[str]:
    """A note when much of the sinogram ``y`` lies where the image of ``op`` casts no shadow: the
    bins no pixel reaches at that angle (``A`` of an all-ones image is 0 there). Data of this
    geometry have only noise there; mass says the image is larger than assumed, or the sinogram
    was made for the inscribed disc (skimage's ``circle=True``: ``n`` detectors, read as the full
    detector of a smaller image; the Shepp-Logan phantom puts 2 % of its mass there). Mass is
    counted above the median of those bins: a constant offset of the whole sinogram (a detector's
    dark current, a log transform's) lies there too and says nothing of the geometry, while an
    object reaching beyond the image leaves most of them empty."""
    shadow = op.A(op.object_support(y.dtype, y.device)) > 0
    baseline = float(y.double()[~shadow].median()) if bool((~shadow).any()) else 0.0
    data = y.double() - baseline
    values = data[~shadow]
    total, outside = float(data.sum()), float(values.sum())
    if values.numel() < 2 or not (total > 0 and outside > OUTSIDE_SHADOW_SHARE * total):
        return []
    from pnp_stable.solvers import estimate_noise_level

    # the noise's share of that sum (the estimate reads high on sinograms, which only makes this safer)
    noise = estimate_noise_level(y)[0]
    if outside <= OUTSIDE_SHADOW_SIGMAS * noise * math.sqrt(values.numel()):
        return []
    n = op.image_size
    hint = ("; a sinogram of the inscribed disc (skimage's circle=True) needs --detector circle (detector=)"
            if getattr(op, "detector", None) == "full" else "")
    return [f"{100 * outside / total:.1f} % of the sinogram lies on detectors that no pixel of a {n}x{n} image "
            f"reaches at those angles: the object is larger than that (check --size){hint}"]


def _size_from_detectors(n_det: int, detector: str = "full") -> int:
    from pnp_stable.operators.ct import image_size_for_bins

    n = image_size_for_bins(n_det, detector)
    if n is None:
        raise ValueError(f"cannot infer the image size from {n_det} detectors (no n x n image has ceil(sqrt(2) n) = "
                         f"{n_det}): pass --size, or --detector circle (detector=) for a sinogram of the inscribed "
                         "disc (skimage's circle=True)")
    return n


# the level a denoising simulation adds when it is given none: the middle level of denoise-bsd68
DENOISING_SIMULATION_NOISE_LEVEL = 25 / 255


def denoise(
    image: torch.Tensor,
    noise_level: float | None = None,
    *,
    denoiser: str | nn.Module | None = None,
    simulate: bool = False,
    seed: int = 0,
    device: str = "auto",
    color: str = "opponent",
    tile: int | None = None,
) -> Restoration:
    """Apply the denoiser once to ``image`` (``C x H x W`` in [0, 1]) at ``noise_level`` (the
    noise std on the [0, 1] scale; when None, estimated from the image as for the restorations,
    a note saying so). With ``simulate=True`` the image is a clean ground truth: Gaussian noise of
    std ``noise_level`` (default 25/255, with a note) is added first (seeded) and PSNR/SSIM are
    reported. Below the noise levels the denoiser declares it was trained for, it runs at the
    lowest of them, ``s_min``, relaxed: ``(1 - t) y + t D(y, s_min)`` with ``t = (noise_level /
    s_min)^2`` (still averaged; the report's ``denoiser`` records ``sigma_den`` and ``relaxation``).
    Returns a :class:`Restoration` whose ``result`` is None (no iterations). ``color``: how an RGB
    image is treated with a gray denoiser (see the module docstring); ``denoiser``: a name, a path,
    a module, or None for :func:`default_denoiser`; ``tile``: as in :func:`deblur`."""
    notes: list[str] = []
    source = "given"
    if noise_level is not None:
        noise_level = _check_noise_level(noise_level)
    elif simulate:
        noise_level, source = DENOISING_SIMULATION_NOISE_LEVEL, "default"
        notes.append("simulation noise level defaulted to 25/255")
    dev = resolve_device(device)
    image = _check_image(image, notes).to(dev)
    raised_from = None
    if noise_level is None:
        noise_level, source = _noise(image[None], None, notes)
        noise_level, raised_from = rounding_level_floor(noise_level, notes, use="the denoiser runs at")
    module, den_info = load_denoiser(denoiser, dev, image.shape[0], color)
    from pnp_stable.solvers.parameters import declared_noise_range

    trained = declared_noise_range(module)
    # below the trained range the denoiser is run at the bottom of it and relaxed, as the FB rule
    # does (docs/solvers.md): (1 - t) y + t D(y, s_min) ~ prox of t times the regulariser, with
    # t = (sigma / s_min)^2. On six BSDS500 train crops at 0.5 / 1 / 2 / 3 / 4 /255 it scored 54.21 /
    # 48.30 / 42.71 / 39.81 / 38.01 dB against 47.16 / 45.41 / 42.20 / 39.74 / 38.04 extrapolated
    # (the network asked for a level it never saw); it keeps the certificate (t alpha-averaged)
    level_for_denoiser, relaxation = noise_level, None
    if trained is not None and noise_level < trained[0]:
        level_for_denoiser, relaxation = trained[0], (noise_level / trained[0]) ** 2
        notes.append(f"the noise level {noise_level * 255:.3g}/255 is below the range the denoiser was trained for "
                     f"({trained[0] * 255:.3g} to {trained[1] * 255:.3g}/255): it runs at {trained[0] * 255:.3g}/255, "
                     f"relaxed by t = {relaxation:.3g} (the result is (1 - t) x the input + t x the denoised image)")
    elif trained is not None and noise_level > trained[1]:
        notes.append(f"the noise level {noise_level * 255:.3g}/255 is above the range the denoiser was trained for "
                     f"({trained[0] * 255:.3g} to {trained[1] * 255:.3g}/255): its output there is an extrapolation")
    batch, split, module = _as_batch(image, module, notes, den_info, color)
    module = _tiled(module, tuple(batch.shape), tile, notes, den_info)
    noisy = batch
    if simulate:
        g = torch.Generator(device=dev).manual_seed(seed)
        noisy = batch + noise_level * torch.randn(batch.shape, generator=g, device=dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = module(noisy, level_for_denoiser)
        if relaxation is not None:
            out = (1 - relaxation) * noisy + relaxation * out
        out = out.clamp(0, 1)
    result = out[:, 0] if split else out[0]
    obs = noisy[:, 0] if split else noisy[0]
    noise_report = {"sigma": noise_level, "source": source,
                    **({} if raised_from is None else {"raised_from": raised_from})}
    den_info = {**den_info, "sigma_den": level_for_denoiser, "relaxation": relaxation}
    report: dict[str, Any] = {"noise": noise_report, "denoiser": den_info,
                              "metrics": {"time_s": time.perf_counter() - t0}}
    truth = None
    if simulate:
        truth = batch[:, 0] if split else batch[0]
        report["metrics"].update(psnr=psnr(result, truth), ssim=ssim(result, truth), psnr_input=psnr(obs, truth),
                                 ssim_input=ssim(obs, truth))
    report["notes"] = notes
    return Restoration(result.cpu(), obs.cpu(), None if truth is None else truth.cpu(), None, report, notes)

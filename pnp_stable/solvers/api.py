"""``solve``: PnP restoration that states its convergence guarantee and monitors it.

See :mod:`pnp_stable.solvers.guarantee` for the theorems, :mod:`pnp_stable.solvers.monitor`
for what is monitored, :mod:`pnp_stable.solvers.anderson` for the acceleration and
:mod:`pnp_stable.solvers.parameters` for the automatic parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pnp_stable.layers.certificates import certificate_of
from pnp_stable.digest import tensor_digest
from pnp_stable.precision import ieee_float32
from pnp_stable.solvers.anderson import SafeguardedAnderson
from pnp_stable.solvers.denoiser_adapter import (
    accepts_noise_level, denoiser_caller, evaluation_mode, strength_kind, warm_start_hooks,
)
from pnp_stable.solvers.guarantee import IterationPlan, analyse_forward_backward, analyse_splitting, with_acceleration
from pnp_stable.solvers.monitor import DEFAULT_TOLERANCE_FACTOR, ResidualMonitor, batch_norms
from pnp_stable.solvers.operator_adapter import as_operator, probe_measurements, prox_optimality_residual
from pnp_stable.solvers.noise_estimation import estimate_noise_level_for_parameters
from pnp_stable.solvers.parameters import ParameterRule, choose_parameters, rule_for
from pnp_stable.solvers.result import SolveResult
from pnp_stable.solvers.splitting import make_iteration_map

__all__ = ["solve", "METHODS"]

METHODS = ("fb", "admm", "drs")
_METRICS = ("psnr", "ssim")


def _module_tensor(module: object) -> torch.Tensor | None:
    if not isinstance(module, nn.Module):
        return None
    for t in module.parameters():
        return t
    for t in module.buffers():
        if t.is_floating_point():
            return t
    return None


def _check_denoiser(denoiser: object, y: torch.Tensor) -> None:
    if not callable(denoiser):
        raise ValueError(f"the denoiser must be callable (an nn.Module), got {type(denoiser).__name__}")
    ref = _module_tensor(denoiser)
    if ref is not None:
        if ref.device.type != y.device.type:
            raise ValueError(f"the denoiser is on {ref.device} but y is on {y.device}: move one of them")
        if ref.is_floating_point() and ref.dtype != y.dtype:
            raise ValueError(f"the denoiser is {ref.dtype} but y is {y.dtype}: convert one of them")


def _psnr(x: torch.Tensor, x_true: torch.Tensor) -> list[float]:
    """PSNR (peak 1) of the estimate clipped to [0, 1], per image."""
    mse = (x.clamp(0, 1) - x_true).reshape(x.shape[0], -1).to(torch.float64).pow(2).mean(dim=1)
    return [float("inf") if m == 0 else -10.0 * math.log10(m) for m in mse.tolist()]


def _ssim(x: torch.Tensor, x_true: torch.Tensor) -> list[float]:
    from pnp_stable.metrics import ssim_per_image

    return [float(v) for v in ssim_per_image(x, x_true)]


def _norm_proven_here(op: object) -> bool:
    """Whether an ``"exact"``/``"certified"`` norm was computed by pnp-stable itself (its operators
    prove theirs: docs/operators.md). Another operator's kind is its own declaration, which the
    solver checks against a power-method lower bound only, so a guarantee resting on it is stated
    as conditional, as a declared prox is."""
    return type(op).__module__.startswith("pnp_stable.")


def _norm_statement(op: object) -> str | None:
    statement = getattr(op, "norm_statement", None)
    if callable(statement):
        return statement()
    bound = getattr(op, "norm_bound", None)
    if callable(bound):
        b = bound()
        return f"||A|| <= {b.value:.6g} ({b.kind}, by {b.method})"
    return None


def _prox_exactness(op: object, y: torch.Tensor, gamma: float, error_ratio: float) -> tuple[bool, str | None, str | None]:
    """Whether ``op.prox_data`` is exact; if not, either the statement to repeat as an assumption,
    or (for an operator that certifies its prox's error) how the error is controlled.

    Read from ``prox_exactness(gamma)`` or ``prox_is_exact`` when the operator states it; operators that report how each prox
    was computed (``last_prox_info.method``, as :mod:`pnp_stable.operators` do) are asked once;
    otherwise the protocol's contract (an exact argmin) is taken at its word.
    """
    name = type(getattr(op, "physics", op)).__name__
    check = getattr(op, "prox_exactness", None)
    if callable(check):  # e.g. a deepinv physics: its structure and a probe of the optimality condition
        exact, statement = check(gamma)
        return (True, None, None) if exact else (False, statement, None)
    declared = getattr(op, "prox_is_exact", None)
    if isinstance(declared, bool):
        exact = declared and _prox_passes_probe(op, y, gamma)
    elif hasattr(op, "last_prox_info"):
        x_like = op.A_adjoint(y[:1])  # type: ignore[attr-defined]
        if getattr(op, "certified_prox_error", False):  # a probe: any error will do, so no CG runs
            op.prox_data(x_like, y[:1], gamma, max_error=float("inf"))  # type: ignore[attr-defined]
        else:
            op.prox_data(x_like, y[:1], gamma)  # type: ignore[attr-defined]
        info = getattr(op, "last_prox_info", None)
        exact = getattr(info, "method", "closed-form") == "closed-form"
        if not exact and getattr(op, "certified_prox_error", False):
            budget = ("to the rounding of its result" if error_ratio == 0 else
                      f"to an error below {error_ratio:g} x the latest fixed-point residual and "
                      f"{error_ratio:g} r_0 / (k + 1)^2 (summable)")
            return False, None, (
                f"prox_data of {name} is computed by conjugate gradients {budget}; each error is certified "
                "(||x - prox|| <= ||b - M x||, M = gamma A^T A + I >= I) and the monitor allows for it"
            )
        if not exact:
            return False, (
                f"prox_data of {name} is computed by conjugate gradients (float64) to relative residual "
                f"{getattr(info, 'tolerance', float('nan')):.1e}: firm non-expansiveness holds up to that tolerance"
            ), None
    else:  # the protocol's contract (an exact argmin), unless a probe of its optimality condition falsifies it
        relative, limit = prox_optimality_residual(op, y, gamma, float(op.norm()))
        exact = relative <= limit
        if not exact:
            return False, (
                f"prox_data of {name} is not the exact prox: on a random probe its optimality residual is "
                f"{relative:.1e} relative (rounding would give at most {limit:.1e}); firm non-expansiveness holds "
                "up to that error"
            ), None
    if exact:
        return True, None, None
    return False, (
        f"prox_data of {name} is computed by an iterative least-squares solver: firm non-expansiveness "
        "holds up to its tolerance"
    ), None


def _measures_images(A: object, dtype: torch.dtype) -> bool:
    """Whether ``A`` (with a known ``img_size``) measures ``B x C x H x W`` tensors: then a 2-D ``y``
    is an image given bare, not a batch of vector measurements (compressed sensing)."""
    # deepinv names it img_size, or imsize (Downsampling)
    image_size = tuple(getattr(A, "img_size", None) or getattr(A, "imsize", None) or ())
    forward = getattr(A, "A", None)
    if len(image_size) != 3 or not callable(forward):
        return False
    try:
        return forward(torch.zeros(1, *image_size, dtype=dtype)).ndim == 4
    except Exception:  # noqa: BLE001 - an operator that cannot even run on its own size: as_operator says why
        return False


def _finite_rows_or(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` with each image (row) that holds a non-finite value replaced by ``old``'s (a fresh
    tensor when any is replaced: the sources may alias the solver's buffers)."""
    finite = torch.isfinite(new.flatten(1)).all(dim=1)
    if bool(finite.all()):
        return new
    return torch.where(finite.view(-1, *[1] * (new.ndim - 1)), new, old)


def _prox_passes_probe(op: object, y: torch.Tensor, gamma: float) -> bool:
    """Whether ``op.prox_data`` satisfies the prox's optimality condition on a random probe to
    rounding (:func:`~pnp_stable.solvers.operator_adapter.prox_optimality_residual`)."""
    relative, limit = prox_optimality_residual(op, y, gamma, float(op.norm()))
    return relative <= limit


def _plan(method: str, denoiser: object, cert, op, step, relaxation, y: torch.Tensor,
          prox_error_ratio: float) -> IterationPlan:
    name = type(denoiser).__name__
    if method == "fb":
        kind = op.norm_kind
        # an exact/certified norm computed elsewhere is the operator's declaration (an estimated one
        # is an assumption by its kind already)
        declared = kind != "estimated" and not _norm_proven_here(op)
        statement = (f"||A|| <= {float(op.norm()):.6g} ({kind} as {type(op).__name__} declares it; checked here only "
                     "against a power-method lower bound)") if declared else _norm_statement(op)
        return analyse_forward_backward(cert, name, float(op.norm()), kind, statement, step, relaxation,
                                        norm_proven=not declared)
    if step is None or not step > 0:  # let the analysis raise its one-line error before any prox is run
        return analyse_splitting(method, cert, name, step if step is not None else float("nan"), relaxation)
    exact, statement, control = _prox_exactness(op, y, float(step), prox_error_ratio)
    return analyse_splitting(method, cert, name, step, relaxation, exact, statement, control)


def _denoiser_identity(D: object) -> str:
    """What a resumed solve's denoiser must share with the one it continues: another map would
    continue this one's iterates and residual history, and its guarantee would be stated for both.
    Its parameters' digest (eval-mode calls never move them, unlike buffers such as power vectors;
    a wrapper with the same output, tiles whose size may change on resume, holds the same ones); a
    module without parameters is its buffers, and one without tensors (a TV prox) its class."""
    tensors = (list(D.parameters()) or list(D.buffers())) if isinstance(D, nn.Module) else []
    if not tensors:
        return f"{type(D).__module__}.{type(D).__qualname__}"
    return f"parameters sha256 {tensor_digest(tensors)}"


def observation_digest(y: torch.Tensor) -> str:
    """SHA-256 of ``y``'s shape, dtype and bytes: what a resumed solve must be given again."""
    data = y.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(data.shape)} {data.dtype}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _finite_number(value: object) -> float | None:
    """``value`` as a finite float, or None if it is not one."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _with_budget_misses(guarantee: Any, misses: list[float]) -> Any:
    """``guarantee``, with an assumption added when the iterative data prox stopped short of its
    error budget: the inexact Krasnosel'skii-Mann theorem needs the errors summable, which the
    budgets make them; errors above the budget are certified (the monitor allows for them) but
    their sum is no longer bounded by construction."""
    if not misses or not guarantee.holds:
        return guarantee
    statement = (f"the data prox (CG) stopped above its error budget in {len(misses)} evaluation(s), at most "
                 f"{max(misses):.3g} x the budget: the errors are certified and allowed for by the monitor, "
                 "but their summability, which the inexact Krasnosel'skii-Mann theorem needs, is assumed")
    return dataclasses.replace(guarantee, assumptions=(*guarantee.assumptions, statement))


@ieee_float32()  # the monitor's tolerance is float32 rounding, not TF32's (pnp_stable.precision)
def solve(
    y: torch.Tensor,
    A: object,
    D: nn.Module,
    method: str = "fb",
    x0: torch.Tensor | None = None,
    step: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-5,
    x_true: torch.Tensor | None = None,
    accelerate: str | bool | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    progress: bool = True,
    *,
    sigma_den: float | None = None,
    noise_level: float | None = None,
    relaxation: float | None = None,
    rule: ParameterRule | dict | None = None,
    metrics: Sequence[str] = ("psnr",),
    monotone_tolerance: float = DEFAULT_TOLERANCE_FACTOR,
    anderson_memory: int = 5,
    anderson_decrease: float = 0.99,
    anderson_backoff: int = 8,
    operator_margin: float = 0.02,
    resume: SolveResult | None = None,
    checkpoint: Callable[[SolveResult], None] | None = None,
    checkpoint_every: float = 60.0,
    prox_error_ratio: float = 0.03,
) -> SolveResult:
    """Restore ``y = A x + noise`` by PnP forward-backward, ADMM or DRS, checking the theorem.

    Guarantee (see ``result.guarantee``): when the constants prove the iteration map averaged —
    FB with ``D`` certified averaged and ``tau < 2/||A||^2``; ADMM/DRS with ``D`` certified
    averaged (relaxed automatically to be firmly non-expansive) and any ``gamma > 0`` — the
    Krasnosel'skii-Mann theorem applies: the absolute residual of the governing variable is
    non-increasing and ``o(1/sqrt(k))``, and the iterates converge to a fixed point whenever one
    exists. Otherwise ``holds=False`` with the reason. Assumptions it rests on (an estimated
    ``||A||`` for deepinv physics, a user-declared prox, an inexact data prox, exact arithmetic)
    are listed in ``guarantee.assumptions``. The residual is monitored per image and increases
    beyond float tolerance are counted (``result.monotone``) and warned about once.

    Args:
        y: measurements, batch first (``B x ...``); the device and dtype of the solve follow it.
        A: a :mod:`pnp_stable.operators` operator (ForwardOperator protocol) or a
            ``deepinv.physics.LinearPhysics``.
        D: denoiser ``nn.Module`` called ``D(x, sigma_den)`` or ``D(x)``; it runs in eval mode
            (its flags are restored afterwards). Its certificate is read with
            :func:`pnp_stable.layers.certificate_of`; without one it is uncertified.
        method: ``"fb"``, ``"admm"`` (scaled form, governing variable ``w = x + u``) or ``"drs"``.
        x0: initial image (default ``A^T y``); ADMM/DRS start from ``w_0 = x0`` (zero dual).
        step: FB step ``tau`` (default ``1.9/||A||^2``) or ADMM/DRS ``gamma`` in
            ``prox_{gamma f}``, ``f = 1/2 ||Ax - y||^2`` (default: automatic rule).
        max_iter: iterations (accepted updates) per call.
        tol: stop an image when ``||T w_k - w_k|| / ||w_k|| <= tol``.
        x_true: ground truth for per-iteration PSNR (and SSIM if in ``metrics``).
        accelerate: None or ``"anderson"`` (safeguarded; keeps the monitor valid); ``True`` and
            ``False`` mean ``"anderson"`` and None, as in the restoration tasks.
        callback: called with a dict (iteration, residual, relative_residual, x, state, psnr;
            ``x`` and ``state`` are copies the callback may keep) for the starting point's
            evaluation (iteration 0) and after each iteration; returning True stops the solve.
        progress: show a tqdm progress bar.
        sigma_den: noise level passed to ``D`` (finite, >= 0); automatic from the noise level if omitted.
        noise_level: observation noise std for the automatic rule; estimated from ``y``
            (:func:`~pnp_stable.solvers.estimate_noise_level_for_parameters`: a CT operator's
            sinogram along its detectors; median over the batch) if omitted and needed.
        relaxation: ``t`` in ``D_t = (1 - t) I + t D``; default 1 for FB, and for ADMM/DRS the
            smallest change making ``D_t`` firmly non-expansive.
        rule: a :class:`ParameterRule` overriding the denoiser's or the default calibration.
        metrics: which of ``"psnr"``, ``"ssim"`` to record when ``x_true`` is given (one name or a
            sequence of names).
        monotone_tolerance: ``c`` in the float tolerance ``c eps (r_{k-1} + ||w_k||)``.
        anderson_memory, anderson_decrease: Anderson memory ``m`` and safeguard ``theta``.
        anderson_backoff: after ``n`` consecutive rejected extrapolations an image takes
            ``min(2^(n-1), anderson_backoff)`` plain steps before the next proposal (0: propose at
            every iteration); a rejection costs one evaluation, so this bounds the waste.
        operator_margin: safety margin on a power-method norm estimate (deepinv physics).
        resume: a previous result of the same problem to continue from (its state, counters,
            parameters, history and ``continuation`` are carried over, so that without acceleration
            the resumed run is the uninterrupted one bit for bit; images that had converged stay as
            they were; the Anderson memory restarts). Resuming a converged result returns it
            unchanged.
        checkpoint: called with a snapshot :class:`SolveResult` (``stopped_by="checkpoint"``) at
            the first recorded iterate at least ``checkpoint_every`` seconds after the start or the
            previous snapshot; a snapshot is a valid ``resume`` (e.g. saved with
            :func:`pnp_stable.solvers.save_solve_state`), so a killed process loses at most that
            much work.
        prox_error_ratio: ``eta`` for a data prox computed iteratively by an operator that
            certifies its error (:mod:`pnp_stable.operators` with a CG prox): at iteration ``k``
            the prox's certified error is kept below ``eta min(r_k, r_0 / (k + 1)^2)`` (``r``: the
            image's monitored residual; the first prox: ``1e-3 eta ||w_0||``), a summable
            sequence, so the inexact Krasnosel'skii-Mann theorem applies, and the monitor adds
            the certified bounds to its tolerance. 0 computes every prox to the rounding of its
            result. Ignored for closed-form proxes, FB, and when no guarantee holds (every prox is
            then exact to rounding: the errors' effect on the map is only bounded under it).

    Returns:
        a :class:`SolveResult`. A ``KeyboardInterrupt`` during the iterations stops the solve
        cleanly and returns the partial result (``stopped_by="interrupted"``); pass it as
        ``resume`` to continue.

    Raises:
        ValueError: on invalid arguments (unknown method, shapes, devices, parameters).
    """
    method = str(method).lower()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose 'fb', 'admm' or 'drs'")
    if not isinstance(y, torch.Tensor) or y.ndim < 2:
        raise ValueError("y must be a tensor with a batch dimension first (B x ...)")
    if not y.is_floating_point():
        raise ValueError(f"y must be a floating-point tensor, got {y.dtype}")
    y = y.detach()  # the solve is no autograd graph (it runs under inference_mode)
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or infinite values")
    if y.ndim == 2 and _measures_images(A, y.dtype):  # an H x W measurement given without batch and channel
        raise ValueError(f"y has shape {tuple(y.shape)}, but {type(A).__name__} works on batch x channels x height "
                         "x width tensors (for one gray image: y[None, None])")
    if y.shape[0] == 0:
        raise ValueError(f"y is an empty batch (shape {tuple(y.shape)})")
    step_value = None if step is None else _finite_number(step)
    if step is not None and (step_value is None or step_value <= 0):
        raise ValueError(f"step must be a positive number, got {step!r}")
    # one number each for the whole batch: the parameters they set are shared by its images
    for name, value in (("noise_level", noise_level), ("sigma_den", sigma_den)):
        number = None if value is None else _finite_number(value)
        if value is not None and (number is None or number < 0):
            try:
                several = torch.as_tensor(value).numel() > 1
            except (TypeError, ValueError, RuntimeError):
                several = False
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}"
                             + (": one for the whole batch, whose images share their parameters; solve images "
                                "with different levels separately" if several else ""))
    if x0 is not None and isinstance(x0, torch.Tensor) and not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 contains NaN or infinite values")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if isinstance(accelerate, bool):
        accelerate = "anderson" if accelerate else None
    if accelerate not in (None, "anderson"):
        raise ValueError(f"accelerate must be None, 'anderson' or a bool, got {accelerate!r}")
    if not (isinstance(max_iter, int) and max_iter >= 0):
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}: choose from {list(_METRICS)}")
    if not (isinstance(prox_error_ratio, (int, float)) and 0 <= prox_error_ratio < 1):
        raise ValueError(f"prox_error_ratio must lie in [0, 1), got {prox_error_ratio!r}")
    if resume is not None and resume.method != method:
        raise ValueError(f"cannot resume a {resume.method!r} solve with method {method!r}")
    observation = observation_digest(y)
    recorded = None if resume is None else resume.parameters.get("observation_sha256")
    if recorded is not None and recorded != observation:  # its residuals would be another problem's
        raise ValueError("cannot resume: y differs from the observation of the solve being continued")
    _check_denoiser(D, y)
    op = as_operator(A, y, operator_margin)
    batch = y.shape[0]
    identity = _denoiser_identity(D)
    before = None if resume is None else resume.parameters.get("denoiser")
    if before is not None and before != identity:
        raise ValueError(f"cannot resume: the denoiser differs from the solve being continued ({before}; now "
                         f"{identity}): continue with the same denoiser, or start a new solve")

    with evaluation_mode(D):
        cert = certificate_of(D)
    kind = strength_kind(D)
    takes_sigma = accepts_noise_level(D)
    if resume is not None:  # same parameters as the run being continued
        params = resume.parameters
        sigma_den = params.get("sigma_den") if sigma_den is None else sigma_den
        step = params.get("step") if step is None else step
        relaxation = params.get("relaxation_requested") if relaxation is None else relaxation
    chosen = None
    trained = getattr(D, "trained_noise_level", None)
    trained = float(trained) if isinstance(trained, (int, float)) and trained > 0 else None
    needs_rule = (takes_sigma and sigma_den is None) or (
        step is None and (method != "fb" or (kind == "fixed" and trained is not None))
    )
    if needs_rule:
        source = "given"
        if noise_level is None and not (kind == "fixed" and trained is None):
            # a CT operator's sinogram is read along its detectors (see the function)
            estimates = (estimate_noise_level_for_parameters(y, getattr(op, "parameter_family", None))
                         if y.ndim == 4 else [])
            if not estimates:
                raise ValueError("cannot estimate the noise level of non-image measurements: pass noise_level=")
            noise_level, source = float(sorted(estimates)[len(estimates) // 2]), "estimated"
            if noise_level == 0:
                raise ValueError("the noise level estimated from y is 0 (noise-free or constant data): pass "
                                 "noise_level= (at least the data's rounding level), or sigma_den and step")
            if len(estimates) > 1 and max(estimates) > 1.5 * min(estimates):  # beyond the estimator's scatter
                warnings.warn(f"the batch's images have different estimated noise levels ({min(estimates):.4g} to "
                              f"{max(estimates):.4g}); one parameter choice serves them all, at {noise_level:.4g}: "
                              "solve them separately for parameters of their own", UserWarning, stacklevel=2)
        op_norm = float(op.norm())
        problem = getattr(op, "parameter_family", None)  # e.g. "ct": the denoiser's CT calibration
        chosen = choose_parameters(method, kind, rule_for(D, kind, method, rule, problem),
                                   None if noise_level is None else float(noise_level), op_norm, source,
                                   sigma_den=sigma_den if takes_sigma else None, step=step,
                                   trained_noise_level=trained, density=getattr(op, "parameter_density", None))
        sigma_den = chosen.sigma_den if takes_sigma else None
        step = chosen.step
        if relaxation is None:
            relaxation = chosen.relaxation
    strength = None if sigma_den is None else _finite_number(sigma_den)
    if sigma_den is not None and (strength is None or strength < 0):
        # a noise level or prox weight below 0 makes no denoiser: prox_{s g} with s < 0 is the "prox"
        # of a concave function, which no certificate (declared or proven) covers
        raise ValueError(f"sigma_den must be a finite non-negative number, got {sigma_den!r}")
    requested_relaxation = relaxation
    with torch.inference_mode():
        plan = _plan(method, D, cert, op, step, relaxation, y, float(prox_error_ratio))
    plan = dataclasses.replace(plan, guarantee=with_acceleration(plan.guarantee, accelerate))
    denoise = denoiser_caller(D, sigma_den if takes_sigma else None)
    if not takes_sigma and sigma_den is not None:
        denoiser_caller(D, sigma_den)  # raises the explicit error
    parameters: dict[str, Any] = {
        "method": method,
        "step": plan.step,
        "sigma_den": sigma_den,
        "relaxation": plan.relaxation,
        "relaxation_requested": requested_relaxation,
        "km_relaxation": plan.km_relaxation,
        "strength_kind": kind,
        "automatic": (resume.parameters.get("automatic") if resume is not None else None) if chosen is None
        else chosen.as_dict(),
        "accelerate": accelerate,
        "observation_sha256": observation,
        "denoiser": identity,
    }
    # without a guarantee the errors' effect on T is not bounded (DRS needs R_D non-expansive): exact proxes
    error_control = plan.guarantee.holds and bool(plan.guarantee.constants.get("prox_error_control"))
    if error_control:
        parameters["prox_error_ratio"] = float(prox_error_ratio)

    if x_true is not None and x_true.shape[0] != batch:
        raise ValueError(f"x_true has batch {x_true.shape[0]} but y has {batch}")

    with evaluation_mode(D), torch.inference_mode():
        if resume is not None:
            w = resume.state.to(y.device, y.dtype)  # _iterate copies the start into its own buffer
        elif x0 is not None:
            w = x0.to(y.device, y.dtype)
        else:
            w = op.A_adjoint(y)
        reference = op.A_adjoint(probe_measurements(op, y))
        if w.shape[1:] != reference.shape[1:] or w.shape[0] != batch:
            raise ValueError(f"x0 has shape {tuple(w.shape)} but A^T y has shape {(batch, *reference.shape[1:])}")
        if x_true is not None and x_true.shape != w.shape:
            raise ValueError(f"x_true has shape {tuple(x_true.shape)} but the image has shape {tuple(w.shape)}")
        if x_true is not None:
            x_true = x_true.to(y.device, y.dtype)
        fixed_point_map = make_iteration_map(method, op, denoise, plan.step, plan.relaxation, plan.km_relaxation)
        return _iterate(
            fixed_point_map, w, y, plan, parameters, cert, batch, max_iter, tol, x_true, metrics, accelerate,
            anderson_memory, anderson_decrease, monotone_tolerance, callback, progress, resume,
            bool(getattr(op, "per_image_parameters", False)), warm_start_hooks(D), anderson_backoff,
            checkpoint, checkpoint_every, float(prox_error_ratio) if error_control else None,
        )


def _iterate(
    T, w: torch.Tensor, y: torch.Tensor, plan: IterationPlan, parameters: dict[str, Any], cert, batch: int,
    max_iter: int, tol: float, x_true, metrics, accelerate, anderson_memory, anderson_decrease,
    monotone_tolerance, callback, progress, resume: SolveResult | None, full_batch_only: bool, warm_hooks=None,
    anderson_backoff: int = 8, checkpoint: Callable[[SolveResult], None] | None = None,
    checkpoint_every: float = 60.0, prox_error_ratio: float | None = None,
) -> SolveResult:
    """The iteration loop.

    Buffer discipline: ``state`` (w_k), ``t_state`` (T w_k) and ``image`` (the read-out at w_k) are
    owned by this function — never views of ``y``, ``x0``, the caller's ``resume`` tensors or the
    tensors an iteration map returns — and change only by copies into them. An iteration first
    computes every new value (Anderson candidate, plain step) and then commits them all, so an
    interrupt (or an exception) at any point leaves the buffers at the last recorded iterate.
    A stopped image is never written again. A denoiser with :func:`warm_start_hooks` is restored
    to its state before an Anderson candidate whenever a plain step follows the candidate.
    ``prox_error_ratio`` (None: every evaluation exact to rounding) sets each evaluation's error
    budget (see :func:`solve`); ``t_error`` holds the certified error bound of ``t_state``.
    """
    from tqdm.auto import tqdm

    method = plan.method
    monitor = ResidualMonitor(batch, y.dtype, tol, monotone_tolerance, plan.guarantee.holds, method,
                              plan.guarantee.assumptions)
    anderson = (
        SafeguardedAnderson(batch, anderson_memory, anderson_decrease, backoff=anderson_backoff)
        if accelerate == "anderson" else None
    )
    history: list[dict[str, Any]] = []
    start_iteration = 0
    iterations = [0] * batch
    evaluations = 0
    elapsed_before = 0.0
    resumed_done: list[bool] = [False] * batch
    carried_row: dict[str, Any] | None = None
    t_error = [0.0] * batch
    if resume is not None and resume.history:
        # The resumed state is the last recorded iterate: its row is recomputed for the images that
        # still iterate (not duplicated); images that had stopped keep their entries of that row.
        last_row = resume.history[-1]
        history = [dict(row) for row in resume.history[:-1]]
        start_iteration = last_row["iteration"]
        iterations = list(resume.iterations_per_image)
        evaluations = resume.evaluations
        elapsed_before = resume.wall_time
        resumed_done = list(resume.converged_per_image)
        previous: list[float | None] = [None] * batch
        previous_error = [0.0] * batch
        first_residual: list[float | None] = [None] * batch
        for row in history:
            errors = row.get("prox_error") or [None] * batch
            for i, r in enumerate(row["residual"]):
                if r is not None:
                    previous[i] = r
                    previous_error[i] = float(errors[i] or 0.0)
                    if first_residual[i] is None:
                        first_residual[i] = r
        increase = last_row.get("increase") or [False] * batch
        violations = [
            v - int(bool(f) and not done)
            for v, f, done in zip(resume.monotonicity_violations, increase, resumed_done)
        ]
        monitor.restore(previous, violations, resumed_done, previous_error, first_residual)
        monitor.first_violation = [
            None if (f is not None and f >= start_iteration and not done) else f
            for f, done in zip(resume.first_violation, resumed_done)
        ]
        carried_row = last_row

    budget_misses: list[float] = []  # certified prox errors above their budget, over it (CG stopped short)

    def budgets(points: torch.Tensor, idx: list[int], index: int) -> torch.Tensor | None:
        """Per row of ``points``, the iterate ``w_index`` of images ``idx``: the error allowed to the
        data prox of its evaluation, ``eta min(r_(index-1), r_0 / index^2)``."""
        if prox_error_ratio is None:
            return None
        eta = prox_error_ratio
        point_norms = batch_norms(points).tolist()
        out = []
        for i, norm in zip(idx, point_norms):
            r, r0 = monitor.last[i], monitor.first[i]
            if r is None or r0 is None or not math.isfinite(r) or index < 1:
                out.append(1e-3 * eta * norm)
            else:  # eta r tracks the residual; the cap makes the errors summable
                out.append(eta * min(r, r0 / index ** 2))
        return torch.tensor(out, dtype=torch.float64)

    def evaluate(points: torch.Tensor, idx: list[int], index: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """``(T~ points, read-out, certified error bound per row)`` for the images ``idx`` at their
        iterate number ``index``."""
        budget = budgets(points, idx, index)
        if len(idx) == batch:
            g, x = T(points, y, budget)
            rows = list(range(batch))
        elif full_batch_only:  # the operator holds per-image parameters: evaluate the whole batch
            full = state.clone()
            full[idx] = points
            if budget is not None:  # the other images' results are discarded: any error will do
                full_budget = torch.full((batch,), float("inf"), dtype=torch.float64)
                full_budget[idx] = budget
                budget = full_budget
            g, x = T(full, y, budget)
            g, x, rows = g[idx], x[idx], idx
        else:
            g, x = T(points, y[idx], budget)
            rows = list(range(len(idx)))
        bounds = T.last_prox_error
        errors = [0.0] * len(idx) if bounds is None else [float(bounds[r]) for r in rows]
        reached = T.last_prox_converged
        if budget is not None and bounds is not None and reached is not None:
            for row, error in zip(rows, errors):
                allowed = float(budget[row])
                if not reached[row] and error > allowed:  # CG gave up above its budget
                    budget_misses.append(error / allowed if allowed > 0 else math.inf)
        return g, x, errors

    def commit(idx: list[int], new_state: torch.Tensor, new_t: torch.Tensor, new_image: torch.Tensor,
               new_error: list[float]) -> None:
        for i, e in zip(idx, new_error):
            t_error[i] = e
        # those images stop (see below): their result stays the last finite one
        new_image = _finite_rows_or(new_image, image if len(idx) == batch else image[idx])
        # the sources may alias each other or t_state (FB returns T w and its read-out as one tensor; a
        # denoiser may return its input): t_state is written last, after every source has been read
        if len(idx) == batch:
            state.copy_(new_state)
            image.copy_(new_image)
            t_state.copy_(new_t)
        else:
            rows = torch.tensor(idx, device=state.device)
            state.index_copy_(0, rows, new_state)
            image.index_copy_(0, rows, new_image)
            t_state.index_copy_(0, rows, new_t)

    clock = time.perf_counter()
    state = w.detach().clone(memory_format=torch.contiguous_format)  # never a view of y (A = I), x0 or resume
    image = (
        resume.x.to(state.device, state.dtype).clone(memory_format=torch.contiguous_format)
        if resume is not None else torch.zeros_like(state)
    )
    t_state = state.clone()
    active = [i for i in range(batch) if not resumed_done[i]]
    k = start_iteration
    # the operator's CG warm start as of the last recorded iterate (what a snapshot stores)
    operator = getattr(T, "operator", None)
    warm_start_of = getattr(operator, "warm_start_state", None)
    recorded_warm = None
    continuation = None if resume is None else resume.continuation
    if continuation is not None:  # the segments before keep their misses: the summability is the whole run's
        budget_misses.extend(float(m) for m in continuation.get("budget_misses", ()))
    if active and continuation is not None and tuple(continuation["t_state"].shape) == tuple(state.shape):
        # T~ w_k as the interrupted solve computed it, and the CG warm start it then had: evaluating
        # again from a fresh warm start would give another T~ w_k (within the certified error)
        t_state.copy_(continuation["t_state"].to(state.device, state.dtype))
        for i in active:
            t_error[i] = float(continuation["t_error"][i])
        if hasattr(operator, "restore_warm_start"):
            operator.restore_warm_start(continuation.get("warm_start"), state.device)
        recorded_warm = continuation.get("warm_start")
    elif active:
        g, x, errors = evaluate(state[active] if len(active) < batch else state, active, k)
        # a first evaluation that is not finite leaves the start point as the result
        x = _finite_rows_or(x, state if len(active) == batch else state[active])
        for i, e in zip(active, errors):
            t_error[i] = e
        if len(active) == batch:
            image.copy_(x)
            t_state.copy_(g)
        else:
            rows = torch.tensor(active, device=state.device)
            image.index_copy_(0, rows, x)
            t_state.index_copy_(0, rows, g)
        evaluations += 1
    elif resume is not None:  # every image had converged: nothing to do
        history = [dict(row) for row in resume.history]
    updates = ["start" if resume is None else "resume"] * batch

    def snapshot(stopped: str) -> SolveResult:
        """The result as of the last recorded iterate (a valid ``resume``)."""
        converged_per_image = list(monitor.converged)
        anderson_stats = None
        if anderson is not None:
            anderson_stats = {
                "memory": anderson.memory, "decrease": anderson.decrease,
                "accepted": list(anderson.accepted), "rejected": list(anderson.rejected),
            }
        return SolveResult(
            x=image.clone(),
            state=state.clone(),
            method=method,
            iterations=max(iterations) if iterations else 0,
            converged=all(converged_per_image),
            history=[dict(row) for row in history],
            guarantee=_with_budget_misses(plan.guarantee, budget_misses),
            monotone=monitor.monotone,
            iterations_per_image=list(iterations),
            converged_per_image=converged_per_image,
            monotonicity_violations=list(monitor.violations),
            first_violation=list(monitor.first_violation),
            parameters=parameters,
            evaluations=evaluations,
            wall_time=elapsed_before + time.perf_counter() - clock,
            stopped_by=stopped,
            anderson=anderson_stats,
            certificate=None if cert is None else cert.as_dict(),
            tol=tol,
            continuation={
                "t_state": t_state.clone(),
                "t_error": list(t_error),
                "budget_misses": list(budget_misses),
                "warm_start": None if recorded_warm is None else {k_: v.clone() for k_, v in recorded_warm.items()},
            },
        )

    stopped_by = "max_iter" if active else "converged"
    last_time = time.perf_counter()
    iteration_time = last_time - clock
    # no time-remaining estimate: the total is the iteration cap, which a run that converges never
    # reaches (a 1500 x 1000 deblur's first iteration read "42:21:50" left for 500 iterations)
    bar = tqdm(total=max_iter, desc=f"pnp-{method}", disable=not progress or not active, leave=False,
               bar_format="{desc}: {n_fmt} it (at most {total_fmt}) [{elapsed}, {rate_fmt}{postfix}]")
    last_checkpoint = time.perf_counter()
    try:
        for step_count in range(max_iter + 1 if active else 0):
            k = start_iteration + step_count
            sub = state[active] if len(active) < batch else state
            sub_t = t_state[active] if len(active) < batch else t_state
            residual = batch_norms(sub_t - sub).tolist()
            scale = batch_norms(sub).tolist()
            before = list(monitor.violations)
            relative = monitor.update(k, active, residual, scale,
                                      None if prox_error_ratio is None else [t_error[i] for i in active])
            base = carried_row if step_count == 0 else None
            running = set(active)

            def column(key: str, fill: Any) -> list[Any]:
                col = [fill] * batch
                old = None if base is None else base.get(key)
                if isinstance(old, list) and len(old) == batch:
                    for i in range(batch):
                        if i not in running:
                            col[i] = old[i]
                return col

            row: dict[str, Any] = {
                "iteration": k,
                "residual": column("residual", None),
                "relative_residual": column("relative_residual", None),
                "increase": column("increase", False),
                "update": column("update", None),
            }
            if prox_error_ratio is not None:
                row["prox_error"] = column("prox_error", None)
            for i, r, rel in zip(active, residual, relative):
                row["residual"][i] = r
                row["relative_residual"][i] = rel
                row["increase"][i] = monitor.violations[i] > before[i]
                row["update"][i] = updates[i]
                if prox_error_ratio is not None:
                    row["prox_error"][i] = t_error[i]
            for name, fn in (("psnr", _psnr), ("ssim", _ssim)):
                measured = x_true is not None and name in metrics
                if measured or (base is not None and isinstance(base.get(name), list)):
                    row[name] = column(name, None)
                if measured:
                    sub_image = image[active] if len(active) < batch else image
                    sub_true = x_true[active] if len(active) < batch else x_true
                    for i, v in zip(active, fn(sub_image, sub_true)):
                        row[name][i] = v
            now = time.perf_counter()
            row["evaluations"] = evaluations
            row["time"] = elapsed_before + now - clock
            row["iteration_time"] = iteration_time
            history.append(row)
            if warm_start_of is not None:  # the last prox evaluated T~ w_k (tensors replaced, not mutated)
                recorded_warm = warm_start_of()
            for i, r in zip(active, residual):
                iterations[i] = k
                if not math.isfinite(r):
                    monitor.converged[i] = False
            stop = False
            if callback is not None:  # copies: the buffers change in place at later iterations
                stop = bool(callback({
                    "iteration": k, "residual": row["residual"], "relative_residual": row["relative_residual"],
                    "psnr": row.get("psnr"), "x": image.clone(), "state": state.clone(),
                }))
            finite = [i for i, r in zip(active, residual) if math.isfinite(r)]
            if len(finite) < len(active):
                bad = [i for i in active if i not in finite]
                warnings.warn(f"{method.upper()} produced non-finite values at iteration {k} (image"
                              f"{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}); those images stop, their "
                              "result the last finite iterate (a non-expansive iteration cannot produce them from "
                              "finite values: look at the denoiser's output or the operator)",
                              RuntimeWarning, stacklevel=3)
            active = [i for i in finite if not monitor.converged[i]]
            bar.update(1 if step_count else 0)
            if progress and active:
                bar.set_postfix(rel=f"{max(row['relative_residual'][i] for i in active):.2e}")
            if stop:
                stopped_by = "callback"
                break
            if not active:
                stopped_by = "converged" if all(monitor.converged) else "non-finite"
                break
            if step_count == max_iter:
                break
            if checkpoint is not None and time.perf_counter() - last_checkpoint >= checkpoint_every:
                checkpoint(snapshot("checkpoint"))  # the iterate just recorded; the final one is returned
                last_checkpoint = time.perf_counter()

            # -- one update per active image: compute everything, then commit ----------------------
            step_start = time.perf_counter()
            current_residual = {i: row["residual"][i] for i in active}
            plain = list(active)
            warm = None
            pending: list[tuple[str, list[int], torch.Tensor, torch.Tensor, torch.Tensor, list[float], list[float]]] = []
            if anderson is not None:
                subset, points = anderson.propose(active, state)
                if subset:
                    warm = warm_hooks[0]() if warm_hooks is not None else None
                    g_c, x_c, e_c = evaluate(points, subset, k + 1)
                    evaluations += 1
                    r_c = batch_norms(g_c - points).tolist()
                    accepted_rows = [
                        n for n, i in enumerate(subset) if anderson.acceptable(i, r_c[n], current_residual[i], count=False)
                    ]
                    for n, i in enumerate(subset):
                        if n not in accepted_rows:
                            anderson.record(i, False)
                    if accepted_rows:
                        acc_idx = [subset[n] for n in accepted_rows]
                        rows_t = torch.tensor(accepted_rows, device=state.device)
                        pending.append(("anderson", acc_idx, points[rows_t], g_c[rows_t], x_c[rows_t],
                                        [r_c[n] for n in accepted_rows], [e_c[n] for n in accepted_rows]))
                        accepted = set(acc_idx)
                        plain = [i for i in active if i not in accepted]
            if plain and warm is not None:  # the plain step continues the plain trajectory's warm start
                warm_hooks[1](warm)
            if plain:
                # w_{k+1} = T w_k; on the full batch t_state itself is the input (commit reads it first)
                source = t_state if len(plain) == batch else t_state[torch.tensor(plain, device=state.device)]
                g_p, x_p, e_p = evaluate(source, plain, k + 1)
                evaluations += 1
                pending.append(("plain", plain, source, g_p, x_p,
                                [] if anderson is None else batch_norms(g_p - source).tolist(), e_p))
            for kind_, idx, new_state, new_t, new_image, new_residual, new_error in pending:
                if anderson is not None:
                    anderson.push(idx, new_state, new_t, new_residual)  # before commit: new_state may be t_state
                    if kind_ == "anderson":
                        for i in idx:
                            anderson.record(i, True)
                commit(idx, new_state, new_t, new_image, new_error)
                for i in idx:
                    updates[i] = kind_
            iteration_time = time.perf_counter() - step_start
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        bar.close()

    return snapshot(stopped_by)

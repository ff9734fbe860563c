"""Which convergence theorem applies to a PnP iteration, from the constants that are proven.

The analysis never claims more than the constants support:

* **FB** ``x+ = D_t(x - tau A^T(Ax - y))``. The gradient step is ``(tau ||A||^2 / 2)``-averaged
  for ``tau < 2 / ||A||^2`` (Baillon-Haddad), ``D_t = (1 - t) I + t D`` is ``t alpha_D``-averaged,
  and the composition is averaged by the Combettes-Yamada rule
  (:func:`pnp_stable.layers.compose`). If the composition is only non-expansive, the iteration is
  averaged by a Krasnosel'skii-Mann step ``x+ = (x + T x) / 2``.
* **ADMM / DRS** iterate ``w+ = 1/2 (I + R_f R_D) w`` (DRS, data prox first: ``1/2 (I + R_D R_f)``;
  the same argument) with ``R = 2 prox - I``. ``prox_{gamma f}`` is
  firmly non-expansive for every ``gamma > 0``; ``R_D`` is non-expansive iff ``D`` is firmly
  non-expansive, so an averaged ``D`` is relaxed with ``t = 1 / (2 alpha_D)`` (a merely
  non-expansive one with ``t = 1/2``). The map on ``w`` is then 1/2-averaged.

In both cases the Krasnosel'skii-Mann theorem (Bauschke & Combettes, *Convex Analysis and
Monotone Operator Theory*, 2nd ed., Thm 5.15 / Prop. 5.16) gives: the absolute residual
``||w_{k+1} - w_k||`` is non-increasing, ``sum_k ||w_{k+1} - w_k||^2 <= alpha / (1 - alpha)
dist(w_0, Fix T)^2`` (so the residual is ``o(1 / sqrt(k))``), and ``w_k`` converges to a fixed point
whenever one exists. The monotonicity holds even when no fixed point exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from pnp_stable.layers.certificates import Certificate, compose

__all__ = ["Guarantee", "IterationPlan", "analyse_forward_backward", "analyse_splitting", "with_acceleration"]

# relative slack when comparing a computed constant with a theorem's threshold (float rounding of
# e.g. 1.9 / ||A||^2 * ||A||^2 must not turn a valid step into an invalid one)
_THRESHOLD_SLACK = 1e-12

_KM_THEOREM = (
    "Krasnosel'skii-Mann (Bauschke & Combettes, Thm 5.15, Prop. 5.16): for an alpha-averaged map the "
    "absolute residual ||w_{k+1} - w_k|| is non-increasing, sum_k ||w_{k+1} - w_k||^2 <= alpha/(1 - alpha) "
    "dist(w_0, Fix T)^2 (residual o(1/sqrt(k))), and w_k converges to a fixed point whenever one exists"
)


_INEXACT_KM_THEOREM = (
    "inexact Krasnosel'skii-Mann (Combettes, 'Solving monotone inclusions via compositions of nonexpansive "
    "averaged operators', Optimization 53, 2004: perturbed averaged iterations): iterating an averaged map with "
    "errors e_k, sum_k ||e_k|| < inf, w_k converges to a fixed point whenever one exists; the absolute residual "
    "obeys r_(k+1) <= r_k + ||e_k|| + ||e_(k+1)|| (monotone up to the certified errors)"
)


_ANDERSON_CLAUSE = (
    "; with safeguarded Anderson acceleration (an extrapolation is kept only where it lowers the residual by "
    "1 %, every other step is a plain step) the residual is non-increasing and tends to 0, so every cluster "
    "point of w_k is a fixed point; the sum bound and the convergence of the whole sequence are stated for the "
    "plain iteration, not for the accelerated one"
)


def with_acceleration(guarantee: "Guarantee", accelerate: str | None) -> "Guarantee":
    """``guarantee`` for a solve run with ``accelerate``: under Anderson acceleration the iterates are
    not a Krasnosel'skii-Mann sequence, and the theorem quoted says what still follows."""
    if accelerate != "anderson" or not guarantee.holds:
        return guarantee
    return replace(guarantee, theorem=guarantee.theorem + _ANDERSON_CLAUSE)


@dataclass(frozen=True)
class Guarantee:
    """What the solver can state about convergence, and on which constants it rests.

    ``holds`` is True only when the iteration map is averaged according to the constants used;
    ``reason`` says why (or why not) in one paragraph; ``constants`` lists them (``operator_norm``
    and its ``norm_kind``, ``alpha_denoiser``, ``step`` (tau for FB, gamma for ADMM/DRS),
    ``relaxation`` t, ``km_relaxation``, ``alpha_iteration``). ``assumptions`` are the facts the
    guarantee rests on that pnp-stable did not prove (an estimated norm, a declared prox, an inexact
    data prox); ``proven`` is True when there are none. ``actions`` lists what the solver changed to
    obtain the guarantee (e.g. an automatic relaxation).
    """

    holds: bool
    reason: str
    method: str
    theorem: str | None
    constants: dict[str, Any] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()

    @property
    def proven(self) -> bool:
        return self.holds and not self.assumptions

    @property
    def conditional(self) -> bool:
        return self.holds and bool(self.assumptions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "holds": self.holds,
            "proven": self.proven,
            "reason": self.reason,
            "method": self.method,
            "theorem": self.theorem,
            "constants": dict(self.constants),
            "assumptions": list(self.assumptions),
            "actions": list(self.actions),
        }

    def __str__(self) -> str:
        status = "proven" if self.proven else ("holds conditionally" if self.holds else "does NOT hold")
        lines = [f"convergence guarantee ({self.method}): {status}", f"  {self.reason}"]
        lines += [f"  assumption: {a}" for a in self.assumptions]
        lines += [f"  action: {a}" for a in self.actions]
        return "\n".join(lines)


@dataclass(frozen=True)
class IterationPlan:
    """The parameters an iteration will run with, and the guarantee they carry."""

    method: str
    step: float
    relaxation: float
    km_relaxation: float
    guarantee: Guarantee


def _largest_firm_relaxation(alpha: float) -> float:
    """The largest float ``t`` with ``t alpha <= 1/2`` in exact arithmetic (``1 / (2 alpha)`` rounded
    down where the float division rounded up), so that ``D_t`` is *proven* firmly non-expansive."""
    t = 1.0 / (2.0 * alpha)
    while Fraction(t) * Fraction(alpha) > Fraction(1, 2):
        t = math.nextafter(t, 0.0)
    return t


def _exact_relaxed_averagedness(cert: Certificate, t: float) -> Fraction | None:
    """The averagedness constant of ``(1 - t) I + t D`` that :meth:`Certificate.relaxed` states, in
    exact arithmetic (None when none is stated)."""
    candidates = []
    if cert.averagedness is not None and t * cert.averagedness < 1.0:
        candidates.append(Fraction(t) * Fraction(cert.averagedness))
    if t < 1.0 and cert.lipschitz <= 1.0:
        candidates.append(Fraction(t))
    if t == 1.0 and cert.averagedness is not None:
        candidates.append(Fraction(cert.averagedness))
    return min(candidates) if candidates else None


def _certificate_assumptions(cert: Certificate | None) -> list[str]:
    if cert is None:
        return []
    return [str(d["assumption"]) for d in cert.details if isinstance(d, dict) and d.get("assumption")]


def _describe_denoiser(cert: Certificate | None, name: str) -> str:
    if cert is None:
        return f"{name} carries no certificate (treated as uncertified)"
    alpha = "unproven" if cert.averagedness is None else f"{cert.averagedness:.6g}"
    return f"{name}: Lipschitz <= {cert.lipschitz:.6g}, averagedness {alpha}"


def analyse_forward_backward(
    denoiser_cert: Certificate | None,
    denoiser_name: str,
    operator_norm: float,
    norm_kind: str,
    norm_statement: str | None = None,
    step: float | None = None,
    relaxation: float | None = None,
    norm_proven: bool = True,
) -> IterationPlan:
    """Plan and guarantee of FB ``x+ = D_t(x - tau A^T(Ax - y))``.

    An ``"estimated"`` norm, or an exact/certified one that pnp-stable did not compute
    (``norm_proven=False``: an operator's own declaration), is an assumption of the guarantee
    (``norm_statement``).

    ``step=None`` takes ``tau = 1.9 / ||A||^2``; ``relaxation=None`` takes ``t = 1``. If the
    composed map is only non-expansive (D certified non-expansive but not averaged), the
    iteration is averaged as ``x+ = (x + T x)/2``, which has the same fixed points.
    Raises ``ValueError`` for a non-positive step or relaxation or a non-positive norm.
    """
    if not (operator_norm > 0 and math.isfinite(operator_norm)):
        raise ValueError(f"the operator norm must be positive and finite, got {operator_norm}")
    tau = 1.9 / operator_norm**2 if step is None else float(step)
    if not tau > 0:
        raise ValueError(f"the FB step must be positive, got {tau}")
    t = 1.0 if relaxation is None else float(relaxation)
    if not t > 0:
        raise ValueError(f"the relaxation t must be positive, got {t}")

    lip_sq = operator_norm**2
    beta = tau * lip_sq / 2.0
    constants: dict[str, Any] = {
        "operator_norm": operator_norm,
        "norm_kind": norm_kind,
        "step": tau,
        "step_bound": 2.0 / lip_sq,
        "alpha_gradient_step": beta if beta < 1 else None,
        "alpha_denoiser": None if denoiser_cert is None else denoiser_cert.averagedness,
        "lipschitz_denoiser": None if denoiser_cert is None else denoiser_cert.lipschitz,
        "relaxation": t,
    }
    failures: list[str] = []
    actions: list[str] = []
    assumptions = _certificate_assumptions(denoiser_cert)
    if norm_kind == "estimated" or not norm_proven:
        assumptions.append(norm_statement or f"||A|| <= {operator_norm:.6g} ({norm_kind}, not proven here)")

    if beta < 1.0 - _THRESHOLD_SLACK:
        grad_cert = Certificate(1.0, beta)
    elif beta <= 1.0 + _THRESHOLD_SLACK:
        grad_cert = Certificate(1.0, None)
        failures.append(f"tau = {tau:.6g} equals 2/||A||^2: the gradient step is only non-expansive")
    else:
        grad_cert = Certificate(tau * lip_sq - 1.0, None)
        failures.append(
            f"tau = {tau:.6g} exceeds 2/||A||^2 = {2.0 / lip_sq:.6g} with ||A|| = {operator_norm:.6g}: "
            "the gradient step is expansive"
        )

    km = 1.0
    if denoiser_cert is None:
        failures.append(f"{denoiser_name} carries no certificate: nothing is known about its averagedness")
        alpha_iter = None
    else:
        d_cert = denoiser_cert.relaxed(t) if t != 1.0 else denoiser_cert
        constants["alpha_relaxed_denoiser"] = d_cert.averagedness
        if d_cert.averagedness is None and d_cert.lipschitz > 1.0:
            failures.append(
                f"the relaxed denoiser (t = {t:.6g}) of {_describe_denoiser(denoiser_cert, denoiser_name)} "
                f"is not proven non-expansive (Lipschitz bound {d_cert.lipschitz:.6g})"
            )
        iteration = compose([grad_cert, d_cert])
        alpha_iter = iteration.averagedness
        if alpha_iter is None and not failures and iteration.lipschitz <= 1.0:
            km = 0.5
            alpha_iter = 0.5
            actions.append(
                "the FB map is only non-expansive, so it is averaged as x+ = (x + T x)/2 "
                "(Krasnosel'skii-Mann; same fixed points)"
            )
        elif alpha_iter is None and not failures:
            failures.append(f"the composed FB map is not proven non-expansive (Lipschitz bound {iteration.lipschitz:.6g})")
    constants["km_relaxation"] = km
    constants["alpha_iteration"] = alpha_iter

    if failures:
        reason = "No convergence guarantee: " + "; ".join(failures) + "."
        return IterationPlan("fb", tau, t, km, Guarantee(False, reason, "fb", None, constants, tuple(assumptions), tuple(actions)))
    steps = (
        f"the gradient step is {beta:.6g}-averaged (tau = {tau:.6g} < 2/||A||^2 = {2.0 / lip_sq:.6g}, "
        f"Baillon-Haddad), {_describe_denoiser(denoiser_cert, denoiser_name)}"
        + (f", relaxed with t = {t:.6g}" if t != 1.0 else "")
    )
    if km == 1.0:
        reason = (f"The FB map T = D_t o (I - tau A^T(A . - y)) is {alpha_iter:.6g}-averaged: {steps}; composition "
                  "by Combettes-Yamada. The monitored variable is x.")
    else:  # Combettes-Yamada needs both maps averaged: with D only non-expansive, T is non-expansive
        reason = (f"The FB map T = D_t o (I - tau A^T(A . - y)) is non-expansive ({steps}: a composition of "
                  "non-expansive maps), so its Krasnosel'skii-Mann average x+ = (x + T x)/2 is 0.5-averaged, with "
                  "the same fixed points. The monitored variable is x.")
    return IterationPlan("fb", tau, t, km, Guarantee(True, reason, "fb", _KM_THEOREM, constants, tuple(assumptions), tuple(actions)))


def analyse_splitting(
    method: str,
    denoiser_cert: Certificate | None,
    denoiser_name: str,
    step: float,
    relaxation: float | None = None,
    prox_is_exact: bool = True,
    prox_statement: str | None = None,
    prox_error_control: str | None = None,
) -> IterationPlan:
    """Plan and guarantee of ADMM or DRS, i.e. KM on ``w+ = 1/2 (I + R_f R_D) w`` (DRS: ``R_D R_f``).

    ``step`` is gamma in ``prox_{gamma f}``, ``f = 1/2 ||Ax - y||^2`` (any gamma > 0 keeps the
    guarantee). ``relaxation=None`` chooses ``t`` automatically so that ``D_t`` is firmly
    non-expansive: ``1`` if ``alpha_D <= 1/2``, ``1 / (2 alpha_D)`` if ``alpha_D > 1/2``, ``1/2``
    if ``D`` is certified non-expansive only. The guarantee does not depend on ``||A||``.

    An inexact prox is an assumption (``prox_statement``) unless its errors are certified and
    controlled (``prox_error_control`` says how): the map evaluated is then ``T w + e_k`` with
    ``||e_k||`` certified and summable, the inexact Krasnosel'skii-Mann theorem gives convergence,
    and the monitor's tolerance includes the bounds (:mod:`pnp_stable.solvers.monitor`).
    """
    if method not in ("admm", "drs"):
        raise ValueError(f"unknown splitting method {method!r}")
    gamma = float(step)
    if not gamma > 0:
        raise ValueError(f"the {method.upper()} step gamma must be positive, got {gamma}")
    if relaxation is not None and not relaxation > 0:
        raise ValueError(f"the relaxation t must be positive, got {relaxation}")
    constants: dict[str, Any] = {
        "step": gamma,
        "alpha_denoiser": None if denoiser_cert is None else denoiser_cert.averagedness,
        "lipschitz_denoiser": None if denoiser_cert is None else denoiser_cert.lipschitz,
        "alpha_data_prox": 0.5,
    }
    failures: list[str] = []
    actions: list[str] = []
    assumptions = _certificate_assumptions(denoiser_cert)
    if not prox_is_exact and prox_error_control is None:
        assumptions.append(prox_statement or "the data prox is computed inexactly by an iterative solver")
    if not prox_is_exact and prox_error_control is not None:
        constants["prox_error_control"] = prox_error_control

    t = 1.0 if relaxation is None else float(relaxation)
    if denoiser_cert is None:
        failures.append(
            f"{denoiser_name} carries no certificate: ADMM/DRS need D firmly non-expansive, which is unknown"
        )
    else:
        alpha = denoiser_cert.averagedness
        if relaxation is None:
            if alpha is None and denoiser_cert.lipschitz <= 1.0:
                t = 0.5
            elif alpha is not None and alpha > 0.5:
                t = _largest_firm_relaxation(alpha)
            if t != 1.0:
                actions.append(
                    f"relaxed the denoiser to D_t = (1 - t) I + t D with t = {t:.6g} so that it is firmly "
                    f"non-expansive (alpha_D = {'unproven, non-expansive' if alpha is None else f'{alpha:.6g}'})"
                )
        d_cert = denoiser_cert.relaxed(t) if t != 1.0 else denoiser_cert
        constants["alpha_relaxed_denoiser"] = d_cert.averagedness
        if d_cert.averagedness is None or d_cert.averagedness > 0.5 + _THRESHOLD_SLACK:
            got = "unproven" if d_cert.averagedness is None else f"{d_cert.averagedness:.6g}"
            failures.append(
                f"D_t (t = {t:.6g}) is not firmly non-expansive (averagedness {got} > 1/2), so R_D = 2 D_t - I "
                f"is not proven non-expansive; {_describe_denoiser(denoiser_cert, denoiser_name)}"
            )
        else:
            exact = _exact_relaxed_averagedness(denoiser_cert, t)
            if exact is not None and exact > Fraction(1, 2):
                # within the float slack but not proven: the hypothesis holds only up to rounding
                assumptions.append(
                    f"D_t (t = {t!r}) is taken as firmly non-expansive although t alpha_D exceeds 1/2 by "
                    f"{float(exact - Fraction(1, 2)):.1e} (rounding of t; t = 1/(2 alpha_D) rounded down proves it)"
                )
    constants["relaxation"] = t
    constants["km_relaxation"] = 0.5
    constants["alpha_iteration"] = None if failures else 0.5
    name = method.upper()
    governing = "w = x + u (denoiser output plus scaled dual)" if method == "admm" else "the DRS variable z"
    if failures:
        reason = "No convergence guarantee: " + "; ".join(failures) + "."
        return IterationPlan(method, gamma, t, 0.5, Guarantee(False, reason, method, None, constants, tuple(assumptions), tuple(actions)))
    reason = (
        f"{name} is the Krasnosel'skii-Mann iteration of T = 1/2 (I + {'R_f R_D' if method == 'admm' else 'R_D R_f'}) "
        f"on {governing}, which is "
        f"1/2-averaged: prox_(gamma f) is firmly non-expansive for gamma = {gamma:.6g} > 0 (f convex), and "
        f"D_t is {d_cert.averagedness:.6g}-averaged (<= 1/2), {_describe_denoiser(denoiser_cert, denoiser_name)}"
        + (f", relaxed with t = {t:.6g}" if t != 1.0 else "")
        + ". The guarantee does not depend on ||A||."
    )
    theorem = _KM_THEOREM
    if "prox_error_control" in constants:
        reason += (f" {constants['prox_error_control']}: T is evaluated with certified errors e_k, so the "
                   "residual obeys r_(k+1) <= r_k + ||e_k|| + ||e_(k+1)||.")
        theorem = _INEXACT_KM_THEOREM
    return IterationPlan(method, gamma, t, 0.5, Guarantee(True, reason, method, theorem, constants, tuple(assumptions), tuple(actions)))

"""Automatic PnP parameters from the observation noise level.

The rule is a MAP heuristic. Read the denoiser as a proximal operator ``D ~ prox_{omega R}`` of an
implicit regulariser ``R``, with strength ``omega = s^2`` for a Gaussian denoiser called
``D(x, s)`` with noise level ``s``, ``omega = s`` for a declared proximal operator ``prox_{s g}``
(e.g. TV), and a fixed ``omega = s_train^2`` for a denoiser called ``D(x)`` that declares the noise
level it was trained at (attribute ``trained_noise_level``). The restoration targets

    min_x  1/2 ||Ax - y||^2 + weight * ||A||^2 * sigma_x^exponent * R(x),   sigma_x = sigma_y / ||A||

(``exponent = 2`` is the Bayesian MAP scaling, where the target is ``weight * sigma_y^2``;
learned denoisers are not exact proxes, so both constants are calibrated, on blur where
``||A|| = 1``). An operator may declare a dimensionless sampling density ``d``
(``parameter_density``; CT: projection directions per image pixel across); a rule with
``density_exponent = k`` then multiplies the target by ``d^k``. The noise level alone does not
set the balance on CT: at one ``sigma_x``, sparse views want less regularisation than dense ones
(the best weight grows like ``d^0.24`` on Mayo train slices, docs/solvers.md). ``sigma_x`` makes
the rule invariant to rescaling ``A``, ``y`` and ``sigma_y`` by one factor, which does not change
the problem in ``x``: a CT operator (``||A|| ~ 200``) gets the same denoiser strength as a blur with
the same image-domain noise. Then, with ``target = weight ||A||^2 sigma_x^p`` (times ``d^k``):

* **FB** with step ``tau`` runs ``prox_{tau target R}``: ``omega = tau * target``.
  A Gaussian denoiser asked for a noise level below its trained range runs at the bottom of the
  range and is weakened by the relaxation ``t = (wanted / s_min)^2 < 1`` (first order:
  ``(1 - t) I + t prox_{omega R} ~ prox_{t omega R}``).
  ``tau`` defaults to ``1.9 / ||A||^2``; for a fixed-strength denoiser ``tau`` is the lever instead,
  capped at ``1.9 / ||A||^2``, beyond which the relaxation ``t < 1`` weakens ``D`` (``t alpha``-averaged:
  the guarantee is kept). A fixed denoiser without ``trained_noise_level`` gets no balancing:
  ``tau = 1.9 / ||A||^2``, ``t = 1``.
* **ADMM/DRS** with ``prox_{gamma f}`` and ``prox_{omega R}`` solve the same problem when
  ``omega / gamma = target``. A Gaussian denoiser runs at ``s = sigma_ratio * sigma_x^q``
  (``q = sigma_exponent``; 1, the default, keeps ``s`` proportional to the noise) and ``gamma``
  follows; a fixed denoiser takes ``gamma = omega / target``; otherwise
  ``gamma = gamma_scale / ||A||^2`` and ``omega`` follows.

Every choice keeps the convergence guarantee: ``tau < 2 / ||A||^2``, ``gamma > 0``, ``0 < t <= 1``.
The constants of the default rules were tuned on BSDS500 *train* crops only
(``bench/calibrate_parameters.py``); a denoiser can carry its own calibration as an attribute
``pnp_parameter_rule`` (a :class:`ParameterRule` or a dict of its fields, keyed by method or not).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from pnp_stable.solvers.denoiser_adapter import StrengthKind

__all__ = [
    "ParameterRule", "ChosenParameters", "DEFAULT_RULES", "choose_parameters", "declared_noise_range",
    "rule_for",
]

_FB_STEP_FRACTION = 1.9


@dataclass(frozen=True)
class ParameterRule:
    """Constants of the automatic rule (see the module docstring).

    Args:
        weight: regularisation weight of the MAP model.
        exponent: power of the noise level in the regularisation weight.
        sigma_ratio: ADMM/DRS with a Gaussian denoiser: ``s = sigma_ratio * sigma_x^sigma_exponent``
            (``sigma_x = sigma_y / ||A||``).
        sigma_exponent: power of the noise level in that denoiser strength: 1 keeps ``s / sigma_x``
            constant; below 1, ``s`` grows slower than the noise (the ratio falls as the noise
            rises), which is what learned denoisers calibrated across noise levels want.
        gamma_scale: ADMM/DRS otherwise: ``gamma = gamma_scale / ||A||^2``.
        sigma_min, sigma_max: clamp on a Gaussian denoiser's noise level (its trained range).
        density_exponent: power of the operator's sampling density ``parameter_density`` in the
            target (0: the density does not matter; an operator that declares none counts as 1).
    """

    weight: float = 1.0
    exponent: float = 2.0
    sigma_ratio: float = 1.0
    sigma_exponent: float = 1.0
    gamma_scale: float = 1.0
    sigma_min: float = 0.0
    sigma_max: float = math.inf
    density_exponent: float = 0.0

    def __post_init__(self) -> None:
        for name in ("weight", "sigma_ratio", "gamma_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ParameterRule.{name} must be positive, got {getattr(self, name)}")
        for name in ("exponent", "sigma_exponent", "density_exponent"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ParameterRule.{name} must be finite, got {getattr(self, name)}")
        if self.sigma_exponent < 0:  # s would fall as the noise rises
            raise ValueError(f"ParameterRule.sigma_exponent must be >= 0, got {self.sigma_exponent}")
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ValueError(f"ParameterRule needs 0 <= sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, value: ParameterRule | Mapping[str, Any]) -> ParameterRule:
        """A rule from a rule or a dict of its fields (e.g. model metadata, a calibration file).

        Raises ``ValueError`` naming unknown fields, non-numeric values or violated constraints.
        """
        if isinstance(value, ParameterRule):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"a parameter rule must be a ParameterRule or a dict, got {type(value).__name__}")
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ParameterRule fields {sorted(unknown)}")
        try:
            return cls(**{k: float(v) for k, v in value.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a valid ParameterRule: {exc}") from None


@dataclass(frozen=True)
class ChosenParameters:
    """Parameters chosen for one solve, with the noise level they came from."""

    sigma_den: float | None
    step: float
    relaxation: float | None
    noise_level: float | None
    noise_level_source: str  # "given", "estimated" or "unused"
    rule: ParameterRule
    density: float | None = None  # the operator's parameter_density, when the rule used it

    def as_dict(self) -> dict[str, Any]:
        out = {
            "sigma_den": self.sigma_den,
            "step": self.step,
            "relaxation": self.relaxation,
            "noise_level": self.noise_level,
            "noise_level_source": self.noise_level_source,
            "rule": self.rule.as_dict(),
        }
        if self.density is not None:
            out["density"] = self.density
        return out


# Calibrated by bench/calibrate_parameters.py on BSDS500 *train* crops (4 images x the 4 deblur-quick
# kernels, 128x128, noise 0.01 and 0.03); see docs/solvers.md. A declared prox solves the same
# problem under FB and ADMM/DRS (min 1/2||Ax - y||^2 + target g), so both share one rule.
_TV_RULE = ParameterRule(weight=0.0643, exponent=0.904, gamma_scale=1.0)
DEFAULT_RULES: dict[tuple[StrengthKind, str], ParameterRule] = {
    ("noise_level", "fb"): ParameterRule(weight=1.0, exponent=2.0),
    ("noise_level", "admm"): ParameterRule(weight=1.0, exponent=2.0, sigma_ratio=2.0),
    ("prox_weight", "fb"): _TV_RULE,
    ("prox_weight", "admm"): _TV_RULE,
    ("fixed", "fb"): ParameterRule(weight=1.0, exponent=2.0),
    ("fixed", "admm"): ParameterRule(weight=1.0, exponent=2.0),
}


def rule_for(denoiser: object, kind: StrengthKind, method: str, rule: Any = None,
             problem: str | None = None) -> ParameterRule:
    """The rule to use: ``rule`` if given, else the denoiser's ``pnp_parameter_rule`` (attribute, or
    key of its ``metadata`` dict), else the default; its noise-level clamp is narrowed to the
    denoiser's declared range (:func:`declared_noise_range`).

    DRS shares the ADMM rule (same fixed points). A per-method calibration is a dict keyed by
    ``"fb"``/``"admm"``/``"drs"``; it may hold per-problem calibrations under a problem key
    (``{"fb": ..., "ct": {"fb": ...}}``), used when ``problem`` (an operator's
    ``parameter_family``) names one that has a rule for this method, the generic one otherwise.
    One MAP balance does not fit every operator: CT's ramp-shaped spectrum amplifies noise that a
    near-unitary blur does not, so a denoiser calibrated on blur is too weak there.
    """
    family = "fb" if method == "fb" else "admm"
    candidate = rule if rule is not None else getattr(denoiser, "pnp_parameter_rule", None)
    metadata = getattr(denoiser, "metadata", None)
    if candidate is None and isinstance(metadata, Mapping):
        candidate = metadata.get("pnp_parameter_rule")
    if isinstance(candidate, Mapping) and problem is not None and isinstance(candidate.get(problem), Mapping):
        specific = candidate[problem]
        if method in specific or family in specific:
            candidate = specific
    if isinstance(candidate, Mapping) and set(candidate) & {"fb", "admm", "drs"}:
        candidate = candidate.get(method, candidate.get(family))
    chosen = ParameterRule.from_mapping(candidate) if candidate is not None else DEFAULT_RULES[(kind, family)]
    declared = declared_noise_range(denoiser)
    if declared is not None:
        low = max(chosen.sigma_min, declared[0])
        high = min(chosen.sigma_max, declared[1])
        if low <= high:
            chosen = replace(chosen, sigma_min=low, sigma_max=high)
    return chosen


def declared_noise_range(denoiser: object) -> tuple[float, float] | None:
    """The noise levels (data scale) a denoiser was trained for: attribute ``noise_level_range``, or
    in its ``metadata`` dict ``sigma_range``, ``sigma_min``/``sigma_max``, or ``sigma_range_255``
    (on the 0-255 scale, as :mod:`pnp_stable.denoisers` exports write it); None if unknown."""
    declared = getattr(denoiser, "noise_level_range", None)
    metadata = getattr(denoiser, "metadata", None)
    if declared is None and isinstance(metadata, Mapping):
        declared = metadata.get("sigma_range")
        if declared is None and "sigma_min" in metadata and "sigma_max" in metadata:
            declared = (metadata["sigma_min"], metadata["sigma_max"])
        if declared is None and metadata.get("sigma_range_255") is not None:
            try:
                declared = tuple(float(v) / 255.0 for v in metadata["sigma_range_255"])
            except (TypeError, ValueError):
                declared = None
    try:
        low, high = (float(v) for v in declared)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (low, high) if 0 <= low <= high else None


def choose_parameters(
    method: str,
    kind: StrengthKind,
    rule: ParameterRule,
    noise_level: float | None,
    operator_norm: float,
    noise_level_source: str = "given",
    sigma_den: float | None = None,
    step: float | None = None,
    trained_noise_level: float | None = None,
    density: float | None = None,
) -> ChosenParameters:
    """Apply ``rule`` (see the module docstring); ``sigma_den``/``step`` given by the user are kept.

    ``noise_level`` is sigma_y > 0 on the data scale. A given value fixes its coupled partner
    consistently (e.g. ADMM with a given ``sigma_den`` takes ``gamma = sigma_den^2 / (weight
    sigma_y^p)``). ``trained_noise_level`` is the fixed strength of a ``D(x)`` denoiser, if known.
    ``density`` is the operator's ``parameter_density`` (None: 1), used when the rule has a
    ``density_exponent``.
    """
    used_density = _density_used(density, rule)
    if kind == "fixed" and not trained_noise_level:  # nothing to balance: plain defaults
        if method == "fb":
            tau = _FB_STEP_FRACTION / operator_norm**2 if step is None else float(step)
            return ChosenParameters(None, tau, None, noise_level, "unused", rule)
        gamma = rule.gamma_scale / operator_norm**2 if step is None else float(step)
        return ChosenParameters(None, gamma, None, noise_level, "unused", rule)
    if noise_level is None or not noise_level > 0:
        raise ValueError(
            f"the automatic parameter rule needs a positive noise level, got {noise_level}; "
            "pass noise_level=..., or sigma_den and step explicitly"
        )
    if not operator_norm > 0:
        raise ValueError(f"operator norm must be positive, got {operator_norm}")
    lip_sq = operator_norm**2
    # The constants are calibrated on blur (||A|| = 1). Writing the rule in the image-domain noise
    # level sigma_x = sigma_y / ||A|| makes it invariant to rescaling (A, y, sigma_y) -> c (A, y,
    # sigma_y), which leaves the problem in x unchanged; CT (||A|| ~ 200) needs this.
    sigma_x = noise_level / operator_norm
    if sigma_x > 1.0:  # noise wider than the whole [0, 1] range of the images the denoisers know
        raise ValueError(f"the noise level {noise_level:g} is {sigma_x:g} in the image domain (noise_level / ||A||), "
                         f"more than the images' whole [0, 1] range: on the 0-255 scale? ({noise_level:g}/255 = "
                         f"{noise_level / 255:.4g})")
    target = rule.weight * lip_sq * sigma_x**rule.exponent  # omega / step at the MAP balance
    if used_density is not None:
        target *= _density_factor(used_density, rule.density_exponent)
    # a level so small that its powers underflow would divide by zero below (ZeroDivisionError) or
    # give a zero step that blames another option: refuse it here, by name
    if not target > 0 or not noise_level * noise_level > 0:
        raise ValueError(f"the noise level {noise_level:g} is too small for the parameter rule (its square "
                         "underflows to 0 in floating point); give a larger level")
    if sigma_den is not None and not sigma_den * sigma_den > 0:
        raise ValueError(f"the denoiser noise level {sigma_den:g} is too small (its square underflows to 0 in "
                         "floating point); give a larger level")
    relaxation: float | None = None
    if method == "fb":
        tau = _FB_STEP_FRACTION / lip_sq if step is None else float(step)
        if kind == "noise_level":
            if sigma_den is not None:
                sigma = sigma_den
            else:
                wanted = math.sqrt(tau * target)
                sigma = _clamp(wanted, rule)
                if wanted < sigma:  # below the trained range: weaken D by relaxation (omega_eff ~ t omega)
                    relaxation = (wanted / sigma) ** 2
        elif kind == "prox_weight":
            sigma = tau * target if sigma_den is None else sigma_den
        else:
            sigma = None
            if step is None and trained_noise_level:
                wanted = trained_noise_level**2 / target  # fixed strength omega = tau * target
                if wanted <= tau:
                    tau = wanted
                else:  # the step cannot grow further: weaken D by relaxation (t <= 1 keeps it averaged)
                    relaxation = tau * target / trained_noise_level**2
        return ChosenParameters(sigma, tau, relaxation, noise_level, noise_level_source, rule, used_density)
    if kind == "noise_level":
        sigma = _clamp(rule.sigma_ratio * sigma_x**rule.sigma_exponent, rule) if sigma_den is None else sigma_den
        gamma = sigma**2 / target if step is None else float(step)
    elif kind == "prox_weight":
        gamma = rule.gamma_scale / lip_sq if step is None else float(step)
        sigma = gamma * target if sigma_den is None else sigma_den
    else:
        sigma = None
        if step is not None:
            gamma = float(step)
        elif trained_noise_level:
            gamma = trained_noise_level**2 / target
        else:
            gamma = rule.gamma_scale / lip_sq
    return ChosenParameters(sigma, gamma, relaxation, noise_level, noise_level_source, rule, used_density)


def _density_used(density: Any, rule: ParameterRule) -> float | None:
    """The operator's ``parameter_density`` as a float when ``rule`` weighs it, else None (a rule
    without a density exponent never reads it, whatever an operator declares)."""
    if density is None or rule.density_exponent == 0:
        return None
    try:
        value = float(density) if not isinstance(density, (bool, str, bytes)) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"an operator's parameter_density must be a positive number, got {density!r}")
    return value


def _density_factor(density: float, exponent: float) -> float:
    try:
        factor = math.exp(exponent * math.log(density))
    except OverflowError:
        factor = math.inf
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"the operator's parameter_density {density:g} to the rule's density_exponent {exponent:g} "
                         "is not a usable factor (it overflows or underflows)")
    return factor


def _clamp(sigma: float, rule: ParameterRule) -> float:
    return min(max(sigma, rule.sigma_min), rule.sigma_max)

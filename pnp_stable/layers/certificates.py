"""Certificates: proven Lipschitz and averagedness constants, and how they compose.

An operator ``T`` is *alpha-averaged* (``0 <= alpha < 1``) if ``T = (1 - alpha) I + alpha R`` with
``R`` non-expansive; equivalently, for all ``x, y``,

    ||Tx - Ty||^2 <= ||x - y||^2 - (1 - alpha)/alpha ||(I - T)x - (I - T)y||^2.

Rules used here (all classical, see Bauschke & Combettes, *Convex Analysis and Monotone Operator
Theory*, 2nd ed., Props. 4.42-4.46, and Combettes & Yamada, JMAA 2015):

* composition: ``kappa = alpha / (1 - alpha)`` is additive, i.e. ``alpha = (a1 + a2 - 2 a1 a2) /
  (1 - a1 a2)``; Lipschitz constants multiply;
* convex combination ``sum w_i T_i``: ``alpha = sum w_i alpha_i``, ``L <= sum w_i L_i``;
* relaxation ``(1 - t) I + t T``: ``alpha' = t alpha`` while ``t alpha < 1``;
* isometric lift ``E`` (``E^T E = I``) with projection ``P = E^T``: ``P T E`` is as averaged as ``T``.

``averagedness is None`` means *no averagedness is proven* (it may still be non-expansive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterable, Protocol, runtime_checkable

__all__ = [
    "Certificate",
    "Certified",
    "StatedConstants",
    "compose",
    "convex_combination",
    "certificate_of",
    "format_upper_bound",
]


def format_upper_bound(value: float, digits: int = 3) -> str:
    """A proven constant as short text that never understates it (rounded up, at least ``digits``
    significant digits) and, if it is below 1, stays below 1.

    Rounding to nearest would print an averagedness of 0.99959 as "1", a different and weaker
    statement (merely non-expansive); here it reads "0.9996". Exact up to float representation
    (the decimal rounded is the shortest one that reads back as ``value``).
    """
    value = float(value)
    if value == 0.0 or not math.isfinite(value):
        return f"{value:g}"
    exact = Decimal(repr(value))
    for n in range(digits, 18):
        up = exact.quantize(Decimal(1).scaleb(exact.adjusted() - n + 1), rounding=ROUND_CEILING)
        if not value < 1 <= up:
            return format(up.normalize(), "f")
    return repr(value)


@dataclass(frozen=True)
class Certificate:
    """Proven constants of a map: ``lipschitz`` (an upper bound) and ``averagedness`` (or None).

    ``details`` carries human-readable provenance (per-block norms, step counts) for reports.
    """

    lipschitz: float
    averagedness: float | None = None
    details: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not (self.lipschitz >= 0) or math.isnan(self.lipschitz):
            raise ValueError(f"invalid Lipschitz bound {self.lipschitz}")
        if self.averagedness is not None:
            a = self.averagedness
            if not (0.0 <= a < 1.0):
                raise ValueError(f"averagedness must lie in [0, 1), got {a}")
            # an averaged operator is non-expansive: keep the sharper of the two facts
            if self.lipschitz > 1.0:
                object.__setattr__(self, "lipschitz", 1.0)

    @property
    def nonexpansive(self) -> bool:
        return self.lipschitz <= 1.0

    @property
    def firmly_nonexpansive(self) -> bool:
        return self.averagedness is not None and self.averagedness <= 0.5

    @staticmethod
    def identity() -> "Certificate":
        return Certificate(lipschitz=1.0, averagedness=0.0)

    @staticmethod
    def nonexpansive_only() -> "Certificate":
        return Certificate(lipschitz=1.0, averagedness=None)

    def then(self, after: "Certificate") -> "Certificate":
        """Certificate of ``after ∘ self`` (apply ``self`` first)."""
        return compose([self, after])

    def relaxed(self, t: float) -> "Certificate":
        """Certificate of ``(1 - t) I + t T``; ``t > 0``."""
        if t <= 0:
            raise ValueError(f"relaxation parameter must be positive, got {t}")
        lipschitz = abs(1.0 - t) + t * self.lipschitz
        averagedness = None
        if t <= 1.0 and self.lipschitz <= 1.0:
            # (1-t) I + t R with R non-expansive: t-averaged (or better, below)
            averagedness = t if t < 1.0 else None
        if self.averagedness is not None and t * self.averagedness < 1.0:
            candidate = t * self.averagedness
            averagedness = candidate if averagedness is None else min(averagedness, candidate)
        return Certificate(lipschitz, averagedness, self.details)

    def with_details(self, *details: dict[str, Any]) -> "Certificate":
        return Certificate(self.lipschitz, self.averagedness, tuple(details))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lipschitz": self.lipschitz,
            "averagedness": self.averagedness,
            "nonexpansive": self.nonexpansive,
            "firmly_nonexpansive": self.firmly_nonexpansive,
            "details": [dict(d) for d in self.details],
        }


def _kappa(alpha: float) -> float:
    return alpha / (1.0 - alpha)


def compose(certificates: Iterable[Certificate]) -> Certificate:
    """Certificate of ``T_n ∘ ... ∘ T_1`` given those of ``T_1, ..., T_n`` (in application order)."""
    lipschitz = 1.0
    kappa: float | None = 0.0
    details: list[dict[str, Any]] = []
    for c in certificates:
        lipschitz *= c.lipschitz
        kappa = None if (kappa is None or c.averagedness is None) else kappa + _kappa(c.averagedness)
        details.extend(c.details)
    averagedness = None if kappa is None else kappa / (1.0 + kappa)
    if averagedness is not None and averagedness >= 1.0:  # float saturation of a huge kappa
        averagedness = None
    return Certificate(lipschitz, averagedness, tuple(details))


def convex_combination(terms: Iterable[tuple[float, Certificate]]) -> Certificate:
    """Certificate of ``sum_i w_i T_i`` with ``w_i >= 0``, ``sum w_i = 1``."""
    terms = list(terms)
    weights = [w for w, _ in terms]
    if any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, rel_tol=0, abs_tol=1e-12):
        raise ValueError(f"convex combination needs non-negative weights summing to 1, got {weights}")
    lipschitz = sum(w * c.lipschitz for w, c in terms)
    if all(c.averagedness is not None for _, c in terms):
        averagedness = sum(w * c.averagedness for w, c in terms)  # type: ignore[operator]
    else:
        averagedness = None
    details: list[dict[str, Any]] = []
    for _, c in terms:
        details.extend(c.details)
    return Certificate(lipschitz, averagedness, tuple(details))


@runtime_checkable
class Certified(Protocol):
    """Anything that can state its proven constants (read by the solvers through this protocol)."""

    def certificate(self) -> Certificate: ...


class StatedConstants:
    """Mixin for a module whose ``certificate()`` may be None (a wrapper of an uncertified model, a
    tiling too narrow to be exact): the pair ``certified_lipschitz_bound()`` /
    ``certified_averagedness()`` read from it, a ValueError naming the module when it has none."""

    def _stated_certificate(self) -> Certificate:
        stated = self.certificate()  # type: ignore[attr-defined]
        if stated is None:
            raise ValueError(f"this {type(self).__name__} states no certificate (see its certificate())")
        return stated

    def certified_lipschitz_bound(self) -> float:
        return self._stated_certificate().lipschitz

    def certified_averagedness(self) -> float | None:
        return self._stated_certificate().averagedness


def certificate_of(module: Any) -> Certificate | None:
    """The certificate of ``module`` if it states one, else None (treated as uncertified).

    Accepts ``certificate() -> Certificate`` (or a ``certificate`` attribute holding one) or the
    pair ``certified_lipschitz_bound()`` / ``certified_averagedness()`` (so foreign modules can
    take part without importing us). A ``certificate`` that is neither a :class:`Certificate` nor
    a method returning one is a TypeError: silently treating the module as uncertified would hide
    the mistake behind a "no guarantee" verdict.
    """
    fn = getattr(module, "certificate", None)
    if isinstance(fn, Certificate):
        return fn
    if fn is not None:
        c = fn() if callable(fn) else fn
        if isinstance(c, Certificate):
            return c
        if c is not None:
            got = f"{type(module).__name__}.certificate{'()' if callable(fn) else ''}"
            raise TypeError(f"{got} gave a {type(c).__name__}, not a pnp_stable.layers.Certificate (or use the "
                            "pair certified_lipschitz_bound() / certified_averagedness())")
        return None  # "no certificate", as a wrapper of an uncertified module says: the pair is not asked
    lip = getattr(module, "certified_lipschitz_bound", None)
    if callable(lip):
        avg = getattr(module, "certified_averagedness", None)
        alpha = avg() if callable(avg) else None
        return Certificate(float(lip()), None if alpha is None else float(alpha))
    return None

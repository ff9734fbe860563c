"""Explicit integrators for gradient flows, written as convex combinations of Euler steps.

The flow is ``x' = -grad V(x)`` with ``grad V`` cocoercive and ``nu``-Lipschitz (V convex). One
Euler step ``E_h(x) = x - h grad V(x)`` is ``(h nu / 2)``-averaged for ``h nu < 2`` (Baillon-Haddad)
and non-expansive for ``h nu <= 2``.

Every scheme below is a *strong-stability-preserving* (SSP) method in Shu-Osher form: each stage
is a convex combination of earlier stages and Euler steps of size ``c h`` taken from them. The
same program is used to *evaluate* a step and to *certify* it, so the certificate describes
exactly the computation. The circle-contractivity radius is ``r = 1 / max c``: the scheme is
non-expansive whenever ``h nu <= 2 r``, and averaged (with the computed constant) when
``h nu < 2 r``.

Note on "RK4": the classical four-stage RK4 has a nonlinear circle-contractivity radius of 0
(Kraaijevanger, BIT 1991), so it cannot be certified non-expansive for any step. We provide the
fourth-order SSP method SSPRK(10,4) of Ketcheson (SISC 2008), radius 6, as ``"rk4"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from pnp_stable.layers.certificates import Certificate, compose, convex_combination

__all__ = ["Integrator", "INTEGRATORS", "get_integrator", "euler_step_certificate"]

# A program over registers: register 0 is the input. Ops:
#   ("euler", src, c)            -> new register = src + c h F(src)   (F = -grad V)
#   ("combine", ((w, reg), ...)) -> new register = sum w * reg        (w >= 0, sum w = 1)
# The last register is the output.
Op = tuple


@dataclass(frozen=True)
class Integrator:
    name: str
    order: int
    program: tuple[Op, ...]

    @property
    def euler_fractions(self) -> tuple[float, ...]:
        return tuple(op[2] for op in self.program if op[0] == "euler")

    @property
    def radius(self) -> float:
        """Circle-contractivity radius r: non-expansive for ``h nu <= 2 r``."""
        return 1.0 / max(self.euler_fractions)

    @property
    def evaluations(self) -> int:
        """Gradient evaluations per step."""
        return len(self.euler_fractions)

    def step(self, x: torch.Tensor, h: float | torch.Tensor,
             field: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """One step of size ``h`` for ``x' = field(x)`` (``field = -grad V``); ``h`` may be a
        0-dim tensor carrying a gradient (a capped block's step while learning)."""
        regs = [x]
        for op in self.program:
            if op[0] == "euler":
                src = regs[op[1]]
                regs.append(src + (op[2] * h) * field(src))
            else:
                terms = op[1]
                acc = terms[0][0] * regs[terms[0][1]]
                for w, r in terms[1:]:
                    acc = acc + w * regs[r]
                regs.append(acc)
        return regs[-1]

    def certificate(self, h: float, nu: float) -> Certificate:
        """Certificate of one step of size ``h`` for a flow whose gradient is ``nu``-Lipschitz."""
        regs: list[Certificate] = [Certificate.identity()]
        for op in self.program:
            if op[0] == "euler":
                regs.append(compose([regs[op[1]], euler_step_certificate(op[2] * h * nu)]))
            else:
                regs.append(convex_combination((w, regs[r]) for w, r in op[1]))
        return regs[-1]


def euler_step_certificate(h_nu: float) -> Certificate:
    """Certificate of ``x - h grad V(x)`` with ``grad V`` cocoercive, ``nu``-Lipschitz, ``h nu = h_nu``.

    The Jacobians are symmetric with spectrum in ``[1 - h nu, 1]``, so the Lipschitz constant is
    ``max(1, h nu - 1)``; for ``h nu < 2`` the step is ``(h nu / 2)``-averaged.
    """
    if h_nu < 0:
        raise ValueError("step times Lipschitz constant must be non-negative")
    lipschitz = max(1.0, h_nu - 1.0)
    averagedness = h_nu / 2.0 if h_nu < 2.0 else None
    return Certificate(lipschitz, averagedness)


def _sspr10_4() -> tuple[Op, ...]:
    # Ketcheson's SSPRK(10,4), Euler steps of size h/6. Registers: 0 = x.
    c = 1.0 / 6.0
    prog: list[Op] = []
    for i in range(5):  # registers 1..5 ; register 5 = E^5 x
        prog.append(("euler", i, c))
    prog.append(("combine", ((3.0 / 5.0, 0), (2.0 / 5.0, 5))))  # register 6
    for i in range(6, 10):  # registers 7..10
        prog.append(("euler", i, c))
    prog.append(("euler", 10, c))  # register 11 = E(register 10)
    prog.append(("combine", ((1.0 / 25.0, 0), (9.0 / 25.0, 5), (3.0 / 5.0, 11))))
    return tuple(prog)


INTEGRATORS: dict[str, Integrator] = {
    "euler": Integrator("euler", 1, (("euler", 0, 1.0),)),
    # Heun = explicit trapezoid = SSPRK(2,2): x + h/2 (F(x) + F(x + h F(x))) = x/2 + E(E(x))/2
    "heun": Integrator("heun", 2, (("euler", 0, 1.0), ("euler", 1, 1.0), ("combine", ((0.5, 0), (0.5, 2))))),
    "rk4": Integrator("rk4", 4, _sspr10_4()),
}


def get_integrator(name: str | Integrator) -> Integrator:
    if isinstance(name, Integrator):
        return name
    try:
        return INTEGRATORS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown integrator {name!r}; choose one of {sorted(INTEGRATORS)}") from None


def program_is_convex(program: Sequence[Op]) -> bool:
    """Sanity check used in tests: every combine is a convex combination of earlier registers."""
    n = 1
    for op in program:
        if op[0] == "euler":
            if not (0 <= op[1] < n and op[2] > 0):
                return False
        else:
            ws = [w for w, _ in op[1]]
            if any(w < 0 for w in ws) or abs(sum(ws) - 1) > 1e-12 or any(not 0 <= r < n for _, r in op[1]):
                return False
        n += 1
    return True

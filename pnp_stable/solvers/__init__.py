"""PnP solvers (FB, ADMM, DRS) that state their convergence guarantee and monitor it.

Public entry point: :func:`solve` (``from pnp_stable.solvers import solve``). Nothing here imports
deepinv at import time; the deepinv interop lives in :mod:`pnp_stable.solvers.interop`.
"""

from pnp_stable.solvers.anderson import SafeguardedAnderson
from pnp_stable.solvers.api import METHODS, solve
from pnp_stable.solvers.denoiser_adapter import ProximalDenoiser, accepts_noise_level, strength_kind
from pnp_stable.solvers.guarantee import Guarantee, IterationPlan, analyse_forward_backward, analyse_splitting
from pnp_stable.solvers.monitor import MonotonicityWarning, ResidualMonitor
from pnp_stable.solvers.operator_adapter import PhysicsOperator, as_operator
from pnp_stable.solvers.parameters import (
    DEFAULT_RULES,
    ChosenParameters,
    ParameterRule,
    choose_parameters,
)
from pnp_stable.solvers.noise_estimation import (estimate_noise_level, estimate_noise_level_for_parameters,
                                                  estimate_sinogram_noise_level, noise_estimate_caveats)
from pnp_stable.solvers.result import SolveResult, load_solve_state, save_solve_state
from pnp_stable.solvers.strength import select_strength

__all__ = [
    "DEFAULT_RULES", "METHODS", "ChosenParameters", "Guarantee", "IterationPlan", "MonotonicityWarning",
    "ParameterRule", "PhysicsOperator", "ProximalDenoiser", "ResidualMonitor", "SafeguardedAnderson",
    "SolveResult", "accepts_noise_level", "analyse_forward_backward", "analyse_splitting", "as_operator",
    "choose_parameters", "estimate_noise_level", "estimate_noise_level_for_parameters",
    "estimate_sinogram_noise_level", "load_solve_state", "noise_estimate_caveats", "save_solve_state",
    "select_strength", "solve",
    "strength_kind",
]

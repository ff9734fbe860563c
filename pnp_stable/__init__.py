"""pnp-stable: Plug-and-Play restoration with certified averaged denoisers.

The top-level namespace is lazy: ``import pnp_stable`` imports neither torch-heavy submodules nor
deepinv until an attribute is used, so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Certificate": "pnp_stable.layers.certificates",
    "certificate_of": "pnp_stable.layers.certificates",
    "relax": "pnp_stable.layers.relax",
    "make_firmly_nonexpansive": "pnp_stable.layers.relax",
    "GradientFlowBlock": "pnp_stable.layers.blocks",
    "CertifiedSequential": "pnp_stable.layers.sequential",
    "empirical_lipschitz": "pnp_stable.verification",
    "empirical_averagedness_violation": "pnp_stable.verification",
    "ForwardOperator": "pnp_stable.protocols",
    "solve": "pnp_stable.solvers",
    "SolveResult": "pnp_stable.solvers",
    "as_operator": "pnp_stable.solvers",
    "Blur": "pnp_stable.operators.blur",
    "ParallelBeamCT": "pnp_stable.operators.ct",
    "FanBeamCT": "pnp_stable.operators.fan_beam",
    "deblur": "pnp_stable.restore",
    "super_resolve": "pnp_stable.restore",
    "inpaint": "pnp_stable.restore",
    "reconstruct_ct": "pnp_stable.restore",
    "denoise": "pnp_stable.restore",
    "Restoration": "pnp_stable.restore",
}

# subpackages reachable as attributes (``ps.denoisers.load("gray")``), imported on first use;
# the command line (pnp_stable.cli) is deliberately not among them
_SUBPACKAGES = ("classify", "denoisers", "layers", "operators", "solvers", "training")

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"pnp_stable.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pnp_stable' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))

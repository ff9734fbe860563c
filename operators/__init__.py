"""Forward operators with exact adjoints, certified norms and data-fidelity proxes.

Every operator subclasses ``deepinv.physics.LinearPhysics`` (so deepinv's solvers and its
``adjointness_test`` accept it) and implements :class:`pnp_stable.protocols.ForwardOperator`.

The namespace is lazy (PEP 562): ``from pnp_stable.operators import kernels`` imports numpy only,
and deepinv is imported when an operator class is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY = {
    "Blur": "pnp_stable.operators.blur",
    "ParallelBeamCT": "pnp_stable.operators.ct",
    "FanBeamCT": "pnp_stable.operators.fan_beam",
    "sinogram_from_skimage": "pnp_stable.operators.ct",
    "image_size_for_bins": "pnp_stable.operators.ct",
    "RadonTomography": "pnp_stable.operators.ct",
    "redundancy_weights": "pnp_stable.operators.fan_beam",
    "conjugate_view": "pnp_stable.operators.fan_beam",
    "estimate_detector_offset": "pnp_stable.operators.alignment",
    "AxisEstimate": "pnp_stable.operators.alignment",
    "AxisLineFit": "pnp_stable.operators.alignment",
    "fit_axis_line": "pnp_stable.operators.alignment",
    "AxisTiltEstimate": "pnp_stable.operators.alignment",
    "estimate_axis_tilt": "pnp_stable.operators.alignment",
    "AxisRegistration": "pnp_stable.operators.axis_registration",
    "estimate_axis_from_opposite_views": "pnp_stable.operators.axis_registration",
    "opposite_view_pairs": "pnp_stable.operators.axis_registration",
    "Identity": "pnp_stable.operators.pointwise",
    "Inpainting": "pnp_stable.operators.pointwise",
    "Downsample": "pnp_stable.operators.downsample",
    "CertifiedLinearPhysics": "pnp_stable.operators.base",
    "NormBound": "pnp_stable.operators.base",
    "ProxInfo": "pnp_stable.operators.cg",
    "ProxConvergenceWarning": "pnp_stable.operators.cg",
    "KernelNormalizationWarning": "pnp_stable.operators.kernels",
    "parse_kernel_spec": "pnp_stable.operators.kernels",
}
_SUBMODULES = ("kernels", "kernel_files", "base", "cg", "blur", "ct", "fan_beam", "fbp", "alignment",
               "axis_registration", "pointwise", "downsample", "norm_bounds", "cache")

__all__ = sorted([*_LAZY, "kernels"])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pnp_stable.operators.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pnp_stable.operators' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))

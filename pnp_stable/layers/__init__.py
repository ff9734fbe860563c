"""Certified layers: gradient-flow blocks, spectral norms, certificates and their algebra."""

from pnp_stable.layers.activations import MonotoneActivation, make_activation
from pnp_stable.layers.blocks import GradientFlowBlock, conv_block, dense_block
from pnp_stable.layers.certificates import (
    Certificate,
    Certified,
    StatedConstants,
    certificate_of,
    compose,
    convex_combination,
    format_upper_bound,
)
from pnp_stable.layers.group_shrinkage import GroupShrinkage
from pnp_stable.layers.hamiltonian import HamiltonianNetwork, SymplecticEulerLayer, canonical_symplectic_matrix, symplectic_defect
from pnp_stable.layers.integrators import INTEGRATORS, Integrator, euler_step_certificate, get_integrator
from pnp_stable.layers.lift import Lift, Projection
from pnp_stable.layers.linear_maps import ConvMap, DenseMap, LinearMap
from pnp_stable.layers.lyapunov import InputConvexNetwork, LyapunovFunction, SmoothReLU, StableDynamics
from pnp_stable.layers.norms import (
    conv_spectral_norm_bound,
    conv_symbol_norm_on_grid,
    dense_spectral_norm,
    power_iteration,
)
from pnp_stable.layers.relax import Relaxed, make_firmly_nonexpansive, relax
from pnp_stable.layers.sequential import CertifiedSequential, certify_layers
from pnp_stable.layers.splines import MonotoneLinearSpline, uniform_knots

__all__ = [
    "Certificate", "Certified", "CertifiedSequential", "StatedConstants", "ConvMap", "DenseMap", "GradientFlowBlock", "GroupShrinkage",
    "INTEGRATORS", "Integrator", "Lift", "LinearMap", "MonotoneActivation", "MonotoneLinearSpline", "Projection",
    "Relaxed",
    "certificate_of", "certify_layers", "compose", "conv_block", "conv_spectral_norm_bound",
    "conv_symbol_norm_on_grid", "convex_combination", "dense_block", "dense_spectral_norm",
    "euler_step_certificate", "format_upper_bound", "get_integrator", "make_activation", "make_firmly_nonexpansive",
    "power_iteration", "relax", "uniform_knots",
    # other stable architectures of the book chapter (Hamiltonian and Lyapunov-stable)
    "HamiltonianNetwork", "InputConvexNetwork", "LyapunovFunction", "SmoothReLU", "StableDynamics",
    "SymplecticEulerLayer", "canonical_symplectic_matrix", "symplectic_defect",
]

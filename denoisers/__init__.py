"""Certified denoisers (averaged by construction), their unconstrained baseline, and shipped weights.

``load("NAME")`` returns a shipped model in eval mode, ``load(path)`` a user one, and
``available()`` lists the shipped models with their metadata (certified constants, BSD68 PSNR).
"""

from pnp_stable.denoisers.config import DenoiserConfig
from pnp_stable.denoisers.io import available, load, save_denoiser
from pnp_stable.denoisers.models import CertifiedDenoiser, UnconstrainedDenoiser, build_denoiser

__all__ = [
    "CertifiedDenoiser", "DenoiserConfig", "UnconstrainedDenoiser", "available", "build_denoiser", "load",
    "save_denoiser",
]

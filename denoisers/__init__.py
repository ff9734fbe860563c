"""Certified denoisers (averaged by construction), their unconstrained baseline, and shipped weights.

``load("NAME")`` returns a shipped model (or one saved in ``user_models_dir()``) in eval mode,
``load(path)`` any saved one, and ``available()`` lists the models found by name with their
metadata (certified constants, BSD68 PSNR). ``OpponentColorDenoiser(gray)`` turns a gray model
into an RGB one with the same certificate. ``TiledDenoiser(model)`` denoises large images in crops with
the margin the model's receptive field needs: the same output and certificate in bounded memory.
"""

from pnp_stable.denoisers.color import OpponentColorDenoiser
from pnp_stable.denoisers.config import DenoiserConfig
from pnp_stable.denoisers.io import available, load, save_denoiser, user_models_dir
from pnp_stable.denoisers.models import CertifiedDenoiser, UnconstrainedDenoiser, build_denoiser
from pnp_stable.denoisers.tiling import ReceptiveField, TiledDenoiser, receptive_field

__all__ = [
    "CertifiedDenoiser", "DenoiserConfig", "OpponentColorDenoiser", "ReceptiveField", "TiledDenoiser",
    "UnconstrainedDenoiser", "available", "build_denoiser", "load", "receptive_field", "save_denoiser",
    "user_models_dir",
]

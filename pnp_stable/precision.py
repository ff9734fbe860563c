"""Floating-point settings that the convergence checks and the training precision depend on.

The residual monitor (:mod:`pnp_stable.solvers.monitor`) tolerates increases of the fixed-point
residual of the size of float32 rounding only. On Ampere and later NVIDIA GPUs, PyTorch runs float32
convolutions in TF32 by default: inputs rounded to a 10-bit mantissa, which moves the output of the
shipped denoiser by about 1e-5 of its norm, the size of the monitor's slack and of the default
tolerance. A correctly certified solve would then report increases that its theorem excludes.
:func:`ieee_float32` turns TF32 (and an enclosing autocast) off for the duration of a solve or an
empirical Lipschitz search; CPUs and float64 are unaffected by TF32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["cuda_autocast_dtype", "ieee_float32"]


def _tf32_settings() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of the switches in force in this torch version: the
    ``fp32_precision`` API where it exists (torch >= 2.9), which must not be mixed with the legacy
    ``allow_tf32`` flags, otherwise those flags."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Inside, float32 convolutions and matrix products round as IEEE float32: no TF32, and no
    enclosing ``torch.autocast`` (whose bfloat16 made a certified solve report 7 "increases beyond
    floating-point tolerance" measured against float32's); the previous settings are restored on
    exit. Also usable as a decorator."""
    settings = _tf32_settings()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in settings]
    try:
        for obj, name, value in settings:
            setattr(obj, name, value)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def cuda_autocast_dtype() -> torch.dtype:
    """bfloat16 where the GPU supports it natively, else float16 (with a gradient scaler). A GPU
    that only emulates bfloat16 (before Ampere) gets float16: emulation is slow and gains nothing."""
    try:
        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before the including_emulation argument: no emulation counted either
        native_bf16 = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native_bf16 else torch.float16

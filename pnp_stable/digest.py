"""One fingerprint for tensors: what a resumed solve or training compares with the run it continues."""

from __future__ import annotations

import hashlib
from typing import Iterable

import torch

__all__ = ["tensor_digest"]


def tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 of tensors' dtypes, shapes and bytes, in order (a denoiser's parameters, a kernel, a
    training set). Equal exactly when every tensor is bit for bit the same."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype} {tuple(t.shape)}".encode())  # a 1x5 and a 5x1 kernel hold the same bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

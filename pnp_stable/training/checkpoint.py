"""Atomic training checkpoints (model, optimiser, schedule, step) and their validation on resume."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from pnp_stable.fileio import atomic_write_bytes, read_torch_file

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "pnp-stable-train/1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``): a crash mid-write
    leaves the previous checkpoint intact."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue(), make_parents=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a one-line ValueError naming ``path``
    if it cannot be read or is not one."""
    path = Path(path)
    state = read_torch_file(path, "a pnp-stable training checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pnp-stable training checkpoint")
    return state

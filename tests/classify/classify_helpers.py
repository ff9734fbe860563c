"""Synthetic data helpers for the classify tests (nothing from /work/shared is ever needed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from pnp_stable.classify import ImageClassificationData

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
             np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` in the idx format (big-endian), as the upstream files are written."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def synthetic_images(n: int, classes: int = 4, channels: int = 1, size: int = 12, seed: int = 0):
    """Class ``k`` = faint noise plus a bright 3x3 patch at a class-specific position: separable
    by a small network in a few dozen steps, with margins that depend on the noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.integers(0, 60, size=(n, channels, size, size)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 4 * (k // 2) % (size - 4), 2 + 4 * (k % 2)
        images[i, :, r:r + 3, c:c + 3] = 230
    return images, labels.astype(np.uint8)


def synthetic_data(n: int, classes: int = 4, channels: int = 1, size: int = 12, seed: int = 0) -> ImageClassificationData:
    images, labels = synthetic_images(n, classes, channels, size, seed)
    return ImageClassificationData(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)),
                                   [f"class{k}" for k in range(classes)], "synthetic")

"""MNIST and Fashion-MNIST from local idx / idx.gz files (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pnp_stable.classify.data import ImageClassificationData
from pnp_stable.classify.idx import read_idx

__all__ = ["FASHION_MNIST_CLASSES", "MNIST_CLASSES", "load_idx_split"]

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES = [str(d) for d in range(10)]

_PREFIX = {"train": "train", "test": "t10k"}


def load_idx_split(
    folder: str | Path, split: str = "train", class_names: list[str] | None = None, name: str = "mnist"
) -> ImageClassificationData:
    """Load the ``train`` or ``test`` split of an MNIST-layout folder of idx(.gz) files.

    Expects ``{train,t10k}-images-idx3-ubyte[.gz]`` (uint8, ``N x H x W``) and
    ``{train,t10k}-labels-idx1-ubyte[.gz]`` (uint8, ``N``). Guarantee: image and label counts
    agree and every label is a valid class index, or a ``ValueError`` says which file is wrong.
    """
    folder = Path(folder)
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not folder.is_dir():
        raise ValueError(f"{folder}: data folder not found")
    prefix = _PREFIX[split]
    image_path = _locate(folder, prefix, "images", 3)
    label_path = _locate(folder, prefix, "labels", 1)
    images = read_idx(image_path, expect_ndim=3)
    labels = read_idx(label_path, expect_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError(f"{folder}: expected uint8 idx files, got images {images.dtype}, labels {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder}: {image_path.name} holds {images.shape[0]} images but "
                         f"{label_path.name} holds {labels.shape[0]} labels")
    names = class_names or MNIST_CLASSES
    if labels.size and int(labels.max()) >= len(names):
        raise ValueError(f"{label_path}: label {int(labels.max())} is out of range for {len(names)} classes")
    return ImageClassificationData(
        torch.from_numpy(images).unsqueeze(1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
        list(names),
        f"{name}/{split}",
    )


def _locate(folder: Path, prefix: str, kind: str, ndim: int) -> Path:
    stems = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    candidates = [folder / (stem + suffix) for stem in stems for suffix in ("", ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise ValueError(f"{folder}: missing {stems[0]}[.gz] ({kind} of the {prefix} split)")

"""One entry point for every supported dataset: ``load_dataset(kind, path, split)``."""

from __future__ import annotations

from pathlib import Path

from pnp_stable.classify.cifar import load_cifar10_split
from pnp_stable.classify.data import ImageClassificationData
from pnp_stable.classify.image_folder import load_image_folder
from pnp_stable.classify.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_idx_split

__all__ = ["DATASET_KINDS", "load_dataset"]

DATASET_KINDS = ("fashion_mnist", "mnist", "cifar10", "image_folder")


def load_dataset(
    kind: str, path: str | Path, split: str = "train", image_size: tuple[int, int] | None = None
) -> ImageClassificationData:
    """Load ``split`` (``train``/``test``) of a local dataset; nothing is ever downloaded.

    ``kind``: ``fashion_mnist`` / ``mnist`` (a folder of idx or idx.gz files), ``cifar10`` (the
    python-version folder), ``image_folder`` (``path[/split]/<class>/<images>``).
    """
    kind = kind.lower().replace("-", "_")
    if kind == "fashion_mnist":
        return load_idx_split(path, split, FASHION_MNIST_CLASSES, "fashion_mnist")
    if kind == "mnist":
        return load_idx_split(path, split, MNIST_CLASSES, "mnist")
    if kind == "cifar10":
        return load_cifar10_split(path, split)
    if kind == "image_folder":
        return load_image_folder(path, split, image_size=image_size)
    raise ValueError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASET_KINDS)}")

"""One entry point for every supported dataset: ``load_dataset(kind, path, split)``."""

from __future__ import annotations

from pathlib import Path

from pnp_stable.classify.cifar import load_cifar10_split
from pnp_stable.classify.data import ImageClassificationData
from pnp_stable.classify.image_folder import load_image_folder
from pnp_stable.classify.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_idx_split

__all__ = ["DATASET_KINDS", "detect_dataset", "load_dataset"]

DATASET_KINDS = ("fashion_mnist", "mnist", "cifar10", "image_folder")

_IDX_PREFIXES = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_CIFAR_FILES = ("data_batch_1", "test_batch", "cifar-10-batches-py")


def detect_dataset(path: str | Path) -> str:
    """Guess the dataset kind of a local folder from its file names (no file is read).

    * MNIST-layout idx(.gz) files -> ``fashion_mnist`` if the folder's name contains "fashion",
      else ``mnist`` (the two differ only in their class names);
    * CIFAR-10 python batches (``data_batch_1``, ``test_batch`` or a ``cifar-10-batches-py``
      sub-folder) -> ``cifar10``;
    * class sub-folders (``root[/train|/test]/<class>/<images>``) -> ``image_folder``.

    Anything else is a ``ValueError`` asking for the kind to be named.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: data folder not found")
    if not path.is_dir():
        raise ValueError(f"{path}: expected a data folder, got a file")
    names = [p.name for p in path.iterdir() if not p.name.startswith(".")]
    if any(n.startswith(_IDX_PREFIXES) for n in names):
        return "fashion_mnist" if "fashion" in path.resolve().name.lower() else "mnist"
    if any(n in _CIFAR_FILES for n in names):
        return "cifar10"
    if any((path / n).is_dir() for n in names):
        return "image_folder"
    # the text after "; " is the API's advice; the command line replaces it with its --dataset option
    raise ValueError(f"{path}: cannot tell the dataset format (no idx files, CIFAR-10 batches or class "
                     f"sub-folders); name the dataset kind explicitly (load_dataset's kind: "
                     f"{', '.join(DATASET_KINDS)})")


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

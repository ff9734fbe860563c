"""CIFAR-10 from a user-supplied "python version" folder (``cifar-10-batches-py``), no download.

The batches are pickles. Unpickling can run arbitrary code, so a restricted unpickler admits only
the few numpy constructors that an array needs; anything else is refused with a ``ValueError``.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pnp_stable.classify.data import ImageClassificationData

__all__ = ["CIFAR10_CLASSES", "load_cifar10_split"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCHES = ["test_batch"]

# (module, name) pairs an ndarray pickle may reference; numpy 2 renamed numpy.core to numpy._core
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return getattr(importlib.import_module(module), name)


def _load_batch(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _resolve_folder(folder: Path) -> Path:
    if (folder / "cifar-10-batches-py").is_dir():
        return folder / "cifar-10-batches-py"
    return folder


def _class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return list(CIFAR10_CLASSES)
    names = _load_batch(meta).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise ValueError(f"{meta}: label_names must be a list of 10 names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10_split(folder: str | Path, split: str = "train") -> ImageClassificationData:
    """Load the ``train`` (data_batch_1..5) or ``test`` (test_batch) split of CIFAR-10.

    ``folder`` is the extracted ``cifar-10-batches-py`` folder or its parent. Guarantee: every
    batch holds a uint8 ``N x 3072`` array and ``N`` labels in ``[0, 10)``, else ``ValueError``.
    """
    folder = Path(folder)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not folder.is_dir():
        raise ValueError(f"{folder}: CIFAR-10 folder not found")
    folder = _resolve_folder(folder)
    names = _TRAIN_BATCHES if split == "train" else _TEST_BATCHES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{folder}: missing CIFAR-10 batch files {', '.join(missing)} "
                         "(expected the python version, cifar-10-batches-py)")
    images, labels = [], []
    for n in names:
        batch = _load_batch(folder / n)
        data, batch_labels = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise ValueError(f"{folder / n}: 'data' must be a uint8 N x 3072 array, got {got}")
        batch_labels = np.asarray(batch_labels, dtype=np.int64) if batch_labels is not None else None
        if batch_labels is None or batch_labels.shape != (data.shape[0],):
            raise ValueError(f"{folder / n}: 'labels' must hold one label per image ({data.shape[0]})")
        if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() > 9):
            raise ValueError(f"{folder / n}: labels must lie in [0, 10)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return ImageClassificationData(
        torch.from_numpy(np.concatenate(images)).contiguous(),
        torch.from_numpy(np.concatenate(labels)),
        _class_names(folder),
        f"cifar10/{split}",
    )

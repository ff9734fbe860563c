"""Fixtures of the classify tests: synthetic data only."""

from __future__ import annotations

from pathlib import Path

import pytest

from classify_helpers import synthetic_data, synthetic_images, write_idx


@pytest.fixture
def make_data():
    return synthetic_data


@pytest.fixture
def mnist_folder(tmp_path: Path) -> Path:
    """An MNIST-layout folder of gzip-compressed idx files with 10 synthetic classes."""
    for split, n, seed in (("train", 96, 0), ("t10k", 40, 1)):
        images, labels = synthetic_images(n, classes=10, size=12, seed=seed)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images[:, 0], compress=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, compress=True)
    return tmp_path

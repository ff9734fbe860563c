"""Fixtures of the classify tests: synthetic data only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def _one_thread():
    # these tensors are tiny: a second thread only adds synchronisation, which is very costly
    # when the cores are shared; restore the suite's setting afterwards
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

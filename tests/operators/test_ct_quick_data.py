"""bench/bench_ct_quick.py picks its CT phantoms from the Mayo *train* slices only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench_loader import load_bench_script


def _slices(folder, names):
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((40, 40), 20 * i, np.uint8)).save(folder / f"{name}.png")


def test_train_slices_only_and_never_the_one_shared_with_validation(tmp_path):
    _slices(tmp_path / "ct/mayo_crr/train", ["phantom_149", "phantom_200", "phantom_300", "phantom_400"])
    _slices(tmp_path / "ct/mayo_crr/validation", ["phantom_149", "phantom_7"])
    images = load_bench_script("bench_ct_quick").phantoms(tmp_path, mayo=3, size=16)
    assert [name for name, _ in images] == ["shepp_logan", "phantom_200", "phantom_300", "phantom_400"]
    assert all(img.shape == (16, 16) and 0 <= img.min() and img.max() <= 1 for _, img in images)
    with pytest.raises(ValueError, match="only 3 Mayo train slices"):
        load_bench_script("bench_ct_quick").phantoms(tmp_path, mayo=4, size=16)

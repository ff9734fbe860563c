"""Images turned as viewers show them: the EXIF (and TIFF) orientation tag applied to the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["EXIF_ORIENTATION", "displayed"]

EXIF_ORIENTATION = 0x0112


def displayed(raw: np.ndarray, orientation: int | None, path: Path, notes: list[str]) -> np.ndarray:
    """``raw`` (``H x W`` or ``H x W x C``) turned as viewers show it by its EXIF/TIFF orientation
    tag (1-8, Pillow's ``ImageOps.exif_transpose``): the output carries no tag, so restoring the
    stored pixels would come out turned against the input as displayed."""
    if orientation in (None, 1):
        return raw
    turned = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
              5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
              8: lambda a: np.rot90(a, 1)}.get(int(orientation))
    if turned is None:
        return raw
    notes.append(f"EXIF orientation {orientation} applied: the image is restored as it is displayed")
    return np.ascontiguousarray(turned(raw))

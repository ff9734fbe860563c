"""Any image-folder dataset: ``root/<class name>/<image files>`` (optionally under ``root/<split>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pnp_stable.classify.data import ImageClassificationData

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def load_image_folder(
    root: str | Path,
    split: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageClassificationData:
    """Load every image under ``root[/split]/<class>/`` into memory; classes are the sorted folder names.

    ``channels`` (1 or 3) converts every image to gray or RGB; None keeps gray if all images are
    gray, else RGB. ``image_size`` (H, W) resizes; without it all images must share one size.
    Guarantee: a ``ValueError`` names the offending file for unreadable images or mixed sizes.
    """
    root = Path(root)
    if split is not None and (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        raise ValueError(f"{root}: image folder not found")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        files += [(f, label) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"{root}: no images found in class sub-folders (expected root/<class>/<image>)")
    if channels is None:
        # headers only: PIL decodes pixels lazily
        modes = []
        for path, _ in files:
            with _open(path) as im:
                modes.append(im.mode)
        channels = 1 if all(m in ("L", "1", "I", "I;16", "F") for m in modes) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    first_size = None
    for path, _ in files:
        try:
            with _open(path) as im:
                picture = im.convert(mode)
        except OSError as exc:
            raise ValueError(f"{path}: cannot decode image ({exc})") from None
        if image_size is not None:
            picture = picture.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        elif first_size is None:
            first_size = (picture.size, path)
        elif picture.size != first_size[0]:
            raise ValueError(f"{path}: size {picture.size[0]}x{picture.size[1]} differs from "
                             f"{first_size[1].name} ({first_size[0][0]}x{first_size[0][1]}); pass image_size")
        a = np.asarray(picture, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return ImageClassificationData(
        torch.from_numpy(np.stack(arrays)).contiguous(),
        torch.tensor([label for _, label in files], dtype=torch.int64),
        [d.name for d in class_dirs],
        f"image_folder:{root.name}",
    )


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from None

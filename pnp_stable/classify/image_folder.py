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
        # a name starting with "." is hidden: macOS's "._x.png" resource forks are not images
        found = [(f, label) for f in sorted(d.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
        if not found:  # a class without an example would be a silent extra output
            raise ValueError(f"{d}: class folder without images")
        files += found
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
                picture = _eight_bit(im, path).convert(mode)
        except OSError as exc:
            raise ValueError(f"{path}: cannot decode image ({exc})") from None
        if image_size is not None:
            picture = picture.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        elif first_size is None:
            first_size = (picture.size, path)
        elif picture.size != first_size[0]:
            # H x W, as image_size and --image-size take it (Pillow's size is W x H)
            raise ValueError(f"{path}: size {picture.size[1]}x{picture.size[0]} (HxW) differs from "
                             f"{first_size[1].name} ({first_size[0][1]}x{first_size[0][0]}); resize them "
                             "(image_size=, --image-size HxW)")
        a = np.asarray(picture, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if len(class_dirs) < 2:
        raise ValueError(f"{root}: {len(class_dirs)} class folder ({class_dirs[0].name}); a classifier needs at least two")
    return ImageClassificationData(
        torch.from_numpy(np.stack(arrays)).contiguous(),
        torch.tensor([label for _, label in files], dtype=torch.int64),
        [d.name for d in class_dirs],
        f"image_folder:{root.name}",
    )


def _eight_bit(im: Image.Image, path: Path) -> Image.Image:
    """``im`` as an 8-bit image: a 16-bit or 32-bit gray one scaled from its type's range (16-bit:
    / 257; floats in [0, 1]: x 255) rather than clipped at 255 by ``convert("L")``, which turned
    16-bit images almost white."""
    if im.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return im
    values = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ValueError(f"{path}: float image with values outside [0, 1]; rescale it")
        scaled = values * 255
    else:
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"{path}: {im.mode} image with values outside the 16-bit range")
        scaled = values / 257  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from None

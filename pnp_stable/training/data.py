"""Image folders, random training patches and a deterministic validation set.

Training images are held in memory as ``uint8`` arrays (BSDS500's 400 training images are
~60 MB in gray), and every batch is a pure function of ``(seed, step, rank)``: resuming at step
``k`` draws exactly the batch an uninterrupted run would have drawn, with no sampler state to
save.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "training_image_paths",
    "read_image",
    "to_unit_range",
    "PatchSampler",
    "ValidationSet",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")
# BSDS500's val split contains BSD68 (the validation/benchmark set): never train on it
_BSDS_TRAIN_SPLITS = ("train", "test")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (sorted); ValueError if there are none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder of images" if folder.exists() else
                         f"image folder not found: {folder}")
    # a name starting with "." is hidden: macOS's "._x.png" resource forks are not images
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        where = (f" (its subfolders are not searched: give each as a folder of its own, e.g. "
                 f"{subfolders[0]})" if subfolders else "")
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}{where}")
    return files


def training_image_paths(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """Training files from plain folders or BSDS500-layout roots (``images/{train,test}``, never val)."""
    if not folders:
        raise ValueError("no training folder given")
    paths: list[Path] = []
    for folder in folders:
        root = Path(folder).expanduser()
        if (root / "images").is_dir() and any((root / "images" / s).is_dir() for s in _BSDS_TRAIN_SPLITS):
            for split in _BSDS_TRAIN_SPLITS:
                if (root / "images" / split).is_dir():
                    paths.extend(list_images(root / "images" / split))
        else:
            # resolved: "." inside images/val, or a link to it, is that split too
            resolved = root.resolve()
            if resolved.name == "val" and resolved.parent.name == "images":
                raise ValueError(f"{root} is a BSDS500 val split, which contains BSD68: never train on it")
            paths.extend(list_images(root))
    return paths


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Read ``path`` as ``H x W x channels`` (1: luma, 3: RGB); ValueError if unreadable.

    8-bit images (and every mode Pillow converts to 8 bits: palette, bilevel, CMYK...) come as
    uint8 in [0, 255]. Single-channel 16-bit images (PNG, TIFF) come as float32 in [0, 1] (divided
    by 65535), float images (TIFF mode ``F``) as float32 as they are, provided their values lie in
    [0, 1] (otherwise a one-line ValueError: no scale is known). Pillow's ``convert("L")`` would
    clip both to 255, i.e. train on nearly white images; :func:`to_unit_range` turns either kind
    into [0, 1] floats. ``.npy`` arrays are read as the restoration commands read them (uint8,
    uint16 / 65535, floats in [0, 1]). A file holding several images (a multi-page TIFF) is refused.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if Path(path).suffix.lower() == ".npy":
        return _read_npy(Path(path), channels)
    if Path(path).suffix.lower() == ".png":
        from pnp_stable.png16 import png16_colour_type, read_rgb16_png

        if png16_colour_type(Path(path)) in (2, 4, 6):
            # Pillow reads 16-bit RGB(A) and gray+alpha PNGs as 8 bits: the low byte would be lost
            try:
                samples = read_rgb16_png(Path(path))
            except ValueError as exc:
                raise ValueError(f"cannot read image {path}: {exc}") from None
            planes = samples[..., :3] if samples.shape[2] >= 3 else samples[..., 0]  # no alpha
            return _from_array(planes, Path(path), channels)
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:  # a stack's first frame alone would be trained on without a word
                raise _CompleteMessage(f"cannot read image {path}: it holds {frames} images (a stack); one image "
                                       "per file is read: save the frames as separate files")
            if im.mode in _WIDE_GRAY_MODES:
                arr = _wide_gray(np.asarray(im), im.mode, path)
                if channels == 3:  # a gray image as RGB: the same plane three times, as convert("RGB") does
                    arr = np.repeat(arr[..., None], 3, axis=-1)
            else:
                im = im.convert("L" if channels == 1 else "RGB")
                arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, _CompleteMessage):
            raise ValueError(str(exc)) from None
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return arr[..., None] if arr.ndim == 2 else arr


# ITU-R 601 luma, the weights of Pillow's convert("L")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _read_npy(path: Path, channels: int) -> np.ndarray:
    """A ``.npy`` image (``H x W``, ``H x W x 1`` or ``H x W x 3``) as :func:`read_image` returns
    images: uint8 as it is, uint16 divided by 65535, floats as they are if finite and in [0, 1]; an
    RGB array becomes luma for a gray model and a gray one is repeated for an RGB model."""
    from pnp_stable.fileio import read_npy

    try:
        arr = read_npy(path)
    except ValueError as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    return _from_array(arr, path, channels)


def _from_array(arr: np.ndarray, path: Path, channels: int) -> np.ndarray:
    """``arr`` (``H x W``, ``H x W x 1`` or ``H x W x 3``) as :func:`read_image` returns images (see
    :func:`_read_npy`)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"cannot read image {path}: array of shape {arr.shape}; expected H x W or H x W x 3")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0).astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"cannot read image {path}: float array with values outside [0, 1] or not finite; "
                             "rescale it to [0, 1]")
    else:
        raise ValueError(f"cannot read image {path}: {arr.dtype} array; expected uint8, uint16 or floats in [0, 1]")
    if arr.ndim == 3 and channels == 1:
        luma = arr.astype(np.float32) @ _LUMA
        arr = np.clip(np.rint(luma), 0, 255).astype(np.uint8) if arr.dtype == np.uint8 else luma
    elif arr.ndim == 2 and channels == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.ascontiguousarray(arr[..., None] if arr.ndim == 2 else arr)


# Pillow's single-channel modes wider than 8 bits: 16-bit integers, 32-bit integers (16-bit PNGs in
# older Pillow versions), 32-bit floats
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class _CompleteMessage(ValueError):
    """A refusal whose message names the file and the problem (values with no known scale to
    [0, 1], a stack of images), passed on as it is."""


def _wide_gray(arr: np.ndarray, mode: str, path: str | os.PathLike) -> np.ndarray:
    """A wide single-channel image as float32 in [0, 1]: integers over the 16-bit range, floats as
    they are; _CompleteMessage for values that fit neither."""
    if mode == "F":
        values = arr.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise _CompleteMessage(f"cannot read image {path}: float image with values outside [0, 1] "
                              f"({np.nanmin(values):.4g} to {np.nanmax(values):.4g}); rescale it to [0, 1]")
        return values
    if arr.min() < 0 or arr.max() > 65535:
        raise _CompleteMessage(f"cannot read image {path}: {mode} image with values outside the 16-bit range "
                          f"({arr.min()} to {arr.max()})")
    return (arr.astype(np.float64) / 65535.0).astype(np.float32)


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """A tensor of :func:`read_image` values as float32 in [0, 1]: uint8 divided by 255, floats
    (already in [0, 1]) as they are."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()


def _step_generator(seed: int, step: int, rank: int, stream: int) -> torch.Generator:
    g = torch.Generator()
    # distinct, reproducible streams per (seed, step, rank, purpose)
    # modulo 2^64, what manual_seed does to a negative seed anyway: the same streams as before for
    # every seed that worked, and no "Overflow when unpacking long long" for seeds past ~2.6e9
    g.manual_seed((((seed * 1_000_003 + step) * 1_009 + rank) * 7 + stream) % (1 << 64))
    return g


def _dihedral(patch: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/rotations of a ``C x H x W`` patch."""
    if k >= 4:
        patch = patch.flip(-1)
    return torch.rot90(patch, k % 4, dims=(-2, -1))


class PatchSampler:
    """Random ``patch_size`` crops with flips/rotations and Gaussian noise, deterministic per step.

    ``sigma_range = (lo, hi)`` draws one sigma per patch uniformly in ``[lo, hi]`` (``lo == hi``:
    fixed-sigma training); sigma is on the [0, 1] scale.
    """

    def __init__(self, paths: Sequence[Path], channels: int, patch_size: int,
                 sigma_range: tuple[float, float], augment: bool = True) -> None:
        lo, hi = sigma_range
        if not (0 <= lo <= hi):
            raise ValueError(f"sigma range must satisfy 0 <= min <= max, got {sigma_range}")
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.images = [torch.from_numpy(read_image(p, channels).transpose(2, 0, 1).copy())
                       for p in paths]
        if not self.images:
            raise ValueError("no training images")
        small = [str(p) for p, im in zip(paths, self.images) if min(im.shape[-2:]) < patch_size]
        if small:
            raise ValueError(f"{len(small)} image(s) smaller than the {patch_size}px patch, e.g. {small[0]}")
        self.channels, self.patch_size = channels, patch_size
        self.sigma_range = (float(lo), float(hi))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, batch_size: int, step: int, seed: int = 0, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(clean, noisy, sigma)`` for training step ``step`` (float32, ``B x C x P x P`` and ``(B,)``)."""
        g = _step_generator(seed, step, rank, 0)
        p = self.patch_size
        index = torch.randint(len(self.images), (batch_size,), generator=g)
        corner = torch.rand(batch_size, 2, generator=g)
        flips = torch.randint(8, (batch_size,), generator=g)
        patches = []
        for i in range(batch_size):
            im = self.images[int(index[i])]
            top = int(corner[i, 0] * (im.shape[-2] - p + 1))
            left = int(corner[i, 1] * (im.shape[-1] - p + 1))
            patch = im[:, top : top + p, left : left + p]
            if self.augment:
                patch = _dihedral(patch, int(flips[i]))
            patches.append(to_unit_range(patch))
        clean = torch.stack(patches)
        lo, hi = self.sigma_range
        sigma = lo + (hi - lo) * torch.rand(batch_size, generator=g)
        noise = torch.randn(clean.shape, generator=_step_generator(seed, step, rank, 1))
        noisy = clean + sigma.view(-1, 1, 1, 1) * noise
        return clean, noisy, sigma


@dataclass
class ValidationSet:
    """Clean validation images (``1 x C x H x W`` float tensors) with deterministic noise.

    ``noisy(i, sigma)`` uses a generator seeded with the image index, so every evaluation of the
    same model sees the same noise.
    """

    images: list[torch.Tensor]
    names: list[str]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, channels: int, limit: int | None = None,
                    crop: int | None = None) -> "ValidationSet":
        """Load (the first ``limit``) images of ``folder``, centre-cropped to ``crop`` if given."""
        paths = list_images(folder)[: limit or None]
        images = []
        for p in paths:
            im = torch.from_numpy(read_image(p, channels).transpose(2, 0, 1).copy())
            if crop:
                h, w = im.shape[-2:]
                ch, cw = min(crop, h), min(crop, w)
                im = im[:, (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
            images.append(to_unit_range(im).unsqueeze(0))
        return cls(images, [p.name for p in paths])

    def noisy(self, index: int, sigma: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(index)
        clean = self.images[index]
        return clean + sigma * torch.randn(clean.shape, generator=g)

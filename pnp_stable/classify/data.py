"""In-memory image classification data: uint8 images, integer labels, class names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageClassificationData"]


@dataclass
class ImageClassificationData:
    """``images``: uint8 ``N x C x H x W``; ``labels``: int64 ``N`` in ``[0, len(class_names))``.

    Images stay uint8 (4x less memory than float) and become floats in ``[0, 1]`` per batch; the
    attacks and certified radii are measured in that ``[0, 1]`` pixel scale.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str = "data"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be a uint8 N x C x H x W tensor, got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        self.labels = self.labels.to(torch.int64)
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.class_names)}), found "
                             f"[{int(self.labels.min())}, {int(self.labels.max())}]")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all or ``index``) as float32 in ``[0, 1]``."""
        images = self.images if index is None else self.images[index]
        return images.to(torch.float32) / 255.0

    def channel_mean(self) -> tuple[float, ...]:
        """Per-channel mean of the ``[0, 1]`` images (used as the model's fixed input shift)."""
        total = self.images.to(torch.float64).mean(dim=(0, 2, 3)) / 255.0
        return tuple(float(v) for v in total)

    def subset(self, size: int | None, seed: int = 0) -> "ImageClassificationData":
        """A reproducible random subset of ``size`` examples (the whole set if ``size`` is None)."""
        if size is None or size >= len(self):
            return self
        if size <= 0:
            raise ValueError(f"subset size must be positive, got {size}")
        index = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size]
        index, _ = index.sort()
        return ImageClassificationData(self.images[index], self.labels[index], list(self.class_names),
                                       f"{self.name}[{size}]")

"""Image quality metrics in bounded memory.

torchmetrics' SSIM needs about 1.6 GB for one 2048 x 2048 image (some 370 bytes per pixel), more
than a tiled denoiser needs for a whole restoration. :func:`ssim_per_image` computes the same number
strip by strip (0.5 GB there).

Why it is the same number: torchmetrics (Gaussian window 11 x 11, sigma 1.5) reflect-pads the
image by the window radius ``p = 5`` and averages the SSIM map over every pixel; a map value at row
``r`` depends only on rows ``r - p .. r + p`` of the padded image. Here the image is reflect-padded
by ``p`` rows once (as torchmetrics pads it), and torchmetrics' full map is computed on rows
``a - p .. b + p`` of that; its rows ``a .. b`` see only real (or, at the image's own borders,
the same reflected) rows, so they are the whole image's map values. Summing them strip by strip
gives the whole image's mean, up to float summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SSIM_WINDOW_RADIUS", "ssim_per_image"]

# torchmetrics' default Gaussian window: 11 x 11, so a reach of 5 pixels
SSIM_WINDOW_RADIUS = 5  # torchmetrics' default 11 x 11 Gaussian window
# pixels per torchmetrics call
_STRIP_PIXELS = 1 << 20


def ssim_per_image(x: torch.Tensor, ref: torch.Tensor, strip_pixels: int = _STRIP_PIXELS) -> torch.Tensor:
    """SSIM (data range 1, torchmetrics' defaults) of every ``x[i]`` against ``ref[i]``, as a
    ``(B,)`` tensor; ``x``, ``ref``: ``B x C x H x W``. ``x`` is clipped to [0, 1] first."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if x.shape != ref.shape or x.ndim != 4:
        raise ValueError(f"expected two B x C x H x W tensors of one shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    x = x.clamp(0, 1)
    height, width = x.shape[-2:]
    rows = max(1, strip_pixels // max(1, x.shape[1] * width))
    p = SSIM_WINDOW_RADIUS
    if height <= rows or height <= p:
        return structural_similarity_index_measure(x, ref, data_range=1.0, reduction="none").reshape(-1)
    # the row padding torchmetrics would apply to the whole image; each strip pads its columns itself
    x_pad = F.pad(x, (0, 0, p, p), mode="reflect")
    ref_pad = F.pad(ref, (0, 0, p, p), mode="reflect")
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        part = slice(start, stop + 2 * p)  # image rows start - p .. stop + p
        _, full = structural_similarity_index_measure(x_pad[..., part, :], ref_pad[..., part, :], data_range=1.0,
                                                      reduction="none", return_full_image=True)
        total += full[..., p:p + stop - start, :].double().sum(dim=(1, 2, 3))
    return (total / (x[0].numel())).to(x.dtype)

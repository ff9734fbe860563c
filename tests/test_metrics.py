"""SSIM in strips: the number torchmetrics gives for the whole image."""

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from pnp_stable.metrics import ssim_per_image


@pytest.mark.parametrize("shape, strip_pixels", [((2, 1, 77, 50), 7 * 50), ((1, 3, 64, 33), 1), ((3, 1, 40, 40), 10 ** 6)])
def test_strips_give_the_whole_image_ssim(shape, strip_pixels):
    ref = torch.rand(shape, dtype=torch.float64)
    x = (ref + 0.2 * torch.randn(shape, dtype=torch.float64)).clamp(-0.1, 1.1)  # also values to clip
    whole = structural_similarity_index_measure(x.clamp(0, 1), ref, data_range=1.0, reduction="none")
    strips = ssim_per_image(x, ref, strip_pixels=strip_pixels)
    assert strips.shape == (shape[0],)
    assert torch.allclose(strips, whole, atol=1e-12, rtol=0)


def test_a_wrong_window_radius_would_be_caught():
    """Strips that overlap by one row less than the window reach see the reflect padding: not the same number."""
    import pnp_stable.metrics as metrics

    ref = torch.rand(1, 1, 60, 30, dtype=torch.float64)
    x = (ref + 0.3 * torch.randn_like(ref)).clamp(0, 1)
    whole = structural_similarity_index_measure(x, ref, data_range=1.0, reduction="none")
    radius = metrics.SSIM_WINDOW_RADIUS
    try:
        metrics.SSIM_WINDOW_RADIUS = radius - 1
        off = ssim_per_image(x, ref, strip_pixels=5 * 30)
    finally:
        metrics.SSIM_WINDOW_RADIUS = radius
    assert not torch.allclose(off, whole, atol=1e-6, rtol=0)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="B x C x H x W"):
        ssim_per_image(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 21))

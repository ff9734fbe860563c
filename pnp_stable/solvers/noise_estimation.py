"""The Gaussian noise level of an observation, estimated from the data alone.

Donoho's estimator, ``median(|HH|) / 0.6745`` on the finest diagonal Haar band ``HH = (a - b - c
+ d) / 2`` of the 2x2 blocks ``[[a, b], [c, d]]``, reads texture as noise: a sharp photograph's
fine detail has energy in that band too, and so does an edge. It also under-reads clipped data,
whose saturated regions hold no noise.

Both are mended by choosing *which* blocks to read, without biasing the estimate. For white
Gaussian noise the four orthonormal Haar coefficients of a block (its mean, its horizontal and
vertical details LH and HL, and HH) are independent, and independent of every other block's. So
a choice made from a block's mean, its LH and HL, and its neighbours' coefficients leaves the
distribution of its HH unchanged under noise (but for the clipping margin, which scales with the
plain estimate over all blocks: a dependence on one block's HH of order 1/n, measured as none
within 0.3 %), while it can avoid texture: the estimator keeps
the quarter of the blocks whose 3x3 neighbourhood has the least horizontal and vertical detail
(flat regions, whose HH is mostly noise; at least 1024 blocks, so a small image is read whole),
among those whose mean lies away from the data's extremes (where clipping squeezes the noise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["estimate_noise_level", "estimate_noise_level_for_parameters", "estimate_sinogram_noise_level",
           "noise_estimate_caveats"]

# the share of the candidate blocks read: the flattest quarter, but never fewer than
# MIN_READ_BLOCKS (or all there are): the MAD of n samples has a relative standard error of about
# 1.2 / sqrt(n), 4 % for 1024 blocks (a 64 x 64 image, read whole), 2 % for a quarter of 256 x 256
SELECTED_FRACTION = 0.25
MIN_READ_BLOCKS = 1024
# blocks whose mean lies within this many (plain) noise levels of the data's minimum or maximum
# are left out: clipping at a bound flattens the noise there
CLIPPING_MARGIN = 2.0
# below this many candidate blocks, no clipping margin is applied
MIN_BLOCKS = 16
# ... nor when it would leave fewer than this share of them: an image (almost) all near its
# extremes, e.g. a two-level one, has no middle to read
MIN_INSIDE_SHARE = 0.1
_MAD_TO_SIGMA = 0.6745  # the median of |N(0, 1)|


def estimate_noise_level(y: torch.Tensor, observed: torch.Tensor | None = None) -> list[float]:
    """Per-image Gaussian noise level of ``y`` (``B x C x H x W``): Donoho's MAD of the finest
    diagonal Haar band, read on the flattest quarter of the 2x2 blocks away from the data's
    extremes (see the module docstring; unbiased for white Gaussian noise: the choice does not look at the HH it reads).

    Accurate when the clean signal has little energy in that band in its flattest regions, which
    holds for most photographs (a blurred one all the more); it still over-reads an image that is
    textured everywhere, up to the data's own standard deviation, which bounds it (noise
    independent of the image cannot spread the data more than they are spread), and it under-reads
    data clipped almost everywhere (:func:`noise_estimate_caveats` says when either is likely). ``observed`` (``y``'s shape, nonzero where a value was measured; e.g. an
    inpainting mask) keeps only the blocks measured in full: a missing pixel's 0 would read as a
    jump. ValueError if an image has no such block.
    """
    if y.ndim != 4:
        raise ValueError(f"noise estimation needs B x C x H x W measurements, got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        # an 8-bit tensor would be read in 0..255 units, and off the grid the estimate groups
        raise ValueError(f"noise estimation needs floating-point data on the [0, 1] scale, got {y.dtype}: divide "
                         "8-bit samples by 255 (16-bit ones by 65535) first")
    if y.shape[-1] < 2 or y.shape[-2] < 2:
        raise ValueError(f"noise estimation needs images of at least 2 x 2 pixels, got {y.shape[-2]} x {y.shape[-1]}: "
                         "give the noise level")
    if observed is not None and tuple(observed.shape) != tuple(y.shape):
        raise ValueError(f"observed has shape {tuple(observed.shape)}, y {tuple(y.shape)}")
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2

    def blocks(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = t[..., :h, :w]
        return t[..., 0::2, 0::2], t[..., 0::2, 1::2], t[..., 1::2, 0::2], t[..., 1::2, 1::2]

    # float32 holds 8- and 16-bit samples exactly and a median to 1e-7: float64 would double the
    # memory traffic of a large image for nothing
    work = y.detach()
    work = work if work.dtype in (torch.float32, torch.float64) else work.to(torch.float32)
    a, b, c, d = blocks(work)
    magnitude = ((a - b - c + d) / 2.0).abs()  # |HH|
    detail = ((a + b - c - d).abs() + (a - b + c - d).abs()) / 2.0
    mean = (a + b + c + d) / 4.0
    full = None if observed is None else torch.stack([o.to(y.device) != 0 for o in blocks(observed)]).all(dim=0)
    levels = []
    for i in range(y.shape[0]):
        if full is not None and not bool(full[i].any()):
            raise ValueError("no 2x2 block of the image is fully observed, so its noise level cannot be estimated: "
                             "give it (noise_level=, --noise)")
        values = work[i] if observed is None else work[i][observed[i].to(y.device) != 0]
        level = _selected_level(magnitude[i], detail[i], mean[i], None if full is None else full[i],
                                _sample_step(values))
        levels.append(min(level, float(values.std())) if values.numel() > 1 else level)
    return levels


# the sample steps of 8- and 16-bit data on the [0, 1] scale
_SAMPLE_STEPS = (1 / 255, 1 / 65535)


def _sample_step(values: torch.Tensor) -> float | None:
    """The step of the grid ``values`` lie on when they are 8- or 16-bit samples scaled to [0, 1]
    (within float32 rounding), else None."""
    flat = values.flatten()
    for step in _SAMPLE_STEPS:
        # a float image leaves the grid within its first values: the whole pass only for samples
        for part in (flat[:4096], flat):
            scaled = part.to(torch.float64) / step
            if not bool(((scaled - torch.round(scaled)).abs() <= 1e-3).all()):
                break
        else:
            return step
    return None


def _median_magnitude(values: torch.Tensor, step: float | None) -> float:
    """The median of ``values`` (|HH| coefficients). Data on a grid of ``step`` (8- or 16-bit
    samples) put |HH| on a grid of ``step / 2``, where the plain median jumps in steps of 0.74/255
    once scaled to a level (noise of 1/255 read 0.74 or 1.48): there it is the median of the grouped
    values, interpolated linearly within its bin (the bin of k half-steps holds the values rounded
    to k; the first is half as wide, as the values are magnitudes). With noise of 1 / 2 / 5/255 on
    8-bit data this reads 1.04 / 2.04 / 5.02 where the plain median read 0.74 / 2.22 / 5.19."""
    if step is None:
        return float(values.median())
    half = step / 2
    bins = torch.round(values.to(torch.float64) / half)
    middle = float(bins.median())
    below, inside = int((bins < middle).sum()), int((bins == middle).sum())
    start, width = (0.0, 0.5) if middle == 0 else (middle - 0.5, 1.0)
    return (start + width * (values.numel() / 2 - below) / inside) * half


# an estimate above this share of the data's own standard deviation leaves little room for an image
# under the noise: more likely fine texture read as noise (a checkerboard of 1-pixel squares reads as
# pure noise); the share of values at the data's minimum or maximum above which clipping is likely
TEXTURE_SHARE = 0.7
CLIPPED_SHARE = 0.2


def noise_estimate_caveats(y: torch.Tensor, level: float, observed: torch.Tensor | None = None) -> list[str]:
    """Why ``level``, estimated from ``y`` (``B x C x H x W``; ``observed`` as for
    :func:`estimate_noise_level`), may be wrong, as sentences for a user (empty if no reason is
    seen): a level close to the data's own spread (texture read as noise: too high), or many values
    at the data's extremes (clipping flattens the noise: too low)."""
    values = y.detach() if observed is None else y.detach()[observed.to(y.device) != 0]
    values = values.to(torch.float64).flatten()
    if values.numel() < 2:
        return []
    caveats = []
    spread = float(values.std())
    if level > TEXTURE_SHARE * spread:
        caveats.append(f"the estimate is {100 * level / spread:.0f} % of the data's own spread: if the image is "
                       "not mostly noise, its fine texture was read as noise and the level is too high")
    clipped = _share_at_extremes(values)
    if clipped > CLIPPED_SHARE:
        caveats.append(f"{100 * clipped:.0f} % of the values sit at the data's minimum or maximum (clipped?): "
                       "clipping flattens the noise, so the level may be too low")
    return caveats


def _share_at_extremes(values: torch.Tensor) -> float:
    """The share of ``values`` (flat) equal to their minimum or maximum: clipped data pile up there."""
    return float(((values == values.min()) | (values == values.max())).to(torch.float64).mean())


def _selected_level(magnitude: torch.Tensor, detail: torch.Tensor, mean: torch.Tensor | None,
                    full: torch.Tensor | None, step: float | None, min_read: int = MIN_READ_BLOCKS) -> float:
    """The MAD level of ``magnitude`` (``C x h x w`` |HH| coefficients) read on the flattest
    blocks of ``full`` (None: all) away from the extremes of ``mean`` (the blocks' means; None: no
    clipping to avoid); ``step``: the data's sample step when they are 8- or 16-bit samples (see
    :func:`_median_magnitude`)."""
    def median_level(selected: torch.Tensor | None) -> float:
        values = magnitude if selected is None else magnitude[selected]
        return _median_magnitude(values, step) / _MAD_TO_SIGMA

    count = magnitude.numel() if full is None else int(full.sum())
    plain = median_level(full)
    candidates = full
    if count >= MIN_BLOCKS and mean is not None:
        observed_means = mean if full is None else mean[full]
        low, high = float(observed_means.min()), float(observed_means.max())
        margin = CLIPPING_MARGIN * plain
        inside = (mean > low + margin) & (mean < high - margin)
        inside = inside if full is None else inside & full
        inside_count = int(inside.sum())
        if inside_count >= max(MIN_BLOCKS, MIN_INSIDE_SHARE * count):
            candidates, count = inside, inside_count
    kept = max(math.ceil(SELECTED_FRACTION * count), min(count, min_read))
    if kept == count:
        return median_level(candidates)
    # each block's neighbourhood activity: the mean detail of the observed blocks around it
    if full is None:
        around = F.avg_pool2d(detail[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    else:
        # a missing value (0, NaN, anything) must not reach its observed neighbours' activity
        weight = full.to(detail.dtype)[:, None]
        observed_detail = torch.where(full, detail, torch.zeros((), dtype=detail.dtype, device=detail.device))
        around = (F.avg_pool2d(observed_detail[:, None], 3, 1, 1)
                  / F.avg_pool2d(weight, 3, 1, 1).clamp_min(1e-12))[:, 0]
    activity = around if candidates is None else torch.where(candidates, around, torch.full_like(around, math.inf))
    # the kept-th smallest activity bounds the flattest blocks (a tie at the bound keeps a few more)
    bound = torch.kthvalue(activity.flatten(), kept).values
    return median_level(activity <= bound)


def estimate_sinogram_noise_level(y: torch.Tensor, precision: torch.Tensor | None = None) -> list[float]:
    """Per-sinogram Gaussian noise level of ``y`` (``B x C x n_detectors x n_angles``), read along
    the detectors only.

    A sinogram is smooth along its detectors between the edges of the object's shadow, but not
    across its angles: a sparse scan's neighbouring views differ by whole bins wherever the object
    is off-centre, which the 2-D Haar band of :func:`estimate_noise_level` reads as noise (5.7x the
    true level at 0.1 % noise on a 64 x 64 phantom, 60 angles). Here each column is cut into
    disjoint triplets of bins ``(a, b, c)``; their curvature ``(a - 2b + c) / sqrt(6)``, their slope
    ``(c - a) / sqrt(2)`` and their mean are orthonormal contrasts, independent for white Gaussian
    noise, so a choice made from the slopes of a triplet and of its neighbours, and from its mean,
    leaves the distribution of its curvature unchanged: the MAD of the curvatures is read on the
    quarter of the triplets with the least slope around them (at least 256). Unbiased for white Gaussian noise; reads the
    curvature of the projections where they have no flat part.

    It reads noise only: data free of noise but made by another forward model (a mismatch of a
    fraction of a percent) read close to 0, although a solve needs regularising against the
    mismatch as against noise. That is why the automatic parameters floor it at half the 2-D
    estimate (:func:`estimate_noise_level_for_parameters`); this one says what the noise itself is,
    e.g. to check a scanner's level or to give it as ``noise_level``. ValueError for fewer than 3
    detectors.

    ``precision`` (``y``'s shape, positive): heteroscedastic data, each bin's variance
    ``level^2 / precision`` (a post-log sinogram's, with relative photon counts): the level of the
    whitened noise is read, each triplet's contrasts multiplied by the square root of its mean
    precision. The mean is orthogonal to the curvature, so measured precisions (counts, themselves
    noisy) leave the curvature's distribution unchanged to first order, where weighting each bin by
    its own would not: ``sqrt(c) log c`` barely varies with ``c`` near ``log c = 2``, and such a
    weighted sinogram read 0.01 for a level of 0.07. Triplets holding a bin of precision below 1e-6
    of the mean (a dead detector, a bin to leave out) are left out, and so are their values from the
    check for clipping.
    """
    if y.ndim != 4:
        raise ValueError(f"noise estimation needs B x C x n_detectors x n_angles data, got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise ValueError(f"noise estimation needs floating-point data, got {y.dtype}")
    if y.shape[-2] < 3:
        raise ValueError(f"a sinogram noise estimate needs at least 3 detectors, got {y.shape[-2]}")
    work = y.detach().to(torch.float64)
    t = y.shape[-2] // 3
    a, b, c = work[..., 0:3 * t:3, :], work[..., 1:3 * t:3, :], work[..., 2:3 * t:3, :]
    curvature = ((a - 2 * b + c) / math.sqrt(6)).abs()
    slope = ((c - a) / math.sqrt(2)).abs()
    mean = (a + b + c) / 3
    read: torch.Tensor | None = None
    if precision is not None:
        if precision.shape != y.shape:
            raise ValueError(f"precision must have the sinogram's shape {tuple(y.shape)}, got {tuple(precision.shape)}")
        weights = precision.detach().to(device=work.device, dtype=torch.float64)
        if not bool(torch.isfinite(weights).all()) or not bool((weights > 0).all()):
            raise ValueError("precision must be finite and positive")
        pa, pb, pc = weights[..., 0:3 * t:3, :], weights[..., 1:3 * t:3, :], weights[..., 2:3 * t:3, :]
        root = ((pa + pb + pc) / 3).sqrt()
        curvature, slope = curvature * root, slope * root
        least = 1e-6 * weights.flatten(1).mean(dim=1).view(-1, 1, 1, 1)
        read = (pa > least) & (pb > least) & (pc > least)
    levels = []
    for i in range(y.shape[0]):
        # the clipping margin only where the data are clipped: a sinogram's air (the bins outside
        # the object's shadow) lies at its minimum and holds the purest noise, which a margin scaled
        # by the plain (curvature-inflated) level would leave out
        values = work[i] if precision is None else work[i][weights[i] > least[i]]  # a left-out bin's value says nothing
        clipped = _share_at_extremes(values.flatten()) >= SINOGRAM_CLIPPED_SHARE
        levels.append(_selected_level(curvature[i], slope[i], mean[i] if clipped else None,
                                      None if read is None else read[i], None, min_read=SINOGRAM_MIN_READ))
    return levels


# the share of a sinogram's values at its minimum or maximum from which it is taken as clipped
SINOGRAM_CLIPPED_SHARE = 0.01
# fewer triplets than an image's blocks may be read (a relative standard error of 7.5 % for 256):
# a small sinogram's air is all that is flat (64 x 64 phantom, 60 angles: ~600 triplets, where 1024
# reached into the object's shadow and read 1.65x the level at 0.1 % noise)
SINOGRAM_MIN_READ = 256


# a sinogram's noise reading for the automatic parameters: along the detectors, floored at this
# share of the 2-D reading (docs/benchmarks.md, "CT ADMM rule across noise levels and view counts")
SINOGRAM_NOISE_FLOOR_SHARE = 0.5


def estimate_noise_level_for_parameters(y: torch.Tensor, family: str | None = None,
                                        observed: torch.Tensor | None = None) -> list[float]:
    """The noise level the automatic parameters read from measurements ``y`` of an operator of
    ``family`` (its ``parameter_family``), per item of the batch.

    Any family but ``"ct"``: :func:`estimate_noise_level` (on the ``observed`` entries only, when
    given: an inpainting's). A sinogram (``"ct"``, at least 3
    detectors): :func:`estimate_sinogram_noise_level` floored at ``SINOGRAM_NOISE_FLOOR_SHARE`` of
    the 2-D reading. The 2-D reading takes a sparse scan's differences between views for noise (3.2x
    the level at 0.1 % noise, 60 angles), which costs up to 2.1 dB with the CT rule; the floor keeps
    what it reads in data of another forward model, a mismatch the detector axis reads as ~0 although
    it must be regularised like noise. Of the 2-D reading, the detector one and the floor at 0.25 or
    0.5, the last had the best mean PSNR on the 24 problems of docs/benchmarks.md. A non-finite
    reading stays non-finite.
    """
    two_d = estimate_noise_level(y, observed=observed)
    if family != "ct" or y.shape[-2] < 3:
        return two_d
    along = estimate_sinogram_noise_level(y)
    # max() would drop a NaN that comes second: keep it for the caller's refusal
    return [max(a, SINOGRAM_NOISE_FLOOR_SHARE * b) if math.isfinite(a) and math.isfinite(b) else math.nan
            for a, b in zip(along, two_d)]

"""Raw transmission measurements to the line integrals CT reconstructs, with their statistics.

A detector behind an object records ``I = g N + D`` per bin: ``N`` photons (Poisson), a gain ``g``
(detector units per photon), a dark offset ``D``; an exposure without the object, the flat field,
records ``F = g N0 + D``. Beer-Lambert gives the line integrals ``y = -log((I - D) / (F - D))``,
whose variance is ``1 / N`` (the delta method; plus the electronic noise's share): the bins that
kept few photons are the noisy ones, so a weighted least-squares data term with the counts as
weights (their Poisson "precisions", inverse variances) whitens the noise, as
:class:`~pnp_stable.operators.RadonTomography`'s ``statistical_weights`` expect.

``g`` is a property of the detector. When it is not given it can be measured from two or more flat
frames (photon transfer: the frame-to-frame variance of a bin is ``g`` times its mean above the dark,
plus the dark frames' variance) or, from one flat, from the sinogram's own noise (its whitened
level squared times the mean signal above the dark). The same reading gives a post-log sinogram's
incident photon count ``I0`` (:func:`photons_from_sinogram_noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["GainEstimate", "PhotonEstimate", "TransmissionData", "estimate_gain", "flat_field_correction",
           "gain_from_sinogram_noise", "photons_from_sinogram_noise", "ring_covariance"]

# a detector bin whose flat field lies at most this share of the median flat (above the dark) is dead:
# a flat's bins vary by tens of percent (the beam's profile, a bow-tie filter), not by 100x
DEAD_FLAT_SHARE = 1e-2
# readings whose median lies above this many times the flat (above the dark) are on another scale:
# an object transmits less than the flat, and noise or a drifting source a few percent more
READINGS_ABOVE_FLAT = 2.0
# the most photons a post-log sinogram's values may speak of (restore.MAX_PHOTONS's bound)
MAX_LINE_INTEGRAL_PHOTONS = 1e15
# photons_from_sinogram_noise's check: the noise must grow with the attenuation by at least this share
# (in the logarithm) of what photon counts' does
POISSON_GROWTH_SHARE = 0.75
# the gain read off the sinogram's noise leaves out bins of fewer photons than this (by the previous
# round's gain): below, the logarithm's variance departs from 1 / N (and at 0 photons it is undefined)
GAIN_READING_MIN_PHOTONS = 10.0
# while the gain is read off the sinogram, readings at or below the dark are floored at this share of
# the median flat: line integrals of at most -log(1e-6) = 13.8 (a clinical scan's deepest reach near 8)
STARVED_FLOOR_SHARE = 1e-6
# the flat's error is whitened only in its components along the detector of period below this many bins
# (fine rings): coarser ones draw slow radial shading that the denoiser cannot tell from the object's own,
# and leaving them to the data measured better; fine ones the denoiser removes once the data term lets it
# (128 x 128 slices, 180 views, one flat frame: docs/benchmarks.md, "Rings from the flat field's noise")
RING_PERIOD_BINS = 16.0


def ring_covariance(flat_variance: Any, period: float = RING_PERIOD_BINS) -> np.ndarray:
    """The covariance ``H V H`` (``bins x bins``) of a flat field's error ``V = diag(flat_variance)``
    (:class:`TransmissionData`'s) restricted to the detector frequencies whose period is below
    ``period`` bins: ``H`` is the orthogonal projector onto those cosines of the orthonormal DCT-II
    (cosine ``k`` has period ``2 bins / k``), so the error's rings finer than ``period`` are kept
    exactly and its coarser shading dropped. For
    :class:`~pnp_stable.operators.RadonTomography`'s ``shared_variance`` (a covariance)."""
    if not isinstance(period, (int, float, np.integer, np.floating)) or isinstance(period, bool) or not (
            period > 0 and math.isfinite(period)):
        raise ValueError(f"period must be a positive number of detector bins, got {period!r}")
    variance = np.asarray(flat_variance.numpy() if isinstance(flat_variance, torch.Tensor) else flat_variance,
                          dtype=np.float64)
    if variance.ndim != 1 or not np.all(np.isfinite(variance)) or np.any(variance < 0):
        raise ValueError("the flat's variances must be finite, non-negative and one per detector bin (1-D)")
    bins = variance.size
    # the coarse cosines (k <= 2 bins / period), few: H = I - C^T C, and H V H from products with C
    k = np.arange(bins)[np.arange(bins) * float(period) <= 2 * bins]
    coarse = np.cos(np.pi * k[:, None] * (2 * np.arange(bins)[None, :] + 1) / (2 * bins)) * np.sqrt(2.0 / bins)
    coarse[k == 0] /= np.sqrt(2.0)
    weighted = coarse * variance[None, :]  # C V
    covariance = (np.diag(variance) - coarse.T @ weighted - weighted.T @ coarse
                  + coarse.T @ ((weighted @ coarse.T) @ coarse))
    return (covariance + covariance.T) / 2


@dataclass(frozen=True)
class GainEstimate:
    """A detector's gain measured from flat frames: ``gain`` detector units per photon, ``read_noise``
    the dark frames' standard deviation (detector units; 0 without two dark frames), and the frames
    and bins it rests on."""

    gain: float
    read_noise: float
    flat_frames: int
    dark_frames: int
    bins_used: int


@dataclass(frozen=True)
class TransmissionData:
    """Flat-field-corrected data: ``line_integrals`` (``n_detectors x n_angles``, float64) and their
    ``precision`` (inverse variances, in photons), the gain and where it came from (``"given"``,
    ``"flat frames"`` or ``"sinogram noise"``), the electronic noise in photons (``read_noise``; None
    without two dark frames), the frames the flat and dark were given as (None: one number for every
    bin), the dead detector bins (their line integrals interpolated from their neighbours in each
    view, their precision ~0) and the count of starved bins (less than one photon above the dark:
    read as one photon)."""

    line_integrals: torch.Tensor
    precision: torch.Tensor  # the photon counts above the dark
    gain: float
    gain_source: str
    read_noise: float | None
    flat_frames: int | None
    dark_frames: int | None
    dead_detectors: tuple[int, ...]
    starved_bins: int
    # the variance of each bin's error from the flat's own noise (line integrals squared; 0 at dead bins),
    # the same in every view, and the exposures it was computed for; None for a flat given as a number
    flat_variance: torch.Tensor | None = None
    flat_exposures: int | None = None

    def summary(self) -> dict[str, Any]:
        """The report's description (JSON-ready)."""
        return {"gain": self.gain, "gain_source": self.gain_source, "read_noise_photons": self.read_noise,
                "flat_frames": self.flat_frames, "flat_exposures": self.flat_exposures,
                "dark_frames": self.dark_frames, "dead_detectors": list(self.dead_detectors),
                "starved_bins": self.starved_bins}


def _as_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite float64 array, leading axes of length 1 beyond two dropped (a
    ``(1, 1, bins, views)`` batch is its ``bins x views``)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def _frames(values: Any, name: str, n_detectors: int) -> np.ndarray:
    """``values`` as ``n_detectors x frames``: a number (the same in every bin), one value per bin, or
    frames side by side as a sinogram's views are."""
    array = _as_array(values, name)
    if array.ndim == 0:
        return np.full((n_detectors, 1), float(array))
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] != n_detectors:
        transposed = array.ndim == 2 and array.shape[1] == n_detectors
        raise ValueError(f"{name} must hold one value per detector bin ({n_detectors}: its rows, as the sinogram's), "
                         f"optionally several frames side by side; got shape {tuple(array.shape)}"
                         + ("; transpose it (frames as columns)" if transposed else ""))
    if array.shape[1] == 0:
        raise ValueError(f"{name} holds no frame")
    return array


def _dead_bins(incident: np.ndarray) -> np.ndarray:
    """The detector bins whose flat (above the dark) lies at or below ``DEAD_FLAT_SHARE`` of the median."""
    return incident <= DEAD_FLAT_SHARE * max(float(np.median(incident)), 0.0)


def _dark_statistics(dark: np.ndarray | None, n_bins: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Each bin's dark level (0 without a dark) and its variance across the dark frames (None
    without two of them: the electronic noise unknown)."""
    if dark is None:
        return np.zeros(n_bins), None
    return dark.mean(axis=1), (dark.var(axis=1, ddof=1) if dark.shape[1] >= 2 else None)


def estimate_gain(flat_frames: Any, dark_frames: Any = None) -> GainEstimate:
    """A detector's gain (units per photon) by photon transfer from ``flat_frames`` (``n_detectors x k``,
    ``k >= 2`` exposures without the object) and optional ``dark_frames`` (``n_detectors x k_d``).

    Each bin's variance across the flat frames is ``g`` times its mean above the dark, plus the
    electronic noise (the dark frames' variance, ``k_d >= 2``; else taken as 0, which overestimates
    ``g`` by ``read_noise^2 / mean signal``). The source's frame-to-frame fluctuation, common to all
    bins, is divided out first (each frame scaled to the frames' mean total), and ``g`` is the ratio
    of the summed excess variances to the summed means (least squares of variance on mean through
    0; corrected for the share of each bin's own noise that the frame's total divides out). Assumes
    Poisson photon statistics and a linear detector; its relative error is about
    ``sqrt(2 / ((k - 1) bins))``.
    """
    flat = _as_array(flat_frames, "flat_frames")
    if flat.ndim != 2 or flat.shape[1] < 2:
        raise ValueError(f"the gain's estimate needs at least two flat frames side by side (n_detectors x k), got "
                         f"shape {tuple(flat.shape)}")
    n_bins = flat.shape[0]
    dark = None if dark_frames is None else _frames(dark_frames, "dark_frames", n_bins)
    dark_mean, dark_var = _dark_statistics(dark, n_bins)
    read_var = np.zeros(n_bins) if dark_var is None else dark_var
    signal = flat - dark_mean[:, None]
    live = ~_dead_bins(signal.mean(axis=1))
    if int(live.sum()) < 2:
        raise ValueError("the flat frames hold no signal above the dark: cannot measure the gain")
    totals = signal[live].sum(axis=0)
    if not np.all(totals > 0):
        raise ValueError("a flat frame holds no signal above the dark: cannot measure the gain")
    signal = signal * (totals.mean() / totals)[None, :]  # the source's fluctuation divided out
    mean = signal[live].mean(axis=1)
    excess = signal[live].var(axis=1, ddof=1) - read_var[live]
    # dividing by the frame's total takes out its own photon noise too: a bin of mean m_i (of M in all)
    # keeps g m_i (1 - m_i / M) of its variance, which matters with few bins
    gain = float(excess.sum() / (mean.sum() - float((mean ** 2).sum()) / mean.sum()))
    if not gain > 0:
        raise ValueError("the flat frames vary less than the dark frames do: no photon noise to measure the gain "
                         "from (give it)")
    read_noise = 0.0 if dark_var is None else math.sqrt(float(dark_var.mean()))
    return GainEstimate(gain, read_noise, flat.shape[1], 0 if dark is None else dark.shape[1], int(live.sum()))


def check_flat_noise_options(flat: Any, weighting: str | None, flat_exposures: Any,
                             frames: int | None = None) -> int | None:
    """What modelling a flat field's own noise needs, checked before any work: ``weighting="gls"`` a
    measured flat (not None, not a number), ``flat_exposures`` a positive whole number and a flat of
    one frame (``frames``: the frames given, where known). Returns ``flat_exposures`` as an int (None
    when not given); ValueError naming the option otherwise."""
    measured = flat is not None and np.ndim(flat) != 0
    if weighting == "gls" and not measured:
        raise ValueError("weighting='gls' models a measured flat field's own noise: give the flat's frames (flat=, "
                         "--flat)" + (", not a number" if flat is not None else ""))
    if flat_exposures is None:
        return None
    whole = isinstance(flat_exposures, (int, float, np.integer, np.floating)) and not isinstance(
        flat_exposures, bool) and math.isfinite(flat_exposures) and int(flat_exposures) == flat_exposures
    if not whole or flat_exposures < 1:
        raise ValueError(f"flat_exposures (--flat-exposures) must be a positive whole number of exposures, got "
                         f"{flat_exposures!r}")
    if flat is None:
        raise ValueError("flat_exposures (--flat-exposures) counts the exposures a flat field averages: give the flat "
                         "(flat=, --flat)")
    if not measured or (frames or 1) > 1:
        raise ValueError("flat_exposures (--flat-exposures) counts the exposures a flat given as one frame averages; "
                         + ("a number is no measurement" if not measured else f"the {frames} frames given are counted"))
    return int(flat_exposures)


def flat_field_correction(raw: Any, flat: Any, dark: Any = None, gain: float | None = None,
                          electronic_noise_in_weights: bool = False, flat_exposures: int | None = None
                          ) -> TransmissionData:
    """Line integrals ``-log((raw - dark) / (flat - dark))`` of a raw transmission sinogram ``raw``
    (``n_detectors x n_angles`` detector readings) and their precisions.

    ``flat`` and ``dark``: a number, one value per detector bin, or several frames side by side
    (``n_detectors x k``, averaged); ``dark`` defaults to 0 (a photon-counting detector).
    ``gain``: detector units per photon; None: measured from the flat frames when there are two or
    more (:func:`estimate_gain`), else from the sinogram's noise (:func:`gain_from_sinogram_noise`).
    Precisions are the ``N`` photons above the dark (the inverse of each bin's Poisson variance
    ``1 / N`` by the delta method, valid where a bin keeps more than a few photons); with
    ``electronic_noise_in_weights``, ``N^2 / (N + e^2)``, the electronic noise ``e`` (in photons,
    from the dark frames' spread; 0 without two of them) included: the exact variance, but PnP
    reconstructions lost up to 0.95 dB with it (docs/benchmarks.md, "Raw readings").

    The flat's own noise is the same in every view of a bin (what draws rings): ``flat_variance``
    gives its variance per bin, ``(N0 + e^2) / (k N0^2)`` in line integrals for ``N0`` photons per
    exposure above the dark and ``k`` exposures averaged (``flat_exposures``, by default the frames
    given; give it for a flat averaged beforehand), for
    :class:`~pnp_stable.operators.RadonTomography`'s ``shared_variance``. None for a flat given as a
    number (a model, not a measurement). The dark's own noise, which enters every view differently
    and is small beside the flat's, is left out.

    A bin whose flat lies at or below ``DEAD_FLAT_SHARE`` of the median flat (above the dark) is a
    dead detector: its line integrals are interpolated from the nearest live bins of each view and
    its precision is made negligible (1e-9 of the mean). A bin with less than one photon above the
    dark is read as one photon. Readings whose median lies above ``READINGS_ABOVE_FLAT`` times the
    flat (above the dark) are refused: the sinogram and the flat are on different scales.
    """
    for name, value in (("flat", flat), ("dark", dark), ("gain", gain)):
        if isinstance(value, (bool, str)):
            raise ValueError(f"{name} must be {'a number' if name == 'gain' else 'a number or an array'} "
                             f"(detector units), got {value!r}")
    data = _as_array(raw, "the raw sinogram")
    if data.ndim != 2:
        raise ValueError(f"the raw sinogram must be n_detectors x n_angles, got shape {tuple(data.shape)}")
    n_bins = data.shape[0]
    flat_frames = _frames(flat, "flat", n_bins)
    flat_exposures = check_flat_noise_options(flat, None, flat_exposures, frames=flat_frames.shape[1])
    dark_frames = None if dark is None else _frames(dark, "dark", n_bins)
    dark_mean, dark_var = _dark_statistics(dark_frames, n_bins)
    read_noise_units = None if dark_var is None else math.sqrt(float(dark_var.mean()))  # electronic noise, units
    if gain is not None:
        if not (float(gain) > 0 and math.isfinite(float(gain))):  # (bools and strings refused above)
            raise ValueError(f"gain must be a positive number of detector units per photon, got {gain!r}")
        gain, source = float(gain), "given"
    elif flat_frames.shape[1] >= 2:
        gain, source = estimate_gain(flat_frames, dark_frames).gain, "flat frames"
    else:
        source = "sinogram noise"
    incident = flat_frames.mean(axis=1) - dark_mean
    median = float(np.median(incident))
    if not median > 0:
        raise ValueError("the flat field lies at or below the dark in most detector bins: check the flat and dark "
                         "fields (and that the flat is the exposure without the object)")
    dead = _dead_bins(incident)
    if int(dead.sum()) > n_bins // 2:
        raise ValueError(f"{int(dead.sum())} of {n_bins} detector bins have no flat signal above the dark")
    signal = data - dark_mean[:, None]
    if not (signal[~dead] > 0).any():
        raise ValueError("the raw sinogram holds no signal above the dark: check the data and the dark field")
    transmitted = float(np.median(signal[~dead] / incident[~dead, None]))
    if transmitted > READINGS_ABOVE_FLAT:
        raise ValueError(f"the readings lie {transmitted:.3g} times above the flat field (median): an object "
                         "transmits less than the flat, so the sinogram and the flat are on different scales (e.g. "
                         "a file scaled to [0, 1] beside a raw one): give both as the detector's readings")
    if gain is None:
        # the gain from the noise of line integrals floored at STARVED_FLOOR_SHARE of the flat (not
        # at one photon, whose size is what is measured)
        floored = np.maximum(signal, STARVED_FLOOR_SHARE * median)
        # a flat told to be few exposures brings its own noise into every ratio (reading as extra gain)
        told = flat_exposures is not None
        gain = gain_from_sinogram_noise(_log_ratio(floored, incident, dead), floored, dead, read_noise_units or 0.0,
                                        flat_signal=np.where(dead, median, incident) if told else None,
                                        flat_exposures=flat_exposures if told else None)
    floor = gain  # one photon: a reading at or below the dark is photon starvation, not a negative count
    starved = int((signal[~dead] < floor).sum())
    signal = np.maximum(signal, floor)
    # the Poisson precisions, the counts themselves by default: the electronic noise's share cost PnP
    # reconstructions up to 0.95 dB (docs/benchmarks.md, "Raw readings"), as weights that vary more
    # across the sinogram leave its low-count regions to the denoiser more
    photons = signal / gain
    read_noise = None if read_noise_units is None else read_noise_units / gain
    precision = photons ** 2 / (photons + (read_noise or 0.0) ** 2) if electronic_noise_in_weights else photons
    if dead.any():
        precision[dead] = 1e-9 * float(precision[~dead].mean())
    flat_variance, exposures = None, None
    if np.ndim(flat) != 0:  # (a number is a model of the flat, without noise of its own)
        exposures = int(flat_exposures or flat_frames.shape[1])
        flat_photons = np.where(dead, 1.0, incident / gain)
        flat_variance = (flat_photons + (read_noise or 0.0) ** 2) / (exposures * flat_photons**2)
        flat_variance = torch.from_numpy(np.where(dead, 0.0, flat_variance))
    return TransmissionData(torch.from_numpy(_log_ratio(signal, incident, dead)), torch.from_numpy(precision), gain,
                            source, read_noise, _given_frames(flat, flat_frames),
                            None if dark is None else _given_frames(dark, dark_frames),
                            tuple(int(i) for i in np.flatnonzero(dead)), starved, flat_variance, exposures)


def _given_frames(given: Any, frames: np.ndarray) -> int | None:
    """How many frames a flat or dark was given as: None for one number (the same in every bin)."""
    return None if np.ndim(given) == 0 else int(frames.shape[1])


def _three_adjacent_read(read: np.ndarray) -> bool:
    """Whether some view holds three adjacent read bins (a triplet the noise estimate can use)."""
    return bool((read[:-2] & read[1:-1] & read[2:]).any()) if read.shape[0] >= 3 else False


def _log_ratio(signal: np.ndarray, incident: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """``-log(signal / incident)`` per bin, the dead bins interpolated from the live ones of each view."""
    line_integrals = -np.log(signal / np.where(dead, 1.0, incident)[:, None])
    if dead.any():
        live_bins = np.flatnonzero(~dead)
        for view in range(line_integrals.shape[1]):
            line_integrals[dead, view] = np.interp(np.flatnonzero(dead), live_bins, line_integrals[live_bins, view])
    return line_integrals


def gain_from_sinogram_noise(line_integrals: np.ndarray, signal: np.ndarray, dead: np.ndarray | None = None,
                             read_noise: float = 0.0, flat_signal: np.ndarray | None = None,
                             flat_exposures: int | None = None) -> float:
    """A detector's gain (units per photon) read off a post-log sinogram's noise: ``line_integrals``
    (``n_detectors x n_angles``) of readings ``signal`` (positive) above the dark. Each bin's variance
    is ``(g signal + e^2) / signal^2`` (``signal / g`` Poisson photons and an electronic noise of
    ``read_noise = e`` units; the flat taken as exact, or with ``flat_signal``, its readings above the
    dark per bin, averaged over ``flat_exposures`` exposures, plus ``(g flat + e^2) / (k flat^2)``,
    the flat's own noise, which reads along the detectors as the views' does), so the noise whitened
    by the relative precisions (the inverse of those variances over ``g``) has level
    ``sqrt(g / their mean)``:
    :func:`~pnp_stable.solvers.noise_estimation.estimate_sinogram_noise_level` reads it (along the
    detectors, where a projection is smooth). Three rounds, each from the previous gain: the first
    weighs by the signals alone, the next by the precisions, leaving out the bins with fewer than
    ``GAIN_READING_MIN_PHOTONS`` photons (where the logarithm's variance is no longer ``1 / N``), as
    are the ``dead`` bins (a mask over the detectors). The precisions and the bins left out follow
    the signals averaged over 5 neighbouring bins of each view (a bin's own count, noisy, would leave
    out the bins whose noise fell low, and read low). Accuracy: within 7 % on average, 5 to 10 %
    standard deviation (docs/benchmarks.md, "Raw readings"). Without
    ``read_noise`` the electronic noise reads as extra gain (``e^2 / signal`` more variance).
    ValueError when the noise cannot be read."""
    from scipy.ndimage import uniform_filter1d
    from pnp_stable.solvers.noise_estimation import estimate_sinogram_noise_level

    signal = np.asarray(signal, dtype=np.float64)
    if not np.all(np.isfinite(signal)) or not np.all(signal > 0):
        raise ValueError("the signals above the dark must be finite and positive to read the gain off the noise")
    excluded = np.zeros(signal.shape, dtype=bool)
    if dead is not None:
        excluded[np.asarray(dead, dtype=bool)] = True
    # averaged over the live bins only (a dead bin's floored signal would pull its neighbours' down),
    # and kept positive (the running sums' rounding where e^-y spans many decades)
    live = (~excluded).astype(np.float64)
    averaged = (uniform_filter1d(signal * live, 5, axis=0, mode="nearest")
                / np.maximum(uniform_filter1d(live, 5, axis=0, mode="nearest"), 1e-12))
    signal = np.where(excluded, signal, np.maximum(averaged, 1e-300))
    data = torch.from_numpy(np.ascontiguousarray(line_integrals, dtype=np.float64))[None, None]
    flat = None if flat_signal is None else np.asarray(flat_signal, dtype=np.float64).reshape(-1, 1)
    if flat is not None and not (np.all(np.isfinite(flat)) and np.all(flat > 0)):
        raise ValueError("the flat's signals above the dark must be finite and positive to read the gain off the noise")
    gain = None
    for _ in range(3):
        electronic = 0.0 if gain is None else read_noise ** 2 / gain  # e^2 / g, in units
        variance = (signal + electronic) / signal ** 2  # over g
        if flat is not None:
            variance = variance + (flat + electronic) / (int(flat_exposures or 1) * flat ** 2)
        precision = 1.0 / variance
        left_out = excluded if gain is None else excluded | (signal < GAIN_READING_MIN_PHOTONS * gain)
        if left_out.all():
            raise ValueError("too few bins keep enough photons to read the detector's gain off the noise: give the "
                             "gain, or two or more flat frames")
        if not _three_adjacent_read(~left_out):
            raise ValueError("no three adjacent detector bins are read (dead or photon-starved ones between them): "
                             "the noise cannot be read along the detectors; give the gain, or two or more flat frames")
        relative = precision / float(precision[~left_out].mean())
        relative[left_out] = 1e-9  # below the estimator's 1e-6 of the mean: their triplets are left out
        level = estimate_sinogram_noise_level(data, torch.from_numpy(relative)[None, None])[0]
        gain = level ** 2 * float(precision[~left_out].mean())
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError("could not read the detector's gain off the sinogram's noise (it looks noise-free): give "
                             "the gain, or two or more flat frames")
    return gain


@dataclass(frozen=True)
class PhotonEstimate:
    """The incident photons per bin of a post-log sinogram, read off its noise (``photons``), and how
    the noise's growth with the attenuation compares with a photon count's: ``growth`` the ratio of
    the noise levels read in the most and in the least attenuating bins, ``expected_growth`` what
    Poisson counts give there (``sqrt`` of the ratio of their mean ``e^y``; 1: no growth), and the share
    of the values at the sinogram's minimum (clipped, e.g. negatives set to 0: the noise is cut there
    and the count read is unreliable, by up to twentyfold)."""

    photons: float
    growth: float
    expected_growth: float
    clipped_share: float = 0.0  # the share of the values at the sinogram's minimum (clipped data: >= 1 %)

    @property
    def poisson_like(self) -> bool:
        """Whether the noise grows with the attenuation at least ``POISSON_GROWTH_SHARE`` as much (in
        the logarithm) as photon counts' does. Gaussian noise of one level does not grow at all, but
        the object's structure, read as noise in its shadow, makes it seem to: Gaussian noise of std
        0.02 grew 1.3 to 1.8 times on the phantoms of docs/benchmarks.md, "Photon counts read off
        the sinogram" (counts: 4.3 to 9.7 for an expected 4.1 to 5.5), but noise weak against the
        structure (std 0.005 there) grows as much as counts' and passes. A necessary condition, not
        a proof."""
        if self.expected_growth <= 1.0:
            return True
        return math.log(max(self.growth, 1e-12)) >= POISSON_GROWTH_SHARE * math.log(self.expected_growth)


def photons_from_sinogram_noise(line_integrals: Any) -> PhotonEstimate:
    """The incident photons per detector bin ``I0`` of a post-log sinogram ``y = -log(I / I0)``
    (``n_detectors x n_angles``, line integrals: air at 0), read off its noise: each bin's variance
    is ``1 / (I0 e^-y)``, so this is :func:`gain_from_sinogram_noise` with the relative signals
    ``e^-y`` (a "gain" of ``1 / I0``). Also measures whether the noise does grow with the attenuation
    as counts' does (:class:`PhotonEstimate`), reading the plain level in the quarter of the bins of
    least and of most attenuation. Assumes the sinogram is unscaled line integrals (a sinogram
    divided by a pixel size reads as other counts) and one ``I0`` for every bin (no bow-tie filter:
    give raw readings with their flat field for that)."""
    from pnp_stable.solvers.noise_estimation import estimate_sinogram_noise_level

    values = _as_array(line_integrals, "the sinogram")
    if values.ndim != 2:
        raise ValueError(f"the sinogram must be n_detectors x n_angles, got shape {tuple(values.shape)}")
    if values.shape[0] < 8 or values.shape[1] < 8:
        raise ValueError(f"a {values.shape[0]} x {values.shape[1]} sinogram holds too few bins to read its photon "
                         "count off its noise (8 x 8 at least): give the count")
    if float(values.max()) > math.log(MAX_LINE_INTEGRAL_PHOTONS):
        raise ValueError(f"the sinogram reaches {float(values.max()):.4g}: line integrals -log(I / I0) of any count "
                         f"stay below {math.log(MAX_LINE_INTEGRAL_PHOTONS):.3g} (log of 1e15 photons); it is not "
                         "unscaled post-log data")
    # e^-y relative to the air's, and no more than 1: a value below 0 is the air's noise
    relative = np.exp(-np.clip(values, 0.0, None))
    try:
        photons = 1.0 / gain_from_sinogram_noise(values, relative)
    except ValueError:
        raise ValueError("could not read the sinogram's photon count off its noise (it looks noise-free, or too few "
                         "bins keep enough photons): give the count") from None
    data = torch.from_numpy(np.ascontiguousarray(values))[None, None]
    low, high = np.quantile(values, 0.25), np.quantile(values, 0.75)
    levels, means = [], []
    for part in (values <= low, values >= high):
        mask = np.where(part, 1.0, 1e-9)
        levels.append(estimate_sinogram_noise_level(data, torch.from_numpy(mask)[None, None])[0])
        means.append(float(np.exp(values[part]).mean()))
    growth = levels[1] / levels[0] if levels[0] > 0 else math.inf
    clipped = float((values == values.min()).mean())
    return PhotonEstimate(photons, growth, math.sqrt(means[1] / means[0]), clipped)

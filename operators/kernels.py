"""Blur kernels: synthetic families, files, and the command-line kernel spec.

Every function returns a 2-D ``numpy.float64`` array that has passed :func:`validate_kernel`:
finite, non-empty, non-negative (unless ``allow_negative=True``) and summing to 1 (a kernel that
did not is renormalised with a :class:`KernelNormalizationWarning`). Kernels are applied as true
convolutions (not correlations) with the centre at index ``(h // 2, w // 2)``, the convention of
``deepinv.physics.BlurFFT`` and of MATLAB's ``conv2``.

This module imports numpy only (h5py, scipy and Pillow are imported lazily inside
:func:`from_file`), so the command line can parse ``--kernel`` specs before torch is loaded.

Kernel specs (:func:`parse_kernel_spec`), names case-insensitive::

    gauss | gauss:SIGMA | gauss:SIGMA,SIZE     Gaussian (default sigma 1.6)
    box | box:SIZE   (alias uniform)           uniform SIZE x SIZE (default 9)
    disk:RADIUS      (alias defocus)           pillbox, exact-area anti-aliased edge
    motion:LENGTH,ANGLE                        linear motion, ANGLE in degrees, counter-clockwise
    motion-random:SEED | motion-random:SEED,SIZE   random camera shake (default size 25)
    PATH | PATH#INDEX                          a file (see :func:`from_file`); INDEX is 0-based
    PATH:VARIABLE | PATH:VARIABLE#INDEX        the named variable of a MATLAB .mat file

A spec that names an existing file is always read as a path, so a file whose name contains ``#``
or ``:`` is still found.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from pnp_stable.operators.kernel_files import read_kernel_array

__all__ = [
    "KernelNormalizationWarning",
    "validate_kernel",
    "gaussian",
    "box",
    "disk",
    "motion",
    "motion_random",
    "from_file",
    "kernel_spec_file",
    "parse_kernel_spec",
    "KERNEL_SPEC_HELP",
]

KERNEL_SPEC_HELP = (
    "gauss[:SIGMA[,SIZE]] | box[:SIZE] | disk:RADIUS | motion:LENGTH,ANGLE | "
    "motion-random:SEED[,SIZE] | PATH[#INDEX] | FILE.mat:VARIABLE[#INDEX]"
)

# Larger kernels than this are almost certainly a unit mistake (e.g. sigma in pixels^2).
_MAX_KERNEL_SIZE = 1025
_SUM_TOLERANCE = 1e-6


class KernelNormalizationWarning(UserWarning):
    """A kernel did not sum to 1 and was renormalised."""


def validate_kernel(
    kernel: np.ndarray,
    allow_negative: bool = False,
    normalize: bool = True,
    name: str = "kernel",
    stacklevel: int = 2,
) -> np.ndarray:
    """Check a blur kernel and return it as a C-contiguous float64 copy.

    Guarantee: the result is 2-D, finite, non-empty, non-negative unless ``allow_negative``, and,
    when ``normalize`` is true, sums to 1 (to float64 rounding). A kernel whose sum differs from 1
    by more than 1e-6 (relative) is divided by its sum and a :class:`KernelNormalizationWarning`
    (a ``UserWarning``) names the original sum. Raises ``ValueError`` naming the violated
    condition (both, for negative entries and a sum that is not positive).

    A blur kernel must be non-negative, and the error says so without naming ``allow_negative``,
    which the command line does not have: signed kernels (e.g. bicubic downsampling kernels) are
    for the Python API only, with ``allow_negative=True`` here or in :func:`from_file`.
    """
    try:
        k = np.array(kernel, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not a numeric array: {exc}") from None
    if k.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{name} is empty (shape {k.shape})")
    if max(k.shape) > _MAX_KERNEL_SIZE:
        raise ValueError(f"{name} is {k.shape[0]}x{k.shape[1]}, larger than {_MAX_KERNEL_SIZE} pixels")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains NaN or infinite values")
    negative = not allow_negative and bool(np.any(k < 0))
    total = float(k.sum())
    bad_sum = normalize and not total > 0
    if negative and bad_sum:
        raise ValueError(
            f"{name} sums to {total:.3g} and has negative entries (min {k.min():.3g}); "
            "a blur kernel must be non-negative with a positive sum"
        )
    if bad_sum:
        raise ValueError(f"{name} sums to {total:.3g}; a blur kernel must have a positive sum")
    if negative:
        raise ValueError(f"{name} has negative entries (min {k.min():.3g}); a blur kernel must be non-negative")
    if normalize:
        if abs(total - 1.0) > _SUM_TOLERANCE:
            warnings.warn(
                f"{name} summed to {total:.6g}; renormalised to sum 1",
                KernelNormalizationWarning,
                stacklevel=stacklevel,
            )
        k /= total
    return np.ascontiguousarray(k)


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, got {value}")
    return value


def _size(value: int, what: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    value = int(value)
    if value > _MAX_KERNEL_SIZE:
        raise ValueError(f"{what} = {value} exceeds the maximum kernel size {_MAX_KERNEL_SIZE}")
    return value


def gaussian(sigma: float, size: int | None = None) -> np.ndarray:
    """Isotropic Gaussian ``exp(-r^2 / (2 sigma^2))`` on a ``size x size`` grid, summing to 1.

    ``size`` defaults to ``2 ceil(4 sigma) + 1`` (the truncated tail holds < 1e-4 of the mass). The
    centre is at ``(size - 1) / 2``, so odd sizes are symmetric about the kernel's centre pixel.
    """
    sigma = _positive(sigma, "gaussian sigma")
    if size is None and 4 * sigma > _MAX_KERNEL_SIZE:  # before the size: it would print a 300-digit number
        raise ValueError(f"gaussian sigma {sigma:g} is too large: its kernel would exceed {_MAX_KERNEL_SIZE} pixels")
    size = 2 * math.ceil(4 * sigma) + 1 if size is None else _size(size, "gaussian size")
    if size > _MAX_KERNEL_SIZE:
        raise ValueError(f"gaussian sigma {sigma} needs a {size}x{size} kernel, too large")
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    k = np.outer(g, g)
    return validate_kernel(k / k.sum(), name="gaussian kernel")


def box(size: int) -> np.ndarray:
    """Uniform ``size x size`` kernel (each entry ``1 / size^2``)."""
    size = _size(size, "box size")
    return np.full((size, size), 1.0 / size**2)


def _pixel_coverage(inside, half: int, supersample: int) -> np.ndarray:
    """Fraction of each pixel of a ``(2 half + 1)^2`` grid covered by ``inside(x, y)``."""
    n = 2 * half + 1
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = np.arange(n, dtype=np.float64) - half
    xs = (centres[:, None] + offsets[None, :]).reshape(-1)
    grid_y, grid_x = np.meshgrid(xs, xs, indexing="ij")
    covered = inside(grid_x, grid_y).astype(np.float64)
    return covered.reshape(n, supersample, n, supersample).mean(axis=(1, 3))


def disk(radius: float) -> np.ndarray:
    """Defocus (pillbox) kernel: the disk of ``radius`` pixels, each pixel weighted by the area
    of the disk inside it (estimated on a 16x16 sub-pixel grid), normalised to sum 1.

    Size ``2 ceil(radius) + 1``; a radius below 0.5 gives the identity (a single pixel).
    """
    radius = _positive(radius, "disk radius")
    half = math.ceil(radius - 1e-9)
    if 2 * half + 1 > _MAX_KERNEL_SIZE:
        raise ValueError(f"disk radius {radius} is too large")
    k = _pixel_coverage(lambda x, y: x**2 + y**2 <= radius**2, half, 16)
    if k.sum() == 0:  # radius so small that no sub-pixel sample falls inside
        k[half, half] = 1.0
    return validate_kernel(k / k.sum(), name="disk kernel")


def _splat(points: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splat of points ``(n, 2)`` given as (x, y) offsets from the centre of a
    ``size x size`` grid; each point's unit mass is split over its 4 neighbours."""
    k = np.zeros((size, size))
    centre = (size - 1) / 2.0
    cols = points[:, 0] + centre
    rows = centre - points[:, 1]  # y points up, rows go down
    c0, r0 = np.floor(cols).astype(int), np.floor(rows).astype(int)
    fc, fr = cols - c0, rows - r0
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r, c = r0 + dr, c0 + dc
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        np.add.at(k, (r[ok], c[ok]), (weights * w)[ok])
    return k


def motion(length: float, angle: float) -> np.ndarray:
    """Linear motion blur: a segment of ``length`` pixels through the centre at ``angle`` degrees
    (counter-clockwise from the horizontal), anti-aliased by bilinear splatting of dense samples.

    The kernel is the smallest odd square holding the segment; ``length <= 1`` gives the identity.
    """
    length = _positive(length, "motion length")
    angle = float(angle)
    if not math.isfinite(angle):
        raise ValueError(f"motion angle must be finite, got {angle}")
    if length > _MAX_KERNEL_SIZE - 2:
        raise ValueError(f"motion length {length} is too large")
    theta = math.radians(angle)
    direction = np.array([math.cos(theta), math.sin(theta)])
    half_extent = (length - 1) / 2.0 * np.abs(direction)
    size = 2 * math.ceil(float(half_extent.max()) - 1e-9) + 1
    n_samples = max(2, int(math.ceil(8 * length)))
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, n_samples)
    points = t[:, None] * direction[None, :]
    k = _splat(points, np.full(n_samples, 1.0 / n_samples), size)
    return validate_kernel(k / k.sum(), name="motion kernel")


def motion_random(size: int = 25, seed: int = 0) -> np.ndarray:
    """Random camera-shake kernel on a ``size x size`` grid, deterministic given ``seed``.

    The path is a planar random walk whose velocity has inertia (a smoothed Gaussian
    acceleration), so it looks like hand shake rather than Brownian noise; it is centred on its
    centre of mass, scaled to fill 60-90% of the grid and splatted bilinearly. Returned kernels are
    non-negative, sum to 1, and differ for different seeds.
    """
    size = _size(size, "motion-random size")
    if size < 3:
        raise ValueError(f"motion-random size must be at least 3, got {size}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"motion-random seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    n_steps = 64 * size
    velocity = np.zeros(2)
    heading = rng.uniform(0, 2 * np.pi)
    velocity[:] = np.cos(heading), np.sin(heading)
    path = np.zeros((n_steps, 2))
    inertia = 0.995
    for i in range(1, n_steps):
        velocity = inertia * velocity + (1 - inertia) * rng.normal(size=2) * 4.0
        path[i] = path[i - 1] + velocity
    path -= path.mean(axis=0)
    extent = np.abs(path).max()
    fill = rng.uniform(0.6, 0.9)
    if extent > 0:
        path *= fill * (size - 1) / 2.0 / extent
    # dwell time is inversely proportional to speed: slower parts of the path expose longer
    speed = np.linalg.norm(np.diff(path, axis=0, prepend=path[:1]), axis=1)
    weights = 1.0 / np.maximum(speed, 1e-3 * max(speed.max(), 1e-12))
    k = _splat(path, weights / weights.sum(), size)
    return validate_kernel(k / k.sum(), name="motion-random kernel")


def from_file(
    path: str | os.PathLike,
    index: int | None = None,
    variable: str | None = None,
    allow_negative: bool = False,
) -> np.ndarray:
    """Read a kernel from ``.npy``, an image (``.png``, ``.tif``, ...), or MATLAB ``.mat``.

    ``.mat`` files of every version are read, v7.3 (HDF5, e.g. the Levin09 set) through h5py with
    the MATLAB orientation restored. A file holding several kernels (a MATLAB cell array, a
    ``(n, h, w)`` ``.npy`` stack or a MATLAB ``(h, w, n)`` stack) needs ``index`` (0-based:
    ``from_file("Levin09.mat", index=0)`` is the first Levin kernel). ``variable`` picks the
    MATLAB variable of a ``.mat`` file (default: ``kernels``, ``kernel``, ``k``, ``K``, or the
    file's only variable; the kernel spec ``FILE.mat:VARIABLE[#INDEX]``); it is an error for other
    files. Images must be grayscale. The result is validated and normalised by
    :func:`validate_kernel`; ``allow_negative=True`` accepts a signed kernel (e.g. a bicubic
    downsampling kernel), which a blur kernel otherwise may not be.
    """
    path = Path(path)
    if index is not None and (isinstance(index, bool) or int(index) != index):
        raise ValueError(f"kernel index must be an integer, got {index!r}")
    raw = read_kernel_array(path, None if index is None else int(index), variable)
    return validate_kernel(raw, allow_negative=allow_negative, name=f"kernel from {path.name}", stacklevel=3)


def _numbers(args: str, spec: str, count_min: int, count_max: int) -> list[float]:
    parts = [p.strip() for p in args.split(",")] if args else []
    if not count_min <= len(parts) <= count_max:
        expected = str(count_min) if count_min == count_max else f"{count_min} to {count_max}"
        raise ValueError(f"kernel spec {spec!r}: expected {expected} comma-separated numbers, got {len(parts)}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"kernel spec {spec!r}: {args!r} is not a comma-separated list of numbers") from None


def _integer(value: float, spec: str, what: str) -> int:
    # int() of inf raises OverflowError and of NaN ValueError with Python's wording, and 1e300 would
    # build a 300-digit size: refuse them here, naming the spec and the parameter
    if not math.isfinite(value) or abs(value) > 2**62:
        raise ValueError(f"kernel spec {spec!r}: {what} must be a finite integer, got {value:g}")
    if value != int(value):
        raise ValueError(f"kernel spec {spec!r}: {what} must be an integer, got {value}")
    return int(value)


_NAMES = ("gauss", "gaussian", "box", "uniform", "disk", "defocus", "motion", "motion-random", "motion_random")


def parse_kernel_spec(spec: str) -> np.ndarray:
    """Build a kernel from a command-line spec (grammar in the module docstring).

    Raises ``ValueError`` with a one-line message for an empty spec, an unknown name, a wrong
    number or type of parameters, out-of-range values, a missing or unreadable file, a bad
    ``#INDEX`` and a missing or misplaced ``:VARIABLE``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"kernel spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ValueError(f"empty kernel spec; expected {KERNEL_SPEC_HELP}")
    name, sep, args = text.partition(":")
    key = name.strip().lower()
    if key in _NAMES:
        args = args.strip()
        if sep and not args:
            raise ValueError(f"kernel spec {spec!r}: missing parameters after ':'")
        if key in ("gauss", "gaussian"):
            values = _numbers(args, spec, 0, 2)
            sigma = values[0] if values else 1.6
            size = _integer(values[1], spec, "size") if len(values) > 1 else None
            return gaussian(sigma, size)
        if key in ("box", "uniform"):
            values = _numbers(args, spec, 0, 1)
            return box(_integer(values[0], spec, "size") if values else 9)
        if key in ("disk", "defocus"):
            return disk(_numbers(args, spec, 1, 1)[0])
        if key == "motion":
            length, angle = _numbers(args, spec, 2, 2)
            return motion(length, angle)
        values = _numbers(args, spec, 1, 2)
        seed = _integer(values[0], spec, "seed")
        size = _integer(values[1], spec, "size") if len(values) > 1 else 25
        return motion_random(size=size, seed=seed)
    return _kernel_from_path_spec(text, spec)


def kernel_spec_file(spec: str) -> Path | None:
    """The file a kernel spec reads (``PATH[:VARIABLE][#INDEX]``, split as :func:`parse_kernel_spec`
    splits it), or None for a named kernel and a spec that names no existing file. Callers protect
    it as an input (an output must never replace it)."""
    text = spec.strip() if isinstance(spec, str) else ""
    if not text or text.partition(":")[0].strip().lower() in _NAMES:
        return None
    path = Path(text).expanduser()
    if not path.exists() and "#" in text:
        path = Path(text.rpartition("#")[0]).expanduser()
    if not path.exists() and ":" in str(path):
        path = Path(str(path).rpartition(":")[0])
    return path if path.is_file() else None


def _kernel_from_path_spec(text: str, spec: str) -> np.ndarray:
    """``PATH[:VARIABLE][#INDEX]``; ``#INDEX`` and then ``:VARIABLE`` are split off only while
    what is left does not name an existing file."""
    index = None
    variable = None
    path = Path(text).expanduser()
    if not path.exists() and "#" in text:
        path_text, _, index_text = text.rpartition("#")
        path = Path(path_text).expanduser()
        if not index_text.strip():
            raise ValueError(f"kernel spec {spec!r}: missing index after '#'")
        try:
            index = int(index_text)
        except ValueError:
            raise ValueError(f"kernel spec {spec!r}: index {index_text!r} after '#' is not an integer") from None
    if not path.exists() and ":" in str(path):
        path_text, _, variable_text = str(path).rpartition(":")
        variable = variable_text.strip()
        if not variable:
            raise ValueError(f"kernel spec {spec!r}: missing MATLAB variable name after ':'")
        path = Path(path_text)
        if path.is_file() and path.suffix.lower() != ".mat":
            raise ValueError(f"kernel spec {spec!r}: ':{variable}' names a MATLAB variable, but {path} is not a .mat file")
    if not path.exists():
        known = ", ".join(n for n in _NAMES if "_" not in n)
        raise ValueError(f"kernel spec {spec!r} is neither a kernel name ({known}) nor an existing file")
    if not path.is_file():
        raise ValueError(f"kernel spec {spec!r}: {path} is not a file")
    return from_file(path, index=index, variable=variable)

"""Parallel-beam CT on top of ``deepinv.physics.Tomography`` (its geometry and sampling grids).

``A`` is deepinv's Radon transform (zero padding of the image to its diagonal, bilinear
``grid_sample`` along each ray, sums) on deepinv's grids, its rotation axis moved to the image centre
(:func:`_centre_rotation_axis`), unnormalised by default, so values are line integrals in pixel
units and ``||A||`` grows like ``sqrt(n_angles * n)``. ``A_adjoint`` is its exact transpose (the
sampling's own, what deepinv's autograd adjoint computes). Both run a chunk of views at a time
(:func:`_project`, :func:`_project_transposed`), equal to deepinv's bit for bit with one chunk, to
rounding with several, without holding every view's samples at once. ``fbp`` is this module's own.

Norm: every step above has non-negative weights (bilinear interpolation weights, zero padding,
a 0/1 disc mask), so the matrix of ``A`` is entrywise non-negative and the Collatz–Wielandt
iteration gives a *certified* upper bound that converges to ``||A||`` from above, with the
Rayleigh quotient as a lower bound (see :mod:`pnp_stable.operators.norm_bounds`). It typically
converges to a 1e-6 gap in about 10 products with ``A^T A`` (unlike deepinv's power-method
estimate, which only bounds the norm from below). The result is cached on disk per geometry.

Memory: one sampling grid per angle, built a few at a time (:func:`_sampling_grids`): about
``8 * ceil(sqrt(2) n)^2 * n_angles`` bytes per dtype in use (190 MB for 256x256 and 180 angles in
float32); deepinv's own back-projector, as large, is not kept.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable, Literal

import numpy as np
import torch
from torch import nn

from pnp_stable.operators.base import CertifiedLinearPhysics, NormBound, _check_kwargs
from pnp_stable.operators.cache import load_entry, norm_bounds_of, store_entry
from pnp_stable.operators.fbp import back_project, extend_to_reach, ram_lak, view_shares
from pnp_stable.operators.norm_bounds import collatz_wielandt_norm_bound, progress_bar

__all__ = ["ParallelBeamCT", "RadonTomography", "deepinv_axis_offset", "image_size_for_bins", "sinogram_from_skimage"]

Detector = Literal["full", "circle"]
_NORM_CACHE_NAMESPACE = "ct-norms"
_NORM_METHOD = "collatz-wielandt-float64-v2"  # v2: the rotation axis at the image centre


def _dtype_key(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# statistical weights whose square roots stay well inside float32's normal range
STATISTICAL_WEIGHT_RANGE = (1e-30, 1e30)

# projection directions closer than this are one direction for parameter_density: far below any
# scanner's angular step (0.18 degrees for 1000 views over 180), far above float32 rounding of angles
DIRECTION_TOLERANCE_DEG = 0.01


def _angles_in_degrees(angles: int | Iterable[float], turn: float = 180.0) -> np.ndarray:
    """A count (uniform over ``[0, turn)`` degrees: 180 for a parallel beam, 360 for a fan's full
    scan) or the angles in degrees, as a float64 array."""
    if isinstance(angles, bool):
        raise ValueError(f"angles must be a count or a sequence of angles in degrees, got {angles!r}")
    if isinstance(angles, (int, np.integer)):
        if angles < 1:
            raise ValueError(f"the number of angles must be positive, got {angles}")
        return np.arange(int(angles), dtype=np.float64) * (turn / int(angles))
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().numpy()
    try:
        values = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("angles must be a count or a sequence of angles in degrees") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"angles must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("angles contain NaN or infinite values")
    return values


def _float64_array(values: Any, message: str) -> np.ndarray:
    """``values`` (an array, a tensor on any device, a list) as a float64 numpy array; ValueError
    ``message`` when they are not numbers."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None


def _image_size(image_size: int | tuple[int, ...]) -> int:
    if isinstance(image_size, (tuple, list)):
        dims = tuple(image_size)
        if len(dims) == 3:
            dims = dims[1:]
        if len(dims) != 2 or dims[0] != dims[1]:
            raise ValueError(f"CT needs a square image, got image_size={image_size!r}")
        image_size = dims[0]
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 2:
        raise ValueError(f"image_size must be an integer >= 2, got {image_size!r}")
    return int(image_size)


# sampling points built at a time by _sampling_grids (64 MB of float64 coordinates)
GRID_POINTS_PER_CHUNK = 2 ** 22


def _sampling_grids(radon: nn.Module, angles: torch.Tensor, n: int, circle: bool) -> torch.Tensor:
    """deepinv's sampling grids for ``angles`` (``Radon._create_grids``, one per view, laid side by side
    as its parallel computation reads them: ``1 x H x (views W) x 2`` for views of ``H x W`` samples), built
    a few views at a time into the one tensor they end in. ``radon`` was built for one view, whose grid
    gives the shape. The same values as deepinv's construction, which first holds every view's grid in a
    list, then their stack, then their concatenation (and its unused back-projector another set): 4 GB
    for a 0.76 GB float64 grid at 256² and 360 views."""
    _, height, width, _ = radon.all_grids.shape
    grids = radon.all_grids.new_empty((1, height, len(angles) * width, 2))
    by_view = grids.view(1, height, len(angles), width, 2)
    step = max(1, GRID_POINTS_PER_CHUNK // (height * width))
    for start in range(0, len(angles), step):
        chunk = radon._create_grids(angles[start:start + step], n, circle, device=angles.device)  # views x 1 x H x W x 2
        by_view[0, :, start:start + len(chunk)] = chunk[:, 0].transpose(0, 1)
    return grids


def _padded_input(radon: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``x`` as deepinv's ``Radon.forward`` samples it: zero-padded to its square's diagonal
    (``circle=False``) or restricted to the inscribed disc (``circle=True``); and the padding before it."""
    from deepinv.physics.functional.radon import SQRT2

    n = x.shape[-1]
    if radon.circle:
        axis = 2 * torch.arange(n, dtype=torch.float, device=x.device)[None, :].expand(n, -1)[None, None] / (n - 1) - 1.0
        return x * (axis ** 2 + axis.transpose(-2, -1) ** 2 <= 1).to(torch.float), 0
    pad = int((SQRT2 * n - n).ceil())
    before = (n + pad) // 2 - n // 2
    return torch.nn.functional.pad(x, (before, pad - before, before, pad - before)), before


def _view_chunks(radon: nn.Module, samples: int):
    """The views a few at a time, as ``(start, count, grid)``: ``grid`` their sampling grids, side by side as
    in ``radon.all_grids`` (``1 x H x (count W) x 2``), the chunk sized to about ``GRID_POINTS_PER_CHUNK``
    samples for ``samples`` images."""
    views = len(radon.theta)
    _, height, total_width, _ = radon.all_grids.shape
    width = total_width // views
    step = max(1, GRID_POINTS_PER_CHUNK // max(1, samples * height * width))
    for start in range(0, views, step):
        count = min(step, views - start)
        yield start, count, radon.all_grids[:, :, start * width:(start + count) * width]


def _project(radon: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """deepinv's ``Radon.forward(x)`` (``parallel_computation=True``), ``B x C x cells x views``, computed a
    few views at a time: the same samples and sums without its ``B x C x H x (views W)`` tensor of every
    view's samples (0.38 GB in float64 for one 256² image of 360 views)."""
    padded, _ = _padded_input(radon, x)
    batch, channels = x.shape[:2]
    parts = []
    for _, count, grid in _view_chunks(radon, batch * channels):
        samples = torch.nn.functional.grid_sample(padded, grid.expand(batch, -1, -1, -1), mode="bilinear",
                                                  padding_mode="zeros", align_corners=True)
        parts.append(samples.sum(2).reshape(batch, channels, count, -1))
    return torch.cat(parts, 2).transpose(-2, -1)


def _project_transposed(radon: nn.Module, y: torch.Tensor, n: int) -> torch.Tensor:
    """The exact transpose of :func:`_project` for ``n x n`` images: each chunk of views' sums spread back
    along their rays (the bilinear samples' own transpose, ``grid_sampler_2d_backward``), summed, then
    the padding cropped (or the disc's mask applied). What autograd computes through ``_project``,
    without its saved samples."""
    batch, channels = y.shape[:2]
    padded, before = _padded_input(radon, y.new_zeros((batch, channels, n, n)))
    total = torch.zeros_like(padded)
    for start, count, grid in _view_chunks(radon, batch * channels):
        spread = y[..., start:start + count].transpose(-2, -1).reshape(batch, channels, 1, -1)
        total += torch.ops.aten.grid_sampler_2d_backward(
            spread.expand(-1, -1, grid.shape[1], -1).contiguous(), padded, grid.expand(batch, -1, -1, -1), 0, 0,
            True, [True, False])[0]
    if radon.circle:
        return _padded_input(radon, total)[0]  # the mask is its own transpose
    return total[..., before:before + n, before:before + n]


class _Projection(torch.autograd.Function):
    """:func:`_project` with :func:`_project_transposed` as its derivative (and the other way round): the
    operator stays differentiable, as deepinv's is, without autograd keeping any samples; torch.func's
    ``vjp``, ``vmap`` and ``jacrev`` apply (the vmap rule generated: a loop over the mapped images)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, radon, transposed, n):  # noqa: D102 - autograd API
        return _project_transposed(radon, x, n) if transposed else _project(radon, x)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102 - autograd API (torch.func's transforms need it)
        _, ctx.radon, ctx.transposed, ctx.n = inputs

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - autograd API
        back = _Projection.apply(grad, ctx.radon, not ctx.transposed, ctx.n)
        return back, None, None, None


def _centre_rotation_axis(radon: nn.Module, n: int) -> None:
    """Move the rotation axis of deepinv's ``Radon`` (``circle=False``) to the image's centre.

    deepinv pads the ``n x n`` image to ``G x G`` (``G = ceil(sqrt(2) n)``) with ``G//2 - n//2``
    pixels before it and rotates about the padded square's centre, which is the image's centre
    ``(n - 1) / 2`` when ``G - n`` is even and half a pixel beyond it in both axes when it is odd
    (``n = 64, 256``). Scanners and the CT toolboxes (ASTRA, TIGRE, ODL) rotate about the image's
    centre; a sinogram of theirs read about an axis half a pixel off is inconsistent with itself
    from view to view (6 dB lost on a 256 x 256 phantom). The sampling grids (corner-aligned,
    ``G - 1`` pixels from -1 to 1) are shifted in place by the difference, in both axes, which
    moves every ray with the axis; the grids' padding is zeros, so a sample shifted off them reads
    the zeros the padding held."""
    grids = radon.all_grids
    padded = int(grids.shape[1])  # each ray's samples span the padded side
    offset = deepinv_axis_offset(n, padded)
    if offset:
        grids.add_(2.0 * offset / (padded - 1))


def deepinv_axis_offset(n: int, padded: int | None = None) -> float:
    """Pixels (0 or +-1/2, in both axes) from deepinv's rotation axis for an ``n x n`` image padded
    to ``padded`` (default ``ceil(sqrt(2) n)``) to the image centre: nonzero when ``padded - n`` is
    odd, the sizes whose geometry moved on 2026-12-06."""
    padded = detector_count(n, "full") if padded is None else padded
    return (n - 1) / 2.0 - ((padded - 1) / 2.0 - (padded // 2 - n // 2))


def check_detector_offset(offset: object) -> float:
    """``offset`` (cells or bins along the detector) as a float; a ValueError unless it is a finite number."""
    try:
        value = float(offset)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(offset, bool) or not math.isfinite(value):
        raise ValueError(f"detector_offset must be a finite number of cells, got {offset!r}")
    return value


def detector_count(n: int, detector: str = "full") -> int:
    """Detector bins of :class:`ParallelBeamCT` for an ``n x n`` image: ``n`` for ``"circle"``, else
    ``ceil(sqrt(2) n)`` (the image's diagonal). Cheap, unlike building the operator, whose rotation
    grids for a large ``n`` take gigabytes: callers check a sinogram's size with it first."""
    return n if detector == "circle" else int(math.ceil(math.sqrt(2) * n))


class RadonTomography(CertifiedLinearPhysics):
    """What parallel- and fan-beam CT share on top of ``deepinv.physics.Tomography``: one backend
    per dtype and device, shape checks, ``A`` and its exact transpose (with optional non-negative
    per-bin weights, ``_bin_weight_array``, and statistical weights), the certified Collatz-Wielandt
    norm bound cached per geometry, ``normalize`` and the CG preconditioner of the data prox.

    ``statistical_weights`` (positive, ``n_detectors x n_angles``): the operator becomes
    ``W^(1/2) A``, so that least squares on its data ``W^(1/2) y`` is the weighted least squares
    ``||A x - y||_W^2`` of a sinogram whose values have variances proportional to ``1 / W`` (for
    post-log CT data, ``W`` the detected photon counts): the weighted noise is white. The matrix
    stays non-negative, so the norm bound is certified as before (and cached per weights);
    :meth:`statistical_weighting` turns a sinogram into such data, and ``fbp`` takes the weighted
    data and undoes the weights first.

    ``shared_variance`` (in the units of ``1 / W``): an error ``e`` (one value per detector bin) that
    every view of a bin shares, e.g. a measured flat field's own noise (what draws rings), of
    covariance ``S``: one variance per bin (``S`` diagonal) or a ``bins x bins`` covariance. The
    sinogram's covariance is then ``W^-1 + S (x) 1 1^T``, and the operator becomes ``T W^(1/2) A`` with
    ``T = I + U (L^-1 - I) U^T`` (``U`` puts a value per bin along that bin's unit root-weight vector
    over the views, ``L`` the Cholesky factor of ``I + D S D``, ``D`` the root weights' norms per bin),
    which whitens it exactly: least squares on its data is generalized least squares (with one
    variance ``v`` per bin, each bin's component along its root weights, a weighted mean over the
    views, weighs ``1 / (1 + sum(W) v)`` of its measure). ``||T|| <= 1``, so the certified bound of the
    non-negative ``W^(1/2) A`` bounds the operator (no longer from below). ``with_statistical_weights``
    builds a new operator: the shared variance is what it is given (None: none).

    Subclasses set ``image_size``, ``angles_deg`` and ``n_detectors`` and their geometry before
    calling :meth:`_start`, and implement ``_make_tomography`` (with :meth:`_deepinv_tomography`),
    ``geometry_fields`` (their part of :meth:`geometry`), ``fbp``, ``object_support`` and
    ``parameter_density``.
    """

    # the automatic PnP parameters use a denoiser's CT calibration when it carries one
    parameter_family = "ct"
    image_size: int
    angles_deg: np.ndarray
    n_detectors: int

    def _start(self, normalize: bool, device: torch.device | str,
               statistical_weights: np.ndarray | torch.Tensor | None = None,
               shared_variance: np.ndarray | torch.Tensor | None = None) -> None:
        self._root_weights = self._check_statistical_weights(statistical_weights)
        self._shared_variance, self._shared_whitening = self._check_shared_variance(shared_variance)
        self._shared_cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        # what multiplies the backend's sinogram in A and A^T: the bins' geometric weights times the
        # roots of the statistical ones, combined once (float64) and cached per dtype and device
        geometric = self._bin_weight_array()
        root = self._root_weights
        self._measurement_array = (root if geometric is None else geometric * (1.0 if root is None else root))
        self._measurement_cache: dict[tuple[str, str], torch.Tensor] = {}
        self.normalize = bool(normalize)
        self._device = torch.device(device)
        self._radon = nn.ModuleDict()
        self._radon[_dtype_key(torch.float32)] = self._make_tomography(torch.float32, self._device)
        self._scale = 1.0
        # the spectrum behind the CG preconditioner (see _normal_transfer), computed on first use
        self._normal_transfer_cache: torch.Tensor | None = None
        if self.normalize:
            self._scale = self._raw_norm_bound().value

    def _make_tomography(self, dtype: torch.dtype, device: torch.device) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _deepinv_tomography(self, angles_deg: np.ndarray, dtype: torch.dtype, device: torch.device,
                            rays: Callable[[torch.Tensor], torch.Tensor] | None = None,
                            **geometry: Any) -> nn.Module:
        """deepinv's ``Tomography`` over ``angles_deg``, unnormalised, for its geometry and sampling grids
        (:meth:`_raw_A` and :meth:`_raw_A_adjoint` apply them chunk by chunk); ``geometry`` holds what differs between beams (``circle``, ``fan_beam`` ...).
        ``rays``, if given, replaces deepinv's sampling grids (it receives them and returns grids
        of the same shape), before the rotation axis is moved to the image centre."""
        from deepinv.physics import Tomography

        angles = torch.tensor(angles_deg, dtype=dtype, device=device)
        with warnings.catch_warnings():
            # deepinv warns about the implicit backward solver's iteration count; we never use it
            warnings.simplefilter("ignore", UserWarning)
            # built for one view, then given every view's grid (_sampling_grids): deepinv's own construction
            # holds the grids three to four times over while it builds them
            tomography = Tomography(angles=angles[:1], img_width=self.image_size, parallel_computation=True,
                                    adjoint_via_backprop=True, normalize=False, device=device, dtype=dtype, **geometry)
        if getattr(tomography, "iradon", None) is not None:
            # deepinv's filtered back-projection, with sampling grids as large as the projector's: never
            # used (our transpose is the projector's own, our FBP our own), so not kept
            tomography.iradon = None
        tomography.angles = angles
        tomography.radon.theta = angles
        tomography.radon.all_grids = _sampling_grids(tomography.radon, angles, self.image_size,
                                                     geometry.get("circle", False))
        if rays is not None:
            tomography.radon.all_grids = rays(tomography.radon.all_grids)
        if not geometry.get("circle", False):
            _centre_rotation_axis(tomography.radon, self.image_size)
        return tomography

    def geometry(self) -> dict[str, Any]:
        """A JSON-able description of the geometry (the norm cache key)."""
        import deepinv

        description = {"operator": type(self).__name__, "image_size": self.image_size,
                       "angles_deg": [float(a) for a in self.angles_deg], **self.geometry_fields(),
                       "deepinv": deepinv.__version__, "method": self._norm_method}
        if self._root_weights is not None:
            import hashlib

            description["statistical_weights_sha256"] = hashlib.sha256(
                np.ascontiguousarray(self._root_weights).tobytes()).hexdigest()
        return description

    @property
    def shared_variance_digest(self) -> str | None:
        """The sha256 of the shared error's covariance (None without one): what a checkpoint's fingerprint
        adds to :meth:`geometry`, which keys the norm cache (the bound of ``W^(1/2) A`` ignores it)."""
        if self._shared_variance is None:
            return None
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self._shared_variance).tobytes()).hexdigest()

    _norm_method = _NORM_METHOD

    def geometry_fields(self) -> dict[str, Any]:  # pragma: no cover
        """What sets this beam's rays apart beyond its size and angles (its part of :meth:`geometry`,
        the norm cache key, and of a checkpoint's fingerprint)."""
        raise NotImplementedError

    def _bin_weight_array(self) -> np.ndarray | None:
        """Non-negative weights of the detector bins (float64, shape ``(n_detectors, 1)``) that
        multiply the backend's sinogram, or None: the matrix stays non-negative, so the norm bound
        still holds."""
        return None

    # -- statistical weights -----------------------------------------------------------------
    def _check_statistical_weights(self, weights: np.ndarray | torch.Tensor | None) -> np.ndarray | None:
        if weights is None:
            return None
        values = _float64_array(weights, "statistical_weights must be an array of positive numbers")
        if values.ndim > 2 and values.size == np.prod(values.shape[-2:]):  # a (1, 1, bins, angles) batch
            values = values.reshape(values.shape[-2:])
        expected = (self.n_detectors, len(self.angles_deg))
        if values.shape != expected:
            raise ValueError(f"statistical_weights must have the sinogram's shape {expected} (detectors x angles), "
                             f"got {tuple(values.shape)}")
        if not np.all(np.isfinite(values)) or not np.all(values > 0):
            raise ValueError("statistical_weights must be finite and positive (a measurement to ignore needs a tiny "
                             "weight, not 0)")
        low, high = STATISTICAL_WEIGHT_RANGE
        if values.min() < low or values.max() > high:
            # their square roots multiply float32 sinograms: beyond this they overflow or vanish
            raise ValueError(f"statistical_weights must lie in [{low:g}, {high:g}] (relative weights: divide them by "
                             f"their mean), got [{values.min():.3g}, {values.max():.3g}]")
        return np.sqrt(values)

    def _check_shared_variance(self, variance: np.ndarray | torch.Tensor | None
                               ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """The shared error's covariance as given (float64: one variance per detector bin, or a
        ``bins x bins`` covariance ``S``) and the whitening it calls for: the unit vectors ``u_i`` along
        each bin's root weights ``q_i`` over the views (``U e`` puts ``e_i u_i`` in bin ``i``: an isometry)
        and the lower Cholesky factor ``L`` of ``I + D S D`` (``D = diag(|q_i|)``; a vector for a diagonal
        ``S``), so that ``T = I + U (L^-1 - I) U^T`` whitens ``I + U D S D U^T``, the weighted covariance
        ``W^(1/2) (W^-1 + S (x) 1 1^T) W^(1/2)``: ``T (I + U D S D U^T) T^T = I``. ``S`` positive
        semi-definite makes ``L L^T >= I``, so ``||L^-1|| <= 1`` and ``||T|| <= 1``."""
        if variance is None:
            return None, None
        values = _float64_array(variance, "shared_variance must be an array of non-negative numbers, one per detector "
                                          "bin")
        bins = self.n_detectors
        root = (np.ones((bins, len(self.angles_deg))) if self._root_weights is None else self._root_weights)
        along = np.sqrt((root**2).sum(axis=1))
        if values.ndim == 2 and values.shape == (bins, bins):
            if not np.all(np.isfinite(values)) or not np.allclose(values, values.T, rtol=1e-10, atol=0.0):
                raise ValueError("a shared covariance must be finite and symmetric")
            spread = along[:, None] * ((values + values.T) / 2) * along[None, :]
            # positive semi-definite up to rounding (a projection's covariance is singular): then
            # I + D S D + slack >= I, and the whitening's norm stays at most 1
            slack = 1e-12 * max(float(np.abs(spread).max()), 1e-300)  # relative to the covariance's scale
            try:
                np.linalg.cholesky(spread + 2 * slack * np.eye(bins))
            except np.linalg.LinAlgError:
                raise ValueError("a shared covariance must be positive semi-definite") from None
            factor = np.linalg.cholesky(spread + (1.0 + 2 * slack) * np.eye(bins))
        else:
            values = values.reshape(-1)
            if values.size != bins:
                raise ValueError(f"shared_variance must hold one value per detector bin ({bins}), or be a {bins} x "
                                 f"{bins} covariance, got {values.size} values")
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError("shared_variance must be finite and non-negative")
            factor = np.sqrt(1.0 + along**2 * values)
        return values, (root / along[:, None], factor)

    @property
    def has_statistical_weights(self) -> bool:
        """Whether the operator weighs its rows by statistical weights ``W`` (``W^(1/2) A``, whitened
        further where it has a shared error)."""
        return self._root_weights is not None

    @property
    def has_shared_error(self) -> bool:
        """Whether the operator whitens an error every view of a detector bin shares (``shared_variance``)."""
        return self._shared_variance is not None

    def _shared_terms(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (_dtype_key(dtype), str(device))
        if key not in self._shared_cache:
            self._shared_cache[key] = tuple(torch.tensor(a, dtype=dtype, device=device) for a in self._shared_whitening)
        return self._shared_cache[key]

    def _whiten_shared(self, z: torch.Tensor, mode: str = "forward") -> torch.Tensor:
        """``T z`` (``mode="forward"``), ``T^T z`` (``"transpose"``) or ``T^-1 z`` (``"inverse"``) for the
        shared error's whitening ``T = I + U (L^-1 - I) U^T`` (:meth:`_check_shared_variance`; norm at
        most 1, so the certified bound of the non-negative ``W^(1/2) A`` bounds ``T W^(1/2) A`` too);
        ``z`` unchanged without a shared error."""
        if self._shared_whitening is None:
            return z
        unit, factor = self._shared_terms(z.dtype, z.device)
        along = (unit * z).sum(dim=-1)  # U^T z: each bin's component along its unit vector (rows)
        if factor.ndim == 1:  # a diagonal covariance: L is diagonal
            mapped = along * factor if mode == "inverse" else along / factor
        else:  # rows a: (L^-1 a^T)^T = a L^-T, (L^-T a^T)^T = a L^-1, (L a^T)^T = a L^T
            rows = along.reshape(-1, along.shape[-1])
            if mode == "inverse":
                mapped = rows @ factor.T
            elif mode == "forward":
                mapped = torch.linalg.solve_triangular(factor.T, rows, upper=True, left=False)
            elif mode == "transpose":
                mapped = torch.linalg.solve_triangular(factor, rows, upper=False, left=False)
            else:
                raise ValueError(f"mode must be 'forward', 'transpose' or 'inverse', got {mode!r}")
            mapped = mapped.reshape(along.shape)
        return z + unit * (mapped - along)[..., None]

    def _root_weight_tensor(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        return None if self._root_weights is None else torch.tensor(self._root_weights, dtype=dtype, device=device)

    def _measurement_weights(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        if self._measurement_array is None:
            return None
        key = (_dtype_key(dtype), str(device))
        if key not in self._measurement_cache:
            self._measurement_cache[key] = torch.tensor(self._measurement_array, dtype=dtype, device=device)
        return self._measurement_cache[key]

    def statistical_weighting(self, y: torch.Tensor) -> torch.Tensor:
        """``T W^(1/2) y``: a sinogram of this geometry turned into this operator's data (``W`` 1 without
        statistical weights, ``T`` the identity without a shared error; divided by the norm too when
        ``normalize=True``, as ``A`` is)."""
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        root = self._root_weight_tensor(y.dtype, y.device)
        weighted = self._whiten_shared(y if root is None else y * root)
        return weighted / self._scale if self.normalize else weighted

    def with_statistical_weights(self, weights: np.ndarray | torch.Tensor | None,
                                 shared_variance: np.ndarray | torch.Tensor | None = None) -> "RadonTomography":
        """The same geometry, ``normalize``, CG settings and device with these statistical weights
        (None: none) and shared variances (:class:`RadonTomography`)."""
        return type(self)(**self._constructor_arguments(), normalize=self.normalize, cg_tol=self.cg_tol,
                          cg_max_iter=self.cg_max_iter, device=self._device, statistical_weights=weights,
                          shared_variance=shared_variance)

    def _constructor_arguments(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _unweighted(self, y: torch.Tensor) -> torch.Tensor:
        root = self._root_weight_tensor(y.dtype, y.device)
        y = self._whiten_shared(y, mode="inverse")
        return y if root is None else y / root

    def _tomography(self, t: torch.Tensor) -> nn.Module:
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{type(self).__name__} supports float32 and float64 tensors, got {t.dtype}")
        key = _dtype_key(t.dtype)
        # one backend per dtype, on the device of the data it serves: its sampling grids must be on
        # that device (deepinv's Radon copied them there at every call)
        if key not in self._radon or self._radon[key].angles.device != t.device:
            self._radon[key] = self._make_tomography(t.dtype, t.device)
        return self._radon[key]

    def _raw_A(self, x: torch.Tensor, tomography: nn.Module | None = None) -> torch.Tensor:
        tomography = self._tomography(x) if tomography is None else tomography
        y = _Projection.apply(x, tomography.radon, False, self.image_size)
        weights = self._measurement_weights(y.dtype, y.device)
        return y if weights is None else y * weights

    def _raw_A_adjoint(self, y: torch.Tensor, tomography: nn.Module | None = None) -> torch.Tensor:
        tomography = self._tomography(y) if tomography is None else tomography
        weights = self._measurement_weights(y.dtype, y.device)
        return _Projection.apply(y if weights is None else y * weights, tomography.radon, True, self.image_size)

    # -- shapes ------------------------------------------------------------------------------
    def _check(self, shape: tuple[int, ...], hw: tuple[int, int], name: str) -> None:
        if len(shape) != 4:
            raise ValueError(f"{name} must have shape (batch, channels, height, width), got {shape}")
        if tuple(shape[-2:]) != hw:
            raise ValueError(f"{name} has spatial size {tuple(shape[-2:])}, this {type(self).__name__} expects {hw}")

    def output_shape_for(self, input_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(input_shape), (self.image_size, self.image_size), "x")
        return (input_shape[0], input_shape[1], self.n_detectors, len(self.angles_deg))

    def input_shape_for(self, output_shape: torch.Size) -> tuple[int, ...]:
        self._check(tuple(output_shape), (self.n_detectors, len(self.angles_deg)), "y")
        return (output_shape[0], output_shape[1], self.image_size, self.image_size)

    # -- A, A^T ------------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Sinogram of ``x``: ``(B, C, n, n) -> (B, C, n_detectors, n_angles)``."""
        _check_kwargs(kwargs, f"{type(self).__name__}.A")
        self._check_tensor(x, "x")
        self.output_shape_for(x.shape)
        y = self._whiten_shared(self._raw_A(x))
        return y / self._scale if self.normalize else y

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Exact transpose of :meth:`A` (back-projection)."""
        _check_kwargs(kwargs, f"{type(self).__name__}.A_adjoint")
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        x = self._raw_A_adjoint(self._whiten_shared(y, mode="transpose"))
        return x / self._scale if self.normalize else x

    # -- the data prox's CG preconditioner ----------------------------------------------------
    def _normal_transfer(self, device: torch.device) -> torch.Tensor:
        """Real spectrum of ``A^T A``'s response to a centred point, on the doubled grid (so that the
        circular convolution it defines does not wrap), float64; computed once per device."""
        cached = self._normal_transfer_cache
        if cached is not None and cached.device == device:
            return cached
        n = self.image_size
        delta = torch.zeros(1, 1, n, n, dtype=torch.float64, device=device)
        delta[..., n // 2, n // 2] = 1.0
        with torch.no_grad():
            response = self.A_adjoint_A(delta)[0, 0]
        grid = torch.zeros(2 * n, 2 * n, dtype=torch.float64, device=device)
        grid[:n, :n] = response
        grid = torch.roll(grid, shifts=(-(n // 2), -(n // 2)), dims=(0, 1))
        # the real part is the spectrum of the response's symmetric part: an even, real filter, so
        # the preconditioner below is a symmetric operator; A^T A is PSD, so its spectrum is >= 0
        self._normal_transfer_cache = torch.fft.rfft2(grid).real.clamp_min(0.0)
        return self._normal_transfer_cache

    def _cg_preconditioner(self, gamma: torch.Tensor):
        """``(gamma A^T A + I)^-1`` for a shift-invariant approximation of ``A^T A`` (its response
        at the centre; the parallel-beam normal operator is close to a convolution with ``1/|r|``,
        a fan-beam one varies slowly across the image): zero-pad to the doubled grid, divide by
        ``gamma H + 1`` in Fourier, crop. Symmetric positive definite whatever ``H``'s accuracy,
        which only sets how much it saves (about half the CG iterations in parallel beam)."""
        n = self.image_size
        transfer = self._normal_transfer(gamma.device)
        filters: dict[torch.dtype, torch.Tensor] = {}

        def apply(r: torch.Tensor) -> torch.Tensor:
            if r.dtype not in filters:
                filters[r.dtype] = (1.0 / (gamma.reshape(-1, 1, 1, 1) * transfer + 1.0)).to(r.dtype)
            padded = r.new_zeros(r.shape[:-2] + (2 * n, 2 * n))
            padded[..., :n, :n] = r
            out = torch.fft.irfft2(torch.fft.rfft2(padded) * filters[r.dtype], s=(2 * n, 2 * n))
            return out[..., :n, :n].contiguous()

        return apply

    # -- norm --------------------------------------------------------------------------------
    def _raw_norm_bound(self) -> NormBound:
        """Certified bound on the unnormalised operator's norm, from the disk cache if valid."""
        description = self.geometry()
        cached = load_entry(_NORM_CACHE_NAMESPACE, description)
        if cached is not None and self._cached_bound_is_plausible(cached):
            return NormBound(
                float(cached["upper"]),
                "certified",
                "Collatz-Wielandt bound on the non-negative Radon matrix (cached)",
                lower=float(cached["lower"]),
                details={"iterations": cached.get("iterations"), "cached": True},
            )
        bound = self._compute_raw_norm_bound()
        store_entry(
            _NORM_CACHE_NAMESPACE,
            description,
            {"upper": bound.value, "lower": bound.lower, "iterations": bound.details["iterations"]},
        )
        return bound

    def _cached_bound_is_plausible(self, cached: dict[str, Any]) -> bool:
        # a corrupted or tampered cache must not understate the norm: one Rayleigh quotient from
        # the all-ones vector is a proven lower bound, and it is close (within ~1%) for CT
        bounds = norm_bounds_of(cached)
        if bounds is None:
            return False
        upper = bounds[0]
        with torch.no_grad():
            tomography = self._radon[_dtype_key(torch.float32)]
            ones = torch.ones(1, 1, self.image_size, self.image_size, device=tomography.angles.device)
            projected = self._raw_A(ones, tomography)
            rayleigh = float(projected.double().norm()) / self.image_size
        return upper >= rayleigh * (1 - 1e-4)

    def _compute_raw_norm_bound(self) -> NormBound:
        tomography = self._make_tomography(torch.float64, torch.device("cpu"))
        with progress_bar("CT norm bound", total=200) as report:
            result = collatz_wielandt_norm_bound(
                lambda x: self._raw_A(x, tomography),
                lambda y: self._raw_A_adjoint(y, tomography),
                (1, 1, self.image_size, self.image_size),
                rel_gap=1e-6,
                max_iter=200,
                progress=report,
            )
        return NormBound(
            result.upper,
            "certified",
            "Collatz-Wielandt bound on the non-negative Radon matrix",
            lower=result.lower,
            details={"iterations": result.iterations, "cached": False},
        )

    def _compute_norm_bound(self) -> NormBound:
        raw = self._raw_norm_bound()
        if self._shared_whitening is not None:
            # ||T W^(1/2) A|| <= ||W^(1/2) A||: still an upper bound, no longer a lower one
            raw = NormBound(raw.value, "certified", raw.method + " of W^(1/2) A; the shared error's whitening "
                            "(norm at most 1) keeps it an upper bound", lower=None, details=raw.details)
        if not self.normalize:
            return raw
        return NormBound(
            raw.value / self._scale,
            "certified",
            raw.method + ", divided by itself (normalize=True)",
            lower=None if raw.lower is None else raw.lower / self._scale,
            details=dict(raw.details, scale=self._scale),
        )


class ParallelBeamCT(RadonTomography):
    """Parallel-beam CT ``y = A x`` for ``n x n`` images (any channel and batch count).

    ``angles`` is a count (uniform over ``[0, 180)`` degrees) or the angles in degrees.
    ``detector="full"`` uses ``ceil(sqrt(2) n)`` detector cells covering the whole square;
    ``"circle"`` uses ``n`` cells and restricts the object to the inscribed disc (pixels outside
    are ignored by ``A``). ``normalize=True`` divides ``A`` by its certified norm bound, so
    ``||A|| <= 1`` (then ``norm()`` is 1, still certified). Measurements have shape
    ``(B, C, n_detectors, n_angles)``: rows are detector bins, columns are angles.
    ``statistical_weights`` makes it ``W^(1/2) A`` for weighted least squares, ``shared_variance`` whitens an
    error every view of a bin shares too (generalized least squares; :class:`RadonTomography`).
    ``detector_offset`` (``detector="full"`` only): the bins shifted by this many bins along the
    detector, i.e. the rotation axis projects onto bin ``(G - 1)/2 - detector_offset`` instead of
    the detector's centre (a misaligned axis, the commonest artefact of lab and synchrotron CT;
    :func:`estimate_detector_offset` reads it off a sinogram).

    Geometry (docs/operators.md, "Geometry and sinogram layout"): with ``G = n_detectors``, bin
    ``b`` of angle ``theta`` (degrees) sums the image along the line
    ``b = (G - 1)/2 - offset + (col - c) cos(theta) + (c - row) sin(theta)``, i.e. the projection on the
    direction ``theta`` counter-clockwise from the column axis, rows counted downwards (at 0
    degrees the column sums, at 90 the row sums from the bottom row up), about the image centre
    ``c = (n - 1)/2``, as the ASTRA Toolbox's parallel beam (deepinv's own axis, half a pixel off
    when ``G - n`` is odd, is moved there). Values are line integrals in pixel units.
    ``skimage.transform.radon`` uses the same layout, direction and scale but rotates about pixel
    ``n//2``, read at bin ``G//2``: :func:`sinogram_from_skimage` converts its sinograms.

    Guarantees: exact adjoint (the sampling's own transpose); ``norm()`` a certified upper bound (module
    docstring); ``prox_data`` by warm-started batched CG with reported convergence.
    """

    @property
    def parameter_density(self) -> float:
        """Projection directions per image pixel across: the angles' distinct directions modulo 180
        degrees over the image side. Directions closer than ``DIRECTION_TOLERANCE_DEG`` count once:
        the opposite views of a 360-degree scan (stored as float32, or logged with gantry jitter)
        measure the same line integrals, and the noise level already counts their repetition. The
        automatic parameters weigh the denoiser by it when a denoiser's CT rule says so
        (``ParameterRule.density_exponent``: sparse views want less regularisation than dense ones).
        The shipped rule was calibrated on uniform scans covering 180 degrees; a limited-angle scan
        gets the density of its view count, its missing wedge unaccounted for."""
        directions = np.sort(np.mod(self.angles_deg, 180.0))
        gaps = np.diff(np.concatenate([directions, directions[:1] + 180.0]))  # the last wraps to the first
        return float(max(1, int(np.count_nonzero(gaps > DIRECTION_TOLERANCE_DEG)))) / self.image_size

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        angles: int | Iterable[float] = 180,
        detector: Detector = "full",
        normalize: bool = False,
        cg_tol: float | None = None,
        cg_max_iter: int = 500,
        device: torch.device | str = "cpu",
        statistical_weights: np.ndarray | torch.Tensor | None = None,
        detector_offset: float = 0.0,
        shared_variance: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        n = _image_size(image_size)
        angles_deg = _angles_in_degrees(angles)
        if detector not in ("full", "circle"):
            raise ValueError(f"detector must be 'full' or 'circle', got {detector!r}")
        offset = check_detector_offset(detector_offset)
        if offset and detector == "circle":
            raise ValueError("detector_offset shifts the full detector's bins; the circle detector sees the disc "
                             "inscribed in the image, about its centre")
        if abs(offset) > (detector_count(n, detector) - 1) / 2:
            raise ValueError(f"detector_offset {offset:g} moves the rotation axis off the detector of "
                             f"{detector_count(n, detector)} bins (at most {(detector_count(n, detector) - 1) / 2:g} "
                             "either way)")
        super().__init__(img_size=(1, n, n), norm_kind="certified", cg_tol=cg_tol, cg_max_iter=cg_max_iter)
        self.image_size = n
        self.angles_deg = angles_deg
        self.detector = detector
        self.n_detectors = detector_count(n, detector)
        self.detector_offset = offset
        self._start(normalize, device, statistical_weights, shared_variance)

    # -- presets -----------------------------------------------------------------------------
    @classmethod
    def sparse_view(cls, image_size: int, n_angles: int = 60, **kwargs: Any) -> "ParallelBeamCT":
        """Sparse-view CT: ``n_angles`` (default 60) angles uniform over ``[0, 180)`` degrees."""
        if isinstance(n_angles, bool) or int(n_angles) != n_angles or n_angles < 1:
            raise ValueError(f"n_angles must be a positive integer, got {n_angles!r}")
        return cls(image_size, angles=int(n_angles), **kwargs)

    @classmethod
    def limited_angle(
        cls, image_size: int, max_angle: float = 120.0, n_angles: int | None = None, **kwargs: Any
    ) -> "ParallelBeamCT":
        """Limited-angle CT: angles uniform over ``[0, max_angle)`` degrees (``0 < max_angle <=
        180``), ``n_angles`` of them (default: one per degree)."""
        max_angle = float(max_angle)
        if not 0 < max_angle <= 180:
            raise ValueError(f"max_angle must lie in (0, 180] degrees, got {max_angle}")
        count = max(1, round(max_angle)) if n_angles is None else n_angles
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"n_angles must be a positive integer, got {n_angles!r}")
        angles = np.arange(int(count), dtype=np.float64) * (max_angle / int(count))
        return cls(image_size, angles=angles, **kwargs)

    # -- deepinv backends --------------------------------------------------------------------
    def _make_tomography(self, dtype: torch.dtype, device: torch.device) -> nn.Module:
        offset, bins = self.detector_offset, self.n_detectors

        def shifted(grids: torch.Tensor) -> torch.Tensor:
            # each view's samples move by offset times the step between neighbouring bins (one pixel
            # across its rays), so bin b reads the line bin b + offset read before
            views = grids.shape[2] // bins
            step = grids[0, 0, 1::bins][:views] - grids[0, 0, 0::bins][:views]  # (views, 2)
            return grids.add_(offset * step.repeat_interleave(bins, dim=0)[None, None])

        return self._deepinv_tomography(self.angles_deg, dtype, device, circle=self.detector == "circle",
                                        rays=shifted if offset else None)

    def object_support(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """The pixels ``A`` sees, as a ``1 x 1 x n x n`` mask of ones and zeros: all of them for
        ``detector="full"``; for ``"circle"`` the inscribed disc, ``u^2 + v^2 <= 1`` with pixel
        centres ``u, v = 2 i / (n - 1) - 1`` (deepinv's and skimage's disc). Outside it ``A`` is
        zero and ``A^T`` returns zeros, so no measurement says anything of those pixels."""
        n = self.image_size
        device = self._device if device is None else device
        if self.detector == "full":
            return torch.ones(1, 1, n, n, dtype=dtype, device=device)
        # in float32 and in deepinv's order of operations: pixels on the circle (n = 21: (2, 16), where
        # 0.8^2 + 0.6^2 = 1) fall in or out by rounding, and must fall as they do in A
        axis = 2 * torch.arange(n, dtype=torch.float32) / max(n - 1, 1) - 1.0
        disc = axis[:, None] ** 2 + axis[None, :] ** 2 <= 1
        return disc.to(dtype=dtype, device=device)[None, None]

    # -- FBP ---------------------------------------------------------------------------------
    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection: Ram-Lak filter along the bins, each view weighted by its share
        of the half-turn (:func:`~pnp_stable.operators.fbp.view_shares`), back-projected about the
        image centre with linear interpolation between bins; zero outside the inscribed disc for
        ``detector="circle"``. Exact in the continuum for uniform angles over 180 degrees; an
        approximate inverse for initialisation, not a least-squares solution."""
        self._check_tensor(y, "y")
        self.input_shape_for(y.shape)
        self._check_finite(y, "y")
        data = self._unweighted((y * self._scale if self.normalize else y).to(torch.float64))
        shares = torch.tensor(view_shares(self.angles_deg, turn=180.0), dtype=torch.float64, device=y.device)
        # the views extend to a centred detector's reach on either side of the axis (an offset one's
        # short end: extend_to_reach), where the axis projects onto bin (G - 1)/2 - offset
        data, centre = extend_to_reach(data, (self.n_detectors - 1) / 2.0 - self.detector_offset,
                                       (self.n_detectors - 1) / 2.0)
        filtered = ram_lak(data, 1.0) * shares
        out = back_project(filtered, self.angles_deg, self.image_size, lambda lateral, _depth: (lateral + centre, None))
        if self.detector == "circle":
            out = out * self.object_support(torch.float64, y.device)
        return out.to(y.dtype)

    # -- norm --------------------------------------------------------------------------------
    def geometry_fields(self) -> dict[str, Any]:
        # named only when shifted: a centred detector's cache entries and checkpoints keep their keys
        return {"detector": self.detector, **({"detector_offset": self.detector_offset} if self.detector_offset else {})}

    def _constructor_arguments(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "angles": self.angles_deg, **self.geometry_fields()}

    def __repr__(self) -> str:
        return (
            f"ParallelBeamCT(image_size={self.image_size}, n_angles={len(self.angles_deg)}, "
            f"angle_range=[{self.angles_deg.min():.1f}, {self.angles_deg.max():.1f}] deg, detector={self.detector!r}, "
            f"detector_offset={self.detector_offset:g}, normalize={self.normalize})"
        )


def image_size_for_bins(bins: int, detector: Detector = "full") -> int | None:
    """The side ``n`` of the square image whose :class:`ParallelBeamCT` has ``bins`` detector bins
    (``detector_count(n, detector) == bins``), or None when no image has that many."""
    if detector == "circle":
        return bins if bins >= 1 else None
    candidates = [n for n in range(max(1, int(bins / math.sqrt(2)) - 2), bins + 1) if detector_count(n) == bins]
    return candidates[0] if candidates else None


def sinogram_from_skimage(sinogram: np.ndarray | torch.Tensor, angles_deg: Iterable[float] | None = None, *,
                          detector: Detector) -> np.ndarray:
    """A ``skimage.transform.radon`` sinogram (``G x N``: detector bins x angles) in
    :class:`ParallelBeamCT`'s convention, as float64. ``detector`` (required: most bin counts fit
    both readings, with different image sizes and shifts): ``"full"`` for skimage's
    ``circle=False`` (``G = ceil(sqrt(2) n)``), ``"circle"`` for its default ``circle=True`` (``G = n``).

    The two transforms share layout, angles, direction, sampling and scale, and differ only in the
    rotation axis (docs/operators.md, "Sinograms from scikit-image"): skimage turns about pixel
    ``n//2`` and reads it at bin ``G//2``, this tool about the image centre ``(n - 1)/2`` at bin
    ``(G - 1)/2``. Skimage's bin for a line is ours plus ``[G even]/2 - [n even] (cos theta -
    sin theta)/2`` (zero for odd ``n`` and ``G``), undone here by a sub-bin Fourier shift of each
    column (zero-padded, so nothing wraps around). What remains is the two interpolations'
    difference: about 0.5 % of the sinogram on a 128 x 128 Shepp-Logan phantom, against about
    10 % unconverted. ``angles_deg`` defaults to the columns uniform over [0, 180), skimage's usual
    ``theta``.
    """
    s = np.asarray(sinogram.detach().cpu() if isinstance(sinogram, torch.Tensor) else sinogram, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a sinogram is a 2-D array (detector bins x angles), got shape {s.shape}")
    if detector not in ("full", "circle"):
        raise ValueError(f"detector must be 'full' or 'circle', got {detector!r}")
    bins, columns = s.shape
    theta = np.linspace(0.0, 180.0, columns, endpoint=False) if angles_deg is None else _angles_in_degrees(angles_deg)
    if theta.size != columns:
        raise ValueError(f"{theta.size} angles for a sinogram of {columns} columns")
    n = image_size_for_bins(bins, detector)
    if n is None:
        raise ValueError(f"no n x n image has {bins} bins with the full detector (ceil(sqrt(2) n)): a sinogram of "
                         "skimage's circle=True needs detector='circle' (--detector circle)")
    t = np.deg2rad(theta)
    shift = 0.5 * (1 - bins % 2) - 0.5 * (1 - n % 2) * (np.cos(t) - np.sin(t))  # ours[b] = skimage[b + shift]
    if not np.any(shift):
        return s.copy()
    padded = 2 * bins
    spectrum = np.fft.rfft(s, n=padded, axis=0) * np.exp(2j * np.pi * np.fft.rfftfreq(padded)[:, None] * shift)
    return np.fft.irfft(spectrum, n=padded, axis=0)[:bins]

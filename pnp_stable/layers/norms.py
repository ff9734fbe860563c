"""Spectral norms of dense and convolutional linear maps.

Two kinds of numbers live here, and they must never be confused:

* **Estimates** (power method) are *lower* bounds on ``||A||``. They are cheap, warm-started
  from a stored singular vector, and good enough to choose sub-step counts during training.
* **Certified bounds** are *upper* bounds on ``||A||`` that hold for every input size. Only
  these may enter a certificate.

Certified bound for convolutions
--------------------------------
A stride-1 convolution with kernel ``K`` (``C_out x C_in x k1 x k2``) has the matrix-valued
symbol ``W(w) = sum_p K_p exp(-i <w, p - c>)`` on the torus ``w in [-pi, pi)^2``. A circular
convolution of any size ``n`` has norm ``max_{w in grid_n} sigma_max(W(w))``, and a zero-padded
convolution of any size is a compression ``P C E`` of a circular one, so

    ||conv||  <=  M := sup_w sigma_max(W(w))          for every input size.

We bound ``M`` from samples. Let ``w*`` be a maximiser and ``u, v`` the singular vectors there;
``g(w) = Re u^H W(w) v`` is a real trigonometric polynomial with ``|g| <= M`` and, along the
segment from ``w*`` to a point ``w``, of exponential type ``rho = d1 |w1 - w1*| + d2 |w2 - w2*|``
(``d_i`` the half-width of the centred kernel). Szegő's inequality ``g'^2 + rho^2 g^2 <= rho^2
M^2`` with ``g(w*) = M, g'(w*) = 0`` gives ``g(w) >= M cos(rho)``. Hence, for any cover of the
torus by cells with centres ``w_k`` and radii ``rho_k < pi/2``,

    M  <=  max_k  sigma_max(W(w_k)) / cos(rho_k).

:func:`conv_spectral_norm_bound` refines only the cells whose bound can still exceed the best
sample, so the bound is within ``rel_tol`` of ``M`` for a fraction of the cost of a fine grid.
Strided convolutions are reduced to stride 1 by a polyphase decomposition (an orthogonal
re-indexing of the input); groups are block-diagonal; for stride 1 dilation does not change
``M``.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "CERTIFIED_RELATIVE_MARGIN",
    "dense_spectral_norm",
    "conv_spectral_norm_bound",
    "conv_symbol_norm_on_grid",
    "power_iteration",
]

# Added to every certified bound: covers float64 rounding in the SVDs (~1e-14 relative) with a
# wide berth. It is not a fudge factor for the mathematics, which is exact.
CERTIFIED_RELATIVE_MARGIN = 1e-9


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def dense_spectral_norm(weight: torch.Tensor) -> float:
    """Certified ``||W||_2`` of a dense matrix (exact SVD in float64, plus a 1e-9 margin).

    Assumes ``weight`` is 2-D (``out x in``). The result is an upper bound on the operator norm
    up to float64 rounding, which the margin covers.
    """
    if weight.ndim != 2:
        raise ValueError(f"dense weight must be 2-D, got shape {tuple(weight.shape)}")
    w = weight.detach().to(device="cpu", dtype=torch.float64)
    if w.numel() == 0:
        return 0.0
    _check_finite(w)
    value = torch.linalg.matrix_norm(w, ord=2).item()
    return value * (1.0 + CERTIFIED_RELATIVE_MARGIN)


def _check_finite(weight: torch.Tensor) -> None:
    # A NaN/inf weight has no norm; left to the SVDs it gave a LinAlgError, or for an all-inf
    # 1x1 kernel a "bound" of 0 (a certificate of the identity for a map that outputs NaN).
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("the weights contain NaN or infinite values: no norm bound (and no certificate) exists")


def _power_of_two_scale(kernel: torch.Tensor) -> float:
    """``2^-e`` with ``max |kernel| * 2^-e`` in [0.5, 1): an exact rescaling into float32's comfortable range.

    The bound is positively homogeneous, and multiplying by a power of two is exact, so the
    complex64 stage sees O(1) numbers whatever the weights' magnitude. Without it, weights of
    ~1e-23 made the Gram matrices subnormal in float32 (relative rounding far above the Cholesky
    margin: the bound came out up to 0.47 % *below* the exact norm), and weights above ~1e19 overflowed.
    """
    peak = float(kernel.abs().max()) if kernel.numel() else 0.0
    if peak == 0.0:
        return 1.0
    return math.ldexp(1.0, -math.frexp(peak)[1])


def _expand_dilation(weight: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    d1, d2 = dilation
    if d1 == 1 and d2 == 1:
        return weight
    co, ci, k1, k2 = weight.shape
    out = weight.new_zeros(co, ci, d1 * (k1 - 1) + 1, d2 * (k2 - 1) + 1)
    out[:, :, ::d1, ::d2] = weight
    return out


def _polyphase(weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Stride-``s`` convolution as a stride-1 convolution on ``s1*s2`` input phases.

    ``y[i] = sum_j K[j] x[s i + j] = sum_r sum_q K[s q + r] x_r[i + q]`` with ``x_r[m] = x[s m + r]``:
    the phase split of the input is a permutation, so norms are unchanged.
    """
    s1, s2 = stride
    if s1 == 1 and s2 == 1:
        return weight
    co, ci, k1, k2 = weight.shape
    p1, p2 = -(-k1 // s1), -(-k2 // s2)
    w = F.pad(weight, (0, p2 * s2 - k2, 0, p1 * s1 - k1))
    w = w.reshape(co, ci, p1, s1, p2, s2).permute(0, 1, 3, 5, 2, 4)
    return w.reshape(co, ci * s1 * s2, p1, p2)


def _trim(weight: torch.Tensor) -> torch.Tensor:
    """Drop all-zero border rows/columns of the kernel: a lower degree gives a tighter bound."""
    nz = weight.abs().sum(dim=(0, 1)) > 0
    if not bool(nz.any()):
        return weight[:, :, :1, :1] * 0
    rows = torch.nonzero(nz.any(dim=1)).flatten()
    cols = torch.nonzero(nz.any(dim=0)).flatten()
    return weight[:, :, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]


def _symbol(kernel: torch.Tensor, freqs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Symbols ``W(w)`` (``n x co x ci``) at the rows of ``freqs`` for a float64 kernel."""
    co, ci, k1, k2 = kernel.shape
    p1 = torch.arange(k1, dtype=torch.float64) - (k1 - 1) / 2.0
    p2 = torch.arange(k2, dtype=torch.float64) - (k2 - 1) / 2.0
    taps = kernel.permute(2, 3, 0, 1).reshape(k1 * k2, co * ci).to(dtype)
    phase = -(freqs[:, 0:1, None] * p1[None, :, None] + freqs[:, 1:2, None] * p2[None, None, :])
    basis = torch.polar(torch.ones_like(phase), phase).reshape(freqs.shape[0], k1 * k2).to(dtype)
    return (basis @ taps).reshape(freqs.shape[0], co, ci)


def _symbol_sigma(kernel: torch.Tensor, freqs: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``sigma_max(W(w))`` at each row of ``freqs`` (``n x 2``), computed by SVD in complex128."""
    out = [
        torch.linalg.matrix_norm(_symbol(kernel, freqs[i : i + chunk], torch.complex128), ord=2)
        for i in range(0, freqs.shape[0], chunk)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _prepare_kernel(
    weight: torch.Tensor,
    stride: int | tuple[int, int],
    dilation: int | tuple[int, int],
    groups: int,
) -> list[torch.Tensor]:
    if weight.ndim != 4:
        raise ValueError(f"conv weight must be 4-D (out, in/groups, k1, k2), got {tuple(weight.shape)}")
    stride, dilation = _pair(stride), _pair(dilation)
    w = weight.detach().to(device="cpu", dtype=torch.float64)
    if stride == (1, 1):
        dilation = (1, 1)  # the symbol of a dilated kernel is W(d * w): same supremum
    co = w.shape[0]
    if co % groups:
        raise ValueError(f"out_channels={co} is not divisible by groups={groups}")
    per = co // groups
    kernels = []
    for g in range(groups):
        k = _expand_dilation(w[g * per : (g + 1) * per], dilation)
        kernels.append(_trim(_polyphase(k, stride)))
    return kernels


def conv_symbol_norm_on_grid(
    weight: torch.Tensor,
    grid: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> float:
    """Maximum of ``sigma_max`` of the symbol over an ``n1 x n2`` frequency grid.

    For stride 1 this is exactly the norm of the circular convolution on ``n1 x n2`` images, a
    *lower* bound on the all-sizes norm (and on the certified bound). Used for validation.
    """
    n1, n2 = _pair(grid)
    w1 = 2 * math.pi * torch.arange(n1, dtype=torch.float64) / n1
    w2 = 2 * math.pi * torch.arange(n2 // 2 + 1, dtype=torch.float64) / n2
    freqs = torch.cartesian_prod(w1, w2)
    best = 0.0
    for k in _prepare_kernel(weight, stride, dilation, groups):
        best = max(best, float(_symbol_sigma(k, freqs).max()))
    return best


# Cells are *settled* by proving sigma(w_k) <= s_k with one Cholesky factorisation of
# s_k^2 I - W^H W (success <=> positive definite), which is ~5x cheaper than an SVD. In complex64
# the rounding of W^H W and of the factorisation is below ~2 n u ||W||^2 (u = 6e-8); shrinking
# s_k^2 by _CHOLESKY_MARGIN absorbs it for up to 1024 channels (complex128 beyond).
_CHOLESKY_MARGIN = 2e-4


def _gram(symbols: torch.Tensor) -> torch.Tensor:
    co, ci = symbols.shape[-2:]
    return symbols @ symbols.mH if co < ci else symbols.mH @ symbols


def _single_kernel_bound(kernel: torch.Tensor, rel_tol: float, max_evaluations: int) -> float:
    scale = _power_of_two_scale(kernel)
    if scale != 1.0:
        # exact: the bound of (scale K) is scale times the bound of K, and 1/scale is a power of two
        return _single_kernel_bound(kernel * scale, rel_tol, max_evaluations) / scale
    k1, k2 = kernel.shape[-2:]
    d1, d2 = (k1 - 1) / 2.0, (k2 - 1) / 2.0
    if d1 == 0 and d2 == 0:  # a 1x1 convolution is a constant symbol: exact
        return float(torch.linalg.matrix_norm(kernel[:, :, 0, 0], ord=2))
    dtype = torch.complex64 if max(kernel.shape[:2]) <= 1024 else torch.complex128
    # Initial cells have radius rho <= pi/8 (1/cos(rho) <= 1.083).
    n0 = max(16, int(math.ceil(8 * (d1 + d2))))
    n0 += n0 % 2
    h1 = h2 = math.pi / n0
    w1 = -math.pi + 2 * math.pi * torch.arange(n0, dtype=torch.float64) / n0
    # sigma(-w) = sigma(w) for real kernels: a maximiser lies in the closed half w2 in [0, pi].
    w2 = 2 * math.pi * torch.arange(n0 // 2 + 1, dtype=torch.float64) / n0
    centres = torch.cartesian_prod(w1, w2)
    lower, settled, evaluations = 0.0, 0.0, 0
    while True:
        evaluations += centres.shape[0]
        symbols = _symbol(kernel, centres, dtype)
        gram = _gram(symbols)
        eye = torch.eye(gram.shape[-1], dtype=dtype)
        rho = d1 * h1 + d2 * h2
        open_cells = torch.ones(centres.shape[0], dtype=torch.bool)
        for attempt in range(2):
            target = lower * (1.0 + rel_tol)
            s2 = (target * math.cos(rho)) ** 2 * (1.0 - _CHOLESKY_MARGIN)
            ok = torch.linalg.cholesky_ex(s2 * eye - gram[open_cells]).info == 0
            if bool(ok.any()):
                settled = max(settled, target)  # every cell settled now has sup <= target
            idx = torch.nonzero(open_cells).flatten()
            open_cells[idx[ok]] = False
            if attempt == 0 and bool(open_cells.any()):
                # the open cells hold the candidates for the maximum: their exact sigma raises the
                # lower bound (and hence the target), which may settle some of them
                sigma = torch.linalg.svdvals(symbols[open_cells])[:, 0]
                lower = max(lower, float(sigma.max()))
        n_open = int(open_cells.sum())
        if n_open == 0:
            return max(settled, lower)
        if evaluations + 4 * n_open > max_evaluations:
            sigma = _symbol_sigma(kernel, centres[open_cells])
            return max(settled, float(sigma.max()) / math.cos(rho) * (1.0 + 1e-12))
        h1, h2 = h1 / 2, h2 / 2
        offsets = torch.tensor([[-h1, -h2], [-h1, h2], [h1, -h2], [h1, h2]], dtype=torch.float64)
        centres = (centres[open_cells][:, None, :] + offsets[None]).reshape(-1, 2)


def conv_spectral_norm_bound(
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    rel_tol: float = 5e-3,
    max_evaluations: int = 40000,
) -> float:
    """Certified upper bound on the norm of a 2-D convolution, valid for **every** input size.

    Guarantee: for zero or circular padding and any image size, ``||conv|| <=`` the returned
    value (see the module docstring for the proof). Not valid for reflect/replicate padding,
    which is not a compression of a circular convolution.

    The bound is within ``rel_tol`` of the exact supremum of the symbol unless the evaluation
    budget runs out (flat symbols), in which case it is still valid, only looser.
    """
    if weight.ndim != 4:
        raise ValueError(f"conv weight must be 4-D (out, in/groups, k1, k2), got {tuple(weight.shape)}")
    # A pure function of the weights' values: loading a model again (every restoration task call,
    # every tile of a tiled denoiser) recomputed ~1.6 s of SVDs for the shipped `gray`.
    exact = weight.detach().to(device="cpu", dtype=torch.float64).contiguous()
    _check_finite(exact)
    key = (hashlib.sha256(exact.numpy().tobytes()).hexdigest(), tuple(exact.shape), _pair(stride),
           _pair(dilation), int(groups), float(rel_tol), int(max_evaluations))
    cached = _BOUND_CACHE.get(key)
    if cached is not None:
        _BOUND_CACHE.move_to_end(key)
        return cached
    bound = 0.0
    for k in _prepare_kernel(exact, stride, dilation, groups):
        bound = max(bound, _single_kernel_bound(k, rel_tol, max_evaluations))
    bound *= 1.0 + CERTIFIED_RELATIVE_MARGIN
    _BOUND_CACHE[key] = bound
    if len(_BOUND_CACHE) > _BOUND_CACHE_SIZE:
        _BOUND_CACHE.popitem(last=False)
    return bound


# certified bounds by (SHA-256 of the float64 weights, shape, arguments): least recently used first
_BOUND_CACHE: OrderedDict[tuple, float] = OrderedDict()
_BOUND_CACHE_SIZE = 1024


def power_iteration(
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    u: torch.Tensor,
    n_iter: int = 1,
    tol: float | None = None,
) -> tuple[float, torch.Tensor]:
    """Power method on ``A^T A`` from the unit vector ``u``: an **estimate** (lower bound) of ||A||.

    Returns ``(||A u_k||, u_k)`` with ``u_k`` normalised. With ``tol`` set, stops early once the
    estimate changes by less than ``tol`` relatively (``n_iter`` is then a cap).
    """
    estimate = 0.0
    with torch.no_grad():
        u = u / u.norm().clamp_min(1e-30)
        for _ in range(max(1, n_iter)):
            v = forward(u)
            new_estimate = float(v.norm())
            w = adjoint(v)
            norm_w = w.norm()
            if float(norm_w) == 0.0:
                return 0.0, u
            u = w / norm_w
            converged = tol is not None and abs(new_estimate - estimate) <= tol * new_estimate
            estimate = new_estimate
            if converged:
                break
    return estimate, u

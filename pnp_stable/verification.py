"""Empirical checks of certificates: random pairs and adversarial (gradient-ascent) search.

These give *lower* bounds on the true constants. They are how the test-suite and
``pnp-stable certify`` show that a certificate is not violated — and, on deliberately broken
configurations, that the search is strong enough to catch a violation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from pnp_stable.precision import ieee_float32

__all__ = [
    "SearchResult",
    "lipschitz_ratio",
    "averagedness_violation",
    "random_pair_search",
    "adversarial_search",
    "empirical_lipschitz",
    "empirical_averagedness_violation",
    "local_lipschitz",
    "residual_ratio",
]

Map = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SearchResult:
    value: float  # worst value found (largest ratio / violation)
    x: torch.Tensor
    y: torch.Tensor


def lipschitz_ratio(T: Map, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||Tx - Ty|| / ||x - y||`` per batch element."""
    num = (T(x) - T(y)).flatten(1).norm(dim=1)
    den = (x - y).flatten(1).norm(dim=1).clamp_min(1e-30)
    return num / den


def averagedness_violation(T: Map, alpha: float, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalised violation of the alpha-averagedness inequality (<= 0 when it holds).

    ``(||Tx - Ty||^2 - ||x - y||^2 + (1 - alpha)/alpha ||(I-T)x - (I-T)y||^2) / ||x - y||^2``,
    for ``alpha`` in (0, 1] (1: non-expansiveness).
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    tx, ty = T(x), T(y)
    d = (x - y).flatten(1)
    dt = (tx - ty).flatten(1)
    dr = d - dt
    gap = dt.pow(2).sum(1) - d.pow(2).sum(1) + (1 - alpha) / alpha * dr.pow(2).sum(1)
    return gap / d.pow(2).sum(1).clamp_min(1e-60)


@ieee_float32()  # TF32 rounding (GPU) would pass for a Lipschitz excess
def random_pair_search(
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    n_pairs: int = 64,
    scales: Sequence[float] = (1e-3, 1e-1, 1.0),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> SearchResult:
    """Evaluate ``objective`` on random pairs ``(x, x + s * d)`` at several scales ``s``."""
    g = torch.Generator().manual_seed(seed)
    best = SearchResult(-float("inf"), torch.empty(0), torch.empty(0))
    with torch.no_grad():
        for s in scales:
            x = torch.randn((n_pairs, *shape), generator=g, dtype=dtype).to(device)
            y = x + s * torch.randn((n_pairs, *shape), generator=g, dtype=dtype).to(device)
            vals = objective(x, y)
            i = int(vals.argmax())
            if float(vals[i]) > best.value:
                best = SearchResult(float(vals[i]), x[i : i + 1].clone(), y[i : i + 1].clone())
    return best


@ieee_float32()  # TF32 rounding (GPU) would pass for a Lipschitz excess
def adversarial_search(
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    restarts: int = 4,
    steps: int = 100,
    lr: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> SearchResult:
    """Gradient ascent on ``objective(x, y)`` over pairs, from ``restarts`` random starts.

    Parametrises ``y = x + delta``; restarts alternate small and large ``delta`` so both the
    local (Jacobian) and the global behaviour are probed. Returns the worst pair found.
    """
    g = torch.Generator().manual_seed(seed)
    best = SearchResult(-float("inf"), torch.empty(0), torch.empty(0))
    for r in range(restarts):
        if init is not None and r == 0:
            x0, d0 = init[0].detach().clone(), (init[1] - init[0]).detach().clone()
        else:
            x0 = torch.randn((1, *shape), generator=g, dtype=dtype)
            d0 = (1e-2, 1.0, 1e-1, 3.0)[r % 4] * torch.randn((1, *shape), generator=g, dtype=dtype)
        # y = x + s u / rms(u): the scale s of the perturbation is held fixed per restart and
        # the direction u is optimised, so Adam's per-coordinate step suits every scale.
        scale = float(d0.pow(2).mean().sqrt().clamp_min(1e-12))
        x = x0.to(device).requires_grad_(True)
        u = (d0 / scale).to(device).requires_grad_(True)

        def pair():
            return x, x + scale * u / u.pow(2).mean().sqrt().clamp_min(1e-12)

        opt = torch.optim.Adam([x, u], lr=lr)
        with torch.enable_grad():
            for _ in range(steps + 1):
                a, b = pair()
                val = objective(a, b).sum()
                if float(val.detach()) > best.value:
                    best = SearchResult(float(val.detach()), a.detach().clone(), b.detach().clone())
                opt.zero_grad()
                (-val).backward()
                opt.step()
    return best


@ieee_float32()  # TF32 rounding (GPU) would pass for a Lipschitz excess
def local_lipschitz(T: Map, x: torch.Tensor, n_iter: int = 30, seed: int = 0) -> float:
    """``||J_T(x)||_2`` by power iteration with Jacobian-vector products: a lower bound on Lip(T).

    For piecewise-affine maps (ReLU networks) the Jacobian is constant on regions, so gradient
    ascent on ratios cannot move ``x``; measuring the local Jacobian at the best points found
    recovers the exact local expansion instead.
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    v = v / v.norm()
    estimate = 0.0
    x = x.detach()
    # one linearisation at x serves every iteration: the pullback u -> J^T u, and its own pullback
    # v -> J v (the transpose of a linear map is its vjp, at any point). torch.func.jvp would run
    # the forward again per product, through Python decompositions (5x slower on a small block)
    Tx, pullback = torch.func.vjp(T, x)
    _, push_forward = torch.func.vjp(lambda u: pullback(u)[0], torch.zeros_like(Tx))
    for _ in range(n_iter):
        (jv,) = push_forward(v)
        (jtjv,) = pullback(jv)
        jv, jtjv = jv.detach(), jtjv.detach()
        estimate = float(jv.norm())
        n = jtjv.norm()
        if float(n) == 0.0:
            break
        v = jtjv / n
    return estimate


def _freeze(T: torch.nn.Module | Map):
    params = []
    if isinstance(T, torch.nn.Module):
        params = [p for p in T.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
    return params


def residual_ratio(T: Map, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||(I - T)x - (I - T)y|| / ||x - y||`` per batch element.

    A search heuristic: for ``T = I - M`` with ``M`` a gradient-like map, expansion of ``T`` needs a
    large ``M``-ratio, and this objective grows monotonically towards it, whereas the ratio of
    ``T`` itself first *decreases* on the way (deceptive landscape).
    """
    d = (x - y).flatten(1)
    r = d - (T(x) - T(y)).flatten(1)
    return r.norm(dim=1) / d.norm(dim=1).clamp_min(1e-30)



def _check_search(shape: Sequence[int], restarts: int, steps: int, n_pairs: int) -> None:
    if not (len(shape) >= 1 and all(isinstance(n, int) and n >= 1 for n in shape)):
        raise ValueError(f"shape must be one input's shape without the batch dimension, e.g. (1, 16, 16); "
                         f"got {tuple(shape)}")
    for name, value, least in (("restarts", restarts, 1), ("steps", steps, 0), ("n_pairs", n_pairs, 1)):
        if not (isinstance(value, int) and value >= least):
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")

@ieee_float32()  # TF32 rounding (GPU) would pass for a Lipschitz excess
def empirical_lipschitz(
    T: Map, shape: Sequence[int], restarts: int = 4, steps: int = 100, n_pairs: int = 64, seed: int = 0,
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
) -> float:
    """Largest ``||Tx - Ty|| / ||x - y||`` found (a lower bound on Lip(T)).

    Random pairs, gradient ascent on the ratio, gradient ascent on the residual ratio (see
    :func:`residual_ratio`), then the local Jacobian norm at the best points. ``shape`` is one
    input's shape without the batch dimension (``(C, H, W)`` for an image model); the search runs
    in ``dtype`` (float64 by default, for a search free of float32 rounding: convert the model with
    ``.double()``, or pass ``dtype=torch.float32``).
    """
    _check_search(shape, restarts, steps, n_pairs)
    params = _freeze(T)
    try:
        obj = lambda x, y: lipschitz_ratio(T, x, y)  # noqa: E731
        rnd = random_pair_search(obj, shape, n_pairs=n_pairs, seed=seed, dtype=dtype, device=device)
        adv = adversarial_search(obj, shape, restarts=restarts, steps=steps, seed=seed + 1, dtype=dtype,
                                 device=device, init=(rnd.x, rnd.y))
        res = adversarial_search(lambda x, y: residual_ratio(T, x, y), shape, restarts=restarts, steps=steps,
                                 seed=seed + 2, dtype=dtype, device=device)
        with torch.no_grad():
            res_value = float(obj(res.x, res.y).max())
        local = max(local_lipschitz(T, p, seed=seed) for p in (rnd.x, adv.x, adv.y, res.x, res.y))
        return max(rnd.value, adv.value, res_value, local)
    finally:
        for p in params:
            p.requires_grad_(True)


@ieee_float32()  # TF32 rounding (GPU) would pass for a Lipschitz excess
def empirical_averagedness_violation(
    T: Map, alpha: float, shape: Sequence[int], restarts: int = 4, steps: int = 100, n_pairs: int = 64,
    seed: int = 0, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
) -> float:
    """Largest normalised violation of the alpha-averagedness inequality found (<= 0 if none).

    Random pairs, then gradient ascent on the violation started from the best random pair and
    from the pair that maximises the residual ratio (where averagedness is hardest to keep).
    ``shape`` and ``dtype`` as in :func:`empirical_lipschitz`; ``alpha`` in (0, 1].
    """
    _check_search(shape, restarts, steps, n_pairs)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    params = _freeze(T)
    try:
        obj = lambda x, y: averagedness_violation(T, alpha, x, y)  # noqa: E731
        rnd = random_pair_search(obj, shape, n_pairs=n_pairs, seed=seed, dtype=dtype, device=device)
        adv = adversarial_search(obj, shape, restarts=restarts, steps=steps, seed=seed + 1, dtype=dtype,
                                 device=device, init=(rnd.x, rnd.y))
        res = adversarial_search(lambda x, y: residual_ratio(T, x, y), shape, restarts=restarts, steps=steps,
                                 seed=seed + 2, dtype=dtype, device=device)
        adv2 = adversarial_search(obj, shape, restarts=1, steps=steps, seed=seed + 3, dtype=dtype,
                                  device=device, init=(res.x, res.y))
        return max(rnd.value, adv.value, adv2.value)
    finally:
        for p in params:
            p.requires_grad_(True)

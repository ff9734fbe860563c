"""Safeguarded Anderson acceleration (type II) that keeps the monitored residual meaningful.

Per image, from the last ``m + 1`` accepted pairs ``(w_j, g_j = T w_j)`` with residuals
``f_j = g_j - w_j``, the extrapolation is ``w_AA = g_k - dG gamma`` where ``gamma`` minimises
``||f_k - dF gamma||`` (``dF``, ``dG`` the consecutive differences; Walker & Ni 2011). ``T`` is
evaluated at ``w_AA`` and the point is **accepted only if**

    r(w_AA) <= decrease * r(w_k)                          (it beats the current residual), and
    r(w_AA) <= bound * r(w_0) * (n_AA + 1)^-(1 + 1e-6)      (accepted residuals are summable,
                                                             Zhang, O'Donoghue & Boyd, SIOPT 2020).

Otherwise the solver takes the plain step ``w_{k+1} = T w_k`` (one extra evaluation). Every
accepted iterate therefore has a residual no larger than the previous one whenever ``T`` is
non-expansive, so the monotonicity monitor stays a valid test of the theorem, and ``r_k -> 0``:
accepted extrapolations shrink it geometrically, plain steps are Krasnosel'skii-Mann steps.
"""

from __future__ import annotations

from collections import deque

import torch

__all__ = ["SafeguardedAnderson"]


class SafeguardedAnderson:
    """Per-image Anderson state for a batch (images are handled independently).

    Args:
        batch: number of images.
        memory: ``m``, the number of differences used (>= 1).
        decrease: ``theta`` in ``r(w_AA) <= theta r(w_k)`` (0 < theta <= 1).
        bound: ``D`` of the summability safeguard.
        regularization: Tikhonov weight (relative to ``trace(dF dF^T) / n``) on the least squares.
        max_coefficient: reject extrapolations whose coefficients exceed this (ill-conditioning).
    """

    def __init__(
        self, batch: int, memory: int = 5, decrease: float = 0.99, bound: float = 1e6,
        regularization: float = 1e-10, max_coefficient: float = 1e4, backoff: int = 8,
    ) -> None:
        if memory < 1:
            raise ValueError(f"Anderson memory must be >= 1, got {memory}")
        if not 0 < decrease <= 1:
            raise ValueError(f"Anderson decrease factor must lie in (0, 1], got {decrease}")
        self.memory = int(memory)
        self.decrease = float(decrease)
        self.bound = float(bound)
        self.regularization = float(regularization)
        self.max_coefficient = float(max_coefficient)
        self.history: list[deque] = [deque(maxlen=memory + 1) for _ in range(batch)]
        self.first_residual: list[float | None] = [None] * batch
        self.accepted = [0] * batch
        self.rejected = [0] * batch
        if backoff < 0:
            raise ValueError(f"Anderson backoff must be >= 0, got {backoff}")
        self.backoff = int(backoff)
        self._pause = [0] * batch  # iterations left without a proposal
        self._streak = [0] * batch  # consecutive rejections

    def record(self, i: int, accepted: bool) -> None:
        """Count a decision; consecutive rejections pause proposals for 1, 2, 4, ... (<= backoff) iterations."""
        if accepted:
            self.accepted[i] += 1
            self._streak[i] = 0
        else:
            self.rejected[i] += 1
            self._streak[i] += 1
            if self.backoff:
                self._pause[i] = min(2 ** (self._streak[i] - 1), self.backoff)

    def reset(self, i: int) -> None:
        self.history[i].clear()

    def push(self, indices: list[int], w: torch.Tensor, g: torch.Tensor, residual: list[float]) -> None:
        """Record accepted pairs ``(w, T w)`` of ``indices`` (rows of ``w`` and ``g``)."""
        for row, i in enumerate(indices):
            self.history[i].append((w[row].reshape(-1).clone(), g[row].reshape(-1).clone()))
            if self.first_residual[i] is None:
                self.first_residual[i] = residual[row]

    def ready(self, i: int) -> bool:
        return len(self.history[i]) >= 2

    def propose(self, indices: list[int], like: torch.Tensor) -> tuple[list[int], torch.Tensor | None]:
        """Extrapolated points for the images of ``indices`` that can extrapolate.

        Returns ``(subset, points)``; ``points`` has one row per image of ``subset`` shaped like
        ``like[0]``. Images with too little history or an ill-conditioned fit are left out.
        """
        subset, points = [], []
        for i in indices:
            if self._pause[i] > 0:
                self._pause[i] -= 1
                continue
            if not self.ready(i):
                continue
            ws = torch.stack([p[0] for p in self.history[i]])
            gs = torch.stack([p[1] for p in self.history[i]])
            fs = (gs - ws).to(torch.float64)
            d_f = fs[1:] - fs[:-1]
            d_g = (gs[1:] - gs[:-1]).to(torch.float64)
            gram = d_f @ d_f.T
            n = gram.shape[0]
            scale = float(gram.diagonal().sum()) / n
            if not scale > 0:
                continue
            gram = gram + (self.regularization * scale) * torch.eye(n, dtype=gram.dtype, device=gram.device)
            try:
                coeff = torch.linalg.solve(gram, d_f @ fs[-1])
            except RuntimeError:  # singular despite the regularisation: no extrapolation this time
                continue
            if not bool(torch.isfinite(coeff).all()) or float(coeff.abs().max()) > self.max_coefficient:
                continue
            point = gs[-1].to(torch.float64) - coeff @ d_g
            subset.append(i)
            points.append(point.to(like.dtype).reshape(like.shape[1:]))
        if not subset:
            return [], None
        return subset, torch.stack(points)

    def acceptable(self, i: int, candidate_residual: float, current_residual: float, count: bool = True) -> bool:
        """The safeguard: sufficient decrease and summability (see the module docstring).

        ``count=False`` leaves the accepted/rejected counters to the caller (the solver counts an
        acceptance when it commits the point).
        """
        r0 = self.first_residual[i] if self.first_residual[i] is not None else current_residual
        summable = self.bound * r0 * (self.accepted[i] + 1) ** -(1.0 + 1e-6)
        ok = candidate_residual <= self.decrease * current_residual and candidate_residual <= summable
        if count:
            self.record(i, ok)
        return ok

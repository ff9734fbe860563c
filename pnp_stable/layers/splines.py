"""Learned monotone linear-spline activations: per-channel ``s_c`` with every slope in [0, 1].

Why: in a gradient-flow block ``x -> x - h A^T s(Ax + b)`` the potential is ``sum g(Ax + b)``
with ``g' = s``. A (leaky) ReLU makes every ``g`` a one-sided quadratic, whose gradient grows
without bound with the filter response: such a block cannot express a saturating, edge-preserving
potential (Huber-like ``g``, ``s`` = a clipped ramp), and no sum of ReLU channels sharing ``A`` can,
since each adds a monotone increasing, unbounded term. A continuous piecewise-linear ``s`` with
learned slopes in [0, 1] can (Ducotterd et al., JMLR 2024, show learned 1-Lipschitz splines lift
the expressivity of Lipschitz-constrained networks; CRR-NN learns the same kind of potentials).

Guarantee: for *any* stored parameters, each ``s_c`` is continuous, non-decreasing and
1-Lipschitz, because the slopes used in the forward pass are the raw parameters clamped to
[0, 1]. So ``g_c`` is convex with a 1-Lipschitz derivative and every constant of the block
(``nu = ||A||^2``, the step rule, the certificate) is the one a ReLU block has. Training keeps
the raw parameters inside [0, 1] (:meth:`MonotoneLinearSpline.project_parameters_`, called by the
training loop after every optimiser step) so that no slope gets stuck past the clamp with a zero
gradient.

The knots are fixed, equally spaced and shared by all channels (around 0, where the trained
models' pre-activations live); the spline is anchored at ``s_c(0) = 0`` (an offset would only be
a translation of ``x``, which the bias already provides). Outside the outer knots ``s_c`` is
linear with the end slopes. Initialised as a (leaky) ReLU (0 is a knot), a spline activation
reproduces a ReLU block exactly, so a trained ReLU model can be warm-started into it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MonotoneLinearSpline", "uniform_knots"]


def uniform_knots(per_side: int, spacing: float) -> torch.Tensor:
    """The ``2 per_side + 1`` knots ``k * spacing`` for ``k = -per_side ... per_side`` (0 included)."""
    if per_side < 1:
        raise ValueError(f"a spline needs at least one knot on each side of 0, got {per_side}")
    if not spacing > 0:
        raise ValueError(f"knot spacing must be positive, got {spacing}")
    return spacing * torch.arange(-per_side, per_side + 1, dtype=torch.float64)


def _flat_segment_index(t: torch.Tensor, first: float, spacing: float, segments: int) -> torch.Tensor:
    """Index into the flattened ``channels x segments`` tables for every entry of ``t``.

    Segment ``k`` of a channel holds ``knots[k-1] < t <= knots[k]`` (0: left of the first knot,
    ``segments - 1``: right of the last). Equally spaced knots are located arithmetically (a
    fraction of ``torch.bucketize``'s cost on a CPU). Rounding may put a value lying on a knot
    into the neighbouring segment; the spline is continuous, so its value is the same either way.
    """
    channels = t.shape[1]
    # in the channel's own coordinates (small numbers, fine float spacing), then offset exactly
    local = (t * (1.0 / spacing)).sub_(first / spacing).ceil_().clamp_(0, segments - 1).long()
    shape = [1, channels] + [1] * (t.ndim - 2)
    return local.add_((torch.arange(channels, device=t.device) * segments).view(shape))


class MonotoneLinearSpline(nn.Module):
    """Per-channel continuous piecewise-linear activation with slopes in [0, 1] and ``s(0) = 0``.

    Args:
        channels: number of channels (dimension 1 of the input) with their own spline.
        knots: equally spaced knots containing 0 (default: :func:`uniform_knots` ``(16, 0.025)``,
            i.e. -0.4, -0.375, ..., 0.4).
        init: ``"leaky_relu"`` / ``"relu"`` (exactly that function) or ``"identity"``.
        negative_slope: the leaky ReLU's slope left of 0.

    ``monotone = True`` and ``lipschitz = 1`` hold for every parameter value (see the module
    docstring), which is what :func:`~pnp_stable.layers.activations.make_activation` checks.
    """

    monotone = True
    lipschitz = 1.0

    def __init__(self, channels: int, knots: torch.Tensor | None = None, init: str = "leaky_relu",
                 negative_slope: float = 0.01) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        knots = uniform_knots(16, 0.025) if knots is None else torch.as_tensor(knots, dtype=torch.float64)
        if knots.ndim != 1 or knots.numel() < 2:
            raise ValueError("spline knots must be a 1-D sequence of at least two values")
        gaps = knots[1:] - knots[:-1]
        # relative tolerance: knots given in float32 carry its rounding
        if not bool((gaps > 0).all()) or float((gaps - gaps[0]).abs().max()) > 1e-6 * float(gaps[0]):
            raise ValueError("spline knots must be strictly increasing and equally spaced")
        zero = (knots == 0).nonzero()
        if zero.numel() != 1:
            raise ValueError("spline knots must contain 0 (the anchor s(0) = 0)")
        if init not in ("leaky_relu", "relu", "identity"):
            raise ValueError(f"unknown spline initialisation {init!r}; choose leaky_relu, relu or identity")
        if not 0.0 <= negative_slope <= 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1], got {negative_slope}")
        self.channels = int(channels)
        self.zero_index = int(zero.item())
        self.register_buffer("knots", knots.float())
        # python floats: locating segments needs no device synchronisation
        self._first, self._spacing = float(knots[0]), float(knots[1] - knots[0])
        # segment k lies left of knot k (segment 0: (-inf, knot 0], the last: (knot -1, inf))
        segments = knots.numel() + 1
        left_of_zero = torch.arange(segments) <= self.zero_index
        slope = {"leaky_relu": negative_slope, "relu": 0.0, "identity": 1.0}[init]
        initial = torch.where(left_of_zero, torch.tensor(slope), torch.tensor(1.0))
        self.raw_slopes = nn.Parameter(initial.repeat(self.channels, 1).float())

    def slopes(self) -> torch.Tensor:
        """The slopes in use (``channels x segments``), always inside [0, 1]."""
        return self.raw_slopes.clamp(0.0, 1.0)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(slopes, intercepts)`` per channel and segment, with ``s`` continuous and ``s(0) = 0``."""
        slopes = self.slopes()
        # the knots the segments are located with (python floats fixed at construction), never the
        # buffer: a file whose stored knots differ would otherwise make s jump at every knot
        knots = self._first + self._spacing * torch.arange(
            slopes.shape[1] - 1, dtype=torch.float64, device=slopes.device)
        knots = knots.to(slopes.dtype)
        # s at each knot: integrate the slopes of the inner segments, then shift so that s(0) = 0
        inner = slopes[:, 1:-1] * (knots[1:] - knots[:-1])
        at_knots = torch.cat([torch.zeros_like(slopes[:, :1]), inner.cumsum(dim=1)], dim=1)
        at_knots = at_knots - at_knots[:, self.zero_index : self.zero_index + 1]
        # segment 0 passes through knot 0; segment k >= 1 through knot k - 1
        anchor_t = torch.cat([knots[:1], knots])
        anchor_s = torch.cat([at_knots[:, :1], at_knots], dim=1)
        return slopes, anchor_s - slopes * anchor_t

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        stored = state_dict.get(prefix + "knots")
        if isinstance(stored, torch.Tensor):
            mine = self.knots.detach().to("cpu", torch.float64)
            theirs = stored.detach().to("cpu", torch.float64)
            if theirs.shape != mine.shape or not bool(
                    ((theirs - mine).abs() <= 1e-6 * self._spacing).all()):
                # the forward pass uses the constructed knots; stored ones that differ are another
                # spline (or a tampered file), not these weights' function
                raise ValueError(f"{prefix}knots: the stored spline knots {theirs.tolist()} are not the configured "
                                 f"ones {mine.tolist()}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @torch.no_grad()
    def project_parameters_(self) -> None:
        """Clamp the raw slopes into [0, 1] in place (projected gradient; see the module docstring)."""
        self.raw_slopes.clamp_(0.0, 1.0)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim < 2 or t.shape[1] != self.channels:
            raise ValueError(f"spline activation expects {self.channels} channels in dimension 1, got {tuple(t.shape)}")
        slopes, intercepts = self.tables()
        # s(t) = intercept[c, k] + slope[c, k] t on segment k of channel c: one index computation
        # and two table lookups, whatever the number of knots (plain ops, so autograd and
        # torch.func's jvp/vjp, used by the certificate searches, see through it)
        flat = _flat_segment_index(t.detach(), self._first, self._spacing, slopes.shape[1]).reshape(-1)
        slope_t = slopes.to(t.dtype).reshape(-1).index_select(0, flat).view_as(t)
        return torch.addcmul(intercepts.to(t.dtype).reshape(-1).index_select(0, flat).view_as(t), slope_t, t)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, knots={self.knots.numel()}"

"""Gradient-flow blocks: ``x -> x - h A^T s(Ax + b)``, integrated over a fixed time ``T``.

The block follows the flow ``x' = -grad V(x)`` of the convex potential ``V(x) = sum g(Ax + b)``
(``g' = s`` monotone, ``L_s``-Lipschitz), whose gradient is cocoercive and ``nu = L_s ||A||^2``
Lipschitz. It takes ``n = ceil(T nu / (2 r (1 - margin)))`` sub-steps of size ``h = T / n`` with
an integrator of circle-contractivity radius ``r`` — the weights are never rescaled, the number of
steps adapts (Sherry et al., Physica D 2024). With ``margin > 0`` every Euler sub-step satisfies
``h nu <= 2 (1 - margin)`` and is therefore strictly averaged.

Which ``nu`` chooses ``n``:

* in training mode (and with autograd on), one warm-started power iteration per forward — a cheap
  estimate, as in the paper;
* otherwise the **certified** norm bound, so that what runs in evaluation is exactly what
  :meth:`GradientFlowBlock.certificate` proves;
* ``freeze_substeps()`` pins the certified count (used on export), ``substeps=`` forces a count
  (for experiments; the certificate then reports honestly whatever it implies).

Bounded compute: with ``max_substeps=k`` a block never takes more than ``k`` sub-steps. When the
norm grows past what ``k`` steps of the full time allow, the step stays at the admissible maximum
``h = 2 r (1 - margin) / nu`` and the block integrates for the shorter time ``k h`` instead (the
convex-potential layer of Meunier et al., ICML 2022, is the case ``k = 1``). The guarantee is the
same — every sub-step satisfies ``h nu <= 2 r (1 - margin)`` — the cost is fixed, and the
certificate reports the time actually integrated. While learning, that capped step is computed from
a differentiable norm estimate ``||A u||`` (power vector ``u`` held fixed), so the optimiser sees
that scaling ``A`` up shortens the step rather than lengthening the flow; with the counts frozen
(certified fine-tuning) that estimate is rescaled to the certified bound, so training takes exactly
the steps evaluation will.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pnp_stable.layers.activations import make_activation
from pnp_stable.layers.certificates import Certificate, compose
from pnp_stable.layers.integrators import Integrator, get_integrator
from pnp_stable.layers.linear_maps import ConvMap, DenseMap, LinearMap

__all__ = ["GradientFlowBlock", "conv_block", "dense_block"]


class GradientFlowBlock(nn.Module):
    """Certified block ``x -> Phi_T(x)``, the integrated gradient flow of a convex potential.

    Args:
        linear: the map ``A`` (:class:`~pnp_stable.layers.linear_maps.DenseMap` or ``ConvMap``).
        activation: monotone Lipschitz ``s`` (``"relu"``, ``"leaky_relu"``, ``"tanh"``, a module).
        time: integration time ``T > 0`` of the block.
        integrator: ``"euler"`` (r = 1), ``"heun"`` (r = 1) or ``"rk4"`` (SSPRK(10,4), r = 6).
        margin: strictness ``eps`` in ``h nu <= 2 r (1 - eps)``; 0 allows ``h nu = 2 r`` (then only
            non-expansiveness, no averagedness, is proven).
        bias: learn a bias ``b``.
        substeps: force a sub-step count (0 = adaptive).
        max_substeps: cap on the sub-step count (0 = none); beyond it the step stays at the
            admissible maximum and the integrated time shrinks (see the module docstring).
    """

    accepts_conditioning = True

    def __init__(
        self,
        linear: LinearMap,
        activation: str | nn.Module = "relu",
        time: float = 1.0,
        integrator: str | Integrator = "euler",
        margin: float = 0.01,
        bias: bool = True,
        substeps: int = 0,
        negative_slope: float = 0.01,
        max_substeps: int = 0,
    ) -> None:
        super().__init__()
        if not time > 0:
            raise ValueError(f"integration time must be positive, got {time}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must lie in [0, 1), got {margin}")
        if max_substeps < 0:
            raise ValueError(f"max_substeps must be >= 0 (0 = no cap), got {max_substeps}")
        self.linear = linear
        self.activation = make_activation(activation, negative_slope)
        self.integrator = get_integrator(integrator)
        self.margin = float(margin)
        self.register_buffer("time", torch.tensor(float(time), dtype=torch.float64))
        self.register_buffer("fixed_substeps", torch.tensor(int(substeps), dtype=torch.int64))
        # an architecture choice, not state: models record it in their config
        self.max_substeps = int(max_substeps)
        n_hidden = linear.out_channels if isinstance(linear, ConvMap) else linear.out_features
        self.bias = nn.Parameter(torch.zeros(n_hidden)) if bias else None
        self.last_substeps = 0

    # -- constants -------------------------------------------------------------------------
    @property
    def activation_lipschitz(self) -> float:
        return float(self.activation.lipschitz)

    def nu(self, certified: bool = True) -> float:
        """Lipschitz constant of ``grad V``: ``L_s ||A||^2`` (certified bound or current estimate)."""
        if certified:
            norm = self.linear.certified_norm()
        else:
            norm = float(self.linear.norm_estimate)
            if norm == 0.0:
                norm = self.linear.estimate_norm()
        return self.activation_lipschitz * norm * norm

    @property
    def step_budget(self) -> float:
        """The largest admissible ``h nu``: ``2 r (1 - margin)``."""
        return 2.0 * self.integrator.radius * (1.0 - self.margin)

    def required_substeps(self, nu: float) -> int:
        """Smallest ``n`` with ``(T/n) nu <= 2 r (1 - margin)``."""
        # the tiny relative slack keeps exact multiples (e.g. T nu = 2) from rounding up
        return max(1, math.ceil(float(self.time) * nu / self.step_budget * (1 - 1e-12)))

    def substeps(self, certified: bool = True) -> int:
        forced = int(self.fixed_substeps)
        n = forced if forced > 0 else self.required_substeps(self.nu(certified))
        cap = self.max_substeps
        return min(n, cap) if cap > 0 else n

    def step_size(self, certified: bool = True) -> float:
        """Sub-step size ``h`` evaluated in this mode: ``T / n``, or with a cap in force the
        admissible maximum ``2 r (1 - margin) / nu`` when that is smaller."""
        h = float(self.time) / self.substeps(certified)
        if self.max_substeps > 0:
            nu = self.nu(certified)
            if nu > 0:
                h = min(h, self.step_budget / nu)
        return h

    def freeze_substeps(self) -> int:
        """Pin the sub-step count to the one the certified norm requires (capped by
        ``max_substeps``); returns it."""
        self.fixed_substeps.fill_(0)
        n = self.substeps(certified=True)
        self.fixed_substeps.fill_(n)
        return n

    def unfreeze_substeps(self) -> None:
        self.fixed_substeps.fill_(0)

    # -- evaluation ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, bias_shift: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the flow from ``x``. ``bias_shift`` (broadcastable to ``A x``) is added to ``b``.

        A bias shift (e.g. a noise-level embedding) does not change any constant in ``x``.
        """
        training = self.training and torch.is_grad_enabled()
        if training and int(self.fixed_substeps) == 0:
            self.linear.estimate_norm(n_iter=1)
        n = self.substeps(certified=not training)
        self.last_substeps = n
        h: float | torch.Tensor = self.step_size(certified=self._steps_from_certified_norm(training))
        if training and h < float(self.time) / n:
            h = self._differentiable_capped_step(float(self.time) / n)
        return self._integrate(x, n, h, self._bias(x, bias_shift))

    def _steps_from_certified_norm(self, training: bool) -> bool:
        # Eval steps with the certified bound. So does training once the counts are frozen (the
        # certified fine-tuning phase): a capped step is then exactly the one eval will take,
        # instead of the slightly longer one the (lower) power estimate would give.
        return not training or int(self.fixed_substeps) > 0

    def _integrate(self, x: torch.Tensor, n: int, h: float | torch.Tensor,
                   bias: torch.Tensor | None, gate: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` integrator steps of size ``h`` along ``-A^T (gate * s(A z + bias))``.

        A ``gate`` in [0, 1] per potential channel weights the terms of ``V = sum g(Az + b)``:
        ``sum gate_c g(a_c z + b_c)`` is still convex and its gradient is at most as Lipschitz
        (``A^T diag(gate s') A <= L_s A^T A``), so the step rule and the certificate are unchanged.
        """
        linear, act = self.linear, self.activation
        group = int(getattr(act, "group_size", 1))
        if gate is not None and group > 1:
            # A vector activation (group shrinkage) is the gradient of a function of whole groups:
            # a gate that differs inside a group makes the field no gradient (a non-symmetric
            # Jacobian), and the block expansive (Lipschitz 1.04 measured against a certified 1).
            g = gate.reshape(gate.shape[0], -1, group, *gate.shape[2:])
            if not torch.equal(g, g[:, :, :1].expand_as(g)):
                raise ValueError(f"a channel gate must be constant on each group of {group} channels of a "
                                 "group-shrinkage activation for the certificate to hold")

        def field(z: torch.Tensor) -> torch.Tensor:
            a = linear(z)
            if bias is not None:
                a = a + bias
            s = act(a)
            return -linear.adjoint(s if gate is None else gate * s, z)

        for _ in range(n):
            x = self.integrator.step(x, h, field)
        return x

    def _differentiable_capped_step(self, uncapped: float) -> torch.Tensor:
        # ||A u|| with the power vector u fixed: the estimate the float step came from, but with a
        # gradient, so that growing A visibly shrinks the step (as in spectral normalisation).
        sigma = self.linear.differentiable_norm_estimate()
        if self._steps_from_certified_norm(training=True):
            # frozen counts: the certified bound's value with the estimate's gradient
            sigma = sigma * (self.linear.certified_norm() / sigma.detach().clamp_min(1e-30))
        nu = self.activation_lipschitz * sigma * sigma
        return torch.clamp(self.step_budget / nu.clamp_min(1e-12), max=uncapped)

    def _bias(self, x: torch.Tensor, bias_shift: torch.Tensor | None) -> torch.Tensor | None:
        b = self.bias
        if b is not None and isinstance(self.linear, ConvMap):
            b = b.view(1, -1, 1, 1)
        if bias_shift is None:
            return b
        return bias_shift if b is None else b + bias_shift

    # -- certificate -----------------------------------------------------------------------
    def certificate(self) -> Certificate:
        """Proven constants of the block as evaluated in eval mode, valid for every input size."""
        nu = self.nu(certified=True)
        n = self.substeps(certified=True)
        h = self.step_size(certified=True)
        step = self.integrator.certificate(h, nu)
        cert = compose([step] * n)
        detail = {
            "layer": type(self.linear).__name__,
            "norm_certified": self.linear.certified_norm(),
            "norm_estimate": float(self.linear.norm_estimate),
            "nu": nu,
            "time": float(self.time),
            "integrated_time": n * h,
            "substeps": n,
            "h_nu": h * nu,
            "integrator": self.integrator.name,
            "lipschitz": cert.lipschitz,
            "averagedness": cert.averagedness,
        }
        return cert.with_details(detail)

    def certified_lipschitz_bound(self) -> float:
        return self.certificate().lipschitz

    def certified_averagedness(self) -> float | None:
        return self.certificate().averagedness

    def extra_repr(self) -> str:
        cap = self.max_substeps
        return (f"time={float(self.time):g}, integrator={self.integrator.name}, margin={self.margin:g}"
                + (f", max_substeps={cap}" if cap else ""))


def conv_block(
    channels: int,
    hidden: int | None = None,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    power_size: int = 32,
    **block_kwargs,
) -> GradientFlowBlock:
    """A convolutional block on ``channels`` feature maps with ``hidden`` potential channels."""
    linear = ConvMap(
        channels,
        hidden or channels,
        kernel_size,
        stride=stride,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        power_size=power_size,
    )
    return GradientFlowBlock(linear, **block_kwargs)


def dense_block(features: int, hidden: int | None = None, **block_kwargs) -> GradientFlowBlock:
    """A dense block on vectors of ``features`` entries with ``hidden`` potential units."""
    return GradientFlowBlock(DenseMap(features, hidden or features), **block_kwargs)

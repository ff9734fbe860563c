"""The certified denoiser and its unconstrained baseline (same pipeline, no constraint).

Both are called as ``D(x, sigma)`` with ``x`` a ``B x C x H x W`` image in [0, 1] and ``sigma`` a
float or a ``(B,)`` tensor on the [0, 1] scale, and compute

    D(x, sigma) = (1 - t(sigma)) x + t(sigma) (P N_sigma E (x - c) + c)

with ``E`` the zero-padding lift to ``width`` channels, ``P`` its adjoint, ``c`` a constant
centre and ``N_sigma`` a stack of residual blocks whose biases are shifted by a learned
embedding of sigma (with ``input_injection``, each block's output is pulled back towards the
lifted input by a learned ``theta_k(sigma)``; see :class:`DenoiserConfig`). In
:class:`CertifiedDenoiser` every block is the integrated gradient flow of a convex potential, so
``N_sigma`` is averaged for every sigma; in
:class:`UnconstrainedDenoiser` a block is ``x - B^T s(Ax + b)`` with ``B`` free, which carries no
guarantee and is kept to measure the price of the certificate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pnp_stable.denoisers.conditioning import NoiseEmbedding, as_sigma_batch, check_image_dtype
from pnp_stable.denoisers.config import DenoiserConfig
from pnp_stable.layers import Certificate, CertifiedSequential, ConvMap, GradientFlowBlock, Lift, Projection
from pnp_stable.layers.activations import make_activation
from pnp_stable.layers.group_shrinkage import GroupShrinkage
from pnp_stable.layers.splines import MonotoneLinearSpline, uniform_knots

__all__ = ["CertifiedDenoiser", "UnconstrainedDenoiser", "FreeResidualBlock", "TimeScaledFlowBlock", "build_denoiser"]

# sigmoid(3) = 0.95: start close to the plain network output
_INITIAL_RELAXATION_LOGIT = 3.0
# sigmoid(5) = 0.993: start with (almost) the full integration time
_INITIAL_TIME_LOGIT = 5.0
# sigmoid(-6) = 0.0025: start close to the plain composition (a warm start from a model trained
# without injection loses little); the head's output is multiplied by the gain so that Adam, whose
# steps are about lr in the raw output, moves the logits ~gain times faster (from -6 to an
# effective pull of a few percent within a thousand steps at a continuation's learning rate)
_INITIAL_INJECTION_LOGIT = -6.0
_INJECTION_LOGIT_GAIN = 20.0
# sigmoid(5) = 0.993: every potential channel starts (almost) fully on
_INITIAL_GATE_LOGIT = 5.0
# a group shrinkage threshold at construction, in pre-activation units: about the median
# |pre-activation| of the shipped `gray` at sigma 15-25/255 (0.009-0.011)
_INITIAL_SHRINKAGE_THRESHOLD = 0.01


class FreeResidualBlock(nn.Module):
    """``x -> x - B^T s(Ax + b)`` with independent ``A`` and ``B``: the unconstrained counterpart."""

    accepts_conditioning = True

    def __init__(self, width: int, hidden: int, kernel_size: int, stride: int, activation: str | nn.Module,
                 negative_slope: float) -> None:
        super().__init__()
        self.analysis = ConvMap(width, hidden, kernel_size, stride=stride)
        self.synthesis = ConvMap(width, hidden, kernel_size, stride=stride)
        self.activation = make_activation(activation, negative_slope)
        self.bias = nn.Parameter(torch.zeros(hidden))
        with torch.no_grad():
            # a small residual branch at initialisation, as for the certified block's h
            self.synthesis.weight.mul_(0.5)

    def forward(self, x: torch.Tensor, bias_shift: torch.Tensor | None = None,
                channel_gate: torch.Tensor | None = None) -> torch.Tensor:
        a = self.analysis(x) + self.bias.view(1, -1, 1, 1)
        if bias_shift is not None:
            a = a + bias_shift
        s = self.activation(a)
        return x - self.synthesis.adjoint(s if channel_gate is None else channel_gate * s, x)


class TimeScaledFlowBlock(GradientFlowBlock):
    """Gradient-flow block whose integration time can be shortened per sample: ``T tau``, ``0 < tau <= 1``.

    Let ``n`` be the sub-step count for the full time ``T`` (so ``(T / n) nu <= 2 r (1 - margin)``).
    In evaluation the block takes ``n' = ceil(tau_max n)`` sub-steps (``tau_max`` the largest
    ``tau`` of the batch, at least 1 step, at most ``n``) of size ``h' = tau T / n'``; in training it
    keeps ``n`` sub-steps of size ``tau T / n``. Either way ``h' <= T / n``, so every sub-step has
    ``h' nu <= 2 r (1 - margin)`` and is at most as averaged as a full-time sub-step, and ``n' <= n``
    such sub-steps compose to an operator at most as averaged as ``n`` of them (the
    Combettes-Yamada constant grows with each factor's): the certificate computed for ``tau = 1``
    holds for every ``tau`` in (0, 1]. This is the paper's adaptive rule applied to the time
    actually integrated: a block that the noise level switches almost off costs one sub-step.
    ``adapt_substeps_to_time = False`` keeps ``n`` sub-steps in evaluation too (the discretisation
    the model was trained with). Under a ``max_substeps`` cap, ``T / n`` above reads as the capped
    full-time step (:meth:`GradientFlowBlock.step_size`), and the same argument applies.
    """

    adapt_substeps_to_time = True

    @staticmethod
    def time_adapted_substeps(full_time_substeps: int, tau_max: float) -> int:
        """Fewest sub-steps ``n'`` with ``tau_max T / n' <= T / n``: ``ceil(tau_max n)`` in [1, n]."""
        return max(1, min(full_time_substeps, math.ceil(tau_max * full_time_substeps)))

    def forward(self, x: torch.Tensor, bias_shift: torch.Tensor | None = None,
                time_scale: torch.Tensor | None = None, channel_gate: torch.Tensor | None = None) -> torch.Tensor:
        if time_scale is None and channel_gate is None:
            return super().forward(x, bias_shift)
        if channel_gate is not None and (bool((channel_gate < 0).any()) or bool((channel_gate > 1).any())):
            raise ValueError("channel_gate must lie in [0, 1] for the certificate to hold")
        if time_scale is None:
            time_scale = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        if bool((time_scale <= 0).any()) or bool((time_scale > 1).any()):
            raise ValueError("time_scale must lie in (0, 1] for the certificate to hold")
        training = self.training and torch.is_grad_enabled()
        if training and int(self.fixed_substeps) == 0:
            self.linear.estimate_norm(n_iter=1)
        full_n = self.substeps(certified=not training)
        # T / n, or under a max_substeps cap the admissible maximum step (the full time then shrinks)
        full_h: float | torch.Tensor = self.step_size(certified=self._steps_from_certified_norm(training))
        if training and full_h < float(self.time) / full_n:
            # as in the plain block: the capped step carries the gradient of the norm estimate
            full_h = self._differentiable_capped_step(float(self.time) / full_n)
        n = full_n
        if not training and self.adapt_substeps_to_time:
            # float64: tau (a float32 value) times a small integer is exact, so ceil cannot round down
            n = self.time_adapted_substeps(full_n, float(time_scale.detach().max().double()))
        self.last_substeps = n
        h = (full_h * full_n / n) * time_scale.reshape(-1, *([1] * (x.ndim - 1)))
        return self._integrate(x, n, h, self._bias(x, bias_shift), channel_gate)


def _block_activation(config: DenoiserConfig) -> str | nn.Module:
    """The configured activation, a learned monotone spline that starts as it, or group shrinkage."""
    if config.shrinkage_group_size:
        return GroupShrinkage(config.hidden, config.shrinkage_group_size, leak=config.negative_slope,
                              initial_threshold=_INITIAL_SHRINKAGE_THRESHOLD)
    if not config.spline_knots:
        return config.activation
    knots = uniform_knots(config.spline_knots, config.spline_spacing)
    return MonotoneLinearSpline(config.hidden, knots, init=config.activation, negative_slope=config.negative_slope)


class _ConditionedDenoiser(nn.Module):
    """Shared plumbing: input checks, sigma embedding, centring, lift/projection, relaxation."""

    def __init__(self, config: DenoiserConfig, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.config = config
        self.network = CertifiedSequential(Lift(config.channels, config.width), *blocks,
                                           Projection(config.width, config.channels))
        self.block_hidden = [config.hidden] * config.blocks
        n_out = sum(self.block_hidden) if config.sigma_conditioning else 0
        if config.learned_relaxation:
            n_out += 1
        self.embedding: NoiseEmbedding | None = None
        if n_out:
            logit = _INITIAL_RELAXATION_LOGIT if config.learned_relaxation else None
            self.embedding = NoiseEmbedding(n_out, config.embedding_dim, logit)
        # separate heads (new parameters only), so models trained without one initialise it
        self.time_embedding = self._sigma_head(config.time_conditioning, config.blocks, _INITIAL_TIME_LOGIT)
        self.injection_embedding = self._sigma_head(config.input_injection, config.blocks,
                                                    _INITIAL_INJECTION_LOGIT / _INJECTION_LOGIT_GAIN)
        self.gate_embedding = self._sigma_head(config.channel_gating, sum(self.block_hidden), _INITIAL_GATE_LOGIT)

    def _sigma_head(self, enabled: bool, outputs: int, initial_output: float) -> NoiseEmbedding | None:
        """``outputs`` numbers from sigma (one per block, or one per potential channel of every
        block), every one starting at ``initial_output``."""
        if not enabled:
            return None
        head = NoiseEmbedding(outputs, self.config.embedding_dim)
        with torch.no_grad():
            head.mlp[-1].bias.fill_(initial_output)
        return head

    def injection_weights(self, sigma: torch.Tensor) -> torch.Tensor:
        """``theta_k(sigma)`` in (0, 1), ``B x blocks``: how far block ``k``'s output is pulled
        back towards the lifted input (needs ``input_injection``)."""
        if self.injection_embedding is None:
            raise ValueError("this denoiser has no input injection")
        return torch.sigmoid(_INJECTION_LOGIT_GAIN * self.injection_embedding(sigma))

    @property
    def needs_sigma(self) -> bool:
        return any(e is not None for e in (self.embedding, self.time_embedding, self.injection_embedding,
                                           self.gate_embedding))

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"expected a B x C x H x W tensor, got shape {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.config.channels:
            raise ValueError(f"this denoiser expects {self.config.channels} channel(s), got {x.shape[1]}")
        check_image_dtype(x, self.weights_dtype())

    def weights_dtype(self) -> torch.dtype:
        """The dtype of the weights (the first parameter's: a model is converted as a whole)."""
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` (``B x C x H x W``, values in [0, 1]) at noise level ``sigma`` ([0, 1] scale)."""
        self._check_input(x)
        shifts: list[torch.Tensor | None] = [None] * self.config.blocks
        scales: list[torch.Tensor | None] = [None] * self.config.blocks
        pulls: list[torch.Tensor | None] = [None] * self.config.blocks
        gates: list[torch.Tensor | None] = [None] * self.config.blocks
        t = None
        s = as_sigma_batch(sigma, x.shape[0], x) if self.needs_sigma else None
        # the noise-level heads run outside autocast: in float16 a sigmoid of a logit below about -17
        # underflows to 0, and a time scale or relaxation of 0 is outside the certificate's (0, 1]
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.injection_embedding is not None:
                pulls = [p.view(-1, 1, 1, 1) for p in self.injection_weights(s).unbind(dim=1)]
            if self.time_embedding is not None:
                scales = list(torch.sigmoid(self.time_embedding(s)).unbind(dim=1))
            if self.gate_embedding is not None:
                gates = self._per_block_channels(torch.sigmoid(self.gate_embedding(s)))
            if self.embedding is not None:
                code = self.embedding(s)
                if self.config.learned_relaxation:
                    t = torch.sigmoid(code[:, -1]).view(-1, 1, 1, 1)
                    code = code[:, :-1]
                if self.config.sigma_conditioning:
                    shifts = self._per_block_channels(code)
        center = self.config.center
        layers = list(self.network)
        z0 = z = layers[0](x - center)
        for block, shift, scale, gate, pull in zip(layers[1:-1], shifts, scales, gates, pulls):
            extra = {} if scale is None else {"time_scale": scale}
            if gate is not None:
                extra["channel_gate"] = gate
            z = block(z, bias_shift=shift, **extra)
            if pull is not None:
                z = z + pull * (z0 - z)
        z = layers[-1](z) + center
        if t is not None:
            z = x + t * (z - x)
        return z

    def _per_block_channels(self, code: torch.Tensor) -> list[torch.Tensor]:
        """``B x sum(hidden)`` head outputs as one ``B x hidden x 1 x 1`` tensor per block."""
        return [p.reshape(p.shape[0], -1, 1, 1) for p in torch.split(code, self.block_hidden, dim=1)]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CertifiedDenoiser(_ConditionedDenoiser):
    """Averaged denoiser by construction: lift, gradient-flow conv blocks, projection.

    Guarantee (see :meth:`certificate`): for every sigma and every input size, ``x -> D(x, sigma)``
    is ``alpha``-averaged (hence 1-Lipschitz) with the stated ``alpha``, in **eval mode** (where
    sub-step counts come from certified norm bounds, or were frozen from them on export).
    Assumptions: zero padding (the lift/projection and convolutions as built here); in training
    mode the step counts follow a power-method estimate and nothing is proven.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        if config.kind != "certified":
            raise ValueError(f"CertifiedDenoiser needs kind='certified', got {config.kind!r}")
        blocks = [
            TimeScaledFlowBlock(
                ConvMap(config.width, config.hidden, config.kernel_size, stride=stride, power_size=config.power_size),
                activation=_block_activation(config), time=config.time, integrator=config.integrator, margin=config.margin,
                negative_slope=config.negative_slope, max_substeps=config.max_substeps)
            for stride in config.block_strides
        ]
        if config.init_scale != 1.0:
            with torch.no_grad():
                for b in blocks:
                    b.linear.weight.mul_(config.init_scale)
        super().__init__(config, blocks)

    @property
    def flow_blocks(self) -> list[GradientFlowBlock]:
        return [m for m in self.network if isinstance(m, GradientFlowBlock)]

    def freeze_substeps(self) -> list[int]:
        """Pin every block's sub-step count to the one its certified norm bound requires."""
        return [b.freeze_substeps() for b in self.flow_blocks]

    def unfreeze_substeps(self) -> None:
        for b in self.flow_blocks:
            b.unfreeze_substeps()

    def certificate(self) -> Certificate:
        """Proven constants of ``x -> D(x, sigma)`` in eval mode, for every sigma and input size.

        The network ``P N E`` keeps the constants of ``N`` (composition of the blocks), the
        centring is a translation conjugation (same constants), the relaxation weight
        ``t(sigma)`` lies in (0, 1), so ``(1 - t) I + t (.)`` can only lower ``alpha``, and a
        sigma-dependent integration time ``tau(sigma) T`` with ``tau`` in (0, 1) only shortens
        the sub-steps (see :class:`TimeScaledFlowBlock`). With input injection the state after
        block ``k`` is ``S_k z_0`` with ``S_k = (1 - theta_k) G_k S_{k-1} + theta_k I``: by
        induction ``G_k S_{k-1}`` is averaged with at most the constant of the plain composition
        of the first ``k`` blocks (Combettes-Yamada, increasing in each factor's constant), and
        relaxing it towards ``I`` with ``theta_k`` in (0, 1) multiplies that constant by
        ``1 - theta_k``: the plain composition's constants hold. A channel gate ``g_kc(sigma)`` in
        (0, 1) reweights the terms of block ``k``'s convex potential; its gradient stays at most
        ``L_s ||A||^2``-Lipschitz, so every sub-step keeps the constants computed without it.
        """
        inner = self.network.certificate()
        relax = {"relaxation": "t(sigma) in (0, 1)" if self.config.learned_relaxation else "none",
                 "time_scale": "tau(sigma) in (0, 1)" if self.config.time_conditioning else "none",
                 "input_injection": "theta_k(sigma) in (0, 1)" if self.config.input_injection else "none",
                 "channel_gate": "g_kc(sigma) in (0, 1)" if self.config.channel_gating else "none",
                 "center": self.config.center}
        return Certificate(inner.lipschitz, inner.averagedness, inner.details + (relax,))

    def certified_lipschitz_bound(self) -> float:
        return self.certificate().lipschitz

    def certified_averagedness(self) -> float | None:
        return self.certificate().averagedness


class UnconstrainedDenoiser(_ConditionedDenoiser):
    """Baseline with the same lift, conditioning and relaxation but free residual blocks.

    It states no certificate (``certificate_of`` returns None): nothing about it is proven.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        if config.kind != "unconstrained":
            raise ValueError(f"UnconstrainedDenoiser needs kind='unconstrained', got {config.kind!r}")
        blocks = [
            FreeResidualBlock(config.width, config.hidden, config.kernel_size, stride, _block_activation(config),
                              config.negative_slope)
            for stride in config.block_strides
        ]
        if config.init_scale != 1.0:
            with torch.no_grad():
                for b in blocks:
                    b.analysis.weight.mul_(config.init_scale)
                    b.synthesis.weight.mul_(config.init_scale)
        super().__init__(config, blocks)


def build_denoiser(config: DenoiserConfig) -> CertifiedDenoiser | UnconstrainedDenoiser:
    """Construct the (untrained) denoiser described by ``config``."""
    if config.kind == "certified":
        return CertifiedDenoiser(config)
    return UnconstrainedDenoiser(config)


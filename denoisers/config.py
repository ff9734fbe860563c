"""Architecture configuration shared by the certified denoiser and its unconstrained baseline."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["DenoiserConfig"]

_KINDS = ("certified", "unconstrained")


@dataclass
class DenoiserConfig:
    """Everything needed to rebuild a denoiser from its weights (stored in every export).

    Attributes:
        kind: ``"certified"`` (gradient-flow blocks, averaged by construction) or
            ``"unconstrained"`` (same pipeline, free residual blocks, no guarantee).
        channels: image channels (1 gray, 3 RGB).
        width: state channels after the zero-padding lift.
        hidden: potential channels of every block (``A: width -> hidden``).
        blocks: number of gradient-flow blocks.
        kernel_size: odd kernel size of every ``A``.
        strides: per-block stride of ``A`` (multi-scale potentials); empty means all 1. A strided
            ``A`` keeps ``x - h A^T s(Ax + b)`` a gradient step of a convex potential.
        time: integration time ``T`` of each block.
        integrator: ``"euler"``, ``"heun"`` or ``"rk4"``.
        activation: monotone activation (``"leaky_relu"``, ``"relu"``, ...).
        negative_slope: slope of ``leaky_relu`` on the negative side.
        spline_knots: learn each potential channel's activation as a monotone linear spline with
            this many equally spaced knots on each side of 0 (0 = the fixed ``activation``;
            certified models only). The spline starts as ``activation`` (``leaky_relu`` or
            ``relu``) and keeps every slope in [0, 1], so the certificate is the ReLU block's
            (:class:`~pnp_stable.layers.MonotoneLinearSpline`); it can learn saturating,
            edge-preserving potentials that a ReLU cannot express.
        spline_spacing: distance between neighbouring spline knots (pre-activation units).
        shrinkage_group_size: replace the scalar ``activation`` by joint shrinkage of groups of
            this many consecutive potential channels (0 = the scalar activation;
            :class:`~pnp_stable.layers.GroupShrinkage`): each group vector keeps
            ``max(leak, 1 - lambda_g / ||u_g||)`` of itself, with a learned threshold per group and
            ``leak = negative_slope``. It is the gradient of a convex function with a 1-Lipschitz
            gradient, so the certificate is the ReLU block's; a group can keep or kill a pair of
            filter responses on their joint energy, which no elementwise activation expresses.
        margin: strictness of the step rule ``h nu <= 2 r (1 - margin)``.
        sigma_conditioning: learn noise-level dependent bias shifts (one model for all sigmas).
        embedding_dim: width of the noise-level embedding MLP.
        learned_relaxation: output ``(1 - t(sigma)) x + t(sigma) N(x)`` with ``t`` in (0, 1).
        time_conditioning: integrate block ``k`` over ``tau_k(sigma) T`` with ``tau_k`` in (0, 1)
            (weaker flows at low noise; certified models only).
        input_injection: after every block ``k`` pull the state back towards the lifted input,
            ``z_k = (1 - theta_k(sigma)) G_k(z_{k-1}) + theta_k(sigma) z_0`` with ``theta_k`` in
            (0, 1) learned per noise level. With shared blocks this is the unrolled iteration of a
            proximal operator of a convex potential (``z = (1 - theta) G(z) + theta z_0`` is the
            resolvent ``(I + lambda grad V)^-1 z_0``, ``lambda = (1 - theta) h / theta``), where a
            plain stack repeating one block flows to a minimiser of ``V`` and forgets ``z_0``.
            Every ``z_k`` is a relaxation towards the identity of an averaged map (a composition
            of averaged maps), so the plain composition's constants still hold.
        channel_gating: weight potential channel ``c`` of block ``k`` by a learned
            ``g_kc(sigma)`` in (0, 1): the block follows the gradient of
            ``sum_c g_kc(sigma) g(a_c z + b_c)``, still convex with a gradient at most as
            Lipschitz, so the step rule and the certificate are unchanged; per noise level the
            network can switch individual filters of its potentials off, where time conditioning
            can only shorten a whole block.
        center: images are shifted by ``-center`` before the network and back after (a
            translation conjugation, which keeps every constant).
        max_substeps: cap on every block's sub-step count (0 = none; certified models only). Past
            the cap a block keeps the admissible maximum step ``h = 2 r (1 - margin) / nu`` and
            integrates for less than ``T`` (:class:`~pnp_stable.layers.GradientFlowBlock`): the
            certificate is unchanged in kind, the cost per block is fixed, so deeper stacks of
            short flows become affordable.
        init_scale: multiplies the default initialisation of every ``A`` (sets the initial number
            of sub-steps).
        power_size: spatial size of the power-method buffers.
    """

    kind: str = "certified"
    channels: int = 1
    width: int = 32
    hidden: int = 64
    blocks: int = 8
    kernel_size: int = 3
    strides: tuple[int, ...] = field(default_factory=tuple)
    time: float = 1.0
    integrator: str = "euler"
    activation: str = "leaky_relu"
    negative_slope: float = 0.01
    spline_knots: int = 0
    spline_spacing: float = 0.025
    shrinkage_group_size: int = 0
    margin: float = 0.01
    sigma_conditioning: bool = True
    embedding_dim: int = 64
    learned_relaxation: bool = True
    time_conditioning: bool = False
    input_injection: bool = False
    channel_gating: bool = False
    center: float = 0.5
    max_substeps: int = 0
    init_scale: float = 1.0
    power_size: int = 32

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        if self.kind not in _KINDS:
            raise ValueError(f"unknown denoiser kind {self.kind!r}; choose one of {_KINDS}")
        for name in ("channels", "width", "hidden", "blocks", "kernel_size", "embedding_dim", "power_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.width < self.channels:
            raise ValueError(f"width ({self.width}) must be at least the image channels ({self.channels})")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.strides and len(self.strides) != self.blocks:
            raise ValueError(f"strides has {len(self.strides)} entries but there are {self.blocks} blocks")
        if any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive, got {self.strides}")
        if not (self.time > 0 and math.isfinite(self.time)):
            raise ValueError(f"time must be a positive finite number, got {self.time}")
        for name in ("center", "spline_spacing", "init_scale", "margin", "negative_slope"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.time_conditioning and self.kind != "certified":
            raise ValueError("time_conditioning applies to certified gradient-flow blocks only")
        self.max_substeps = int(self.max_substeps)
        if self.max_substeps < 0:
            raise ValueError(f"max_substeps must be >= 0 (0 = no cap), got {self.max_substeps}")
        if self.max_substeps and self.kind != "certified":
            raise ValueError("max_substeps applies to certified gradient-flow blocks only")
        self.spline_knots = int(self.spline_knots)
        if self.spline_knots < 0:
            raise ValueError(f"spline_knots must be >= 0 (0 = no spline), got {self.spline_knots}")
        if self.spline_knots:
            if self.kind != "certified":
                raise ValueError("spline_knots applies to certified gradient-flow blocks only")
            if self.activation not in ("leaky_relu", "relu"):
                raise ValueError(f"a spline activation starts as leaky_relu or relu, not {self.activation!r}")
            if not self.spline_spacing > 0:
                raise ValueError(f"spline_spacing must be positive, got {self.spline_spacing}")
        self.shrinkage_group_size = int(self.shrinkage_group_size)
        if self.shrinkage_group_size:
            if self.shrinkage_group_size < 0 or self.hidden % self.shrinkage_group_size:
                raise ValueError(f"shrinkage_group_size must divide hidden ({self.hidden}), got {self.shrinkage_group_size}")
            if self.spline_knots:
                raise ValueError("choose spline_knots or shrinkage_group_size, not both")
            if self.channel_gating:
                # a per-channel gate inside a group would make the block's field no gradient
                raise ValueError("channel_gating cannot weight channels of a shrinkage group")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")

    @property
    def block_strides(self) -> tuple[int, ...]:
        return self.strides or (1,) * self.blocks

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DenoiserConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (a newer format)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown denoiser configuration keys: {', '.join(unknown)}")
        return cls(**data)

"""Architecture description shared by both classifiers (serialised into checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["ARCHITECTURES", "ClassifierConfig", "STAGE_ACTIVATIONS"]

ARCHITECTURES = ("nonexpansive", "resnet")
STAGE_ACTIVATIONS = ("none", "maxmin")


def _as_tuple(value: Any, name: str, cast=int) -> tuple:
    if isinstance(value, (int, float)):
        return (cast(value),)
    try:
        return tuple(cast(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {value!r}") from None


@dataclass
class ClassifierConfig:
    """Layout of a classifier: shift -> lift -> stages of residual blocks with stride-2 transitions
    between them -> flatten (or norm-preserving global pool) -> linear head.

    ``architecture="nonexpansive"``: every layer certified (gradient-flow blocks, normalised lift,
    transitions and head), so the logit map is 1-Lipschitz in l2. ``"resnet"``: the same layout
    with unconstrained blocks ``x + B s(Ax + b)`` and plain convolutions (a loose bound only).
    ``max_substeps`` (non-expansive only) caps the sub-steps of each gradient-flow block: 0 keeps
    the paper's adaptive count (cost grows with the weights' norms), ``k`` fixes the cost and
    shortens the integrated time instead (:class:`~pnp_stable.layers.GradientFlowBlock`); a ResNet
    has no sub-steps, so its config records 0 whatever it is given. ``stage_activation="maxmin"``
    puts a :class:`~pnp_stable.classify.certified_layers.MaxMin` (1-Lipschitz, norm-preserving)
    after the lift and after each transition, in both architectures; ``"none"`` leaves the
    gradient-flow (or residual) blocks as the only nonlinearity.
    """

    architecture: str = "nonexpansive"
    in_channels: int = 1
    num_classes: int = 10
    image_size: tuple[int, int] = (28, 28)
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: tuple[int, ...] = (2, 2, 2)
    hidden_multiplier: int = 1
    kernel_size: int = 3
    block_time: float = 1.0
    max_substeps: int = 0
    activation: str = "relu"
    stage_activation: str = "none"
    lift: str = "conv"
    head: str = "flatten"
    input_mean: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        self.image_size = _as_tuple(self.image_size, "image_size")
        if len(self.image_size) == 1:
            self.image_size = self.image_size * 2
        self.widths = _as_tuple(self.widths, "widths")
        self.blocks_per_stage = _as_tuple(self.blocks_per_stage, "blocks_per_stage")
        if len(self.blocks_per_stage) == 1:
            self.blocks_per_stage = self.blocks_per_stage * len(self.widths)
        self.input_mean = _as_tuple(self.input_mean, "input_mean", float)
        if len(self.input_mean) == 1:
            self.input_mean = self.input_mean * self.in_channels
        if self.architecture == "resnet":
            self.max_substeps = 0
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the first inconsistent field."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError("in_channels must be >= 1 and num_classes >= 2")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive entries, got {self.image_size}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {self.widths}")
        if len(self.blocks_per_stage) != len(self.widths) or min(self.blocks_per_stage) < 0:
            raise ValueError(f"blocks_per_stage needs one non-negative count per width ({len(self.widths)}), "
                             f"got {self.blocks_per_stage}")
        if self.hidden_multiplier < 1:
            raise ValueError(f"hidden_multiplier must be >= 1, got {self.hidden_multiplier}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if not self.block_time > 0:
            raise ValueError(f"block_time must be positive, got {self.block_time}")
        if self.max_substeps < 0:
            raise ValueError(f"max_substeps must be >= 0 (0 = no cap), got {self.max_substeps}")
        if self.stage_activation not in STAGE_ACTIVATIONS:
            raise ValueError(f"stage_activation must be one of {', '.join(STAGE_ACTIVATIONS)}, "
                             f"got {self.stage_activation!r}")
        if self.stage_activation == "maxmin" and any(w % 2 for w in self.widths):
            raise ValueError(f"stage_activation 'maxmin' pairs channels: every width must be even, got {self.widths}")
        if self.lift not in ("conv", "zero"):
            raise ValueError(f"lift must be 'conv' or 'zero', got {self.lift!r}")
        if self.lift == "zero" and self.widths[0] < self.in_channels:
            raise ValueError(f"a zero-padding lift needs widths[0] >= in_channels ({self.in_channels})")
        if self.head not in ("flatten", "pool"):
            raise ValueError(f"head must be 'flatten' or 'pool', got {self.head!r}")
        if len(self.input_mean) != self.in_channels:
            raise ValueError(f"input_mean needs {self.in_channels} entries, got {len(self.input_mean)}")

    def final_resolution(self) -> tuple[int, int]:
        """Spatial size after the stride-2 transitions ("same" padding: ceil(n / 2) each)."""
        h, w = self.image_size
        for _ in range(len(self.widths) - 1):
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def head_features(self) -> int:
        if self.head == "pool":
            return self.widths[-1]
        h, w = self.final_resolution()
        return self.widths[-1] * h * w

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ClassifierConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown classifier option(s): {', '.join(unknown)}")
        return cls(**values)

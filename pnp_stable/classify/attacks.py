"""l2 projected gradient descent (PGD) attack, written here (no attack library).

Each step moves ``delta`` by ``step_size`` along the l2-normalised gradient of the attack loss,
projects onto the ball ``||delta|| <= eps`` and (optionally) clips ``x + delta`` to the pixel box.
An example counts as *fooled* as soon as any iterate of any restart is misclassified; fooled
examples leave the active batch (early stopping only saves work, it never loses a success).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pnp_stable.classify.losses import logit_margins

__all__ = ["AttackResult", "PGDConfig", "pgd_attack", "project_l2_ball"]


@dataclass
class PGDConfig:
    """Settings of the l2-PGD attack.

    ``step_size`` is absolute when given; otherwise ``relative_step * eps`` (the default 2.5/steps
    of Madry et al. lets the iterates cross the ball 2.5 times). ``loss``: ``"margin"`` maximises
    ``max_{j != y} f_j - f_y`` (the decision itself), ``"ce"`` the cross-entropy.
    """

    steps: int = 100
    step_size: float | None = None
    relative_step: float | None = None
    restarts: int = 1
    random_start: bool = True
    loss: str = "margin"
    clip: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"PGD needs steps >= 1 and restarts >= 1, got {self.steps} and {self.restarts}")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if self.relative_step is None:
            self.relative_step = 2.5 / self.steps
        if not self.relative_step > 0:
            raise ValueError(f"relative_step must be positive, got {self.relative_step}")
        if self.loss not in ("margin", "ce"):
            raise ValueError(f"PGD loss must be 'margin' or 'ce', got {self.loss!r}")
        if self.clip is not None:
            self.clip = (float(self.clip[0]), float(self.clip[1]))
            if not self.clip[0] < self.clip[1]:
                raise ValueError(f"clip must be (low, high) with low < high, got {self.clip}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AttackResult:
    """``adversarial``: the attacked inputs (the first misclassified iterate where one was found,
    else the last iterate); ``fooled``: bool per example."""

    adversarial: torch.Tensor
    fooled: torch.Tensor


def project_l2_ball(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Scale each ``delta[i]`` onto the ball of radius ``eps[i]`` if it lies outside."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-30)
    factor = (eps / norms).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.ndim - 1)))


def _attack_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, labels, reduction="sum")
    return -logit_margins(logits, labels).sum()


def _random_in_ball(shape: torch.Size, eps: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # uniform in the ball: Gaussian direction, radius eps * U^(1/d)
    direction = torch.randn(shape, generator=generator, dtype=torch.float64)
    direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (len(shape) - 1)))
    d = direction[0].numel()
    radius = torch.rand(shape[0], generator=generator, dtype=torch.float64).pow(1.0 / d)
    return direction * (eps.cpu().double() * radius).view(-1, *([1] * (len(shape) - 1)))


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float | torch.Tensor,
    config: PGDConfig | None = None,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Search ``||delta||_2 <= eps`` (per example if ``eps`` is a tensor) for misclassifications.

    Guarantees: every returned input satisfies ``||adversarial - x||_2 <= eps`` (up to float
    rounding) and lies in the ``clip`` box (inputs ``x`` outside that box are a ``ValueError``:
    pass ``clip=None`` or the data's range for normalised data); ``fooled[i]`` is True only if
    the model misclassifies ``adversarial[i]``. The model is used as given (put it in eval mode
    first); parameter gradients are never accumulated.
    """
    config = config or PGDConfig()
    n = x.shape[0]
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    eps_t = eps_t.expand(n).clone() if eps_t.ndim == 0 else eps_t.to(x.dtype)
    if eps_t.shape != (n,) or bool((eps_t < 0).any()):
        raise ValueError("eps must be a non-negative number or one value per example")
    if config.clip is not None and n and (float(x.min()) < config.clip[0] or float(x.max()) > config.clip[1]):
        # clamping x itself would move the clean point: the "adversarial" inputs could then lie
        # outside the eps-ball around the given x, and the clamp alone could flip predictions
        raise ValueError(f"inputs lie outside the clip box [{config.clip[0]:g}, {config.clip[1]:g}] "
                         f"(range [{float(x.min()):.4g}, {float(x.max()):.4g}]); pass PGDConfig(clip=None) "
                         "or the data's pixel range")
    adversarial = x.detach().clone()
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    for _ in range(config.restarts):
        active = torch.nonzero(~fooled).flatten()
        if active.numel() == 0:
            break
        x_a, y_a, eps_a = x[active], labels[active], eps_t[active]
        if config.random_start:
            delta = _random_in_ball(x_a.shape, eps_a, generator).to(device=x.device, dtype=x.dtype)
        else:
            delta = torch.zeros_like(x_a)
        if config.clip is not None:
            delta = (x_a + delta).clamp(*config.clip) - x_a
        step = eps_a * config.relative_step if config.step_size is None else torch.full_like(eps_a, config.step_size)
        for t in range(config.steps + 1):
            delta.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x_a + delta)
                loss = _attack_loss(config.loss, logits, y_a)
                grad = torch.autograd.grad(loss, delta)[0] if t < config.steps else None
            delta = delta.detach()
            hit = logits.detach().argmax(dim=1) != y_a
            if bool(hit.any()):
                adversarial[active[hit]] = (x_a + delta)[hit]
                fooled[active[hit]] = True
                keep = ~hit
                active, x_a, y_a, eps_a, delta, step = (
                    active[keep], x_a[keep], y_a[keep], eps_a[keep], delta[keep], step[keep])
                if grad is not None:
                    grad = grad[keep]
                if active.numel() == 0:
                    break
            if grad is None:
                break
            g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (x.ndim - 1)))
            delta = project_l2_ball(delta + step.view_as(g_norm) * grad / g_norm, eps_a)
            if config.clip is not None:
                # clipping moves each coordinate towards x (x is in the box): the ball is kept
                delta = (x_a + delta).clamp(*config.clip) - x_a
        if active.numel():
            adversarial[active] = x_a + delta
    return AttackResult(adversarial, fooled)

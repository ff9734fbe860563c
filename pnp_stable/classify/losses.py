"""Training losses: cross-entropy with an additive margin, and the multi-class hinge."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "classification_loss", "logit_margins", "margin_cross_entropy", "multiclass_hinge"]

LOSSES = ("ce", "hinge")


def logit_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``f_y(x) - max_{j != y} f_j(x)`` per example (positive iff the prediction is correct and unique)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def margin_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, margin: float = 0.0,
                         scale: float = 1.0) -> torch.Tensor:
    """``CE(scale * (f - margin * onehot(y)), y)``: asks the true logit to win by ``margin``.

    ``scale`` is a temperature: a 1-Lipschitz network has small logits, and CE on them directly
    saturates nowhere; the scale changes the loss, never the network or its certificate.
    """
    shifted = logits - margin * F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return F.cross_entropy(scale * shifted, labels)


def multiclass_hinge(logits: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``mean(relu(margin - (f_y - max_{j != y} f_j)))``: zero once every example wins by ``margin``."""
    return F.relu(margin - logit_margins(logits, labels)).mean()


def classification_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, margin: float,
                        scale: float = 1.0) -> torch.Tensor:
    """Dispatch on ``kind`` (``"ce"`` or ``"hinge"``); the logits are upcast to float32 first."""
    logits = logits.float()
    if kind == "ce":
        return margin_cross_entropy(logits, labels, margin, scale)
    if kind == "hinge":
        return multiclass_hinge(logits, labels, margin)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")

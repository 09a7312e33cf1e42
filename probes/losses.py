"""Training losses: asymmetric loss (multi-label) and cross-entropy (multi-class).

ASL follows Ridnik et al. 2021 ("Asymmetric Loss For Multi-Label Classification") and their
reference implementation (``AsymmetricLoss``) with its published defaults gamma_neg=4,
gamma_pos=1, clip=0.05, eps=1e-8. One difference, a choice: the reference returns the sum over
batch and classes; here it is summed over classes and averaged over the batch, so the loss does
not scale with the batch size (a constant factor, largely absorbed by AdamW).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES = ("auto", "asl", "bce", "ce")


class AsymmetricLoss(nn.Module):
    """ASL for multi-label logits ``[B, C]`` and {0, 1} targets ``[B, C]``."""

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        y = targets.to(logits.dtype)
        xs_pos = torch.sigmoid(logits)
        xs_neg = 1.0 - xs_pos
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1.0)
        loss = y * torch.log(xs_pos.clamp(min=self.eps))
        loss = loss + (1.0 - y) * torch.log(xs_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            pt = xs_pos * y + xs_neg * (1.0 - y)
            gamma = self.gamma_pos * y + self.gamma_neg * (1.0 - y)
            loss = loss * torch.pow(1.0 - pt, gamma)
        return -loss.sum(dim=1).mean()


def _bce(logits: Tensor, targets: Tensor) -> Tensor:
    return (
        F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        .sum(dim=1)
        .mean()
    )


def _ce(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets.long())


def resolve_loss(name: str, task: str) -> str:
    """``"auto"`` -> ``"asl"`` for multilabel, ``"ce"`` for multiclass; checks compatibility."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}.")
    if name == "auto":
        return "asl" if task == "multilabel" else "ce"
    if (name == "ce") != (task == "multiclass"):
        raise ValueError(
            f"loss {name!r} does not fit task {task!r}: use 'ce' for multiclass, 'asl' or 'bce' "
            "for multilabel (or 'auto')."
        )
    return name


def make_loss(name: str, task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss function ``(logits, targets) -> scalar`` for ``name`` on ``task``."""
    resolved = resolve_loss(name, task)
    if resolved == "asl":
        return AsymmetricLoss()
    return _bce if resolved == "bce" else _ce

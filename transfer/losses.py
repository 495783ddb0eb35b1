"""Training losses (design §8). Labels may be NaN where a task is missing for a row."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the labelled entries. logits, labels: [B, T] (NaN = no label) → scalar."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def soft_label_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Vanilla knowledge distillation: BCE(z, σ(z_t)). logits, teacher_logits: [B, T] → scalar."""
    return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits))


def ranking_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    distill_weight: float = 0.0,
) -> torch.Tensor:
    """`BCE(z, y) + w·BCE(z, σ(z_t))`; just `BCE(z, y)` without teacher logits. Shapes [B, T]."""
    loss = label_loss(logits, labels)
    if teacher_logits is not None and distill_weight > 0:
        loss = loss + distill_weight * soft_label_loss(logits, teacher_logits)
    return loss

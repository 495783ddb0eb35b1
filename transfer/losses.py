"""Training losses (design §8). Labels may be NaN where a task is missing for a row.

Notation: `z` a consumer logit, `z_t` the producer's (teacher's) logit, `y` the true label,
`α` label scale, `T` temperature, all tensors [B, T_tasks] unless stated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REPRESENTATION_LOSSES = ("cosine", "mse", "infonce")


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the labelled entries. logits, labels: [B, T] (NaN = no label) → scalar."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def soft_targets(teacher_logits: torch.Tensor, label_scale: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """`min(α·σ(z_t / T), 1)`. [B, T] → [B, T]"""
    return (label_scale * torch.sigmoid(teacher_logits / temperature)).clamp(max=1.0)


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, label_scale: float = 1.0, temperature: float = 1.0
) -> torch.Tensor:
    """`T² · BCE(z / T, min(α·σ(z_t / T), 1))`; with α = T = 1 plain `BCE(z, σ(z_t))`. → scalar"""
    targets = soft_targets(teacher_logits, label_scale, temperature)
    return F.binary_cross_entropy_with_logits(logits / temperature, targets) * temperature**2


def representation_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str, temperature: float = 0.1) -> torch.Tensor:
    """Align projected hidden states with the producer's embeddings. predicted, target: [B, E] → scalar.

    cosine: mean(1 − cos); mse: mean squared error; infonce: cross-entropy of each row picking its
    own target among the batch's targets (cosine similarities / temperature).
    """
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(predicted, target)
    if kind == "infonce":
        similarity = F.normalize(predicted, dim=-1) @ F.normalize(target, dim=-1).T / temperature  # [B, B]
        return F.cross_entropy(similarity, torch.arange(len(predicted), device=predicted.device))
    raise ValueError(f"representation loss '{kind}'; allowed: {', '.join(REPRESENTATION_LOSSES)}")

"""Knowledge distillation from the producer's logits (design §8).

- vanilla KD (`head: serving`): `BCE(z_s, y) + w·BCE(z_s, σ(z_t))` on the serving logit;
- auxiliary KD (`head: auxiliary`): the serving head learns from labels only; a training-only head
  `z_d` on the same trunk learns from `min(α·σ(z_t / T), 1)`, and its gradient into the trunk is
  scaled by β (identity forward): `L = BCE(z_s, y) + w·T²·BCE(z_d / T, min(α·σ(z_t / T), 1))`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapters.technique import ConsumerShape, Technique, Trunk
from transfer.config.techniques import DistillationConfig  # its recipe knobs and their checks


def enabled(cfg: DistillationConfig) -> bool:
    return cfg.weight > 0


def tag(cfg: DistillationConfig) -> str:
    return "vanilla_kd" if cfg.head == "serving" else "aux_kd"


def soft_targets(teacher_logits: torch.Tensor, label_scale: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """`min(α·σ(z_t / T), 1)`. [B, T] → [B, T]"""
    return (label_scale * torch.sigmoid(teacher_logits / temperature)).clamp(max=1.0)


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, label_scale: float = 1.0, temperature: float = 1.0
) -> torch.Tensor:
    """`T² · BCE(z / T, min(α·σ(z_t / T), 1))`; with α = T = 1 plain `BCE(z, σ(z_t))`. logits, teacher_logits: [B, T] → scalar"""
    targets = soft_targets(teacher_logits, label_scale, temperature)
    return F.binary_cross_entropy_with_logits(logits / temperature, targets) * temperature**2


class Distillation(Technique):
    """Soft labels on the serving logit (vanilla) or on an auxiliary head `z_d` (auxiliary)."""

    columns = ("soft_logits",)

    def __init__(self, weight: float, auxiliary: bool, label_scale: float = 1.0, temperature: float = 1.0):
        super().__init__()
        self.weight, self.auxiliary = weight, auxiliary
        self.label_scale, self.temperature = label_scale, temperature
        self.head: nn.Linear | None = None

    def distill_heads(self, shape: ConsumerShape) -> None:
        if self.auxiliary:
            self.head = nn.Linear(shape.hidden_dim, shape.n_tasks)

    def prior_heads(self) -> list[nn.Linear]:
        return [self.head] if self.head is not None else []

    def loss(self, serving_logits: torch.Tensor, trunk: Trunk, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        student = self.head(trunk.scaled) if self.head is not None else serving_logits  # [B, T]
        return {"distill": self.weight * distillation_loss(student, batch["soft_logits"], self.label_scale, self.temperature)}


def build(cfg: DistillationConfig) -> Distillation:
    return Distillation(cfg.weight, cfg.head == "auxiliary", cfg.label_scale, cfg.temperature)

"""Knowledge distillation from the producer's logits (design §8).

- vanilla KD (`head: serving`): `BCE(z_s, y) + w·BCE(z_s, σ(z_t))` on the serving logit;
- auxiliary KD (`head: auxiliary`): the serving head learns from labels only; a training-only head
  `z_d` on the same trunk learns from `min(α·σ(z_t / T), 1)`, and its gradient into the trunk is
  scaled by β (identity forward): `L = BCE(z_s, y) + w·T²·BCE(z_d / T, min(α·σ(z_t / T), 1))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.technique import ConsumerShape, Knob, Step, scale_gradient
from transfer.util.checks import check_non_negative, check_one_of, check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

KEY = "distillation"
SUMMARY = "soft labels from the producer's logits, on the serving head (vanilla KD) or an auxiliary head"
SERVING = "none: an auxiliary head is dropped at export"
HEADS = ("serving", "auxiliary")  # where the soft-label loss goes


@dataclass
class DistillationConfig:
    """Knowledge distillation from the producer's logits."""

    weight: float = 1.0  # w; 0 turns distillation off
    head: str = "serving"  # serving: vanilla KD on the serving logit; auxiliary: a separate head
    label_scale: float = 1.0  # α in min(α·σ(z_t / T), 1)
    grad_scale: float = 1.0  # β: the distillation heads' gradient into the trunk is scaled by β
    temperature: float = 1.0  # T

    def check(self, key: str, window_days: int) -> None:
        check_one_of(f"{key}.head", self.head, HEADS)
        check_non_negative(f"{key}.weight", self.weight)
        check_non_negative(f"{key}.grad_scale", self.grad_scale)
        check_positive(f"{key}.label_scale", self.label_scale)
        check_positive(f"{key}.temperature", self.temperature)


Config = DistillationConfig  # every technique's knobs go by this name (`adapters.technique`)


def enabled(stage) -> bool:
    return stage.distillation.weight > 0


def tag(stage) -> str:
    return "vanilla_kd" if stage.distillation.head == "serving" else "aux_kd"


def reference(stage) -> Config:
    """Vanilla KD: the soft-label loss on the serving head at the stage's weight (1 if it distils
    nothing), α = β = T = 1."""
    return Config(weight=stage.distillation.weight or 1.0, head="serving")


def columns(stage) -> tuple[str, ...]:
    return ("soft_logits",)


def knobs(stage) -> list[Knob]:
    found = [Knob("distillation.weight", 0.1, 10.0), Knob("distillation.temperature", 1.0, 4.0, log=False)]
    if stage.distillation.head == "auxiliary":  # ExFM's auxiliary head: α and β ≫ 1 in public re-implementations
        found += [Knob("distillation.label_scale", 0.5, 4.0), Knob("distillation.grad_scale", 0.5, 16.0)]
    return found


def soft_targets(teacher_logits: torch.Tensor, label_scale: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """`min(α·σ(z_t / T), 1)`. [B, T] → [B, T]"""
    import torch

    return (label_scale * torch.sigmoid(teacher_logits / temperature)).clamp(max=1.0)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, label_scale: float = 1.0,
                      temperature: float = 1.0) -> torch.Tensor:
    """`T² · BCE(z / T, min(α·σ(z_t / T), 1))`; with α = T = 1 plain `BCE(z, σ(z_t))`. logits, teacher_logits: [B, T] → scalar"""
    import torch.nn.functional as F

    targets = soft_targets(teacher_logits, label_scale, temperature)
    return F.binary_cross_entropy_with_logits(logits / temperature, targets) * temperature**2


def distill_heads(stage, shape: ConsumerShape) -> dict[str, nn.Module]:
    """The auxiliary head `z_d`: [B, H] → [B, T] (none for vanilla KD)."""
    from torch import nn

    return {"auxiliary": nn.Linear(shape.hidden_dim, shape.n_tasks)} if stage.distillation.head == "auxiliary" else {}


def loss(stage, heads: dict[str, nn.Module], step: Step) -> dict[str, torch.Tensor]:
    cfg = stage.distillation
    if "auxiliary" in heads:
        student = heads["auxiliary"](scale_gradient(step.hidden, cfg.grad_scale))  # [B, T]
    else:
        student = step.serving_logits  # [B, T]
    return {"distill": cfg.weight * distillation_loss(student, step.batch["soft_logits"], cfg.label_scale, cfg.temperature)}

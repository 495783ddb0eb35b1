"""What a consumer learns from besides its labels: the weighted transfer loss terms (design §8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transfer.losses import distillation_loss, representation_loss


@dataclass(frozen=True)
class TransferTerms:
    """Typed weights and settings of the transfer losses; all weights 0 = no transfer (a baseline)."""

    distill_weight: float = 0.0
    distill_on_serving_head: bool = True  # vanilla KD; False: the auxiliary distillation head
    label_scale: float = 1.0
    temperature: float = 1.0
    grad_scale: float = 1.0
    representation_weight: float = 0.0
    representation_loss: str = "cosine"
    representation_temperature: float = 0.1
    adapter_weight: float = 0.0  # weight of the head supervised by the Student Adapter

    @property
    def needs_knowledge(self) -> bool:
        return self.distill_weight > 0 or self.representation_weight > 0 or self.adapter_weight > 0

    @property
    def auxiliary_head(self) -> bool:
        return self.distill_weight > 0 and not self.distill_on_serving_head


def transfer_losses(
    serving_logits: torch.Tensor,
    heads: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    adapted_logits: torch.Tensor | None,
    terms: TransferTerms,
) -> dict[str, torch.Tensor]:
    """The weighted transfer terms, by name.

    serving_logits: [B, T]; heads: outputs of `TransferHeads`; batch carries `soft_logits` [B, T]
    and `teacher_embedding` [B, E]; adapted_logits: the adapter's `z_a` [B, T] (no gradient).
    """
    parts: dict[str, torch.Tensor] = {}
    if terms.distill_weight > 0:
        student = serving_logits if terms.distill_on_serving_head else heads["distill"]
        kd = distillation_loss(student, batch["soft_logits"], terms.label_scale, terms.temperature)
        parts["distill"] = terms.distill_weight * kd
    if terms.representation_weight > 0:
        target = batch["teacher_embedding"].float()
        rl = representation_loss(heads["projection"], target, terms.representation_loss, terms.representation_temperature)
        parts["representation"] = terms.representation_weight * rl
    if terms.adapter_weight > 0 and adapted_logits is not None:
        parts["adapter_kd"] = terms.adapter_weight * distillation_loss(heads["adapted"], adapted_logits)  # σ(z_a) as is
    return parts

"""Training a consumer (a domain FM or a VM) from a producer's knowledge, with a stage's techniques.

The techniques of a stage (design §8) become, in order: the knowledge joined to the training rows,
modules imported from the producer, training-only heads, the Student Adapter, and the loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
from torch import nn

from adapters import StudentAdapter
from transfer.batches import WindowBatches
from transfer.data import PreparedData
from transfer.heads import TransferHeads
from transfer.knowledge import check_age, check_provenance, join_knowledge
from transfer.module import RankingModule
from transfer.objective import TransferTerms
from transfer.producers import Producer
from transfer.recipe import StageConfig
from transfer.sharing import share_parts


@dataclass(frozen=True)
class ConsumerTarget:
    """What a consumer serves and learns from."""

    tasks: list[str]
    task_columns: list[int]  # their columns in the log's labels
    rows: torch.Tensor  # [n] its training rows (the consumers' window, its surfaces)

    def base_rates(self, data: PreparedData) -> torch.Tensor:
        """Mean label per task over the training rows. → [T]"""
        return data.base_rates(self.rows, self.task_columns)


def transfer_terms(stage: StageConfig) -> TransferTerms:
    """The loss terms a stage's techniques ask for."""
    d, r, a = stage.distillation, stage.representation, stage.adapter
    return TransferTerms(
        distill_weight=d.weight,
        distill_on_serving_head=d.head == "serving",
        label_scale=d.label_scale,
        temperature=d.temperature,
        grad_scale=d.grad_scale,
        representation_weight=r.weight,
        representation_loss=r.loss,
        representation_temperature=r.temperature,
        adapter_weight=a.weight if a.enabled else 0.0,
    )


def techniques(stage: StageConfig) -> list[str]:
    """Names of the techniques a stage uses, for tags and tables."""
    used = []
    if stage.distillation.weight > 0:
        used.append("vanilla_kd" if stage.distillation.head == "serving" else "aux_kd")
    if stage.representation.weight > 0:
        used.append(f"representation_{stage.representation.loss}")
    if stage.sharing.modules:
        used.append("sharing" + ("_frozen" if stage.sharing.freeze else ""))
    if stage.adapter.enabled:
        used.append("adapter")
    return used


def techniques_tag(stage: StageConfig) -> str:
    """The techniques as one MLflow tag value, e.g. `aux_kd,representation_cosine`."""
    return ",".join(techniques(stage)) or "none"


def transfer_module(
    model: nn.Module,
    target: ConsumerTarget,
    lr: float,
    stage: StageConfig,
    producer: Producer,
    n_surfaces: int,
    base_rates: torch.Tensor,
) -> RankingModule:
    """A consumer's training module: producer parts imported, heads and adapter as the stage asks."""
    if stage.sharing.modules:
        share_parts(producer.module.model, model, list(stage.sharing.modules), stage.sharing.freeze)
    terms = transfer_terms(stage)
    needs_heads = terms.auxiliary_head or terms.representation_weight > 0 or stage.adapter.enabled
    heads = (
        TransferHeads(
            model.embedding_dim,
            len(target.tasks),
            distill_head=terms.auxiliary_head,
            adapter_head=stage.adapter.enabled,
            projection_dim=producer.module.model.embedding_dim if terms.representation_weight > 0 else None,
            grad_scale=terms.grad_scale,
        )
        if needs_heads
        else None
    )
    adapter = StudentAdapter(n_surfaces, len(target.tasks), stage.adapter.hidden) if stage.adapter.enabled else None
    return RankingModule(model, target.tasks, target.task_columns, lr, terms, heads, adapter, stage.adapter.lr, base_rates)


def knowledge_batches(
    data: PreparedData,
    target: ConsumerTarget,
    history_length: int,
    stage: StageConfig,
    producer: Producer,
    knowledge: list[Path],
    max_age_days: int | None,
) -> WindowBatches:
    """The consumer's training rows with the producer's knowledge joined: soft logits, and as the
    techniques need them its embeddings, each row's knowledge age (days) and whether it is fresh."""
    provenance = check_provenance(knowledge, producer.name, producer.run_id)
    check_age(knowledge, provenance, data.student.end, max_age_days)
    terms = transfer_terms(stage)
    joined = join_knowledge(
        knowledge, data.log.example_id.gather(target.rows.numpy()), target.tasks, embedding=terms.representation_weight > 0
    )
    extras = {"soft_logits": joined.logits}
    if joined.embedding is not None:
        extras["teacher_embedding"] = joined.embedding
    if stage.adapter.enabled:
        ts = data.log.ts[target.rows]
        extras["knowledge_age"] = ((ts - int(producer.cutoff.timestamp())) / 86400.0).clamp(min=0.0).float()
        fresh_from = data.student.end - timedelta(days=stage.adapter.fit_days)
        extras["fresh"] = ts >= int(fresh_from.timestamp())
    return WindowBatches(data.log, target.rows, history_length, extras)

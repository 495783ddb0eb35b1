"""Training a consumer (a domain FM or a VM) from a producer's knowledge, with a stage's techniques
(each one a module of `adapters/`): the knowledge its techniques need joined to the training rows,
and the techniques built onto the consumer's training module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import adapters
from transfer.config.recipe import StageConfig
from transfer.data.batches import WindowBatches
from transfer.data.prepare import PreparedData
from transfer.knowledge.generate import Producer
from transfer.knowledge.table import check_age, check_provenance, join_knowledge
from transfer.training.module import RankingModule


@dataclass(frozen=True)
class ConsumerTarget:
    """What a consumer serves and learns from."""

    tasks: list[str]
    task_columns: list[int]  # their columns in the log's labels
    rows: torch.Tensor  # [n] its training rows (the consumers' window, its surfaces)

    def base_rates(self, data: PreparedData) -> torch.Tensor:
        """Mean label per task over the training rows. → [T]"""
        return data.base_rates(self.rows, self.task_columns)


def transfer_module(
    model: nn.Module,
    target: ConsumerTarget,
    lr: float,
    stage: StageConfig,
    producer: Producer,
    n_surfaces: int,
    base_rates: torch.Tensor,
) -> RankingModule:
    """A consumer's training module with the stage's techniques (producer parts imported, heads built)."""
    shape = adapters.ConsumerShape(model.embedding_dim, len(target.tasks), producer.module.model.embedding_dim, n_surfaces)
    techniques = adapters.build_techniques(stage, producer.module.model, model, shape)
    return RankingModule(model, target.tasks, target.task_columns, lr, techniques, stage.distillation.grad_scale, base_rates)


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
    needed = adapters.columns(stage)
    joined = join_knowledge(knowledge, data.log.example_id.gather(target.rows.numpy()), target.tasks, embedding="teacher_embedding" in needed)
    extras = {"soft_logits": joined.logits}
    if joined.embedding is not None:
        extras["teacher_embedding"] = joined.embedding
    if "fresh" in needed:
        extras |= adapters.student_adapter.batch_columns(data.log.ts[target.rows], producer.cutoff, data.student.end, stage.adapter.fit_days)
    return WindowBatches(data.log, target.rows, history_length, extras)

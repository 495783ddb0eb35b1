"""Joining a producer's knowledge to a consumer's training rows: the columns its techniques need."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

import adapters
from transfer.config.recipe import StageConfig
from transfer.data.batches import WindowBatches
from transfer.data.prepare import PreparedData
from transfer.knowledge.table import check_age, check_provenance, join_knowledge


def knowledge_batches(
    data: PreparedData,
    rows: torch.Tensor,
    tasks: list[str],
    history_length: int,
    stage: StageConfig,
    producer: tuple[str, str, datetime],
    knowledge: list[Path],
    max_age_days: int | None,
) -> WindowBatches:
    """The consumer's training `rows` ([n]) with the knowledge of `producer` (name, run id, cutoff)
    joined: soft logits for its `tasks`, and as the techniques need them the producer's embeddings,
    each row's knowledge age (days) and whether it is fresh."""
    name, run_id, cutoff = producer
    provenance = check_provenance(knowledge, name, run_id)
    check_age(knowledge, provenance, data.student.end, max_age_days)
    needed = adapters.columns(stage)
    joined = join_knowledge(knowledge, data.log.example_id.gather(rows.numpy()), tasks, embedding="teacher_embedding" in needed)
    extras = {"soft_logits": joined.logits}
    if joined.embedding is not None:
        extras["teacher_embedding"] = joined.embedding
    if "fresh" in needed:
        extras |= adapters.student_adapter.batch_columns(data.log.ts[rows], cutoff, data.student.end, stage.adapter.fit_days)
    return WindowBatches(data.log, rows, history_length, extras)

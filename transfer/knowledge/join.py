"""Joining a producer's knowledge to a consumer's training rows: the columns its techniques need."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

import adapters
from adapters.technique import KnowledgeRows
from transfer.config.recipe import StageConfig
from transfer.data.batches import WindowBatches
from transfer.data.prepare import PreparedData
from transfer.knowledge.table import check_age, check_provenance, join_knowledge
from transfer.training.consumer import ConsumerTarget


def knowledge_batches(
    data: PreparedData,
    target: ConsumerTarget,
    history_length: int,
    stage: StageConfig,
    producer: tuple[str, str, datetime, int],
    knowledge: list[Path],
    max_age_days: int | None,
    seed: int,
) -> tuple[WindowBatches, dict[str, float]]:
    """The consumer's training rows with the knowledge of `producer` (name, run id, cutoff, lag days) joined:
    soft logits for its tasks, the producer's embeddings where a technique needs them, and the
    columns techniques derive from them before the consumer trains (the Student Adapter's corrected
    logits, its fit seeded by `seed`). → the batches, and the techniques' metrics about what they derived."""
    name, run_id, cutoff, lag_days = producer
    provenance = check_provenance(knowledge, name, run_id)
    check_age(knowledge, provenance, data.student.end, max_age_days)
    needed = adapters.columns(stage)
    rows = target.rows
    joined = join_knowledge(knowledge, data.log.example_id.gather(rows.numpy()), target.tasks, embedding="teacher_embedding" in needed)
    extras = {"soft_logits": joined.logits}
    if joined.embedding is not None:
        extras["teacher_embedding"] = joined.embedding
    metrics: dict[str, float] = {}
    knowledge_rows = KnowledgeRows(data.log, rows, joined.logits, data.log.labels[rows][:, target.task_columns],
                                   knowledge_age_days(data.log.ts[rows], cutoff, lag_days), data.student.end, len(data.log.surfaces), seed)
    for technique in adapters.enabled(stage):
        if hasattr(technique, "derive"):
            derived = technique.derive(stage, knowledge_rows)
            extras |= derived.columns
            metrics |= derived.metrics
    return WindowBatches(data.log, rows, history_length, extras), metrics


def knowledge_age_days(ts: torch.Tensor, cutoff: datetime, lag_days: int) -> torch.Tensor:
    """[n] each row's knowledge age in days, for rows at times `ts` [n] (seconds): since the producer's
    `cutoff`, or with knowledge from training traffic `lag_days` behind, since the start of the day
    `lag_days` before the row's (the weights that scored it had seen up to then)."""
    if lag_days:
        seen_until = (ts // 86_400 - lag_days) * 86_400
        return ((ts - seen_until) / 86_400).float()
    return ((ts - int(cutoff.timestamp())) / 86_400).clamp(min=0.0).float()

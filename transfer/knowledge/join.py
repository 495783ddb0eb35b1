"""Joining a producer's knowledge to a consumer's training rows: the columns its techniques need."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import adapters
from adapters.student_adapter import Correction, adapter_inputs, corrected_knowledge
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
    producer: tuple[str, str, datetime],
    knowledge: list[Path],
    max_age_days: int | None,
    seed: int,
) -> tuple[WindowBatches, Correction | None]:
    """The consumer's training rows with the knowledge of `producer` (name, run id, cutoff) joined:
    soft logits for its tasks and, as the techniques need them, the producer's embeddings and the
    Student Adapter's corrected logits (the adapter fit here, before the consumer trains, seeded by
    `seed`). → the batches, and what the adapter did (None without one)."""
    name, run_id, cutoff = producer
    provenance = check_provenance(knowledge, name, run_id)
    check_age(knowledge, provenance, data.student.end, max_age_days)
    needed = adapters.columns(stage)
    rows = target.rows
    joined = join_knowledge(knowledge, data.log.example_id.gather(rows.numpy()), target.tasks, embedding="teacher_embedding" in needed)
    extras = {"soft_logits": joined.logits}
    if joined.embedding is not None:
        extras["teacher_embedding"] = joined.embedding
    correction = None
    if "adapted_logits" in needed:
        inputs = adapter_inputs(data.log, rows, joined.logits, cutoff)
        labels = data.log.labels[rows][:, target.task_columns]  # [n, T]
        correction = corrected_knowledge(inputs, labels, data.student.end, len(data.log.surfaces), stage.adapter, seed)
        extras["adapted_logits"] = correction.logits
    return WindowBatches(data.log, rows, history_length, extras), correction

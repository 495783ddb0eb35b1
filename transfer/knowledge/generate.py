"""Generating a producer's knowledge table: a separate scoring pass over the consumers' rows, streamed
to parquet (one shard per rank in a multi-process run), with its provenance and checksum.

A `Producer` is a trained model that teaches consumers: the teacher, or a domain FM. Its table for a
window is generated once and reused by every consumer (`transfer.pipeline.stages.producers.KnowledgeStage`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from transfer.config.recipe import TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.cache import checksum_matches, write_checksum
from transfer.data.prepare import PreparedData
from transfer.evaluation.scoring import SCORING_BATCH
from transfer.knowledge.table import KnowledgeWriter, Provenance, finished_table, table_provenance
from transfer.training.module import RankingModule
from transfer.training.trainer import predict_each
from transfer.util import ranks
from transfer.util.atomic import atomic_path
from transfer.util.progress import step


@dataclass
class Producer:
    """A trained model that teaches: its name, module, MLflow run and data cutoff."""

    name: str  # e.g. "skeleton_tiny" or "dfm_small:facebook"
    module: RankingModule
    run_id: str
    cutoff: datetime  # it saw no example at or after this time
    rows: torch.Tensor  # [n] the rows of the consumers' window it scores
    precision: str | None = None  # Lightning precision it scores with (default: the recipe trainer's)
    weights: Path | None = None  # its saved state dict (the teacher's, in the stage cache)
    lag_days: int = 0  # with knowledge from training traffic: how many days its knowledge lags the rows it scored
    validation_ne: float | None = None  # with teacher.keep_best_epoch: its kept epoch's mean NE over tasks on the validation window

    @property
    def history_length(self) -> int:
        return self.module.model.history_length

    @property
    def table_stem(self) -> str:
        """Its knowledge files' name stem (a domain FM's `:` is not a file-name character everywhere)."""
        return self.name.replace(":", "-")


def at_precision(cfg: TrainerConfig, precision: str | None) -> TrainerConfig:
    """`cfg` with a model's own precision, when it has one."""
    return replace(cfg, precision=precision or cfg.precision)


def generate_table(producer: Producer, data: PreparedData, trainer: TrainerConfig, recipe_hash: str, path: Path) -> None:
    """Score the producer's rows (this rank's share of them) batch by batch, streaming each batch
    into the table at `path`, then record its checksum."""
    batches = WindowBatches(data.log, producer.rows, producer.history_length)
    provenance = Provenance(
        producer=producer.name,
        producer_run_id=producer.run_id,
        cutoff=producer.cutoff.isoformat(),
        created_at=ranks.from_main(datetime.now(timezone.utc).isoformat(timespec="seconds")),  # the same in every shard
        recipe_hash=recipe_hash,
    )
    trainer = at_precision(trainer, producer.precision)
    row_bytes = 8 + 4 * len(producer.module.tasks) + 2 * producer.module.model.embedding_dim  # key, float32 logits, float16 embedding
    with step(f"knowledge: scoring {len(producer.rows):,} impressions with {producer.name}"), \
            atomic_path(path, needed_bytes=len(producer.rows) * row_bytes) as tmp:
        writer = KnowledgeWriter(tmp, producer.module.tasks, provenance, producer.module.model.embedding_dim, data.log.example_id.dtype)
        try:
            predict_each(producer.module, window_loader(batches, SCORING_BATCH, shuffle=False), trainer,
                         lambda rows, logits, embedding: writer.append(data.log.example_id.gather(rows.numpy()), logits, embedding))
        finally:
            writer.close()
    write_checksum(path)


def table_problem(folder: Path, stem: str, producer_run_id: str | None) -> tuple[list[Path] | None, str | None]:
    """The finished table in `folder` and what is wrong with it (None when it can be reused): a file
    whose checksum no longer matches, or a table from another run of its producer. Reads only."""
    table = finished_table(folder, stem)
    if table is None:
        return None, "not generated"
    if any(not checksum_matches(shard) for shard in table):
        return table, "its checksum does not match the one stored when it was written"
    if producer_run_id is None or table_provenance(table).producer_run_id != producer_run_id:
        return table, "it comes from an earlier run of its producer"
    return table, None


def intact_table(folder: Path, stem: str, producer_run_id: str) -> list[Path] | None:
    """The finished table in `folder` if it can be reused; a damaged or outdated one is reported and
    removed (to be generated again)."""
    table, problem = table_problem(folder, stem, producer_run_id)
    if problem is None or table is None:
        return table
    damaged = [shard for shard in table if not checksum_matches(shard)]
    print(f"  ! {(damaged or table)[0]}: {problem}; generating the knowledge again", flush=True)
    for shard in table:
        shard.unlink(missing_ok=True)
    return None

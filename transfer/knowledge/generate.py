"""Producers of knowledge: training the teacher (cached by content) and generating knowledge tables.

A `Producer` is a trained model that teaches consumers: the teacher, or a domain FM. Its knowledge
for a window is generated once (a parquet table with provenance) and reused by every consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch

from transfer.catalog import catalog
from transfer.config.recipe import Recipe, TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import PreparedData
from transfer.evaluation.cost import parameter_count
from transfer.knowledge.table import KnowledgeWriter, Provenance, finished_table, shard_path, table_provenance
from transfer.pipeline.cache import StageCache, checksum_matches, write_checksum
from transfer.pipeline.keys import StageKey, knowledge_key, teacher_key
from transfer.tracking.runs import Tracker
from transfer.training.module import RankingModule
from transfer.training.resumable import building, fit_or_reuse
from transfer.training.trainer import predict_each
from transfer.util import ranks
from transfer.util.atomic import atomic_path
from transfer.util.progress import step

SCORING_BATCH = 4096


@dataclass
class Producer:
    """A trained model that teaches: its name, module, MLflow run and data cutoff."""

    name: str  # e.g. "skeleton_tiny" or "dfm_small:facebook"
    module: RankingModule
    run_id: str
    cutoff: datetime  # it saw no example at or after this time
    rows: torch.Tensor  # [n] the rows of the consumers' window it scores
    key: StageKey  # its stage key: what its knowledge and its consumers' keys build on
    knowledge: list[Path] | None = None  # its table's files for the consumers' window, once generated
    precision: str | None = None  # Lightning precision it scores with (default: the recipe trainer's)
    weights: Path | None = None  # its saved state dict (the teacher's, in the stage cache)

    @property
    def history_length(self) -> int:
        return self.module.model.history_length


def train_teacher(recipe: Recipe, data: PreparedData, tracker: Tracker, cache: StageCache) -> Producer:
    """Train the teacher on the train window (every surface and task), or reuse an identical run's."""
    cfg = recipe.teacher
    entry = catalog("teacher")[cfg.model]
    key = teacher_key(recipe, data.fingerprint, str(data.train), entry.builder)
    folder = cache.folder(key)
    tags = {"role": "teacher", "model": cfg.model, "surface": "all", "task": ",".join(data.log.tasks)}
    if cfg.init_from is not None:
        tags["continued_from"] = cfg.init_from
    with tracker.run(f"teacher:{cfg.model}", tags, nested=True) as run_id:
        L.seed_everything(recipe.seed, verbose=False)
        model = entry.build(data.log.inputs, cfg.sizes)
        if cfg.init_from is not None:  # continue from an earlier teacher (the continuous cycle)
            model.load_state_dict(torch.load(cfg.init_from, weights_only=True))
        if cfg.compile:
            model.compile()  # in place: parameter names (and so the stage cache) are unchanged
        all_tasks = list(range(len(data.log.tasks)))
        prior = None if cfg.init_from is not None else data.base_rates(data.train_rows, all_tasks)  # a continued teacher keeps its biases
        module = RankingModule(model, data.log.tasks, all_tasks, lr=cfg.lr, base_rates=prior)
        loader = window_loader(WindowBatches(data.log, data.train_rows, model.history_length), cfg.batch_size, shuffle=True, seed=recipe.seed)
        producer_run = fit_or_reuse(cache, folder, module, loader, teacher_trainer(recipe), cfg.max_epochs, tracker,
                                    run_id, f"teacher: {cfg.model}", f"on {len(data.train_rows):,} impressions", shard=True)
        tracker.log_metrics({"parameters": parameter_count(model)})
        tracker.log_params({"precision": teacher_trainer(recipe).precision, "compile": cfg.compile})
    return Producer(cfg.model, module, producer_run, data.train.end, data.student_rows, key, precision=cfg.precision,
                    weights=folder / "model.pt")


def teacher_trainer(recipe: Recipe) -> TrainerConfig:
    """The trainer settings the teacher trains and scores with: the recipe's, at the teacher's precision."""
    return at_precision(recipe.trainer, recipe.teacher.precision)


def at_precision(cfg: TrainerConfig, precision: str | None) -> TrainerConfig:
    """`cfg` with a model's own precision, when it has one."""
    return replace(cfg, precision=precision or cfg.precision)


def knowledge_for(producer: Producer, data: PreparedData, recipe: Recipe, tracker: Tracker, cache: StageCache) -> list[Path]:
    """The producer's knowledge table for the consumers' window (its files): generated once, then reused.
    In a multi-process run each rank scores and writes its own shard of the rows."""
    if producer.knowledge is not None:
        return producer.knowledge
    folder = cache.folder(knowledge_stage_key(producer, data, recipe))
    stem = producer.name.replace(":", "-")
    tags = {"role": "knowledge", "producer": producer.name, "producer_run_id": producer.run_id}
    with tracker.run(f"knowledge:{producer.name}", tags, nested=True), building(folder, f"knowledge: {producer.name}"):
        table = ranks.from_main(_intact_table(folder, stem, producer.run_id) if ranks.is_main() else None)  # rank 0 decides for all
        if table is not None:
            print(f"✓ knowledge: {producer.name} on {data.student} already generated, reused", flush=True)
        else:
            world = ranks.world_size()
            _generate(producer, data, recipe, shard_path(folder, stem, ranks.rank(), world))
            ranks.barrier()  # every shard renamed into place
            table = [shard_path(folder, stem, rank, world) for rank in range(world)]
        tracker.log_params({"path": str(table[0].parent), "files": len(table), "rows": len(producer.rows), "window": str(data.student)})
    producer.knowledge = table
    return table


def knowledge_stage_key(producer: Producer, data: PreparedData, recipe: Recipe) -> StageKey:
    """The key of the producer's knowledge for the consumers' window (what its consumers' keys build on)."""
    precision = at_precision(recipe.trainer, producer.precision).precision
    return knowledge_key(producer.key, str(data.student), producer.rows, precision)


def _generate(producer: Producer, data: PreparedData, recipe: Recipe, path: Path) -> None:
    """Score the producer's rows (this rank's share of them) batch by batch, streaming each batch
    into the table on disk."""
    batches = WindowBatches(data.log, producer.rows, producer.history_length)
    provenance = Provenance(
        producer=producer.name,
        producer_run_id=producer.run_id,
        cutoff=producer.cutoff.isoformat(),
        created_at=ranks.from_main(datetime.now(timezone.utc).isoformat(timespec="seconds")),  # the same in every shard
        recipe_hash=recipe.hash,
    )
    trainer = at_precision(recipe.trainer, producer.precision)
    with step(f"knowledge: scoring {len(producer.rows):,} impressions with {producer.name}"), atomic_path(path) as tmp:
        writer = KnowledgeWriter(tmp, producer.module.tasks, provenance, producer.module.model.embedding_dim, data.log.example_id.dtype)
        try:
            predict_each(producer.module, window_loader(batches, SCORING_BATCH, shuffle=False), trainer,
                         lambda rows, logits, embedding: writer.append(data.log.example_id.gather(rows.numpy()), logits, embedding))
        finally:
            writer.close()
    write_checksum(path)


def _intact_table(folder: Path, stem: str, producer_run_id: str) -> list[Path] | None:
    """The finished table in `folder` if every file still matches the checksum recorded when it was
    written and it comes from the producer's run; otherwise it is reported and removed (to be
    generated again)."""
    table = finished_table(folder, stem)
    if table is None:
        return None
    damaged = [shard for shard in table if not checksum_matches(shard)]
    if not damaged and table_provenance(table).producer_run_id == producer_run_id:
        return table
    why = "its checksum does not match the one stored when it was written" if damaged else "it comes from an earlier run of its producer"
    print(f"  ! {(damaged or table)[0]}: {why}; generating the knowledge again", flush=True)
    for shard in table:
        shard.unlink(missing_ok=True)
    return None

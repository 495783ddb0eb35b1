"""The stages that make producers and their knowledge: the teacher, a producer's knowledge table,
a domain FM (taught, like a VM, by a `Teaching`: its stage's techniques, producer and knowledge)."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import lightning as L
import torch

from adapters import stage_reads, techniques_tag
from adapters.technique import FeatureSource
from transfer.catalog import ModelEntry
from transfer.config.recipe import Recipe, StageConfig, TrainerConfig, traffic_lag_days
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.cache import checksum_matches, recorded_checksums
from transfer.data.cache import sha256 as file_digest
from transfer.data.prepare import PreparedData
from transfer.errors import DataError, TrainingError
from transfer.evaluation.cost import forward_flops_per_example, parameter_count
from transfer.evaluation.scoring import mean_validation_ne
from transfer.knowledge.embedding_table import EmbeddingTable, embedding_table, read_embedding_table
from transfer.knowledge.generate import (
    Producer,
    at_precision,
    generate_table,
    intact_table,
    table_problem,
)
from transfer.knowledge.join import knowledge_batches
from transfer.knowledge.table import Provenance, shard_path
from transfer.knowledge.traffic import LaggedTrafficKnowledge, TrafficKnowledge
from transfer.pipeline import keys
from transfer.pipeline.keys import StageKey
from transfer.pipeline.resumable import Training, building, fit_or_reuse
from transfer.pipeline.stages.base import CACHED, WILL_RUN, RunContext, Stage
from transfer.tracking import tags as T
from transfer.tracking.runs import Tracker
from transfer.training.best_epoch import KeepBestEpoch
from transfer.training.consumer import ConsumerTarget, transfer_module
from transfer.training.module import RankingModule
from transfer.training.wide_start import start_at_regression
from transfer.util import ranks


@dataclass(eq=False)
class TeacherStage(Stage):
    """The teacher, trained on the train window (every surface and task), or an identical one reused."""

    entry: ModelEntry
    recipe: Recipe
    data: PreparedData
    kind: str = "teacher"
    group: int = 0
    output: Producer | None = None

    @property
    def producer_name(self) -> str:
        return self.recipe.teacher.model

    @property
    def name(self) -> str:
        return f"teacher:{self.producer_name}"

    @property
    def from_traffic(self) -> bool:
        """Whether its knowledge comes from its training traffic (`transfer.knowledge`)."""
        return self.recipe.transfer.knowledge == TRAFFIC

    @functools.cached_property
    def training_rows(self) -> torch.Tensor:
        """[n] what it trains on: the train window, and with knowledge from training traffic the
        consumers' window after it (which it scores batch by batch before learning from it)."""
        data = self.data
        return torch.unique(torch.cat([data.train_rows, data.student_rows])) if self.from_traffic else data.train_rows

    @property
    def cutoff(self) -> datetime:
        """The end of the data its knowledge saw: its training window's end; with knowledge from
        training traffic, the consumers' window's end — or, `lag` days behind (`transfer.staleness_days`),
        `lag` + 1 days before it (their last day is scored by the weights from before day last − lag)."""
        if not self.from_traffic:
            return self.data.train.end
        lag = traffic_lag_days(self.recipe.transfer)
        return self.data.student.end - timedelta(days=lag + 1) if lag else self.data.student.end

    @functools.cached_property
    def key(self) -> StageKey:
        window = f"{self.data.train} + {self.data.student} ({TRAFFIC})" if self.from_traffic else str(self.data.train)
        if lag := traffic_lag_days(self.recipe.transfer):
            window += f", knowledge {lag} days behind"
        validation = self.data.validation_rows if self.recipe.teacher.keep_best_epoch else None
        return keys.key_of(self.kind, teacher_reads(self.recipe, self.data.fingerprint, window, self.entry.builder, validation))

    @property
    def precision(self) -> str | None:
        return self.recipe.teacher.precision

    @property
    def scored_rows(self) -> torch.Tensor:
        """[n] the rows its knowledge covers: the whole consumers' window."""
        return self.data.student_rows

    def trainer(self) -> TrainerConfig:
        """The trainer settings the teacher trains and scores with: the recipe's, at its precision."""
        return at_precision(self.recipe.trainer, self.precision)

    def run(self, ctx: RunContext) -> None:
        cfg, data, tracker = self.recipe.teacher, self.data, ctx.tracker
        folder = ctx.cache.folder(self.key)
        tags = {T.ROLE: T.Role.TEACHER, T.MODEL: cfg.model, T.SURFACE: "all", T.TASK: ",".join(data.log.tasks)}
        if cfg.init_from is not None:
            tags[T.CONTINUED_FROM] = cfg.init_from
        with tracker.run(self.name, tags, nested=True) as run_id:
            L.seed_everything(self.recipe.seed, verbose=False)
            model = self.entry.build(data.log.inputs, cfg.sizes)
            if cfg.init_from is not None:  # continue from an earlier teacher (the continuous cycle)
                model.load_state_dict(torch.load(cfg.init_from, weights_only=True))
            if cfg.compile:
                model.compile()  # in place: parameter names (and so the stage cache) are unchanged
            all_tasks = list(range(len(data.log.tasks)))
            prior = None if cfg.init_from is not None else data.base_rates(data.train_rows, all_tasks)  # a continued teacher keeps its biases
            module = RankingModule(model, data.log.tasks, all_tasks, lr=cfg.lr, base_rates=prior, warmup_steps=cfg.warmup_steps)
            rows = self.training_rows
            batches = WindowBatches(data.log, rows, model.history_length)
            if cfg.init_from is None:  # a teacher with a wide term starts at its regressions, as a VM does (a continued one keeps its weights)
                tracker.log_metrics({"wide_start": float(start_at_regression(model, batches, all_tasks))})
            loader = window_loader(batches, cfg.batch_size, shuffle=True, seed=self.recipe.seed, order=self.recipe.trainer.order)
            watchers = traffic_watchers(ctx, folder, self, module, run_id, self.cutoff) if self.from_traffic else []
            keeper = self._best_epoch_keeper(module)
            training = Training(module, loader, self.trainer(), cfg.max_epochs, folder, f"teacher: {cfg.model}",
                                f"on {len(rows):,} impressions", shard=True, watchers=(*watchers, *([keeper] if keeper else [])))
            trained_by = fit_or_reuse(training, ctx.cache, tracker, run_id)
            if keeper is not None and keeper.best_epoch is not None:
                tracker.log_metrics({T.BEST_EPOCH: float(keeper.best_epoch)})
            validation_ne = keeper.best_score if keeper is not None else None
            if validation_ne is not None:
                tracker.log_metrics({T.VAL_MEAN_NE: validation_ne})
            tracker.log_metrics({T.PARAMETERS: parameter_count(model)})
            tracker.log_params({"precision": self.trainer().precision, "compile": cfg.compile})
        self.output = Producer(cfg.model, module, trained_by, self.cutoff, self.scored_rows,
                               precision=self.precision, weights=folder / "model.pt",
                               lag_days=traffic_lag_days(self.recipe.transfer), validation_ne=validation_ne)

    def _best_epoch_keeper(self, module: RankingModule) -> KeepBestEpoch | None:
        """With `teacher.keep_best_epoch`, what keeps its epoch with the lowest mean NE over tasks on the
        validation window (its start as epoch 0); None otherwise, or where that window cannot score it."""
        if not self.recipe.teacher.keep_best_epoch:
            return None
        scorer = mean_validation_ne(module, self.data.log, self.data.validation_rows)
        return KeepBestEpoch(module, scorer) if scorer is not None else None

    @functools.cached_property
    def forward_flops(self) -> float:
        """The trained teacher's forward FLOPs per example with a full history (what a VM's cost is set against)."""
        return forward_flops_per_example(self.output.module.model, self.data.log.inputs)

    def traffic_folder(self, ctx: RunContext) -> Path | None:
        """Where its knowledge from training traffic is written (None: it makes none)."""
        return traffic_folder(ctx.cache.folder(self.key)) if self.from_traffic else None


@dataclass(eq=False)
class KnowledgeStage(Stage):
    """A producer's knowledge table for the consumers' window: generated once, then reused by every
    consumer. In a multi-process run each rank scores and writes its own shard of the rows."""

    producer: TeacherStage | DomainFMStage
    recipe: Recipe
    data: PreparedData
    kind: str = "knowledge"
    group: int = 1
    output: list[Path] | None = None

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.producer,)

    @property
    def name(self) -> str:
        return f"knowledge:{self.producer.producer_name}"

    @functools.cached_property
    def key(self) -> StageKey:
        precision = at_precision(self.recipe.trainer, self.producer.precision).precision
        source = TRAFFIC if self.producer.from_traffic else "separate"
        return keys.key_of(self.kind, knowledge_reads(self.producer.key, str(self.data.student), self.producer.scored_rows, precision, source))

    def folder(self, ctx: RunContext) -> Path:
        """Its table's folder: its own, or, from training traffic, beside the producer's weights."""
        return self.producer.traffic_folder(ctx) or ctx.cache.folder(self.key)

    def status(self, ctx: RunContext) -> str:
        """Cached when the table is intact and comes from the producer's cached run."""
        producer_run = self.producer.cached_run(ctx)
        stem = self.producer.producer_name.replace(":", "-")
        _, problem = table_problem(self.folder(ctx), stem, producer_run)
        return CACHED if problem is None else WILL_RUN

    def cached_run(self, ctx: RunContext) -> str | None:
        return None

    def run(self, ctx: RunContext) -> None:
        producer, data, tracker = self.producer.output, self.data, ctx.tracker
        folder = self.folder(ctx)
        tags = {T.ROLE: T.Role.KNOWLEDGE, T.PRODUCER: producer.name, T.PRODUCER_RUN_ID: producer.run_id}
        with tracker.run(f"knowledge:{producer.name}", tags, nested=True), building(folder, f"knowledge: {producer.name}"):
            # rank 0 decides for all
            table = ranks.from_main(intact_table(folder, producer.table_stem, producer.run_id) if ranks.is_main() else None)
            if table is not None:
                how = "kept from its training traffic" if self.producer.from_traffic else "already generated, reused"
                print(f"✓ knowledge: {producer.name} on {data.student} {how}", flush=True)
            elif self.producer.from_traffic:  # only its training writes it, and that training just ran or was reused with it
                raise TrainingError(f"{folder}: the knowledge {producer.name} keeps from its training traffic is missing; "
                                    "remove its stage folder to train it again")
            else:
                world = ranks.world_size()
                generate_table(producer, data, self.recipe.trainer, self.recipe.hash,
                               shard_path(folder, producer.table_stem, ranks.rank(), world))
                ranks.barrier()  # every shard renamed into place
                table = [shard_path(folder, producer.table_stem, rank, world) for rank in range(world)]
            tracker.log_params({"path": str(table[0].parent), "files": len(table), "rows": len(producer.rows), "window": str(data.student),
                                "source": TRAFFIC if self.producer.from_traffic else "separate"})
        self.output = table


@dataclass(frozen=True)
class Teaching:
    """What a consumer of recipe stage `index` learns from: the stage's techniques, its producer and
    that producer's knowledge."""

    index: int
    config: StageConfig
    producer: TeacherStage | DomainFMStage
    knowledge: KnowledgeStage

    def tags(self, recipe: Recipe, data: PreparedData) -> dict[str, str]:
        """The lineage tags of a model taught this way."""
        producer = self.producer.output
        return {
            T.PRODUCER: producer.name,
            T.PRODUCER_RUN_ID: producer.run_id,
            T.KNOWLEDGE_CUTOFF: producer.cutoff.isoformat(),
            T.KNOWLEDGE_AGE_DAYS: f"{(data.student.end - producer.cutoff).total_seconds() / 86400:g}",
            T.STALENESS_DAYS: str(recipe.transfer.staleness_days),
            T.STAGE: str(self.index),
            T.TECHNIQUES: techniques_tag(self.config),
        }

    def module(self, model: torch.nn.Module, target: ConsumerTarget, lr: float, data: PreparedData) -> RankingModule:
        producer = self.producer.output.module.model
        return transfer_module(model, target, lr, self.config, producer, len(data.log.surfaces), target.base_rates(data),
                               self.feature_source(data))

    def feature_source(self, data: PreparedData) -> FeatureSource:
        """The producer's embedding tables, made once in its knowledge's folder (`embeddings/<producer>.<feature>.<days>d.parquet`,
        `transfer.knowledge.embedding_table`): each over its last days before its cutoff, keyed by the log's hashed ids."""
        producer = self.producer.output
        folder, prefix = self.knowledge.output[0].parent, f"transfer.stages.{self.index - 1}"  # index counts stages from 1
        provenance = Provenance(producer=producer.name, producer_run_id=producer.run_id, cutoff=producer.cutoff.isoformat(),
                                created_at=datetime.now(timezone.utc).isoformat(), recipe_hash="")

        def table(feature: str, days: int) -> EmbeddingTable:
            rows = data.log.window_rows(producer.cutoff - timedelta(days=days), producer.cutoff)
            (folder / "embeddings").mkdir(exist_ok=True)
            return embedding_table(folder / "embeddings" / f"{producer.table_stem}.{feature}.{days}d.parquet", producer.module.model,
                                   data.log, rows, data.log.categorical_names.index(feature), provenance, days)

        def earlier_table(earlier: str, feature: str, days: int) -> EmbeddingTable:
            path = Path(earlier) / "embeddings" / f"{producer.table_stem}.{feature}.{days}d.parquet"
            if not (path.is_file() and checksum_matches(path)):
                raise DataError(f"{prefix}.embedding_features.earlier: {path}: found no complete embedding table; allowed: the knowledge "
                                f"folder of an earlier run of '{producer.name}' whose consumers took {feature} embeddings over {days} days")
            try:
                return read_embedding_table(path, producer.name)
            except DataError as exc:
                raise DataError(f"{prefix}.embedding_features.earlier: {exc}; allowed: folders of earlier runs of '{producer.name}'") from None

        age = (data.student.end - producer.cutoff).total_seconds() / 86400
        return FeatureSource(table, producer.cutoff, data.student.start, age, lambda field, message: DataError(f"{prefix}.{field}: {message}"),
                             earlier_table, data.student.end)

    def batches(self, data: PreparedData, target: ConsumerTarget, history_length: int, max_age_days: int | None,
                seed: int, tracker: Tracker) -> WindowBatches:
        """The consumer's training batches with its knowledge joined (columns techniques derive, such as
        the Student Adapter's, computed with `seed`, and their metrics logged to the consumer's run)."""
        producer = self.producer.output
        batches, metrics = knowledge_batches(data, target, history_length, self.config, (producer.name, producer.run_id, producer.cutoff, producer.lag_days),
                                             self.knowledge.output, max_age_days, seed)
        if metrics:
            tracker.log_metrics(metrics)
        return batches


@dataclass(eq=False)
class DomainFMStage(Stage):
    """One domain's FM, trained on its surfaces of the consumers' window, taught by the stage's producer
    (with `domain_fms.warm_start`, first on its surfaces of the teacher's window from labels); its VMs'
    knowledge is kept from its first epoch's training traffic over the consumers' window (out-of-sample)."""

    domain: str
    entry: ModelEntry
    teaching: Teaching
    recipe: Recipe
    data: PreparedData
    kind: str = "domain_fm"
    output: Producer | None = None

    @property
    def group(self) -> int:
        return self.teaching.index

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.teaching.producer, self.teaching.knowledge)

    @property
    def producer_name(self) -> str:
        return f"{self.recipe.domain_fms.model}:{self.domain}"

    @property
    def name(self) -> str:
        return f"domain_fm:{self.producer_name}"

    @property
    def precision(self) -> str | None:
        return None  # scores at the recipe trainer's precision

    @property
    def from_traffic(self) -> bool:
        """Always: it trains on its VMs' own window, so a scoring pass after training would label rows it
        learnt from; its first epoch scores each batch just before learning from it, so its VMs'
        knowledge is out-of-sample under either `transfer.knowledge`, at no extra forward pass."""
        return True

    def traffic_folder(self, ctx: RunContext) -> Path | None:
        return traffic_folder(ctx.cache.folder(self.key)) if self.from_traffic else None

    @functools.cached_property
    def target(self) -> ConsumerTarget:
        data = self.data
        return ConsumerTarget(data.log.tasks, list(range(len(data.log.tasks))), data.domain_rows(data.student_rows, self.domain))

    @property
    def scored_rows(self) -> torch.Tensor:
        """[n] the rows its knowledge covers: its own training rows."""
        return self.target.rows

    @functools.cached_property
    def key(self) -> StageKey:
        teaching = self.teaching
        return keys.key_of(self.kind, domain_fm_reads(self.recipe, self.data.fingerprint, str(self.data.student), self.domain, teaching.config,
                                                      teaching.producer.key, teaching.knowledge.key, self.entry.builder))

    def run(self, ctx: RunContext) -> None:
        cfg, data, target, tracker = self.recipe.domain_fms, self.data, self.target, ctx.tracker
        model_name = self.producer_name
        tags = {T.ROLE: T.Role.DOMAIN_FM, T.MODEL: cfg.model, T.DOMAIN: self.domain, T.SURFACE: ",".join(data.domains[self.domain]),
                T.TASK: ",".join(data.log.tasks), **self.teaching.tags(self.recipe, data)}
        with tracker.run(self.name, tags, nested=True) as run_id:
            L.seed_everything(self.recipe.seed, verbose=False)
            model = self.entry.build(data.log.inputs, cfg.sizes)
            module = self.teaching.module(model, target, cfg.lr, data)  # imports the shared producer modules into `model`
            folder = ctx.cache.folder(self.key)
            if cfg.warm_start:
                self._warm_start(ctx, model, folder / "warm_start", run_id)
            batches = self.teaching.batches(data, target, model.history_length, self.recipe.transfer.max_age_days, self.recipe.seed, tracker)
            loader = window_loader(batches, cfg.batch_size, shuffle=True, seed=self.recipe.seed, order=self.recipe.trainer.order)
            watchers = traffic_watchers(ctx, folder, self, module, run_id, data.student.end) if self.from_traffic else ()
            training = Training(module, loader, self.recipe.trainer, cfg.max_epochs, folder, f"domain FM: {model_name}",
                                f"on {len(target.rows):,} impressions", watchers=tuple(watchers))
            trained_by = fit_or_reuse(training, ctx.cache, tracker, run_id)
            tracker.log_metrics({T.PARAMETERS: parameter_count(module.export())})
        self.output = Producer(model_name, module, trained_by, data.student.end, target.rows)

    def _warm_start(self, ctx: RunContext, model: torch.nn.Module, folder: Path, run_id: str) -> None:
        """Train `model` first on its domain's rows of the teacher's window, from labels only (the teacher
        has no out-of-sample knowledge of the rows it trained on) and in time order, so that it has seen
        more of its domain than any VM and the knowledge it keeps from its traffic over the consumers'
        window comes from a model that knows its domain, not from a cold start. Cached in `folder`."""
        data, cfg = self.data, self.recipe.domain_fms
        rows = data.domain_rows(data.train_rows, self.domain)  # [n]
        tasks = list(range(len(data.log.tasks)))
        module = RankingModule(model, data.log.tasks, tasks, lr=cfg.lr, base_rates=data.base_rates(rows, tasks))
        loader = window_loader(WindowBatches(data.log, rows, model.history_length), cfg.batch_size, shuffle=True,
                               seed=self.recipe.seed, order="time")
        training = Training(module, loader, self.recipe.trainer, cfg.max_epochs, folder, f"domain FM warm start: {self.producer_name}",
                            f"on {len(rows):,} impressions of the teacher's window (labels only)")
        fit_or_reuse(training, ctx.cache, ctx.tracker, run_id)
        ctx.tracker.log_metrics({"warm_start_rows": len(rows)})


TRAFFIC = "training_traffic"


def traffic_folder(producer_folder: Path) -> Path:
    """Where a producer keeps the knowledge from its training traffic: beside its weights (only its
    training writes it, so the two are cached, and lost, together)."""
    return producer_folder / "knowledge"


def traffic_watchers(ctx: RunContext, folder: Path, stage: TeacherStage | DomainFMStage, module: RankingModule, run_id: str,
                     cutoff: datetime) -> list[TrafficKnowledge]:
    """The callback that keeps `stage`'s knowledge of its scored rows from its training traffic (this
    rank's shard). A cached producer whose table is gone or damaged is trained again: nothing else
    can make that table."""
    stem = stage.producer_name.replace(":", "-")
    table_folder = traffic_folder(folder)
    cached = ctx.cache.finished_run(folder)
    if ranks.is_main() and cached is not None:
        _, problem = table_problem(table_folder, stem, cached)
        if problem is not None:
            print(f"  ! {table_folder}: the knowledge from its training traffic is {problem}; training {stage.name} again", flush=True)
            ctx.cache.forget(folder)
    ranks.barrier()
    data = ctx.data
    wanted = torch.zeros(len(data.log.labels), dtype=torch.bool)
    wanted[stage.scored_rows] = True
    lag = traffic_lag_days(ctx.recipe.transfer) if isinstance(stage, TeacherStage) else 0
    provenance = Provenance(producer=stage.producer_name, producer_run_id=run_id, cutoff=cutoff.isoformat(),
                            created_at=ranks.from_main(datetime.now(timezone.utc).isoformat(timespec="seconds")),
                            recipe_hash=ctx.recipe.hash)
    path = shard_path(table_folder, stem, ranks.rank(), ranks.world_size())
    if lag:
        return [LaggedTrafficKnowledge(path, wanted, data.log, module.tasks, provenance, module.model.embedding_dim,
                                       module.model.history_length, lag)]
    return [TrafficKnowledge(path, wanted, data.log.example_id, module.tasks, provenance, module.model.embedding_dim)]



def teacher_reads(recipe: Recipe, data_fingerprint: str, window: str, builder: str, validation: torch.Tensor | None = None) -> keys.Reads:
    """What the teacher reads: the train window (`window`) of the encoded log, its own settings and
    seed, the trainer settings that change a training (not the VMs' epochs), the weights it
    continues from, by content, and with `teacher.keep_best_epoch` the `validation` rows [v] that choose its epoch."""
    cfg = recipe.teacher
    settings = {
        "teacher": {**asdict(cfg), "init_from": None},  # the weights it continues from count by content, below
        "window": window,
        "seed": recipe.seed,
        "trainer": keys.trainer_settings(recipe.trainer, own_epochs=False),
    }
    if validation is not None:
        settings["validation"] = keys.rows_digest(validation)
    inputs = {"data": data_fingerprint, "init_from": file_digest(cfg.init_from) if cfg.init_from else None}
    return keys.Reads(settings, inputs, builder=builder)


def knowledge_reads(producer: StageKey, window: str, rows: torch.Tensor, precision: str, source: str = "separate") -> keys.Reads:
    """What a producer's knowledge table reads: the producer, and exactly the consumers' `rows` it
    scores, at `precision`, from a separate scoring pass or from its training traffic (`source`)."""
    settings = {"window": window, "rows": keys.rows_digest(rows), "precision": precision}
    if source != "separate":
        settings["source"] = source
    return keys.Reads(settings, {"producer": producer})


def consumer_settings(recipe: Recipe, window: str, stage: StageConfig | None) -> dict:
    """What a consumer's training reads besides its own model settings: the seed and its stage's
    techniques (`window`: "" where the consumer names the rows it reads instead). `transfer.max_age_days`
    only refuses knowledge: it never changes what trains."""
    settings: dict = {"window": window, "seed": recipe.seed}
    if stage is not None:
        settings |= {"stage": stage_reads(stage, recorded_checksums)}
    return settings


def domain_fm_reads(recipe: Recipe, data_fingerprint: str, window: str, domain: str, stage: StageConfig, producer: StageKey,
                    knowledge: StageKey, builder: str) -> keys.Reads:
    """What one domain's FM reads: its domain's rows of the consumers' window, its producer and that
    producer's knowledge, the domain FMs' settings and the trainer's; its code includes the techniques."""
    settings = consumer_settings(recipe, window, stage) | {
        "domain": domain,
        "domain_fms": asdict(recipe.domain_fms),
        "trainer": keys.trainer_settings(recipe.trainer, own_epochs=False),
        "knowledge": "training_traffic",  # its VMs' knowledge: always its first epoch's pre-step outputs
    }
    return keys.Reads(settings, {"data": data_fingerprint, "producer": producer, "knowledge": knowledge}, (keys.TECHNIQUES,), builder)

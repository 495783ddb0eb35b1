"""A recipe's stages as objects: teacher, knowledge, domain FM, baseline, student and evaluation.

Each stage declares its inputs (the stages whose outputs it reads), computes its key from its own
settings and its inputs' keys (through `transfer.pipeline.keys`, the single owner of keys), says
whether the stage cache already holds its output (`status`), and runs, leaving its result in
`output`. Keys need no stage to have run, so `gem-transfer plan` shows every key before anything runs.
`transfer.pipeline.plan` builds them from a recipe; `transfer.pipeline.engine` runs them in order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import lightning as L
import polars as pl
import torch

from adapters import techniques_tag
from transfer.catalog import ModelEntry
from transfer.config.recipe import Recipe, StageConfig, StudentConfig, TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import PreparedData
from transfer.evaluation.cost import parameter_count
from transfer.evaluation.lift_table import Scores, VerticalResult, lift_table
from transfer.evaluation.serving import budget_status, measure, requests
from transfer.knowledge.generate import (
    SCORING_BATCH,
    Producer,
    at_precision,
    generate_table,
    intact_table,
    table_problem,
)
from transfer.knowledge.join import knowledge_batches
from transfer.knowledge.table import shard_path
from transfer.pipeline import keys
from transfer.pipeline.cache import StageCache
from transfer.pipeline.keys import StageKey
from transfer.tracking import tags as T
from transfer.tracking.runs import Tracker
from transfer.training.consumer import ConsumerTarget, transfer_module
from transfer.training.module import RankingModule
from transfer.training.resumable import building, fit_or_reuse
from transfer.training.trainer import evaluate
from transfer.util import ranks
from transfer.util.atomic import atomic_path

CACHED, WILL_RUN, ALWAYS = "cached", "will run", "runs every time"


@dataclass
class RunContext:
    """What every stage of one recipe run reads (no stage writes to it)."""

    recipe: Recipe
    data: PreparedData
    cache: StageCache
    tracker: Tracker | None = None  # None while planning
    run_dir: Path | None = None  # where the run's lift.csv goes

    def score(self, module: RankingModule, rows: torch.Tensor, task: str) -> Scores:
        """`module`'s NE, AUC and calibration on `task` over `rows` ([n], of the eval window)."""
        loader = window_loader(WindowBatches(self.data.log, rows, module.model.history_length), SCORING_BATCH, shuffle=False)
        return evaluate(module, loader, self.recipe.trainer, task)


class Stage:
    """The stage protocol: `kind`, `name`, `group` (0: before the recipe's stages, i: within recipe
    stage i), `inputs`, `key`, `status(ctx)` and `run(ctx)`."""

    kind: str
    name: str
    group: int
    inputs: tuple[Stage, ...] = ()

    @property
    def key(self) -> StageKey:
        raise NotImplementedError

    def status(self, ctx: RunContext) -> str:
        """CACHED when the stage cache holds this stage's finished output, else WILL_RUN."""
        return CACHED if self.cached_run(ctx) is not None else WILL_RUN

    def cached_run(self, ctx: RunContext) -> str | None:
        """The MLflow run that made the cached output (None: not cached)."""
        return ctx.cache.finished_run(ctx.cache.folder(self.key))

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError


# --- producers -------------------------------------------------------------------------------------


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

    @functools.cached_property
    def key(self) -> StageKey:
        return keys.teacher_key(self.recipe, self.data.fingerprint, str(self.data.train), self.entry.builder)

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
            module = RankingModule(model, data.log.tasks, all_tasks, lr=cfg.lr, base_rates=prior)
            loader = window_loader(WindowBatches(data.log, data.train_rows, model.history_length), cfg.batch_size, shuffle=True,
                                   seed=self.recipe.seed)
            trained_by = fit_or_reuse(ctx.cache, folder, module, loader, self.trainer(), cfg.max_epochs, tracker, run_id,
                                      f"teacher: {cfg.model}", f"on {len(data.train_rows):,} impressions", shard=True)
            tracker.log_metrics({T.PARAMETERS: parameter_count(model)})
            tracker.log_params({"precision": self.trainer().precision, "compile": cfg.compile})
        self.output = Producer(cfg.model, module, trained_by, data.train.end, self.scored_rows, self.key,
                               precision=self.precision, weights=folder / "model.pt")


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
        return keys.knowledge_key(self.producer.key, str(self.data.student), self.producer.scored_rows, precision)

    def status(self, ctx: RunContext) -> str:
        """Cached when the table is intact and comes from the producer's cached run."""
        producer_run = self.producer.cached_run(ctx)
        stem = self.producer.producer_name.replace(":", "-")
        _, problem = table_problem(ctx.cache.folder(self.key), stem, producer_run)
        return CACHED if problem is None else WILL_RUN

    def cached_run(self, ctx: RunContext) -> str | None:
        return None

    def run(self, ctx: RunContext) -> None:
        producer, data, tracker = self.producer.output, self.data, ctx.tracker
        folder = ctx.cache.folder(self.key)
        tags = {T.ROLE: T.Role.KNOWLEDGE, T.PRODUCER: producer.name, T.PRODUCER_RUN_ID: producer.run_id}
        with tracker.run(f"knowledge:{producer.name}", tags, nested=True), building(folder, f"knowledge: {producer.name}"):
            # rank 0 decides for all
            table = ranks.from_main(intact_table(folder, producer.table_stem, producer.run_id) if ranks.is_main() else None)
            if table is not None:
                print(f"✓ knowledge: {producer.name} on {data.student} already generated, reused", flush=True)
            else:
                world = ranks.world_size()
                generate_table(producer, data, self.recipe.trainer, self.recipe.hash,
                               shard_path(folder, producer.table_stem, ranks.rank(), world))
                ranks.barrier()  # every shard renamed into place
                table = [shard_path(folder, producer.table_stem, rank, world) for rank in range(world)]
            tracker.log_params({"path": str(table[0].parent), "files": len(table), "rows": len(producer.rows), "window": str(data.student)})
        self.output = table


# --- consumers -------------------------------------------------------------------------------------


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
        return transfer_module(model, target, lr, self.config, producer, len(data.log.surfaces), target.base_rates(data))

    def batches(self, data: PreparedData, target: ConsumerTarget, history_length: int, max_age_days: int | None) -> WindowBatches:
        producer = self.producer.output
        return knowledge_batches(data, target.rows, target.tasks, history_length, self.config,
                                 (producer.name, producer.run_id, producer.cutoff), self.knowledge.output, max_age_days)


@dataclass(eq=False)
class DomainFMStage(Stage):
    """One domain's FM, trained on its surfaces of the consumers' window, taught by the stage's producer."""

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
        return keys.domain_fm_key(self.recipe, self.data.fingerprint, str(self.data.student), self.domain, teaching.config,
                                  teaching.producer.key, teaching.knowledge.key, self.entry.builder)

    def run(self, ctx: RunContext) -> None:
        cfg, data, target, tracker = self.recipe.domain_fms, self.data, self.target, ctx.tracker
        model_name = self.producer_name
        tags = {T.ROLE: T.Role.DOMAIN_FM, T.MODEL: cfg.model, T.DOMAIN: self.domain, T.SURFACE: ",".join(data.domains[self.domain]),
                T.TASK: ",".join(data.log.tasks), **self.teaching.tags(self.recipe, data)}
        with tracker.run(self.name, tags, nested=True) as run_id:
            L.seed_everything(self.recipe.seed, verbose=False)
            model = self.entry.build(data.log.inputs, cfg.sizes)
            module = self.teaching.module(model, target, cfg.lr, data)
            batches = self.teaching.batches(data, target, model.history_length, self.recipe.transfer.max_age_days)
            loader = window_loader(batches, cfg.batch_size, shuffle=True, seed=self.recipe.seed)
            trained_by = fit_or_reuse(ctx.cache, ctx.cache.folder(self.key), module, loader, self.recipe.trainer, cfg.max_epochs,
                                      tracker, run_id, f"domain FM: {model_name}", f"on {len(target.rows):,} impressions")
            tracker.log_metrics({T.PARAMETERS: parameter_count(module.export())})
        self.output = Producer(model_name, module, trained_by, data.student.end, target.rows, self.key)


@dataclass
class VerticalOutcome:
    """A trained VM (baseline or student) scored on its eval slice, beside the teacher and its producer."""

    module: RankingModule
    run_id: str
    scores: Scores
    budget: str  # its serving budget status
    teacher: Scores  # the teacher on the same slice
    producer: Scores | None  # its producer (a domain FM) on the same slice, when not the teacher


@dataclass(frozen=True)
class Vertical:
    """One vertical model of the recipe: its catalog entry, recipe config, seed and producer."""

    spec: ModelEntry
    config: StudentConfig
    seed: int
    teacher: TeacherStage
    producer: TeacherStage | DomainFMStage  # its direct producer (scored beside it)

    def target(self, data: PreparedData) -> ConsumerTarget:
        return ConsumerTarget([self.spec.task], [data.log.tasks.index(self.spec.task)],
                              data.log.surface_rows(data.student_rows, self.spec.surfaces))

    def eval_rows(self, data: PreparedData) -> torch.Tensor:
        return data.log.surface_rows(data.eval_rows, self.spec.surfaces)

    def tags(self, role: str) -> dict[str, str]:
        return {T.ROLE: role, T.VERTICAL: self.spec.name, T.SURFACE: ",".join(self.spec.surfaces), T.TASK: self.spec.task}


@dataclass(eq=False)
class _VerticalStage(Stage):
    """What a baseline and a student share: training one VM, scoring it on its slice, serving cost."""

    vertical: Vertical
    recipe: Recipe
    data: PreparedData
    group: int = 1
    output: VerticalOutcome | None = None

    role = ""

    @property
    def name(self) -> str:
        return f"{self.role}:{self.vertical.spec.name}"

    def _train(self, ctx: RunContext, tags: dict[str, str], teacher: Scores, producer: Scores | None,
               baseline: Scores | None) -> None:
        vertical, data, tracker = self.vertical, self.data, ctx.tracker
        spec, target, eval_rows = vertical.spec, vertical.target(data), vertical.eval_rows(data)
        with tracker.run(self.name, tags, nested=True) as run_id:
            L.seed_everything(vertical.seed, verbose=False)
            model = spec.build(data.log.inputs, vertical.config.sizes)
            module, batches = self._module_and_batches(model, target)
            loader = window_loader(batches, vertical.config.batch_size, shuffle=True, seed=vertical.seed)
            fit_or_reuse(ctx.cache, ctx.cache.folder(self.key), module, loader, self.recipe.trainer, self.recipe.trainer.max_epochs,
                         tracker, run_id, f"{self.role}: {spec.name}", f"on {len(target.rows):,} impressions of {'/'.join(spec.surfaces)}")
            scores = ctx.score(module, eval_rows, spec.task)
            tracker.log_metrics(T.model_metrics(scores, teacher, producer, baseline or scores))
            status = _log_serving(tracker, module, spec, WindowBatches(data.log, eval_rows, model.history_length), self.role)
        self.output = VerticalOutcome(module, run_id, scores, status, teacher, producer)

    def _module_and_batches(self, model: torch.nn.Module, target: ConsumerTarget) -> tuple[RankingModule, WindowBatches]:
        raise NotImplementedError


@dataclass(eq=False)
class BaselineStage(_VerticalStage):
    """A VM's no-transfer baseline: the same model trained on labels alone (no stage, producer or knowledge)."""

    kind: str = T.Role.BASELINE
    role = T.Role.BASELINE

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return ()

    @functools.cached_property
    def key(self) -> StageKey:
        return _vm_key(self.recipe, self.data, T.Role.BASELINE, self.vertical)

    def run(self, ctx: RunContext) -> None:
        vertical, eval_rows = self.vertical, self.vertical.eval_rows(self.data)
        teacher = ctx.score(vertical.teacher.output.module, eval_rows, vertical.spec.task)
        producer = None
        if vertical.producer is not vertical.teacher:
            producer = ctx.score(vertical.producer.output.module, eval_rows, vertical.spec.task)
        self._train(ctx, vertical.tags(self.role), teacher, producer, None)

    def _module_and_batches(self, model, target):
        module = RankingModule(model, target.tasks, target.task_columns, lr=self.vertical.config.lr, base_rates=target.base_rates(self.data))
        return module, WindowBatches(self.data.log, target.rows, model.history_length)


@dataclass(eq=False)
class StudentStage(_VerticalStage):
    """A VM trained with transfer from its producer's knowledge, with its stage's techniques."""

    teaching: Teaching | None = None
    baseline: BaselineStage | None = None
    kind: str = T.Role.STUDENT
    role = T.Role.STUDENT

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.teaching.producer, self.teaching.knowledge)

    @functools.cached_property
    def key(self) -> StageKey:
        return _vm_key(self.recipe, self.data, T.Role.STUDENT, self.vertical, self.teaching)

    def run(self, ctx: RunContext) -> None:
        base = self.baseline.output
        tags = self.vertical.tags(self.role) | self.teaching.tags(self.recipe, self.data) | {T.BASELINE_RUN_ID: base.run_id}
        self._train(ctx, tags, base.teacher, base.producer, base.scores)

    def _module_and_batches(self, model, target):
        module = self.teaching.module(model, target, self.vertical.config.lr, self.data)
        batches = self.teaching.batches(self.data, target, model.history_length, self.recipe.transfer.max_age_days)
        return module, batches


def _vm_key(recipe: Recipe, data: PreparedData, role: str, vertical: Vertical, teaching: Teaching | None = None) -> StageKey:
    """A VM's stage key: a baseline depends on no stage, producer or knowledge."""
    transfer = {}
    if teaching is not None:
        transfer = {"stage": teaching.config, "producer": teaching.producer.key, "knowledge": teaching.knowledge.key}
    spec = vertical.spec
    return keys.vm_key(recipe, data.fingerprint, str(data.student), str(role), spec.name, spec.builder, dict(spec.sizes),
                       vertical.config, vertical.seed, **transfer)


def _log_serving(tracker: Tracker, module: RankingModule, spec: ModelEntry, eval_batches: WindowBatches, role: str) -> str:
    """Measure the serving model's cost on requests from the eval window, log it (and, for a student,
    the model itself, for `gem-transfer register`) and print it; → its budget status (no measured
    figures in it, so the lift table is the same on every run). Rank 0 measures, every rank gets its status."""
    if not ranks.is_main():
        return ranks.from_main("")
    served, batches = module.export(), requests(eval_batches)
    cost = measure(served, batches)
    status = budget_status(cost, spec.budget)
    print(f"  serving {role} {spec.name}: {cost.summary()}: {status}", flush=True)
    tracker.log_metrics(cost.metrics())
    tracker.set_tags({T.BUDGET_STATUS: status})
    if role == T.Role.STUDENT:
        tracker.set_tags({T.MODEL_URI: tracker.log_serving_model(served, batches[0])})
    return ranks.from_main(status)


# --- evaluation ------------------------------------------------------------------------------------


@dataclass(eq=False)
class EvaluationStage(Stage):
    """The lift table: the teacher, each VM's producer, baseline and student on the VM's eval slice
    (scored as each VM finished); written to the run folder and logged on the recipe's run."""

    teacher: TeacherStage
    students: list[StudentStage]
    data: PreparedData
    kind: str = "evaluation"
    group: int = 0
    name: str = "evaluation:lift table"
    output: pl.DataFrame | None = None
    created: datetime | None = field(default=None, repr=False)

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.teacher, *(s for student in self.students for s in (student.baseline, student)))

    @functools.cached_property
    def key(self) -> StageKey:
        return keys.evaluation_key(str(self.data.eval), keys.rows_digest(self.data.eval_rows), [s.key for s in self.inputs])

    def status(self, ctx: RunContext) -> str:
        return ALWAYS

    def run(self, ctx: RunContext) -> None:
        results = [self._result(student) for student in self.students]
        self.output = lift_table(results)
        if ranks.is_main():
            with atomic_path(ctx.run_dir / "lift.csv") as tmp:
                self.output.write_csv(tmp)
            ctx.tracker.log_artifact(ctx.run_dir / "lift.csv")

    def _result(self, student: StudentStage) -> VerticalResult:
        spec, base, out = student.vertical.spec, student.baseline.output, student.output
        producer = student.teaching.producer.output.name if out.producer is not None else None
        return VerticalResult(spec.name, "/".join(spec.surfaces), spec.task, self.teacher.producer_name, out.teacher, base.scores,
                              out.scores, producer=producer, producer_scores=out.producer, budget=out.budget,
                              variant=techniques_tag(student.teaching.config),
                              run_ids={T.Role.BASELINE: base.run_id, T.Role.STUDENT: out.run_id})

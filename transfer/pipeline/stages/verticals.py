"""A vertical model's stages: its no-transfer baseline, its student and (when asked) its student's
vanilla-KD reference. Each runs three phases — train (or reuse), score on the VM's slices beside the
teacher and its producer, log (metrics, interval, serving cost) — in one `VerticalStage`."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import lightning as L
import torch

from transfer.catalog import ModelEntry
from transfer.config.recipe import Recipe, StageConfig, StudentConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import PreparedData
from transfer.evaluation.cost import forward_flops_per_example
from transfer.evaluation.intervals import LiftInterval, lift_interval, resampling_units
from transfer.evaluation.lift_table import Role, Scores
from transfer.evaluation.scoring import Slices, SliceScores, labels_of, score_slices, validation_ne
from transfer.evaluation.serving import budget_status, measure, requests
from transfer.pipeline import keys
from transfer.pipeline.keys import StageKey
from transfer.pipeline.resumable import Training, fit_or_reuse
from transfer.pipeline.stages.base import RunContext, Stage
from transfer.pipeline.stages.producers import DomainFMStage, TeacherStage, Teaching, consumer_settings
from transfer.tracking import tags as T
from transfer.tracking.runs import Tracker
from transfer.training.best_epoch import KeepBestEpoch
from transfer.training.consumer import ConsumerTarget
from transfer.training.module import RankingModule
from transfer.training.wide_start import start_at_regression
from transfer.util import ranks


@dataclass
class VerticalOutcome:
    """A trained VM (baseline or student) scored on its eval slice, beside the teacher and its producer."""

    module: RankingModule
    run_id: str
    scores: Scores
    budget: str  # its serving budget status
    teacher: Scores  # the teacher on the same slice
    producer: Scores | None  # its producer (a domain FM) on the same slice, when not the teacher
    logits: torch.Tensor  # [n] its logits on the slice's rows
    teacher_logits: torch.Tensor  # [n] the teacher's on the same rows
    interval: LiftInterval | None = None  # a student's 95% interval of lift and transfer ratio over its baseline
    validation: dict[str, float] = field(default_factory=dict)  # its val_* metrics on the validation slice (none without one)
    flops_share: float | None = None  # its forward FLOPs per example over the teacher's
    best_epoch: int | None = None  # the epoch it kept on its validation slice (0: its start); None without one


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

    def slices(self, data: PreparedData) -> Slices:
        """Its surfaces' rows of the eval, recalibration and validation windows."""
        on_surfaces = lambda rows: data.log.surface_rows(rows, self.spec.surfaces)  # noqa: E731
        return Slices(self.spec.task, on_surfaces(data.eval_rows), on_surfaces(data.recalibration_rows), on_surfaces(data.validation_rows))

    def reads(self, data: PreparedData) -> dict[str, str]:
        """What this VM's training reads, for its stage key: its task's labels on the rows it trains on
        (and fits its regression start on), and the validation rows that choose the epoch it keeps
        (rows as digests). A recipe's inline VM can change its task under the same name."""
        return {"task": self.spec.task, "train": keys.rows_digest(self.target(data).rows),
                "validation": keys.rows_digest(self.slices(data).validation)}

    def tags(self, role: str) -> dict[str, str]:
        return {T.ROLE: role, T.VERTICAL: self.spec.name, T.SURFACE: ",".join(self.spec.surfaces), T.TASK: self.spec.task}


@dataclass(frozen=True)
class Beside:
    """What a VM is scored beside: the teacher on its eval slice (scores, logits [n]), its producer
    when that is a domain FM, and, for a taught VM, its baseline and vanilla-KD reference."""

    teacher: Scores
    teacher_logits: torch.Tensor
    producer: Scores | None = None
    baseline: VerticalOutcome | None = None
    vanilla: VerticalOutcome | None = None


@dataclass(frozen=True)
class Trained:
    """The train phase's result."""

    module: RankingModule
    run_id: str
    best_epoch: int | None  # the epoch it kept on the validation slice (0: its start); None without one
    start_ne: float | None  # its start's NE there


@dataclass(eq=False)
class VerticalStage(Stage):
    """One VM's training: its no-transfer baseline (no `teaching`: labels alone), or a model taught by
    a stage's producer — its student, or its vanilla-KD reference (the gain ratio's denominator,
    design §7) — scored beside the teacher, its producer and (taught) its baseline."""

    vertical: Vertical
    recipe: Recipe
    data: PreparedData
    role: str  # Role.BASELINE, Role.STUDENT or Role.VANILLA_KD
    group: int = 1
    teaching: Teaching | None = None
    baseline: VerticalStage | None = None
    vanilla: VerticalStage | None = None  # a student's vanilla-KD reference (`transfer.vanilla_reference`)
    output: VerticalOutcome | None = None

    @property
    def kind(self) -> str:
        return self.role

    @property
    def name(self) -> str:
        return f"{self.role}:{self.vertical.spec.name}"

    @property
    def inputs(self) -> tuple[Stage, ...]:
        if self.teaching is None:
            return ()
        return (self.teaching.producer, self.teaching.knowledge, *([self.vanilla] if self.vanilla is not None else []))

    @functools.cached_property
    def key(self) -> StageKey:
        return _vm_key(self.recipe, self.data, self.vertical, self.teaching)

    def run(self, ctx: RunContext) -> None:
        beside = self._beside(ctx)
        with ctx.tracker.run(self.name, self._tags(), nested=True) as run_id:
            trained = self._train(ctx, run_id)
            scored, interval = self._score(trained, beside)
            flops_share, status = self._log(ctx.tracker, trained, scored, interval, beside)
        validation = T.validation_metrics(scored.validation)
        self.output = VerticalOutcome(trained.module, run_id, scored.scores, status, beside.teacher, beside.producer, scored.logits,
                                      beside.teacher_logits, interval, validation, flops_share, trained.best_epoch)
        if self.role == Role.STUDENT and ctx.on_student is not None:
            ctx.on_student(self.vertical.spec.name, validation)

    def _beside(self, ctx: RunContext) -> Beside:
        """The teacher and its producer scored on this VM's slices (a baseline scores them; a taught
        VM reuses its baseline's), with the baseline and vanilla-KD reference of a taught VM."""
        if self.baseline is not None:
            base = self.baseline.output
            return Beside(base.teacher, base.teacher_logits, base.producer, base, self.vanilla.output if self.vanilla is not None else None)
        vertical, log, slices = self.vertical, self.data.log, self.vertical.slices(self.data)
        teacher = score_slices(vertical.teacher.output.module, log, slices, validation=False)  # beside the VM: no val_* of its own
        producer = None
        if vertical.producer is not vertical.teacher:
            producer = score_slices(vertical.producer.output.module, log, slices, validation=False).scores
        return Beside(teacher.scores, teacher.logits, producer)

    def _tags(self) -> dict[str, str]:
        tags = self.vertical.tags(self.role)
        if self.teaching is not None:
            tags |= self.teaching.tags(self.recipe, self.data) | {T.BASELINE_RUN_ID: self.baseline.output.run_id}
        if self.vanilla is not None:
            tags[T.VANILLA_RUN_ID] = self.vanilla.output.run_id
        if self.vertical.spec.name in {inline.name for inline in self.recipe.verticals}:
            tags[T.DECLARED_IN] = "recipe"
        return tags

    def _train(self, ctx: RunContext, run_id: str) -> Trained:
        """Build the VM (a wide & deep one starts at its regression), train it keeping its best epoch on
        the validation slice (its start as epoch 0), or reuse the cached weights."""
        vertical, data, tracker = self.vertical, self.data, ctx.tracker
        spec, target = vertical.spec, vertical.target(data)
        L.seed_everything(vertical.seed, verbose=False)
        model = spec.build(data.log.inputs, vertical.config.sizes)
        module, batches = self._module_and_batches(model, target, tracker)
        tracker.log_metrics({"wide_start": float(start_at_regression(model, batches, target.task_columns))})
        loader = window_loader(batches, vertical.config.batch_size, shuffle=True, seed=vertical.seed, order=self.recipe.trainer.order)
        scorer = validation_ne(module, data.log, vertical.slices(data))
        keeper = KeepBestEpoch(module, scorer) if scorer is not None else None
        start_ne = keeper.best_score if keeper is not None else None
        training = Training(module, loader, self.recipe.trainer, self.recipe.trainer.max_epochs, ctx.cache.folder(self.key),
                            f"{self.role}: {spec.name}", f"on {len(target.rows):,} impressions of {'/'.join(spec.surfaces)}",
                            watchers=(keeper,) if keeper is not None else ())
        fit_or_reuse(training, ctx.cache, tracker, run_id)
        return Trained(module, run_id, keeper.best_epoch if keeper is not None else None, start_ne)  # kept now, or read back when reused

    def _module_and_batches(self, model: torch.nn.Module, target: ConsumerTarget, tracker: Tracker) -> tuple[RankingModule, WindowBatches]:
        """Labels alone (a baseline), or the stage's techniques with its producer's knowledge joined."""
        lr, data = self.vertical.config.lr, self.data
        if self.teaching is None:
            return (RankingModule(model, target.tasks, target.task_columns, lr=lr, base_rates=target.base_rates(data)),
                    WindowBatches(data.log, target.rows, model.history_length))
        module = self.teaching.module(model, target, lr, data)
        batches = self.teaching.batches(data, target, model.history_length, self.recipe.transfer.max_age_days, self.vertical.seed, tracker)
        return module, batches

    def _score(self, trained: Trained, beside: Beside) -> tuple[SliceScores, LiftInterval | None]:
        """On its slices, and a taught VM's paired interval of lift over its baseline (and of its gain
        over its vanilla-KD reference, when there is one), resampling eval users."""
        log, slices = self.data.log, self.vertical.slices(self.data)
        scored = score_slices(trained.module, log, slices)
        if beside.baseline is None:
            return scored, None
        units, unit = resampling_units(log.users(slices.eval), log.ts[slices.eval])
        interval = lift_interval(labels_of(log, slices.eval, slices.task), beside.baseline.logits, scored.logits, beside.teacher_logits,
                                 seed=self.vertical.seed, vanilla=beside.vanilla.logits if beside.vanilla is not None else None,
                                 units=units, unit=unit)
        return scored, interval

    def _log(self, tracker: Tracker, trained: Trained, scored: SliceScores, interval: LiftInterval | None, beside: Beside) -> tuple[float, str]:
        """Its metrics beside the teacher, producer and baseline, its kept epoch, interval, FLOPs share
        and serving cost; → the FLOPs share and the serving budget status."""
        baseline = beside.baseline.scores if beside.baseline is not None else scored.scores  # a baseline's lift is 0 against itself
        vanilla = beside.vanilla.scores if beside.vanilla is not None else None
        slices = self.vertical.slices(self.data)
        if trained.best_epoch is not None:
            tracker.log_metrics({T.BEST_EPOCH: float(trained.best_epoch), T.START_VAL_NE: trained.start_ne})
        if interval is not None:
            tracker.set_tags({T.RESAMPLED_UNIT: interval.unit})
        tracker.log_metrics(T.model_metrics(scored.scores, beside.teacher, beside.producer, baseline)
                            | T.interval_metrics(interval, scored.scores, baseline, beside.teacher, vanilla)
                            | T.validation_metrics(scored.validation) | T.slice_metrics(labels_of(self.data.log, slices.eval, slices.task)))
        flops_share = forward_flops_per_example(trained.module.export(), self.data.log.inputs) / self.vertical.teacher.forward_flops
        tracker.log_metrics({T.FLOPS_VS_TEACHER: flops_share})
        eval_batches = WindowBatches(self.data.log, slices.eval, trained.module.model.history_length)
        log_model = self.role == T.Role.STUDENT and self.recipe.tracking.log_models
        return flops_share, _log_serving(tracker, trained.module, self.vertical.spec, eval_batches, self.role,
                                         self.recipe.tracking.serving_requests, log_model)


def _vm_key(recipe: Recipe, data: PreparedData, vertical: Vertical, teaching: Teaching | None = None) -> StageKey:
    """A VM's stage key: a baseline depends on no stage, producer or knowledge; a taught VM's key does
    not depend on its role (a vanilla-KD reference is the same training as a vanilla-KD student)."""
    transfer = {}
    if teaching is not None:
        transfer = {"stage": teaching.config, "producer": teaching.producer.key, "knowledge": teaching.knowledge.key}
    spec = vertical.spec
    return keys.key_of("vm", vm_reads(recipe, data.fingerprint, vertical.reads(data), spec.name, spec.builder, dict(spec.sizes),
                                      vertical.config, vertical.seed, **transfer))


def vm_reads(recipe: Recipe, data_fingerprint: str, rows: dict[str, str], vertical: str, builder: str, default_sizes: dict,
             student: StudentConfig, seed: int, stage: StageConfig | None = None, producer: StageKey | None = None,
             knowledge: StageKey | None = None) -> keys.Reads:
    """What a VM reads: its baseline (no stage, producer or knowledge) or a model taught by a stage (a
    student, or a vanilla-KD reference: the same training whatever role a recipe gives it). `rows`:
    what its training reads of the log (`Vertical.reads`); then its model, sizes, settings, seed and
    the trainer settings that change a training (the VMs' epochs among them)."""
    settings = consumer_settings(recipe, "", stage) | {
        "reads": dict(rows),
        "vertical": vertical,
        "builder": builder,
        "sizes": dict(default_sizes),
        "student": asdict(student),
        "vm_seed": seed,
        "trainer": keys.trainer_settings(recipe.trainer, own_epochs=True),
    }
    inputs = {"data": data_fingerprint, "producer": producer, "knowledge": knowledge}
    return keys.Reads(settings, inputs, (keys.TECHNIQUES,) if stage is not None else (), builder)


def _log_serving(tracker: Tracker, module: RankingModule, spec: ModelEntry, eval_batches: WindowBatches, role: str,
                 count: int, log_model: bool) -> str:
    """Measure the serving model's cost on `count` requests from the eval window, log it (and, with
    `log_model`, the model itself, for `gem-transfer register`) and print it; → its budget status (no measured
    figures in it, so the lift table is the same on every run). Rank 0 measures, every rank gets its status."""
    if not ranks.is_main():
        return ranks.from_main("")
    served, batches = module.export(), requests(eval_batches, count)
    cost = measure(served, batches)
    status = budget_status(cost, spec.budget)
    print(f"  serving {role} {spec.name}: {cost.summary()}: {status}", flush=True)
    tracker.log_metrics(T.serving_metrics(cost))
    tracker.set_tags({T.BUDGET_STATUS: status})
    if log_model:
        tracker.set_tags({T.MODEL_URI: tracker.log_serving_model(served, batches[0])})
    return ranks.from_main(status)

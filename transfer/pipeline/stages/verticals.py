"""A vertical model's stages: its no-transfer baseline and its student, each trained, scored on the
VM's eval slice beside the teacher and its producer, and costed for serving."""

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
from transfer.evaluation.lift_table import Scores
from transfer.evaluation.metrics import normalized_entropy
from transfer.evaluation.serving import budget_status, measure, requests
from transfer.pipeline import keys
from transfer.pipeline.keys import StageKey
from transfer.pipeline.resumable import fit_or_reuse
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

    def eval_rows(self, data: PreparedData) -> torch.Tensor:
        return data.log.surface_rows(data.eval_rows, self.spec.surfaces)

    def recalibration_rows(self, data: PreparedData) -> torch.Tensor:
        return data.log.surface_rows(data.recalibration_rows, self.spec.surfaces)

    def validation_rows(self, data: PreparedData) -> torch.Tensor:
        return data.log.surface_rows(data.validation_rows, self.spec.surfaces)

    def reads(self, data: PreparedData) -> dict[str, str]:
        """What this VM's training reads, for its stage key: its task's labels on the rows it trains on
        (and fits its regression start on), and the validation rows that choose the epoch it keeps
        (rows as digests). A recipe's inline VM can change its task under the same name."""
        return {"task": self.spec.task, "train": keys.rows_digest(self.target(data).rows),
                "validation": keys.rows_digest(self.validation_rows(data))}

    def evaluate(self, ctx: RunContext, module: RankingModule, validation: bool = True) -> tuple[Scores, torch.Tensor, dict[str, float]]:
        """`module` on this VM's eval slice, recalibrated on its last training day: its scores, its
        logits [n], and (with `validation`) its scores on the validation slice as `val_*` metrics
        (none without one)."""
        task = self.spec.task
        shift = ctx.recalibration(module, self.recalibration_rows(ctx.data), task)
        scores, logits = ctx.evaluate(module, self.eval_rows(ctx.data), task, shift)
        rows = self.validation_rows(ctx.data)
        if not validation or not _both_classes(ctx.labels(rows, task)):
            return scores, logits, {}
        validation, _ = ctx.evaluate(module, rows, task, shift)
        return scores, logits, {f"{T.VALIDATION}{name}": value for name, value in validation.as_dict().items()}

    def best_epoch_keeper(self, ctx: RunContext, module: RankingModule) -> KeepBestEpoch | None:
        """What keeps `module`'s best epoch by its raw NE on this VM's validation slice, scoring its
        weights now as epoch 0; None when the slice cannot score it (no rows, or one class only)."""
        task, rows = self.spec.task, self.validation_rows(ctx.data)
        labels = ctx.labels(rows, task)
        if not _both_classes(labels):
            return None
        return KeepBestEpoch(module, lambda: normalized_entropy(ctx.predict(module, rows, task), labels))

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

    def _train(self, ctx: RunContext, tags: dict[str, str], teacher: tuple[Scores, torch.Tensor], producer: Scores | None,
               baseline: VerticalOutcome | None, vanilla: VerticalOutcome | None = None) -> None:
        """Train, score on the eval slice (beside `teacher`: its scores and logits [n], and `producer`)
        and, for a student, the paired interval of its lift over `baseline` (and of its gain ratio
        over its `vanilla`-KD reference, when there is one); log it all."""
        vertical, data, tracker = self.vertical, self.data, ctx.tracker
        spec, target, eval_rows = vertical.spec, vertical.target(data), vertical.eval_rows(data)
        if spec.name in {inline.name for inline in self.recipe.verticals}:
            tags = {**tags, T.DECLARED_IN: "recipe"}
        with tracker.run(self.name, tags, nested=True) as run_id:
            L.seed_everything(vertical.seed, verbose=False)
            model = spec.build(data.log.inputs, vertical.config.sizes)
            module, batches = self._module_and_batches(model, target, tracker)
            started = start_at_regression(model, batches, target.task_columns[0])  # a wide & deep VM starts at its regression
            tracker.log_metrics({"wide_start": float(started)})
            loader = window_loader(batches, vertical.config.batch_size, shuffle=True, seed=vertical.seed, order=self.recipe.trainer.order)
            keeper = vertical.best_epoch_keeper(ctx, module)  # it keeps its best epoch on the validation slice, the start as epoch 0
            start_ne = keeper.best_score if keeper is not None else None
            fit_or_reuse(ctx.cache, ctx.cache.folder(self.key), module, loader, self.recipe.trainer, self.recipe.trainer.max_epochs,
                         tracker, run_id, f"{self.role}: {spec.name}", f"on {len(target.rows):,} impressions of {'/'.join(spec.surfaces)}",
                         watchers=[keeper] if keeper is not None else None)
            best_epoch = keeper.best_epoch if keeper is not None else None  # trained now, or read back with reused weights
            if best_epoch is not None:
                tracker.log_metrics({T.BEST_EPOCH: float(best_epoch), T.START_VAL_NE: start_ne})
            scores, logits, validation = vertical.evaluate(ctx, module)
            interval = None
            if baseline is not None:
                units, unit = resampling_units(data.log.users(eval_rows), data.log.ts[eval_rows])
                interval = lift_interval(ctx.labels(eval_rows, spec.task), baseline.logits, logits, teacher[1], seed=vertical.seed,
                                         vanilla=vanilla.logits if vanilla is not None else None, units=units, unit=unit)
                tracker.set_tags({T.RESAMPLED_UNIT: unit})
            tracker.log_metrics(T.model_metrics(scores, teacher[0], producer, baseline.scores if baseline else scores)
                                | T.interval_metrics(interval, scores, baseline.scores if baseline else scores, teacher[0],
                                                     vanilla.scores if vanilla is not None else None)
                                | validation | slice_metrics(ctx.labels(eval_rows, spec.task)))
            flops_share = forward_flops_per_example(module.export(), data.log.inputs) / vertical.teacher.forward_flops
            tracker.log_metrics({T.FLOPS_VS_TEACHER: flops_share})
            status = _log_serving(tracker, module, spec, WindowBatches(data.log, eval_rows, model.history_length), self.role)
        self.output = VerticalOutcome(module, run_id, scores, status, teacher[0], producer, logits, teacher[1], interval, validation, flops_share,
                                      best_epoch)
        if self.role == T.Role.STUDENT and ctx.on_student is not None:
            ctx.on_student(spec.name, validation)

    def _module_and_batches(self, model: torch.nn.Module, target: ConsumerTarget, tracker: Tracker) -> tuple[RankingModule, WindowBatches]:
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
        return _vm_key(self.recipe, self.data, self.vertical)

    def run(self, ctx: RunContext) -> None:
        vertical = self.vertical
        teacher = vertical.evaluate(ctx, vertical.teacher.output.module, validation=False)[:2]  # scored beside the VM: no val_* of its own
        producer = None
        if vertical.producer is not vertical.teacher:
            producer = vertical.evaluate(ctx, vertical.producer.output.module, validation=False)[0]
        self._train(ctx, vertical.tags(self.role), teacher, producer, None)

    def _module_and_batches(self, model, target, tracker):
        module = RankingModule(model, target.tasks, target.task_columns, lr=self.vertical.config.lr, base_rates=target.base_rates(self.data))
        return module, WindowBatches(self.data.log, target.rows, model.history_length)


@dataclass(eq=False)
class StudentStage(_VerticalStage):
    """A VM trained with transfer from its producer's knowledge, with its stage's techniques; beside
    its `vanilla`-KD reference when the recipe asks for one (`transfer.vanilla_reference`)."""

    teaching: Teaching | None = None
    baseline: BaselineStage | None = None
    vanilla: VanillaReferenceStage | None = None
    kind: str = T.Role.STUDENT
    role = T.Role.STUDENT

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.teaching.producer, self.teaching.knowledge, *([self.vanilla] if self.vanilla is not None else []))

    @functools.cached_property
    def key(self) -> StageKey:
        return _vm_key(self.recipe, self.data, self.vertical, self.teaching)

    def run(self, ctx: RunContext) -> None:
        base = self.baseline.output
        tags = self.vertical.tags(self.role) | self.teaching.tags(self.recipe, self.data) | {T.BASELINE_RUN_ID: base.run_id}
        vanilla = self.vanilla.output if self.vanilla is not None else None
        if vanilla is not None:
            tags[T.VANILLA_RUN_ID] = vanilla.run_id
        self._train(ctx, tags, (base.teacher, base.teacher_logits), base.producer, base, vanilla)

    def _module_and_batches(self, model, target, tracker):
        module = self.teaching.module(model, target, self.vertical.config.lr, self.data)
        batches = self.teaching.batches(self.data, target, model.history_length, self.recipe.transfer.max_age_days, self.vertical.seed, tracker)
        return module, batches


@dataclass(eq=False)
class VanillaReferenceStage(StudentStage):
    """A VM's vanilla-KD reference: the student's producer, knowledge, seed and window, with standard
    distillation only (the gain ratio's denominator, design §7)."""

    kind: str = T.Role.VANILLA_KD
    role = T.Role.VANILLA_KD


def _both_classes(labels: torch.Tensor) -> bool:
    """Whether labels [n] (NaN where unlabelled) hold both a 0 and a 1: what NE needs to score."""
    known = labels[~torch.isnan(labels)]
    return bool(len(known)) and 0 < known.sum().item() < len(known)


def slice_metrics(labels: torch.Tensor) -> dict[str, float]:
    """A VM's eval slice: labelled rows and positives. labels: [n] (NaN where unlabelled)."""
    known = labels[~torch.isnan(labels)]
    return {T.EVAL_ROWS: float(len(known)), T.EVAL_POSITIVES: float(known.sum().item())}


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
    tracker.log_metrics(T.serving_metrics(cost))
    tracker.set_tags({T.BUDGET_STATUS: status})
    if role == T.Role.STUDENT:
        tracker.set_tags({T.MODEL_URI: tracker.log_serving_model(served, batches[0])})
    return ranks.from_main(status)

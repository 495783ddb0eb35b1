"""The transfer engine: plan a recipe into stages, then run them (design §3, §8).

1. prepare the recipe's data and plan it (`transfer.pipeline.plan`): teacher, knowledge, domain FMs,
   baselines, students, evaluation — each stage with its key;
2. run the stages in order under the recipe's MLflow run, those of recipe stage i inside its own
   child run ("stage i: producer → consumers"); a stage whose output the stage cache holds reuses it;
3. the evaluation stage writes the lift table.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import torch

from adapters import techniques_tag
from transfer.config.recipe import Recipe, StageConfig, teacher_window_shift_days
from transfer.data.prepare import PreparedData, check_slices, prepare_data, resolve_verticals
from transfer.knowledge.generate import Producer
from transfer.pipeline.cache import StageCache
from transfer.pipeline.launch import recipe_threads
from transfer.pipeline.plan import Plan, plan_recipe
from transfer.pipeline.stages.base import RunContext
from transfer.tracking import tags as T
from transfer.tracking.runs import Tracker, check_reachable, default_tracking_uri, sqlite_path
from transfer.training.module import RankingModule
from transfer.util import ranks
from transfer.util.atomic import remove_stale_temps, write_text_atomic


@dataclass
class RunResult:
    table: pl.DataFrame
    parent_run_id: str
    tracking_uri: str
    experiment: str
    run_dir: Path
    experiment_id: str = ""
    teacher_weights: Path | None = None
    students: dict[str, RankingModule] = field(default_factory=dict)  # vertical → its trained student
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # vertical → its student's val_* metrics
    knowledge_folders: dict[int, Path] = field(default_factory=dict)  # recipe stage (from 0) → its students' knowledge folder


def planned(recipe: Recipe, recipe_path: Path) -> tuple[RunContext, Plan]:
    """The recipe's data (checked against its VMs) and its plan; runs nothing."""
    data = _prepared_data(recipe)
    verticals = resolve_verticals(recipe_path, recipe, data)
    check_slices(data, verticals, recipe.data.min_train_positives)
    ctx = RunContext(recipe, data, StageCache(Path(recipe.output_dir) / "stages"),
                     run_dir=Path(recipe.output_dir) / recipe.name / recipe.hash)
    return ctx, plan_recipe(recipe, data, verticals)


def run_recipe(recipe: Recipe, recipe_path: Path, extra_tags: dict[str, str] | None = None, nested: bool = False,
               on_student: Callable[[str, dict[str, float]], None] | None = None) -> RunResult:
    """Run a recipe end to end; returns the lift table and where it was tracked. `extra_tags` go on
    the recipe's parent run (the continuous cycle's lineage); `nested`: that run is a child of the
    active MLflow run (a tuning trial); `on_student(vertical, val_metrics)` is called as each student
    is scored (a tuning study's intermediate values)."""
    with _recipe_run(recipe, recipe_path, extra_tags, nested, on_student) as (ctx, plan, parent_id):
        for group, stages in itertools.groupby(plan.stages, key=lambda stage: stage.group):
            with _group_run(ctx, group):
                for stage in stages:
                    stage.run(ctx)
    students = {s.vertical.spec.name: s.output.module for s in plan.evaluation.students}
    validation = {s.vertical.spec.name: s.output.validation for s in plan.evaluation.students}
    folders = {s.teaching.index - 1: s.teaching.knowledge.output[0].parent for s in plan.evaluation.students if s.teaching is not None}
    return RunResult(plan.evaluation.output, parent_id, ctx.tracker.uri, ctx.tracker.experiment, ctx.run_dir,
                     ctx.tracker.experiment_id, plan.teacher.output.weights, students, validation, folders)


def train_teacher(recipe: Recipe, recipe_path: Path, extra_tags: dict[str, str] | None = None, nested: bool = False) -> Producer:
    """Run only the recipe's teacher stage (trained, or reused from the stage cache) under the
    recipe's MLflow run, as `run_recipe` would; → the trained teacher (a teacher tuning trial)."""
    with _recipe_run(recipe, recipe_path, extra_tags, nested) as (ctx, plan, _):
        plan.teacher.run(ctx)
    return plan.teacher.output


@contextlib.contextmanager
def _recipe_run(recipe: Recipe, recipe_path: Path, extra_tags: dict[str, str] | None, nested: bool,
                on_student: Callable[[str, dict[str, float]], None] | None = None) -> Iterator[tuple[RunContext, Plan, str]]:
    """The recipe planned on its prepared data, inside its MLflow parent run (killed attempts cleaned
    up first); yields the run context, the plan and the parent run's id."""
    ranks.start()
    torch.set_num_threads(recipe_threads(recipe.trainer))
    if ranks.is_main():  # fails fast, before any data work, on a store it cannot reach (creating nothing yet)
        check_reachable(tracking_uri(recipe), Path(recipe.output_dir), ready=False)
    ctx, plan = planned(recipe, recipe_path)
    tracker = recipe_tracker(recipe)  # the store and experiment, created once the data passed its checks
    ctx = replace(ctx, tracker=tracker, on_student=on_student)
    _clean_up_killed_attempts(recipe, ctx.tracker)
    _say_data(ctx.data)
    tags = {T.RECIPE: recipe.name, T.RECIPE_HASH: recipe.hash, T.STRATEGY: recipe.transfer.strategy, **(extra_tags or {})}
    with ctx.tracker.run(recipe.name, tags, nested=nested) as parent_id:
        # on every run below: which recipe run it belongs to (for `lift`, `register`, and cleaning up a killed attempt)
        ctx.tracker.common_tags = {T.RECIPE: recipe.name, T.RECIPE_HASH: recipe.hash, T.RECIPE_RUN_ID: parent_id}
        _log_recipe(ctx)
        yield ctx, plan, parent_id


def recipe_tracker(recipe: Recipe) -> Tracker:
    """The MLflow tracker of the recipe's runs: its store (by default a sqlite file in its output
    folder), its experiment (by default its name), artifacts beside a local store. Rank 0 checks
    first that the store answers (one clear line if not)."""
    uri = tracking_uri(recipe)
    if ranks.is_main():  # only rank 0 talks to the tracking server
        check_reachable(uri, Path(recipe.output_dir))
    return Tracker(uri, recipe.tracking.experiment or recipe.name, _artifact_root(recipe.tracking.uri, Path(recipe.output_dir)))


def tracking_uri(recipe: Recipe) -> str:
    """The recipe's tracking store: `tracking.uri`, by default a sqlite file in its output folder."""
    return recipe.tracking.uri or default_tracking_uri(Path(recipe.output_dir))


def _group_run(ctx: RunContext, group: int):
    """Recipe stage `group`'s MLflow child run (none for the teacher and the evaluation, group 0)."""
    if group == 0:
        return contextlib.nullcontext()
    stage = ctx.recipe.transfer.stages[group - 1]
    return ctx.tracker.run(f"stage {group}: {stage.producer} → {stage.consumers}", _stage_tags(ctx.recipe, group, stage), nested=True)


def _say_data(data: PreparedData) -> None:
    print(f"▸ data: {data.summary()}", flush=True)


def _prepared_data(recipe: Recipe) -> PreparedData:
    """The recipe's data; in a multi-process run rank 0 builds the cache first and the others read it."""
    with ranks.main_first():
        return prepare_data(recipe.data, teacher_window_shift_days(recipe.transfer))


def _clean_up_killed_attempts(recipe: Recipe, tracker: Tracker) -> None:
    """Before resuming: drop half-written files (the first process of each node, for its host's) and
    mark the killed attempt's MLflow runs failed (rank 0), while the other ranks wait."""
    if ranks.is_node_main():
        for path in remove_stale_temps(Path(recipe.output_dir)):
            print(f"  removed a file left half-written by a killed run: {path}", flush=True)
    failed = tracker.fail_abandoned(recipe.hash)
    if failed:
        print(f"  marked {len(failed)} MLflow run(s) of a killed attempt as FAILED", flush=True)
    ranks.barrier()


def _artifact_root(uri: str | None, output_dir: Path) -> Path | None:
    """Where a new experiment keeps its artifacts: beside a local sqlite store (never the working
    directory); a tracking server decides for itself (None)."""
    if uri is None:
        return output_dir / "mlartifacts"
    db = sqlite_path(uri)
    return db.parent / "mlartifacts" if db is not None else None


def _log_recipe(ctx: RunContext) -> None:
    if not ranks.is_main():
        return
    ctx.tracker.log_params(ctx.recipe.flat() | {"torch_threads": torch.get_num_threads()})
    write_text_atomic(ctx.run_dir / "recipe.yaml", ctx.recipe.to_yaml())
    ctx.tracker.log_artifact(ctx.run_dir / "recipe.yaml")


def _stage_tags(recipe: Recipe, index: int, stage: StageConfig) -> dict[str, str]:
    return {
        T.ROLE: T.Role.STAGE,
        T.STAGE: str(index),
        T.PRODUCER: stage.producer,
        T.CONSUMERS: stage.consumers,
        T.TECHNIQUES: techniques_tag(stage),
        T.STALENESS_DAYS: str(recipe.transfer.staleness_days),
    }

"""The continuous transfer cycle (GEM's refresh loop) over successive time windows.

Cycle 0 is the recipe as written. Each later cycle k moves time forward by one eval window
(`data.eval.days`): the teacher continues from cycle k−1's weights on the newest days only, generates
knowledge for the students' window ending at the new cutoff, the Student Adapter (if the recipe uses
it) is refit on the freshest labels as part of each VM's training, and the VMs are retrained; all
are scored on the next eval window. Beside them, the VMs trained once in cycle 0 are scored on every
later eval window, which shows what refreshing buys. Each cycle is one MLflow recipe run tagged
`cycle` and `previous_cycle_run_id`. A stage whose techniques read the producer's earlier versions (embeddings from
several versions) is handed the knowledge folders of the cycles before it, newest first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from adapters import check_cycle, take_earlier_versions
from transfer.config.recipe import Recipe, WindowConfig, teacher_window_shift_days
from transfer.config.verticals import recipe_verticals
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import PreparedData, check_slices, prepare_data, resolve_verticals
from transfer.errors import RecipeError
from transfer.evaluation.scoring import SCORING_BATCH
from transfer.pipeline.engine import RunResult, run_recipe
from transfer.tracking import tags as T
from transfer.training.module import RankingModule
from transfer.training.trainer import evaluate
from transfer.util import ranks
from transfer.util.atomic import atomic_path


@dataclass
class CycleResult:
    table: pl.DataFrame  # one row per (cycle, vertical)
    csv: Path
    runs: list[str]  # the cycles' parent run ids


def cycle_recipe(recipe: Recipe, cycle: int, teacher_weights: Path | None, earlier: dict[int, list[Path]] | None = None) -> Recipe:
    """The recipe of cycle `cycle` (0 = as written): windows moved forward, teacher continuing; each
    stage taking several versions' embeddings given `earlier[stage]`, its earlier cycles' knowledge folders (newest first)."""
    if cycle == 0:
        return recipe
    step = recipe.data.eval.days
    first_cutoff = date.fromisoformat(str(recipe.data.train.start)) + timedelta(days=recipe.data.train.days)
    moved = copy.deepcopy(recipe)
    moved.data.student = WindowConfig(start=None, days=recipe.data.student.days)  # follows the teacher's window
    moved.data.train = WindowConfig(start=str(first_cutoff + timedelta(days=(cycle - 1) * step)), days=step)  # the newest days
    moved.teacher.init_from = str(teacher_weights)
    for index, stage in enumerate(moved.transfer.stages):
        take_earlier_versions(stage, [str(folder) for folder in (earlier or {}).get(index, [])])
    return moved


def run_cycle(recipe: Recipe, recipe_path: Path, windows: int) -> CycleResult:
    if windows < 1:
        raise RecipeError(f"--windows: found {windows}; allowed: a whole number ≥ 1")
    if recipe.data.train.start is None:
        raise RecipeError(f"{recipe_path}: data.train.start: the continuous cycle needs an explicit start date (YYYY-MM-DD)")
    spans = (recipe.data.train, recipe.data.student, recipe.data.validation, recipe.data.eval)
    if len(str(recipe.data.train.start)) != len("YYYY-MM-DD") or any(w.hours for w in spans):
        raise RecipeError(f"{recipe_path}: data: the continuous cycle moves its windows by whole days; found a start time or "
                          "hours; allowed: data.train.start YYYY-MM-DD and windows in days")
    _check_techniques_through_the_cycle(recipe, recipe_path, windows)
    ranks.start()
    _check_data_reaches_last_window(recipe, recipe_path, windows)
    rows: list[dict] = []
    run_ids: list[str] = []
    first: RunResult | None = None
    previous: RunResult | None = None
    earlier: dict[int, list[Path]] = {}  # stage → the knowledge folders of the cycles so far, newest first
    for cycle in range(windows):
        current = cycle_recipe(recipe, cycle, previous.teacher_weights if previous else None, earlier)
        print(f"▸ cycle {cycle + 1}/{windows}: teacher window {current.data.train.start} + {current.data.train.days} days", flush=True)
        tags = {T.CYCLE: str(cycle), T.CYCLE_OF: recipe.name, T.PREVIOUS_CYCLE_RUN_ID: previous.parent_run_id if previous else ""}
        result = run_recipe(current, recipe_path, extra_tags=tags)
        first = first or result
        rows += _cycle_rows(cycle, current, result, first)
        run_ids.append(result.parent_run_id)
        previous = result
        earlier = {index: [folder, *earlier.get(index, [])] for index, folder in result.knowledge_folders.items()}
    table = pl.DataFrame(rows)
    csv = Path(recipe.output_dir) / recipe.name / f"cycle-{recipe.hash}-{windows}.csv"
    if ranks.is_main():
        with atomic_path(csv) as tmp:
            table.write_csv(tmp)
    return CycleResult(table, csv, run_ids)


def _check_techniques_through_the_cycle(recipe: Recipe, recipe_path: Path, windows: int) -> None:
    """Fail before any training when a technique cannot run through `windows` cycles (one line naming the key)."""
    age = teacher_window_shift_days(recipe.transfer) + recipe.data.student.length_days  # the knowledge's age at the consumers' window end
    for index, stage in enumerate(recipe.transfer.stages):
        try:
            check_cycle(stage, windows, recipe.data.eval.days, age)
        except ValueError as exc:
            raise RecipeError(f"{recipe_path}: transfer.stages.{index}.{exc}") from None


def _check_data_reaches_last_window(recipe: Recipe, recipe_path: Path, windows: int) -> None:
    """Fail before any training when the data ends before the last cycle's eval window, or a cycle's
    VM slice cannot be trained or evaluated (no positives, one class, missing labels)."""
    with ranks.main_first():  # rank 0 builds the data cache, the others read it
        for cycle in range(windows):
            current = cycle_recipe(recipe, cycle, Path("unused"))
            data = prepare_data(current.data, teacher_window_shift_days(current.transfer))  # a clear DataError names an empty window
            check_slices(data, resolve_verticals(recipe_path, current, data), current.data.min_train_positives)


def _cycle_rows(cycle: int, recipe: Recipe, result: RunResult, first: RunResult) -> list[dict]:
    data = prepare_data(recipe.data, teacher_window_shift_days(recipe.transfer))  # cached: cheap
    students = result.table.filter(pl.col("role") == "student")
    rows = []
    for student in recipe.students:
        entry = recipe_verticals(recipe)[student.vertical]
        row = students.filter(pl.col("model") == entry.name).row(0, named=True)
        table = result.table.filter(pl.col("slice") == row["slice"])
        baseline = table.filter((pl.col("role") == "baseline") & (pl.col("model") == entry.name))
        frozen = _score(first.students[entry.name], data, entry.surfaces, entry.task, recipe)
        rows.append({
            "cycle": cycle, "eval window": str(data.eval), "vertical": entry.name,
            "teacher NE": table.filter(pl.col("role") == "teacher")["NE"][0],
            "baseline NE": baseline["NE"][0],
            "refreshed VM NE": row["NE"], "trained-once VM NE": frozen,
            "refresh gain %": 100 * (frozen - row["NE"]) / frozen,
        })
    return rows


def _score(module: RankingModule, data: PreparedData, surfaces: tuple[str, ...], task: str, recipe: Recipe) -> float:
    """NE of a trained VM on this cycle's eval window (its serving head only)."""
    rows = data.log.surface_rows(data.eval_rows, surfaces)
    loader = window_loader(WindowBatches(data.log, rows, module.model.history_length), SCORING_BATCH, shuffle=False)
    scoring = RankingModule(module.export(), [task], [data.log.tasks.index(task)], lr=0.0)
    return evaluate(scoring, loader, recipe.trainer, task).ne

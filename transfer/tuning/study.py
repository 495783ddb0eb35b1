"""`gem-transfer tune RECIPE --trials N`: an Optuna study over one transfer stage's technique knobs,
or with `--teacher` over how the teacher trains (its epochs, warm-up and learning rate).

Each trial of a stage study is the recipe with the trial's knob values, run end to end as an MLflow
child run of the study's run (the teacher, knowledge and baselines come from the stage cache after
the first trial); its objective is the mean validation NE (`val_ne`) of the recipe's students — the
validation window, never the eval window. After each student the running mean is reported, so the
median pruner stops a trial whose first students are already worse than the median of earlier
trials at that point. A teacher study trains only the teacher in each trial, keeping its best epoch
on the validation window (`teacher.keep_best_epoch`), and minimizes that epoch's mean NE over tasks
there (`val_mean_ne`). A study lives in `<output_dir>/<name>/tune-<recipe hash>-<stage<i> | teacher>/`:
a rerun continues it (trials a killed run left running are marked failed and do not count) until N
trials have finished; one process at a time runs a study (a second is refused while the first holds
its lock). The best trial's recipe is written beside it as `best.yaml`, ready for `gem-transfer run`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

import adapters
from transfer.config.loader import load_recipe
from transfer.config.recipe import Recipe, StageConfig
from transfer.errors import DivergedError, RecipeError, RunStopped, TrainingError, UserError
from transfer.evaluation.scoring import both_classes, labels_of
from transfer.pipeline.engine import planned, recipe_tracker, run_recipe, train_teacher
from transfer.tracking import tags as T
from transfer.tuning.space import Knob, stage_knobs
from transfer.util.atomic import write_text_atomic
from transfer.util.locks import file_lock

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
TRIAL_TAG = "tune_trial"
TEACHER_EPOCHS = (1, 8)  # the teacher's max_epochs a teacher study searches (each trial keeps its best epoch)
TEACHER_LR = (2e-4, 2e-2)  # its learning rate (log scale)


@dataclass(frozen=True)
class Target:
    """What a study tunes: its knobs, the recipe section they sit under, and what every trial carries."""

    label: str  # "stage<i>" (i 0-based) or "teacher": the study folder's suffix
    prefix: str  # the recipe section of its knobs: "transfer.stages.<i>." or "teacher."
    knobs: list[Knob]
    fixed: tuple[str, ...] = ()  # overrides of every trial

    @property
    def teacher(self) -> bool:
        return self.label == "teacher"

    @property
    def tag(self) -> str:
        """The study run's `stage` tag: the stage counted from 1, or "teacher"."""
        return "teacher" if self.teacher else str(int(self.label.removeprefix("stage")) + 1)

    def shown(self, key: str) -> str:
        """How a knob is named to the user: a stage's relative to its stage, the teacher's in full."""
        return self.prefix + key if self.teacher else key

    def overrides(self, params: dict[str, float]) -> list[str]:
        """A trial's recipe overrides for its knob values (knob key → value)."""
        return [*self.fixed, *(f"{self.prefix}{key}={value!r}" for key, value in params.items())]


@dataclass(frozen=True)
class TuneResult:
    folder: Path  # the study's folder (study.db, best.yaml)
    best_recipe: Path
    best_value: float  # the best trial's objective: mean validation NE (of the students, or the teacher's over tasks)
    best_params: dict[str, float]  # knob key (under the target's section) → value
    trials: list[optuna.trial.FrozenTrial]
    run_id: str  # the study's MLflow run
    target: Target


class Pruned(RunStopped):
    """A trial the pruner stopped after one of its students."""


def tune(recipe_path: Path, overrides: list[str], trials: int, stage: int | None = None, teacher: bool = False) -> TuneResult:
    """Run (or continue) the study until `trials` trials have finished; see the module docstring."""
    recipe = load_recipe(recipe_path, overrides)
    _check_validation_window(recipe, recipe_path)
    target = _teacher_target(recipe, recipe_path) if teacher else _stage_target(recipe, recipe_path, stage)
    folder = Path(recipe.output_dir) / recipe.name / f"tune-{recipe.hash}-{target.label}"
    folder.mkdir(parents=True, exist_ok=True)
    with _study_lock(folder):
        return _run_study(recipe, recipe_path, overrides, trials, target, folder)


def _run_study(recipe: Recipe, recipe_path: Path, overrides: list[str], trials: int, target: Target, folder: Path) -> TuneResult:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'study.db'}", study_name="tune", direction="minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3), load_if_exists=True)
    study.sampler = optuna.samplers.TPESampler(seed=recipe.seed + len(study.trials))  # a rerun does not repeat earlier trials' draws
    _fail_abandoned(study)
    tracker = recipe_tracker(recipe)
    tags = {T.ROLE: "tune", T.RECIPE: recipe.name, T.RECIPE_HASH: recipe.hash, T.STAGE: target.tag}
    with tracker.run(f"tune:{recipe.name}", tags) as run_id:
        tracker.log_params({"trials": trials, "stage": target.tag, "knobs": ", ".join(target.prefix + k.key for k in target.knobs),
                            "study": str(folder)})
        diverged = 0
        while (done := _finished(study)) < trials:
            print(f"▸ tune: trial {done + 1} of {trials}", flush=True)
            diverged += not _run_trial(study, recipe_path, overrides, target)
            if diverged >= trials:
                raise TrainingError(f"tune: {diverged} trials diverged (a non-finite training loss) in this run, as many as it was to "
                                    "finish; lower the learning rate or narrow what the recipe lets the knobs reach")
        best = study.best_trial
        best_recipe = folder / "best.yaml"
        write_text_atomic(best_recipe, _trial_recipe(recipe_path, overrides, target, best.params).to_yaml())
        tracker.log_metrics({"best_val_ne": best.value})
        tracker.log_params({f"best.{key}": value for key, value in best.params.items()})
        tracker.log_artifact(best_recipe)
    return TuneResult(folder, best_recipe, best.value, best.params, study.trials, run_id, target)


def _run_trial(study: optuna.Study, recipe_path: Path, overrides: list[str], target: Target) -> bool:
    """Run one trial; → False when its training diverged (the trial failed, the study goes on)."""
    trial = study.ask()
    params = {knob.key: knob.suggest(trial) for knob in target.knobs}
    recipe = _trial_recipe(recipe_path, overrides, target, params)
    seen: list[float] = []

    def on_student(vertical: str, validation: dict[str, float]) -> None:
        seen.append(validation.get(f"{T.VALIDATION}ne", math.nan))
        trial.report(statistics.fmean(seen), step=len(seen) - 1)
        if trial.should_prune():
            raise Pruned(f"trial {trial.number} pruned after {vertical}")

    tags = {TRIAL_TAG: str(trial.number)}
    try:
        if target.teacher:
            value = _teacher_objective(train_teacher(recipe, recipe_path, extra_tags=tags, nested=True).validation_ne, recipe_path)
        else:
            value = _objective(run_recipe(recipe, recipe_path, extra_tags=tags, nested=True, on_student=on_student).validation, recipe_path)
    except Pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"  ✗ trial {trial.number} pruned (mean val NE so far {statistics.fmean(seen):.4f})", flush=True)
        return True
    except DivergedError as exc:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"  ✗ trial {trial.number} failed, its training diverged: {exc}", flush=True)
        return False
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, value)
    print(f"  ✓ trial {trial.number}: mean val NE {value:.4f}  " + "  ".join(f"{k}={v:.3g}" for k, v in params.items()), flush=True)
    return True


def _objective(validation: dict[str, dict[str, float]], recipe_path: Path) -> float:
    """The mean of the students' validation NE."""
    values = [metrics.get(f"{T.VALIDATION}ne", math.nan) for metrics in validation.values()]
    if not values or any(math.isnan(v) for v in values):
        raise RecipeError(f"{recipe_path}: data.validation: a student has no validation NE (its validation slice holds no row "
                          "or one class only); gem-transfer tune needs a validation window with both classes on every student's slice")
    return statistics.fmean(values)


def _teacher_objective(validation_ne: float | None, recipe_path: Path) -> float:
    """The teacher's kept epoch's mean NE over tasks on the validation window."""
    if validation_ne is None or math.isnan(validation_ne):
        raise RecipeError(f"{recipe_path}: data.validation: the teacher has no validation NE (the window holds no row or one class "
                          "only on every task); gem-transfer tune --teacher needs a validation window with both classes")
    return validation_ne


def _trial_recipe(recipe_path: Path, overrides: list[str], target: Target, params: dict[str, float]) -> Recipe:
    return load_recipe(recipe_path, [*overrides, *target.overrides(params)])


def _check_validation_window(recipe: Recipe, recipe_path: Path) -> None:
    if recipe.data.validation.length_days == 0:
        raise RecipeError(f"{recipe_path}: data.validation.days: found 0; gem-transfer tune chooses knobs on the validation window; "
                          "allowed: at least 1")


def _stage_target(recipe: Recipe, recipe_path: Path, stage: int | None) -> Target:
    """The technique knobs of the recipe's stage `stage` (1-based, as MLflow's stage runs count; default: the last)."""
    count = len(recipe.transfer.stages)
    if stage is not None and not 1 <= stage <= count:
        raise RecipeError(f"{recipe_path}: --stage: found {stage}; allowed: 1 to {count} (the recipe's transfer stages)")
    index = count - 1 if stage is None else stage - 1
    knobs = stage_knobs(recipe.transfer.stages[index])
    if not knobs:
        tunable = [technique.KEY for technique in adapters.TECHNIQUES if technique.knobs(StageConfig())]
        raise RecipeError(f"{recipe_path}: transfer.stages.{index}: turns on no technique with knobs to tune; "
                          f"allowed: a stage that turns on one of {', '.join(tunable)}")
    return Target(f"stage{index}", f"transfer.stages.{index}.", knobs)


def _check_teacher_validation(log, rows: torch.Tensor, recipe_path: Path) -> None:
    """Before any trial trains: the validation window's `rows` [v] of `log` must hold both classes on
    some task (what `mean_validation_ne` scores the teacher on)."""
    if not any(both_classes(labels_of(log, rows, task)) for task in log.tasks):
        raise RecipeError(f"{recipe_path}: data.validation: its {len(rows):,} rows hold both classes on no task; gem-transfer tune "
                          "--teacher scores each trial there; allowed: a validation window with clicks and non-clicks")


def _teacher_target(recipe: Recipe, recipe_path: Path) -> Target:
    """The teacher's epochs, warm-up (up to one epoch of steps on its window) and learning rate; every
    trial keeps its best epoch on the validation window."""
    ctx, plan = planned(recipe, recipe_path)
    _check_teacher_validation(ctx.data.log, ctx.data.validation_rows, recipe_path)
    steps_per_epoch = math.ceil(len(plan.teacher.training_rows) / recipe.teacher.batch_size)
    knobs = [Knob("max_epochs", *TEACHER_EPOCHS, log=False, whole=True),
             Knob("warmup_steps", 0, steps_per_epoch, log=False, whole=True),
             Knob("lr", *TEACHER_LR)]
    return Target("teacher", "teacher.", knobs, fixed=("teacher.keep_best_epoch=true",))


def _finished(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.trials)


def _fail_abandoned(study: optuna.Study) -> None:
    """Trials still RUNNING come from a killed run (the study's lock keeps out a live one): mark them failed."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        print(f"  marked trial {trial.number}, left running by a killed run, as failed", flush=True)


def _study_lock(folder: Path):
    """The study's lock (`<folder>/study.lock`), held for a block; a second process tuning the same
    study is refused in one line."""
    def refuse(holder: str) -> None:
        raise UserError(f"tune: {holder} is already running the study in {folder}; wait for it to finish or stop it")

    return file_lock(folder / "study.lock", refuse)

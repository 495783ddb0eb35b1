"""`gem-transfer tune RECIPE --trials N`: an Optuna study over one transfer stage's technique knobs.

Each trial is the recipe with the trial's knob values, run end to end as an MLflow child run of the
study's run (the teacher, knowledge and baselines come from the stage cache after the first trial);
its objective is the mean validation NE (`val_ne`) of the recipe's students — the validation window,
never the eval window. After each student the running mean is reported, so the median pruner stops a
trial whose first students are already worse than the median of earlier trials at that point. The
study lives in `<output_dir>/<name>/tune-<recipe hash>-stage<i>/study.db`: a rerun continues it
(trials a killed run left running are marked failed and do not count) until N trials have finished;
one process at a time runs a study (a second is refused while the first holds its lock).
The best trial's recipe is written beside it as `best.yaml`, ready for `gem-transfer run`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import optuna

import adapters
from transfer.config.loader import load_recipe
from transfer.config.recipe import Recipe, StageConfig
from transfer.errors import RecipeError, RunStopped, UserError
from transfer.pipeline.engine import recipe_tracker, run_recipe
from transfer.tracking import tags as T
from transfer.tuning.space import Knob, stage_knobs
from transfer.util.atomic import write_text_atomic
from transfer.util.locks import file_lock

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
TRIAL_TAG = "tune_trial"


@dataclass(frozen=True)
class TuneResult:
    folder: Path  # the study's folder (study.db, best.yaml)
    best_recipe: Path
    best_value: float  # the best trial's mean validation NE
    best_params: dict[str, float]  # stage key → value
    trials: list[optuna.trial.FrozenTrial]
    run_id: str  # the study's MLflow run


class Pruned(RunStopped):
    """A trial the pruner stopped after one of its students."""


def tune(recipe_path: Path, overrides: list[str], trials: int, stage: int | None = None) -> TuneResult:
    """Run (or continue) the study until `trials` trials have finished; see the module docstring."""
    recipe = load_recipe(recipe_path, overrides)
    index = _stage_index(recipe, recipe_path, stage)
    knobs = _knobs(recipe, recipe_path, index)
    folder = Path(recipe.output_dir) / recipe.name / f"tune-{recipe.hash}-stage{index}"
    folder.mkdir(parents=True, exist_ok=True)
    with _study_lock(folder):
        return _run_study(recipe, recipe_path, overrides, trials, index, knobs, folder)


def _run_study(recipe: Recipe, recipe_path: Path, overrides: list[str], trials: int, index: int,
               knobs: list[Knob], folder: Path) -> TuneResult:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'study.db'}", study_name="tune", direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=recipe.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3), load_if_exists=True)
    _fail_abandoned(study)
    tracker = recipe_tracker(recipe)
    tags = {T.ROLE: "tune", T.RECIPE: recipe.name, T.RECIPE_HASH: recipe.hash, T.STAGE: str(index + 1)}
    with tracker.run(f"tune:{recipe.name}", tags) as run_id:
        tracker.log_params({"trials": trials, "stage": index + 1, "knobs": ", ".join(k.key for k in knobs), "study": str(folder)})
        while (done := _finished(study)) < trials:
            print(f"▸ tune: trial {done + 1} of {trials}", flush=True)
            _run_trial(study, recipe_path, overrides, index, knobs)
        best = study.best_trial
        best_recipe = folder / "best.yaml"
        write_text_atomic(best_recipe, _trial_recipe(recipe_path, overrides, index, best.params).to_yaml())
        tracker.log_metrics({"best_val_ne": best.value})
        tracker.log_params({f"best.{key}": value for key, value in best.params.items()})
        tracker.log_artifact(best_recipe)
    return TuneResult(folder, best_recipe, best.value, best.params, study.trials, run_id)


def _run_trial(study: optuna.Study, recipe_path: Path, overrides: list[str], index: int, knobs: list[Knob]) -> None:
    trial = study.ask()
    params = {knob.key: knob.suggest(trial) for knob in knobs}
    recipe = _trial_recipe(recipe_path, overrides, index, params)
    seen: list[float] = []

    def on_student(vertical: str, validation: dict[str, float]) -> None:
        seen.append(validation.get(f"{T.VALIDATION}ne", math.nan))
        trial.report(statistics.fmean(seen), step=len(seen) - 1)
        if trial.should_prune():
            raise Pruned(f"trial {trial.number} pruned after {vertical}")

    try:
        result = run_recipe(recipe, recipe_path, extra_tags={TRIAL_TAG: str(trial.number)}, nested=True, on_student=on_student)
    except Pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"  ✗ trial {trial.number} pruned (mean val NE so far {statistics.fmean(seen):.4f})", flush=True)
        return
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    value = _objective(result.validation, recipe_path)
    study.tell(trial, value)
    print(f"  ✓ trial {trial.number}: mean val NE {value:.4f}  " + "  ".join(f"{k}={v:.3g}" for k, v in params.items()), flush=True)


def _objective(validation: dict[str, dict[str, float]], recipe_path: Path) -> float:
    """The mean of the students' validation NE."""
    values = [metrics.get(f"{T.VALIDATION}ne", math.nan) for metrics in validation.values()]
    if not values or any(math.isnan(v) for v in values):
        raise RecipeError(f"{recipe_path}: data.validation: a student has no validation NE (its validation slice holds no row "
                          "or one class only); gem-transfer tune needs a validation window with both classes on every student's slice")
    return statistics.fmean(values)


def _trial_recipe(recipe_path: Path, overrides: list[str], index: int, params: dict[str, float]) -> Recipe:
    return load_recipe(recipe_path, [*overrides, *(f"transfer.stages.{index}.{key}={value!r}" for key, value in params.items())])


def _stage_index(recipe: Recipe, recipe_path: Path, stage: int | None) -> int:
    """The 0-based index of the stage to tune: `stage` (1-based, as MLflow's stage runs count) or the last."""
    count = len(recipe.transfer.stages)
    if stage is None:
        return count - 1
    if not 1 <= stage <= count:
        raise RecipeError(f"{recipe_path}: --stage: found {stage}; allowed: 1 to {count} (the recipe's transfer stages)")
    return stage - 1


def _knobs(recipe: Recipe, recipe_path: Path, index: int) -> list[Knob]:
    if recipe.data.validation.length_days == 0:
        raise RecipeError(f"{recipe_path}: data.validation.days: found 0; gem-transfer tune chooses knobs on the validation window; "
                          "allowed: at least 1")
    knobs = stage_knobs(recipe.transfer.stages[index])
    if not knobs:
        tunable = [technique.KEY for technique in adapters.TECHNIQUES if technique.knobs(StageConfig())]
        raise RecipeError(f"{recipe_path}: transfer.stages.{index}: turns on no technique with knobs to tune; "
                          f"allowed: a stage that turns on one of {', '.join(tunable)}")
    return knobs


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

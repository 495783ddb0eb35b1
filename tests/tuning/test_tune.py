"""`gem-transfer tune`: an Optuna study over a stage's technique knobs on the validation window, each
trial a real recipe run nested in the study's MLflow run, resumable, the best recipe written as YAML."""

from __future__ import annotations

import math
import subprocess
import sys

import optuna
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.data.synthetic import SyntheticSpec, generate
from transfer.tuning.space import stage_knobs

STAGE = {"producer": "teacher", "consumers": "students", "distillation": {"weight": 1.0, "head": "auxiliary"},
         "representation": {"weight": 0.5}}
WINDOWS = {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 1}, "eval": {"days": 1}}


@pytest.fixture(scope="module")
def tunable(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    dataset = write_dataset(folder, generate(SyntheticSpec(rows=8_000, days=6, seed=5)))
    recipe = write_recipe(
        folder, dataset, name="tuned", teacher={"model": "skeleton_tiny", "batch_size": 512},
        transfer={"stages": [STAGE]}, students=[{"vertical": "ig_stories_click", "batch_size": 128}, {"vertical": "fb_feed_click", "batch_size": 128}],
        tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"},
    )
    text = recipe.read_text().replace("validation:\n    days: 0", "validation:\n    days: 1")  # the tiny windows have none
    recipe.write_text(text)
    return folder, recipe


def _study(recipe_path, target="stage0"):
    recipe = load_recipe(recipe_path)
    folder = recipe_path.parent / "runs" / recipe.name / f"tune-{recipe.hash}-{target}"
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'study.db'}"), folder


@pytest.mark.slow
def test_a_study_runs_its_trials_as_nested_runs_and_writes_the_best_recipe_and_a_rerun_continues_it(tunable, capsys):
    folder, recipe = tunable
    assert load_recipe(recipe).data.validation.days == 1
    code, out, err = run_cli(capsys, "tune", str(recipe), "--trials", "3")
    assert code == 0, err
    study, study_folder = _study(recipe)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3
    for trial in finished:  # one report per student; the objective is the last running mean
        assert sorted(trial.intermediate_values) == [0, 1]
        assert math.isclose(trial.value, trial.intermediate_values[1])
        assert set(trial.params) == {"distillation.weight", "distillation.temperature", "distillation.label_scale",
                                     "distillation.grad_scale", "representation.weight"}

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tuned").experiment_id])
    (study_run,) = [r for r in runs if r.data.tags.get("role") == "tune"]
    trial_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
    assert sorted(r.data.tags["tune_trial"] for r in trial_runs) == ["0", "1", "2"]
    for run in trial_runs:  # each trial is a whole recipe run with the trial's knobs
        trial = study.trials[int(run.data.tags["tune_trial"])]
        assert math.isclose(float(run.data.params["transfer.stages.0.distillation.weight"]), trial.params["distillation.weight"])
        students = [r for r in runs if r.data.tags.get("role") == "student" and r.data.tags.get("recipe_run_id") == run.info.run_id]
        assert math.isclose(trial.value, sum(r.data.metrics["val_ne"] for r in students) / 2)

    best = load_recipe(study_folder / "best.yaml")
    assert best.transfer.stages[0].distillation.grad_scale == pytest.approx(study.best_trial.params["distillation.grad_scale"])
    assert study.best_value == min(t.value for t in finished)
    assert f"best mean val NE {study.best_value:.4f}" in out

    code, out, _ = run_cli(capsys, "tune", str(recipe), "--trials", "3")  # finished: nothing more to run
    assert code == 0 and "trial 4 of" not in out and "3 trials finished" in out
    code, out, _ = run_cli(capsys, "tune", str(recipe), "--trials", "4")  # one more
    assert code == 0 and "trial 4 of 4" in out
    assert len(_study(recipe)[0].trials) == 4


def _renamed_with_study(recipe, name: str):
    """The same recipe under another name (its own study; the same stage cache), and its study, created
    ahead of `gem-transfer tune` as an earlier run would have left it."""
    other = recipe.parent / f"{name}.yaml"
    other.write_text(recipe.read_text().replace("name: tuned", f"name: {name}"))
    folder = other.parent / "runs" / name / f"tune-{load_recipe(other).hash}-stage0"
    folder.mkdir(parents=True)
    return other, optuna.create_study(study_name="tune", storage=f"sqlite:///{folder / 'study.db'}", direction="minimize")


@pytest.mark.slow
def test_a_trial_left_running_by_a_killed_study_is_marked_failed_and_not_counted(tunable, capsys):
    _, recipe = tunable
    other, study = _renamed_with_study(recipe, "resumed")
    study.ask()  # a trial a killed run never told
    code, out, err = run_cli(capsys, "tune", str(other), "--trials", "1")
    assert code == 0, err
    assert "marked trial 0, left running by a killed run, as failed" in out
    assert [t.state for t in _study(other)[0].trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]


def test_a_second_process_on_a_running_study_is_refused_and_leaves_its_running_trial_alone(tunable, capsys):
    """A live process holds the study (its lock, a trial RUNNING): a second `tune` on it stops in one
    line, exit 2, and does not mark the live trial failed."""
    _, recipe = tunable
    other, study = _renamed_with_study(recipe, "contended")
    study.ask()  # the live process's trial
    lock = _study(other)[1] / "study.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"h = open({str(lock)!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX); h.write(f'process {{os.getpid()}}'); h.flush()\n"
         "print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = run_cli(capsys, "tune", str(other), "--trials", "1")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"process {holder.pid} is already running the study in" in line
    assert "trial" not in out
    assert [t.state for t in _study(other)[0].trials] == [optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_a_trial_worse_than_the_median_after_its_first_student_is_pruned_and_its_runs_end_killed(tunable, capsys):
    """Three earlier trials with a perfect validation NE (0) at every step: the median pruner stops the
    next trial as soon as its first student is scored, before the second trains."""
    folder, recipe = tunable
    other, study = _renamed_with_study(recipe, "pruned")
    knobs = stage_knobs(load_recipe(other).transfer.stages[0])
    distributions = {k.key: optuna.distributions.FloatDistribution(k.low, k.high, log=k.log) for k in knobs}
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(params={k.key: k.low for k in knobs}, distributions=distributions, value=0.0,
                                                  intermediate_values={0: 0.0, 1: 0.0}))
    code, out, err = run_cli(capsys, "tune", str(other), "--trials", "4")
    assert code == 0, err
    assert "trial 3 pruned" in out
    pruned = _study(other)[0].trials[3]
    assert pruned.state == optuna.trial.TrialState.PRUNED and list(pruned.intermediate_values) == [0]
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pruned").experiment_id])
    (trial_run,) = [r for r in runs if r.data.tags.get("tune_trial") == "3"]
    assert trial_run.info.status == "KILLED"
    students = [r for r in runs if r.data.tags.get("role") == "student" and r.data.tags.get("recipe_run_id") == trial_run.info.run_id]
    assert len(students) == 1  # the second student never trained


@pytest.mark.slow
def test_a_teacher_study_trains_only_the_teacher_and_minimizes_its_kept_epochs_validation_ne(tunable, capsys):
    folder, recipe = tunable
    code, out, err = run_cli(capsys, "tune", str(recipe), "--teacher", "--trials", "3")
    assert code == 0, err
    study, study_folder = _study(recipe, "teacher")
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3
    train_rows = pl.read_parquet(next(folder.glob("*.parquet"))).height  # the whole log: more than one window's rows
    for trial in finished:
        assert set(trial.params) == {"max_epochs", "warmup_steps", "lr"}
        assert 1 <= trial.params["max_epochs"] <= 8 and 0 <= trial.params["warmup_steps"] <= math.ceil(train_rows / 512)

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tuned").experiment_id])
    (study_run,) = [r for r in runs if r.data.tags.get("role") == "tune" and r.data.tags.get("stage") == "teacher"]
    trial_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
    assert sorted(r.data.tags["tune_trial"] for r in trial_runs) == ["0", "1", "2"]
    for run in trial_runs:
        trial = study.trials[int(run.data.tags["tune_trial"])]
        inside = [r for r in runs if r.data.tags.get("recipe_run_id") == run.info.run_id]
        (teacher,) = inside  # the teacher only: no knowledge, baseline or student
        assert teacher.data.tags["role"] == "teacher"
        assert int(run.data.params["teacher.max_epochs"]) == trial.params["max_epochs"]
        assert run.data.params["teacher.keep_best_epoch"] == "True"
        assert teacher.data.metrics["val_mean_ne"] == pytest.approx(trial.value)  # what the study minimized
        assert 0 <= teacher.data.metrics["best_epoch"] <= trial.params["max_epochs"]
        assert not [name for name in teacher.data.metrics if name.startswith("eval")]  # never the eval window

    best = load_recipe(study_folder / "best.yaml")
    assert best.teacher.keep_best_epoch and best.teacher.max_epochs == study.best_trial.params["max_epochs"]
    assert best.teacher.warmup_steps == study.best_trial.params["warmup_steps"]
    assert study.best_value == min(t.value for t in finished)
    assert f"best teacher mean val NE (over tasks) {study.best_value:.4f}" in out and "teacher.max_epochs=" in out


@pytest.mark.parametrize(("change", "args", "expected"), [
    ({"validation": 0}, [], "data.validation.days: found 0; gem-transfer tune chooses knobs on the validation window"),
    ({"validation": 0}, ["--teacher"], "data.validation.days: found 0; gem-transfer tune chooses knobs on the validation window"),
    ({}, ["--stage", "2"], "--stage: found 2; allowed: 1 to 1"),
    ({"stage": {"producer": "teacher", "consumers": "students", "distillation": {"weight": 0.0}}}, [],
     "transfer.stages.0: turns on no technique with knobs to tune"),
], ids=["no validation window", "teacher without a validation window", "no such stage", "nothing to tune"])
def test_a_study_that_cannot_run_is_refused_in_one_line(tmp_path, small_log, capsys, change, args, expected):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, name="refused", transfer={"stages": [change.get("stage", STAGE)]})
    if change.get("validation", 1):
        recipe.write_text(recipe.read_text().replace("validation:\n    days: 0", "validation:\n    days: 1").replace("eval:\n    days: 2", "eval:\n    days: 1"))
    code, out, err = run_cli(capsys, "tune", str(recipe), *args)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert str(recipe) in line and expected in line
    assert "trial" not in out  # refused before any trial ran


def test_a_trial_whose_training_diverges_fails_and_the_study_goes_on_until_as_many_diverged_as_it_was_to_finish(
        tunable, monkeypatch, capsys):
    """Every teacher trial's loss becomes non-finite (as a too-high learning rate makes it): each is told
    FAILED with one line and the next one runs; after as many as the study was to finish it stops."""
    from transfer.errors import DivergedError
    from transfer.tuning import study as study_module

    def diverging(*args, **kwargs):
        raise DivergedError("teacher: the training loss became nan at step 3")

    monkeypatch.setattr(study_module, "train_teacher", diverging)
    folder, recipe = tunable
    other = folder / "diverging.yaml"
    other.write_text(recipe.read_text().replace("name: tuned", "name: diverging"))
    code, out, err = run_cli(capsys, "tune", str(other), "--teacher", "--trials", "2")
    assert code == 2
    assert out.count("failed, its training diverged: teacher: the training loss became nan") == 2
    assert "tune: 2 trials diverged" in err
    study, _ = _study(other, "teacher")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2

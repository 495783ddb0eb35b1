"""`gem-transfer plan`: every stage of a recipe with its key and whether it is cached, without running
anything; the keys it prints are the stage folders a run then creates and reuses."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(SyntheticSpec(rows=6_000, days=6, seed=5))


def _recipe(folder: Path, log: pl.DataFrame, **sections) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dataset = write_dataset(folder, log)
    students = [{"vertical": "ig_stories_click", "batch_size": 64}, {"vertical": "fb_feed_conversion", "batch_size": 64}]
    return write_recipe(folder, dataset, name="planned", teacher={"model": "skeleton_tiny", "batch_size": 256},
                        students=students, tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"}, **sections)


def _plan(capsys, recipe: Path, *overrides: str) -> list[tuple[str, ...]]:
    """The plan's rows: (stage, kind, name, key, status)."""
    code, out, err = run_cli(capsys, "plan", str(recipe), *overrides)
    assert code == 0, err
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    end = next(i for i, line in enumerate(lines) if re.match(r"\d+ stages: ", line))
    return [tuple(re.split(r"\s{2,}", line.strip(), maxsplit=4)) for line in lines[start + 1:end]]


def test_plan_lists_every_stage_in_order_and_runs_nothing(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    rows = _plan(capsys, recipe)
    assert [(kind, name) for _, kind, name, _, _ in rows] == [
        ("teacher", "teacher:skeleton_tiny"),
        ("knowledge", "knowledge:skeleton_tiny"),
        ("baseline", "baseline:ig_stories_click"),
        ("student", "student:ig_stories_click"),
        ("baseline", "baseline:fb_feed_conversion"),
        ("student", "student:fb_feed_conversion"),
        ("evaluation", "evaluation:lift table"),
    ]
    assert [status for *_, status in rows] == ["will run"] * 6 + ["runs every time"]
    assert len({key for _, _, _, key, _ in rows}) == len(rows)  # every stage its own key
    assert not (tmp_path / "mlflow.db").exists()  # nothing tracked
    assert not (tmp_path / "runs" / "stages").exists()  # nothing trained or generated
    assert _plan(capsys, recipe) == rows  # the same recipe plans to the same keys


def test_a_vanilla_reference_is_planned_before_each_student_and_only_when_the_stage_is_not_vanilla_kd(tmp_path, log, capsys):
    aux = {"stages": [{"producer": "teacher", "consumers": "students", "distillation": {"weight": 1.0, "head": "auxiliary"}}]}
    recipe = _recipe(tmp_path, log, transfer={"vanilla_reference": True, **aux})
    rows = _plan(capsys, recipe)
    assert [(kind, name) for _, kind, name, _, _ in rows][2:5] == [
        ("baseline", "baseline:ig_stories_click"), ("vanilla_kd", "vanilla_kd:ig_stories_click"), ("student", "student:ig_stories_click")]
    without = _plan(capsys, recipe, "transfer.vanilla_reference=false")
    student_keys = {name: key for _, _, name, key, _ in rows if name.startswith("student:")}
    assert student_keys == {name: key for _, _, name, key, _ in without if name.startswith("student:")}  # the student is the same stage
    vanilla = _plan(capsys, _recipe(tmp_path / "vanilla", log, transfer={"vanilla_reference": True}))  # the default stage is vanilla KD
    assert not any(kind == "vanilla_kd" for _, kind, *_ in vanilla)


@pytest.mark.slow
def test_after_a_run_the_plan_shows_its_stage_folders_cached_and_what_an_override_reruns(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    before = _plan(capsys, recipe)
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    folders = {p.name for p in (tmp_path / "runs" / "stages").iterdir() if not p.name.startswith(".")}
    assert folders == {key for _, kind, _, key, _ in before if kind != "evaluation"}  # the run made exactly the planned stages

    after = _plan(capsys, recipe)
    assert [key for *_, key, _ in after] == [key for *_, key, _ in before]
    assert [status for *_, status in after] == ["cached"] * 6 + ["runs every time"]

    changed = {name: status for _, _, name, _, status in _plan(capsys, recipe, "students.0.lr=3e-3")}
    assert changed["teacher:skeleton_tiny"] == changed["knowledge:skeleton_tiny"] == "cached"
    assert changed["student:ig_stories_click"] == changed["baseline:ig_stories_click"] == "will run"
    assert changed["student:fb_feed_conversion"] == "cached"  # another VM's setting leaves it alone

    weights = tmp_path / "runs" / "stages" / before[0][3] / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-8])  # damaged: the run would not reuse it, and the plan says so
    damaged = {name: status for _, _, name, _, status in _plan(capsys, recipe)}
    assert damaged["teacher:skeleton_tiny"] == damaged["knowledge:skeleton_tiny"] == "will run"


def test_plan_refuses_a_bad_override_in_one_line(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    code, _, err = run_cli(capsys, "plan", str(recipe), "students.0.lr=-1")
    assert code == 2 and err.count("\n") == 1 and "lr" in err and "-1" in err

"""Recipe loading: typed schema, overrides, and one-line errors with exit code 2 through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from transfer.errors import RecipeError
from transfer.recipe import load_recipe

QUICKSTART = REPO / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(recipe, capsys):
    code, out, err = run_cli(capsys, "validate", str(recipe))
    assert code == 0, err
    assert f"ok: {recipe}" in out


def test_overrides_reach_the_typed_recipe():
    recipe = load_recipe(QUICKSTART, ["trainer.max_epochs=3", "students.0.lr=3e-3", "teacher.model=skeleton_small"])
    assert recipe.trainer.max_epochs == 3
    assert recipe.students[0].lr == pytest.approx(3e-3)
    assert recipe.students[1].lr == pytest.approx(2e-3)  # untouched default
    assert recipe.teacher.model == "skeleton_small"


def test_recipe_hash_changes_with_content():
    assert load_recipe(QUICKSTART).hash == load_recipe(QUICKSTART).hash
    assert load_recipe(QUICKSTART).hash != load_recipe(QUICKSTART, ["seed=7"]).hash


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BASE = "name: t\nstudents: [{vertical: ig_stories_click}]\n"


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (BASE + "trainer: {max_epoch: 2}\n", [], ["unknown key 'trainer.max_epoch'", "max_epochs"]),
        (BASE + "trainer: {max_epochs: lots}\n", [], ["trainer.max_epochs", "lots"]),
        (BASE + "teacher: {model: gem_huge}\n", [], ["teacher.model", "gem_huge", "skeleton_tiny"]),
        ("name: t\nstudents: [{vertical: tv_click}]\n", [], ["students.0.vertical", "tv_click", "ig_stories_click"]),
        (BASE, ["trainer.max_epochs"], ["override 'trainer.max_epochs'", "key=value"]),
        (BASE, ["trainer.max_epochz=2"], ["unknown key 'trainer.max_epochz'", "max_epochs"]),
        (BASE, ["students.0.lr=fast"], ["students.0.lr", "fast"]),
        (BASE + "data: {train: {start: 2026-02-30, days: 3}}\n", [], ["data.train.start", "YYYY-MM-DD"]),
        (BASE + "data: {dataset: nowhere.yaml}\n", [], ["data.dataset", "nowhere.yaml"]),
        ("students: [{vertical: ig_stories_click}]\n", [], ["required key 'name'"]),
        ("name: t\nstudents: []\n", [], ["students", "at least one"]),
        ("- just\n- a list\n", [], ["must be a YAML mapping"]),
        (BASE + "trainer: {max_epochs: 0}\n", [], ["trainer.max_epochs", "> 0"]),
        (BASE + "transfer: {strategy: sideways}\n", [], ["transfer.strategy", "sideways", "direct"]),
    ],
)
def test_bad_recipe_is_one_line_exit_2(tmp_path, capsys, text, overrides, expected):
    path = _write(tmp_path, text)
    code, out, err = run_cli(capsys, "run", str(path), *overrides)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert str(path) in err
    for fragment in expected:
        assert fragment in err


def test_missing_recipe_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert "not found" in err and "absent.yaml" in err


def test_validate_raises_typed_error_for_library_users(tmp_path):
    with pytest.raises(RecipeError, match="teacher.model"):
        load_recipe(_write(tmp_path, BASE + "teacher: {model: nope}\n"))


def test_bad_cli_argument_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "data", "synth", "--rows", "-5", "--out", "x.parquet")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "--rows" in err


def test_ls_lists_recipes_teachers_and_students(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    for fragment in ("recipes/quickstart.yaml", "skeleton_tiny", "ig_stories_click", "movielens100k"):
        assert fragment in out

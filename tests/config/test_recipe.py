"""Recipe loading: typed schema, overrides, and one-line errors with exit code 2 through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, time_limit
from transfer.config.loader import load_recipe
from transfer.errors import RecipeError

QUICKSTART = REPO / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(recipe, capsys):
    code, out, err = run_cli(capsys, "validate", str(recipe))
    assert code == 0, err
    assert f"ok: {recipe}" in out


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_opens_with_the_command_that_runs_it_and_what_it_shows(recipe):
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# Run: gem-transfer ") and f"recipes/{recipe.name}" in first, first
    assert "—" in first and len(first.split("—", 1)[1].strip()) > 10, "the line says what the recipe shows after a dash"


def test_overrides_reach_the_typed_recipe():
    recipe = load_recipe(QUICKSTART, ["trainer.max_epochs=3", "students.0.lr=3e-3", "teacher.model=skeleton_small"])
    assert recipe.trainer.max_epochs == 3
    assert recipe.students[0].lr == pytest.approx(3e-3)
    assert recipe.students[1].lr == pytest.approx(2e-3)  # untouched default
    assert recipe.teacher.model == "skeleton_small"


def test_strategy_alone_gives_its_default_stages(tmp_path):
    path = _write(tmp_path, BASE + "transfer: {strategy: hierarchical}\n")
    stages = load_recipe(path).transfer.stages
    assert [(s.producer, s.consumers) for s in stages] == [("teacher", "domain_fms"), ("domain_fms", "students")]
    assert load_recipe(_write(tmp_path, BASE)).transfer.stages[0].distillation.head == "serving"


def test_stage_overrides_reach_the_typed_recipe():
    recipe = load_recipe(REPO / "recipes" / "direct_all_techniques.yaml",
                         ["transfer.stages.0.distillation.grad_scale=0.5", "transfer.stages.0.sharing.modules=[embeddings.ad_id]"])
    stage = recipe.transfer.stages[0]
    assert stage.distillation.grad_scale == 0.5 and stage.distillation.head == "auxiliary"
    assert stage.sharing.modules == ["embeddings.ad_id"]


def test_recipe_hash_changes_with_content():
    assert load_recipe(QUICKSTART).hash == load_recipe(QUICKSTART).hash
    assert load_recipe(QUICKSTART).hash != load_recipe(QUICKSTART, ["seed=7"]).hash


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BASE = "name: t\nstudents: [{vertical: ig_stories_click}]\n"
STAGE = "transfer: {{stages: [{{producer: teacher, consumers: students, {}}}]}}\n"


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
        (BASE + "tracking: {serving_requests: 0}\n", [], ["tracking.serving_requests", "> 0"]),
        (BASE + "transfer: {strategy: sideways}\n", [], ["transfer.strategy", "sideways", "direct, hierarchical"]),
        (BASE + STAGE.format("distillation: {head: side}"), [], ["transfer.stages.0.distillation.head", "side", "auxiliary, serving"]),
        (BASE + STAGE.format("representation: {weight: 1, loss: l1}"), [], ["transfer.stages.0.representation.loss", "l1", "cosine, infonce, mse"]),
        (BASE + STAGE.format("distillation: {grad_scale: -1}"), [], ["transfer.stages.0.distillation.grad_scale", "-1", ">= 0"]),
        (BASE + STAGE.format("distillation: {temperature: 0}"), [], ["transfer.stages.0.distillation.temperature", "> 0"]),
        (BASE + STAGE.format("adapter: {enabled: true, fit_days: 30}"), [], ["transfer.stages.0.adapter.fit_days", "30", "7 days"]),
        (BASE + STAGE.format("sharing: {modules: [embeddings.zip]}"), [], ["transfer.stages.0.sharing.modules", "embeddings.zip", "embeddings.ad_id", "events.context"]),
        (BASE + STAGE.format("sharing: {modules: [history.pooling]}"), [], ["transfer.stages.0.sharing.modules", "'history.pooling' cannot fit", "shapes differ"]),
        (BASE + STAGE.format("sharing: {modules: [history.event_mlp]}"), [], ["consumer", "no part 'history.event_mlp'", "history.pooling"]),
        (BASE + STAGE.format("sharpening: {on: true}"), [], ["unknown key 'transfer.stages.0.sharpening'", "distillation"]),
        (BASE + "transfer: {strategy: hierarchical, stages: [{producer: teacher, consumers: students}]}\n", [],
         ["transfer.stages", "teacher → students", "teacher → domain_fms, domain_fms → students"]),
        (BASE + "transfer: {staleness_days: 7, max_age_days: 3}\n", [], ["transfer.max_age_days", "staleness_days (7) + data.student.days (7)", "max_age_days >= 14"]),
        (BASE + "domain_fms: {model: dfm_huge}\n", [], ["domain_fms.model", "dfm_huge", "dfm_small"]),
        (BASE + "data: {dataset: movielens100k}\n", [], ["students.0.vertical", "'ig_stories_click' serves surface(s) 'ig_stories'",
                                                         "dataset 'movielens100k' does not have", "its surfaces: weekday_day"]),
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


def test_validate_catches_a_vm_whose_surface_the_dataset_lacks_before_any_data_is_read(tmp_path, capsys):
    path = _write(tmp_path, BASE + "data: {dataset: movielens100k}\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "students.0.vertical" in err and "does not have" in err


def test_missing_recipe_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert "not found" in err and "absent.yaml" in err


def test_a_recipe_path_that_is_a_folder_is_named_as_one(tmp_path, capsys):
    for command in (["validate"], ["plan"], ["run"]):
        code, _, err = run_cli(capsys, *command, str(tmp_path))
        assert code == 2 and err.count("\n") == 1
        assert f"{tmp_path}: is a folder; a recipe is a YAML file" in err and "not found" not in err


def test_validate_takes_the_same_overrides_as_run(capsys):
    code, out, err = run_cli(capsys, "validate", str(QUICKSTART), "trainer.max_epochs=3", "students.0.lr=3e-3")
    assert code == 0, err
    assert f"ok: {QUICKSTART} with trainer.max_epochs=3 students.0.lr=3e-3" in out
    code, _, err = run_cli(capsys, "validate", str(QUICKSTART), "trainer.max_epochs=0")
    assert code == 2 and "trainer.max_epochs" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "validate", str(QUICKSTART), "teacher.model=no_such_teacher")
    assert code == 2 and "no_such_teacher" in err


def test_validate_with_only_overrides_names_the_missing_recipe(capsys):
    code, out, err = run_cli(capsys, "validate", "seed=1")
    assert code == 2 and out == "" and "validate: no recipe file among 'seed=1'" in err


def test_an_override_past_the_end_of_a_list_says_so_not_unknown_key(tmp_path, capsys):
    """The quickstart has one transfer stage: stage 3 is not a misspelled key, it is an index it lacks."""
    code, _, err = run_cli(capsys, "validate", str(QUICKSTART), "transfer.stages.3.distillation.weight=0.5")
    assert code == 2 and err.count("\n") == 1 and "unknown key" not in err
    assert "'transfer.stages' has 1 item(s) in this recipe" in err and "allowed: an index from 0 to 0" in err
    path = _write(tmp_path, BASE)  # no transfer.stages written: the strategy's come after the overrides
    code, _, err = run_cli(capsys, "validate", str(path), "transfer.stages.0.distillation.weight=0.5")
    assert code == 2 and "'transfer.stages' has no items in this recipe" in err and "write transfer.stages in the recipe" in err


def test_validate_raises_typed_error_for_library_users(tmp_path):
    with pytest.raises(RecipeError, match="teacher.model"):
        load_recipe(_write(tmp_path, BASE + "teacher: {model: nope}\n"))


def test_bad_cli_argument_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "data", "synth", "--rows", "-5", "--out", "x.parquet")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "--rows" in err


def test_data_synth_refuses_bad_arguments_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = str(tmp_path / "log.parquet")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cases = [
        (["--seed", "-1", "--out", out], "--seed: found -1; allowed: a whole number from 0 to 4294967295"),
        (["--out", str(tmp_path)], f"--out: {tmp_path} is a folder"),
        (["--out", str(tmp_path / "absent" / "log.parquet")], "--out: the folder"),
    ]
    if 10**8 * 680 > memory:  # 100M impressions need about 63 GiB to generate and encode
        cases.append((["--rows", str(10**8), "--out", out], "--rows: found 100,000,000, which needs about 63 GiB"))
    for argv, expected in cases:
        rows = [] if "--rows" in argv else ["--rows", "100"]
        code, _, err = run_cli(capsys, "data", "synth", *rows, *argv)
        assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_ls_lists_recipes_teachers_and_students(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    for fragment in ("recipes/quickstart.yaml", "skeleton_tiny", "dfm_small", "ig_stories_click", "movielens100k"):
        assert fragment in out


def test_ls_techniques_lists_each_technique_with_what_it_costs_the_served_vm(capsys):
    code, out, _ = run_cli(capsys, "ls", "techniques")
    assert code == 0
    lines = out.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["distillation", "embedding_features", "representation", "sharing", "adapter"]
    assert all("[serving cost: " in line for line in lines)
    embeddings = next(line for line in lines if line.strip().startswith("embedding_features"))
    assert "136 MB per million users at E = 64" in embeddings  # a float16 vector of 64 and an int64 key per user


def test_a_listing_whose_reader_has_gone_ends_quietly(tmp_path):
    """`gem-transfer ls verticals | head -1`, the reader gone before the listing is written: no
    traceback, the exit code of a tool stopped by a closed pipe."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # the listing buffered, as for a user
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "transfer.cli", "ls", "verticals"], stdout=write_end, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=tmp_path, timeout=time_limit(120))
    os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_only_a_stdout_whose_reader_has_gone_counts_as_a_closed_listing(monkeypatch):
    """Any other broken pipe (a worker's, a socket) is a real failure: it must not end quietly."""
    import os
    import sys

    from transfer.cli import _stdout_reader_gone

    for reader_closed in (False, True):
        read_end, write_end = os.pipe()
        if reader_closed:
            os.close(read_end)
        with os.fdopen(write_end, "w") as stdout:
            monkeypatch.setattr(sys, "stdout", stdout)
            assert _stdout_reader_gone() is reader_closed
            monkeypatch.undo()
        if not reader_closed:
            os.close(read_end)

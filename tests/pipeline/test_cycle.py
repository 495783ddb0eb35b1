"""The continuous transfer cycle through the CLI on a small drifting log: each cycle a recipe run in
MLflow with lineage to the previous one, the teacher continuing from the previous cycle's weights
on the newest days, and the table comparing refreshed VMs with VMs trained once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate
from transfer.knowledge.embedding_table import read_embedding_table


@pytest.fixture(scope="module")
def log():
    return generate(SyntheticSpec(rows=3_000, days=9, seed=1))  # every cycle's eval slice has positives (a slice without any is refused)


def _recipe(tmp_path, log, **sections):
    dataset = write_dataset(tmp_path, log)
    return write_recipe(tmp_path, dataset, name="cyc", teacher={"model": "skeleton_tiny", "batch_size": 256}, **sections,
                        data={"dataset": str(dataset), "train": {"start": "2026-01-01", "days": 2}, "student": {"days": 2},
                              "validation": {"days": 0}, "eval": {"days": 1}, "cache_dir": str(tmp_path / "cache")},
                        students=[{"vertical": "ig_stories_click", "batch_size": 64}],
                        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})


# the VMs also take the teacher's user embeddings from its 3 newest versions (LoopFM's variant): each cycle's VMs get
# the knowledge folders of the cycles before it
VERSIONED = {"strategy": "direct", "stages": [{"producer": "teacher", "consumers": "students", "distillation": {"weight": 1.0},
                                               "embedding_features": {"enabled": True, "days": 1, "versions": 3}}]}


@pytest.mark.slow
def test_cycles_refresh_teacher_and_vms_with_lineage(tmp_path, log, capsys):
    code, out, err = run_cli(capsys, "cycle", str(_recipe(tmp_path, log, transfer=VERSIONED)), "--windows", "3")
    assert code == 0, err
    table = pl.read_csv(next((tmp_path / "runs" / "cyc").glob("cycle-*-3.csv")))
    assert table["cycle"].to_list() == [0, 1, 2]
    assert table["eval window"].n_unique() == 3  # each cycle is scored on the next, later window
    first = table.row(0, named=True)
    assert first["refreshed VM NE"] == pytest.approx(first["trained-once VM NE"], abs=1e-9)  # the same model in cycle 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cyc").experiment_id])
    parents = sorted((r for r in runs if "cycle" in r.data.tags and "mlflow.parentRunId" not in r.data.tags),
                     key=lambda r: int(r.data.tags["cycle"]))
    assert [r.data.tags["cycle"] for r in parents] == ["0", "1", "2"]
    assert parents[0].data.tags["previous_cycle_run_id"] == ""
    for earlier, later in zip(parents, parents[1:], strict=False):
        assert later.data.tags["previous_cycle_run_id"] == earlier.info.run_id
    teachers = {r.data.tags["recipe_run_id"]: r for r in runs if r.data.tags.get("role") == "teacher"}
    assert "continued_from" not in teachers[parents[0].info.run_id].data.tags
    for parent in parents[1:]:
        assert teachers[parent.info.run_id].data.tags["continued_from"].endswith("model.pt")
        assert parent.data.params["data.train.days"] == "1"  # the teacher trains on the newest day only

    # the embedding versions: cycle k's VMs read the tables of cycles k-1, k-2 (newest first), each made by its own
    # cycle's teacher at its own cutoff (one day apart); cycle 0 has none (its VMs' older versions are the defaults)
    key = "transfer.stages.0.embedding_features.earlier"
    earlier = [[p.data.params[f"{key}.{i}"] for i in range(3) if f"{key}.{i}" in p.data.params] for p in parents]
    assert [len(folders) for folders in earlier] == [0, 1, 2] and earlier[2][1] == earlier[1][0]
    cutoffs = [read_embedding_table(Path(folder) / "embeddings" / "skeleton_tiny.user_id.1d.parquet", "skeleton_tiny").provenance.cutoff
               for folder in earlier[2]]
    assert cutoffs == ["2026-01-04T00:00:00+00:00", "2026-01-03T00:00:00+00:00"]  # cycle 1's teacher, then cycle 0's


def test_a_cycle_longer_than_the_data_fails_before_training(tmp_path, log, capsys):
    code, _, err = run_cli(capsys, "cycle", str(_recipe(tmp_path, log)), "--windows", "9")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "is empty" in line and "the data spans" in line
    assert not (tmp_path / "runs").exists()


def test_overrides_may_follow_the_options(tmp_path, log, capsys):
    recipe = str(_recipe(tmp_path, log))
    code, _, err = run_cli(capsys, "cycle", recipe, "--windows", "2", "trainer.max_epochz=2")
    assert code == 2 and "unknown key 'trainer.max_epochz'" in err  # read as an override, after --windows
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "cycle", recipe, "--windows", "2", "--window-size", "3")
    assert exited.value.code == 2 and "unrecognized arguments: --window-size 3" in capsys.readouterr().err


def test_a_later_cycle_without_positives_fails_before_any_training(tmp_path, capsys):
    log = generate(SyntheticSpec(rows=3_000, days=9, seed=1))
    on_jan_6 = (pl.col("surface") == "ig_stories") & (pl.col("ts").dt.date() == date(2026, 1, 6))
    sparse = log.with_columns(pl.when(on_jan_6).then(0).otherwise(pl.col(c)).cast(pl.Int8).alias(c) for c in ("click", "conversion"))
    assert sparse.filter(on_jan_6).height > 0  # cycle 1's ig_stories eval day (Jan 6) has rows but no click
    code, out, err = run_cli(capsys, "cycle", str(_recipe(tmp_path, sparse)), "--windows", "3")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "'ig_stories_click' eval slice" in line and "task click" in line
    assert "▸ teacher" not in out and not list((tmp_path / "runs").rglob("stages/*/model.pt"))


def test_a_cycle_refuses_windows_by_the_hour_in_one_line(tmp_path, log, capsys):
    code, _, err = run_cli(capsys, "cycle", str(_recipe(tmp_path, log)), "--windows", "2", "data.eval.hours=6")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "the continuous cycle moves its windows by whole days" in line


@pytest.mark.parametrize(("embedding", "found"), [
    ({"versions": 2, "earlier": ["somewhere"]}, "transfer.stages.0.embedding_features.earlier: found 1 folder(s); under gem-transfer "
     "cycle each cycle's earlier versions are the cycles before it; allowed: an empty list"),
    ({"versions": 3, "max_age_days": 3}, "transfer.stages.0.embedding_features.max_age_days: 3 refuses the embeddings this cycle pools: "
     "by cycle 2 the oldest of its 3 versions is 4 days old"),
], ids=["hand-set earlier versions", "the oldest version too old by the last cycle"])
def test_embedding_versions_a_cycle_cannot_make_are_refused_before_any_training(tmp_path, log, capsys, embedding, found):
    transfer = {"strategy": "direct", "stages": [{"producer": "teacher", "consumers": "students", "distillation": {"weight": 1.0},
                                                  "embedding_features": {"enabled": True, "days": 1, **embedding}}]}
    code, _, err = run_cli(capsys, "cycle", str(_recipe(tmp_path, log, transfer=transfer)), "--windows", "3")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert found in err
    assert not (tmp_path / "runs").exists()

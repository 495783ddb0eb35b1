"""The local MLflow sqlite store, as `gem-transfer run`, `lift` and `register` meet it: runs started
together on a fresh store all find it ready (MLflow's schema migration would race); a file at the
tracking path that is not a healthy SQLite database, a sqlite URI in a folder that does not exist
(outside output_dir), and an output_dir that is a file each end in one line naming the key, exit
code 2, with nothing written."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, time_limit, write_dataset, write_recipe
from transfer.tracking.runs import Tracker, check_reachable

TRIES = 3


def _start_tracking(uri: str, output_dir: str, ready, results) -> None:
    """What `gem-transfer run` does first with its store, in a process of its own started with others."""
    ready.wait()
    try:
        check_reachable(uri, Path(output_dir))
        tracker = Tracker(uri, "together", Path(output_dir) / "mlartifacts")
        with tracker.run("started together", {"pid": str(os.getpid())}):
            pass
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 — reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(TRIES))
def test_runs_started_together_on_a_fresh_store_all_find_it_ready(tmp_path, attempt):
    context = multiprocessing.get_context("fork")  # forked after the imports: the two start their stores at once
    uri, output_dir = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", str(tmp_path / "runs")
    ready, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_start_tracking, args=(uri, output_dir, ready, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=time_limit(300)) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]


def test_a_sqlite_store_is_created_inside_output_dir_even_in_a_new_subfolder(tmp_path):
    db = tmp_path / "runs" / "tracking" / "mlflow.db"
    check_reachable(f"sqlite:///{db}", tmp_path / "runs")
    assert db.is_file()
    assert MlflowClient(f"sqlite:///{db}").get_experiment_by_name("Default") is not None


@pytest.fixture
def recipe_with(tmp_path, small_log):
    """A recipe whose tracking.uri (or output_dir) is the test's."""
    dataset = write_dataset(tmp_path, small_log)

    def write(uri: str | None = None, **sections) -> Path:
        tracking = {"uri": uri} if uri else {}
        return write_recipe(tmp_path, dataset, name="bad_store", tracking=tracking, **sections)

    return write


def _not_sqlite(path: Path) -> Path:
    path.write_bytes(os.urandom(4096))
    return path


def _truncated(path: Path) -> Path:
    check_reachable(f"sqlite:///{path}", path.parent)  # a real, fresh MLflow store
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


BAD_FILES = {"random bytes": (_not_sqlite, "is not a SQLite database"), "truncated store": (_truncated, "damaged")}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_store_file_is_one_line_for_run_lift_and_register(recipe_with, tmp_path, capsys, kind):
    make, problem = BAD_FILES[kind]
    db = make(tmp_path / "mlflow.db")
    before = db.read_bytes()
    uri = f"sqlite:///{db}"
    for argv in (["run", str(recipe_with(uri))], ["lift", "--tracking-uri", uri, "--out", str(tmp_path / "lift")],
                 ["register", "0123456789abcdef", "--tracking-uri", uri]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        (line,) = err.splitlines()
        setting = "tracking.uri" if argv[0] == "run" else "--tracking-uri"  # the recipe's key, or the flag that gave the store
        assert line.startswith(f"gem-transfer: error: {setting}: {uri}: {db} ") and problem in line, line
        assert "Traceback" not in err
    assert db.read_bytes() == before  # left as it was, for the user to look at
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lift").exists()


def test_a_folder_at_the_store_path_is_one_line(tmp_path, capsys):
    (tmp_path / "mlflow.db").mkdir()
    code, _, err = run_cli(capsys, "lift", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(tmp_path / "lift"))
    assert code == 2 and err.count("\n") == 1 and "mlflow.db is not a file" in err


def test_a_sqlite_store_in_a_missing_folder_outside_output_dir_is_refused(recipe_with, tmp_path, capsys):
    db = tmp_path / "nowhere" / "deeper" / "mlflow.db"
    code, _, err = run_cli(capsys, "run", str(recipe_with(f"sqlite:///{db}")))
    assert code == 2
    (line,) = err.splitlines()
    assert f"tracking.uri: sqlite:///{db}: the folder {db.parent} does not exist" in line
    assert "inside output_dir" in line
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "runs").exists()
    code, _, err = run_cli(capsys, "register", "0123456789abcdef", "--tracking-uri", f"sqlite:///{db}")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("where", ["the folder", "a parent"])
def test_an_output_dir_that_is_a_file_is_one_line(recipe_with, tmp_path, capsys, where):
    (tmp_path / "taken").write_text("a file, not a folder")
    output_dir = tmp_path / "taken" if where == "the folder" else tmp_path / "taken" / "runs"
    code, _, err = run_cli(capsys, "run", str(recipe_with(output_dir=str(output_dir))))
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"gem-transfer: error: output_dir: found {tmp_path / 'taken'}, which is a file"), line
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


@pytest.mark.slow
def test_a_rerun_with_the_store_fixed_completes(recipe_with, tmp_path, capsys):
    db = _not_sqlite(tmp_path / "mlflow.db")
    recipe = recipe_with(f"sqlite:///{db}", teacher={"model": "skeleton_tiny", "batch_size": 256})
    assert run_cli(capsys, "run", str(recipe))[0] == 2
    db.rename(tmp_path / "mlflow.db.broken")
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert "| model " in out and db.is_file()


def test_a_store_left_with_a_hot_journal_by_a_killed_run_is_healthy(tmp_path):
    """A process killed mid-write leaves `<db>-journal`; the next run's check must roll it back, not
    call the store damaged (a read-only check did, racing a resumed multi-process run's ranks)."""
    import sqlite3
    import subprocess
    import sys

    from transfer.tracking.runs import _sqlite_problem

    db = tmp_path / "mlflow.db"
    script = f"""
import os, sqlite3
con = sqlite3.connect({str(db)!r})
con.execute("CREATE TABLE t (x BLOB)"); con.commit()
con.execute("PRAGMA cache_size=1")
con.execute("BEGIN")
for _ in range(2000):
    con.execute("INSERT INTO t VALUES (randomblob(1000))")
os._exit(1)  # killed mid-transaction: the journal stays
"""
    subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert (tmp_path / "mlflow.db-journal").is_file()
    assert _sqlite_problem(db) is None
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0  # rolled back


@pytest.mark.slow
def test_a_copied_run_folder_refuses_to_write_into_the_original(tmp_path, capsys):
    """gem_runs copied elsewhere: its store still names the original's artifact folder, so a run from the
    copy would write its artifacts there; it stops in one line instead, and the original is untouched."""
    import shutil

    from transfer.data.synthetic import SyntheticSpec, generate

    original = tmp_path / "original"
    original.mkdir()
    dataset = write_dataset(original, generate(SyntheticSpec(rows=4_000, days=6, seed=2)))
    recipe = write_recipe(original, dataset, name="copied", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}])
    assert run_cli(capsys, "run", str(recipe))[0] == 0
    artifacts = sorted(p for p in (original / "runs" / "mlartifacts").rglob("*") if p.is_file())
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    moved = copy / "copied.yaml"
    moved.write_text(moved.read_text().replace(str(original), str(copy)))
    code, _, err = run_cli(capsys, "run", str(moved), "students.0.lr=0.003")
    assert code == 2 and err.count("\n") == 1
    assert "experiment 'copied' of this store keeps its artifacts in" in err and str(original / "runs" / "mlartifacts") in err
    assert sorted(p for p in (original / "runs" / "mlartifacts").rglob("*") if p.is_file()) == artifacts

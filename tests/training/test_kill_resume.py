"""Runs survive being killed: a recipe run is SIGKILLed during knowledge generation and again during
a VM's training (after its first epoch checkpoint); rerunning the same command finishes it with the
same lift table as an uninterrupted run, no half-written or leftover files, and the killed
attempts' MLflow runs marked FAILED — in one process, and as two DDP processes (every process of
the run killed at once during a VM's training, as when its machine goes down; the kill during
knowledge generation is the one-process run's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, time_limit, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate

PROCESSES = {"one process": [], "two processes": ["trainer.strategy=ddp", "trainer.devices=2"]}


def _command(recipe: Path, processes: list[str]) -> list[str]:
    return [sys.executable, "-u", "-m", "transfer.cli", "run", str(recipe), *processes]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _kill_when(recipe: Path, processes: list[str], cwd: Path, marker: str, then=lambda: True, timeout_s: float = 300) -> str:
    """Start the run, SIGKILL all its processes once `marker` is printed and `then()` holds; → what it printed."""
    process = subprocess.Popen(_command(recipe, processes), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                               env=_env(), start_new_session=True)
    seen, deadline = [], time.monotonic() + timeout_s
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            while not then():
                assert process.poll() is None, "the run ended before it could be killed:\n" + "".join(seen)
                assert time.monotonic() < deadline
                time.sleep(0.005)
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    _assert_no_process_left(recipe)
    return "".join(seen)


def _assert_no_process_left(recipe: Path, timeout_s: float = 30) -> None:
    """No process of the killed run lives on (ranks started in sessions of their own die with their launcher)."""
    deadline = time.monotonic() + timeout_s
    while alive := [p for p in Path("/proc").glob("[0-9]*") if str(recipe) in _command_line(p)]:
        assert time.monotonic() < deadline, f"processes of the killed run still alive: {alive}"
        time.sleep(0.1)


def _command_line(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def _run(recipe: Path, processes: list[str], cwd: Path) -> str:
    done = subprocess.run(_command(recipe, processes), capture_output=True, text=True, cwd=cwd, env=_env(), timeout=time_limit(600))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _recipe(folder: Path, dataset: Path) -> Path:
    folder.mkdir()
    return write_recipe(folder, dataset, name="killme", teacher={"model": "skeleton_tiny", "batch_size": 256},
                        students=[{"vertical": "ig_stories_click", "batch_size": 32}], trainer={"max_epochs": 2, "progress": False},
                        tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"})


@pytest.mark.slow
@pytest.mark.parametrize("how", PROCESSES)
def test_a_killed_run_resumes_to_the_same_result(tmp_path, how):
    processes = PROCESSES[how]
    dataset = write_dataset(tmp_path, generate(SyntheticSpec(rows=20_000, days=6, seed=5)))
    straight = _recipe(tmp_path / "straight", dataset)
    _run(straight, processes, tmp_path)
    expected = pl.read_csv(next((tmp_path / "straight" / "runs").rglob("lift.csv")))

    killed = _recipe(tmp_path / "killed", dataset)
    runs = tmp_path / "killed" / "runs"
    if not processes:
        _kill_when(killed, processes, tmp_path, "▸ knowledge: scoring")

    def first_epoch_saved() -> bool:
        return any(runs.glob("stages/vm-*/checkpoints/last.ckpt"))

    second = _kill_when(killed, processes, tmp_path, "▸ student: ig_stories_click", then=first_epoch_saved)
    if not processes:
        assert "teacher: skeleton_tiny" in second and "already trained" in second  # the teacher was not trained again

    final = _run(killed, processes, tmp_path)
    assert "resuming from" in final and "marked" in final and "FAILED" in final
    got = pl.read_csv(next(runs.rglob("lift.csv")))
    assert got.select("model", "role", "NE", "AUC", "calibration").equals(expected.select("model", "role", "NE", "AUC", "calibration"))

    leftovers = [p for p in runs.rglob("*") if p.name.endswith(".tmp") or p.name == "checkpoints" or p.suffix == ".ckpt"]
    assert leftovers == []
    shards = list(runs.rglob("knowledge-*/*.parquet"))  # one table, complete: a file, or a shard per process
    assert len(shards) == (2 if processes else 1)
    assert pl.read_parquet(shards).height > 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'killed' / 'mlflow.db'}")
    all_runs = client.search_runs([client.get_experiment_by_name("killme").experiment_id])
    failed = [r for r in all_runs if r.info.status == "FAILED"]
    assert {r.data.tags.get("role") for r in failed} >= ({"student"} if processes else {"knowledge", "student"})  # the killed attempts
    assert all("abandoned" in r.data.tags for r in failed)
    assert not [r for r in all_runs if r.info.status == "RUNNING"]

"""Ctrl-C (SIGINT) or a scheduler's SIGTERM during training: `gem-transfer run` stops at once — it
does not finish its training, as Lightning's own SIGTERM handling would, and exit 0 — with one line
and exit code 130 / 143, its MLflow runs of the attempt end KILLED, nothing is left half-written, and
the same command run again resumes and completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, time_limit, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate
from transfer.util.interrupt import EXIT_INTERRUPTED, EXIT_TERMINATED, MESSAGE, TERMINATED


def _command(recipe: Path) -> list[str]:
    return [sys.executable, "-u", "-m", "transfer.cli", "run", str(recipe)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _interrupt_when(recipe: Path, cwd: Path, marker: str, then, signum: int) -> tuple[int, str, str]:
    """Start the run, send it `signum` (SIGINT: what Ctrl-C sends) once `marker` is printed and
    `then()` holds; → exit code, stdout, stderr."""
    process = subprocess.Popen(_command(recipe), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=_env())
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            while not then():
                assert process.poll() is None, "the run ended before it could be interrupted:\n" + "".join(seen)
                time.sleep(0.005)
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=time_limit(120))
    return process.returncode, "".join(seen) + out, err


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "exit_code", "message"), [(signal.SIGINT, EXIT_INTERRUPTED, MESSAGE),
                                                              (signal.SIGTERM, EXIT_TERMINATED, TERMINATED)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_training_stops_with_one_line_and_a_rerun_resumes(tmp_path, signum, exit_code, message):
    dataset = write_dataset(tmp_path, generate(SyntheticSpec(rows=20_000, days=6, seed=5)))
    recipe = write_recipe(tmp_path, dataset, name="ctrlc", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 16}], trainer={"max_epochs": 2, "progress": False})
    runs = tmp_path / "runs"

    def training() -> bool:  # its first epoch saved: the baseline is in the middle of training
        return any(runs.glob("stages/vm-*/checkpoints/last.ckpt"))

    code, out, err = _interrupt_when(recipe, tmp_path, "▸ baseline: ig_stories_click", training, signum)
    assert code == exit_code, out + err
    assert err.splitlines()[-1] == message and err.count(message) == 1
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "| model " not in out  # it did not go on to the lift table
    assert not list(runs.rglob("*.tmp"))

    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ctrlc").experiment_id
    statuses = {r.data.tags.get("role", "recipe"): r.info.status for r in client.search_runs([experiment])}
    assert statuses["baseline"] == "KILLED" and statuses["recipe"] == "KILLED" and statuses["teacher"] == "FINISHED"

    if signum == signal.SIGTERM:
        return  # resuming after an interrupt is the same path whatever the signal: the SIGINT case reruns
    done = subprocess.run(_command(recipe), capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=time_limit(600))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "already trained" in done.stdout and "resuming from" in done.stdout  # the teacher reused, the baseline resumed
    assert "| model " in done.stdout
    assert not [r for r in client.search_runs([experiment]) if r.info.status == "RUNNING"]

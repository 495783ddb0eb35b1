"""Two runs of the same recipe started together, on one fresh output folder and MLflow store: both
finish, each stage is built once (the second run waits for the first's lock, then reuses it), and
both print the same lift table."""

from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pytest

from tests.conftest import REPO, time_limit, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate


@pytest.mark.slow
def test_two_runs_of_one_recipe_at_once_build_each_stage_once(tmp_path):
    dataset = write_dataset(tmp_path, generate(SyntheticSpec(rows=6_000, days=6, seed=2)))
    recipe = write_recipe(tmp_path, dataset, name="together", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "transfer.cli", "run", str(recipe)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    outputs = [run.communicate(timeout=time_limit(900)) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out[-2000:] + err[-2000:]
    printed = "".join(out for out, _ in outputs)
    for stage in ("teacher: skeleton_tiny", "knowledge: scoring", "baseline: ig_stories_click", "student: ig_stories_click"):
        assert printed.count(f"▸ {stage}") == 1, stage  # built by one run only
    assert "already trained" in printed
    tables = [out.split("| model")[1].split("\n\n")[0] for out, _ in outputs]
    without_run_ids = [[line.rsplit("|", 2)[0] for line in table.splitlines()] for table in tables]  # run_id: the last column
    assert without_run_ids[0] == without_run_ids[1]
    assert pl.read_csv(next((tmp_path / "runs").rglob("lift.csv"))).height == 3

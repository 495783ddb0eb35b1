"""The stage cache reuses a stage only when nothing that changes its output changed: an unchanged
rerun trains nothing, a student's setting reuses the teacher and its knowledge, an edited loss
retrains, and cached files that were tampered with or damaged are never reused (nor run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_cli, time_limit, write_dataset, write_recipe
from transfer.data.synthetic import SyntheticSpec, generate

PACKAGES = ("transfer", "teacher", "students", "domain_fms", "adapters")


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(SyntheticSpec(rows=8_000, days=6, seed=11))


def _recipe(folder: Path, log: pl.DataFrame, **sections) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dataset = write_dataset(folder, log)
    return write_recipe(folder, dataset, name="reuse", teacher={"model": "skeleton_tiny", "batch_size": 256},
                        students=[{"vertical": "ig_stories_click", "batch_size": 64}],
                        tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"}, **sections)


def _lift(folder: Path) -> pl.DataFrame:
    return pl.read_csv(next((folder / "runs").rglob("lift.csv"))).drop("run_id")  # the results (run ids are new each run)


def _trained(out: str) -> list[str]:
    """The models a run trained (progress lines of trainings that were not reused)."""
    return [line for line in out.splitlines() if line.startswith("▸ ") and ("teacher:" in line or "baseline:" in line or "student:" in line)]


@pytest.mark.slow
def test_an_unchanged_rerun_trains_nothing_and_a_students_setting_reuses_the_teacher(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    code, first, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert len(_trained(first)) == 3  # teacher, baseline, student
    code, again, _ = run_cli(capsys, "run", str(recipe))
    assert code == 0 and _trained(again) == [] and "▸ knowledge" not in again
    assert again.count("already trained") == 3 and "already generated, reused" in again

    code, changed, _ = run_cli(capsys, "run", str(recipe), "trainer.max_epochs=2", "students.0.lr=3e-3")  # the README's example
    assert code == 0
    assert "teacher: skeleton_tiny" in changed and "already generated, reused" in changed
    assert [line.split(" on ")[0] for line in _trained(changed)] == ["▸ baseline: ig_stories_click", "▸ student: ig_stories_click"]


@pytest.mark.slow
def test_a_reused_vm_reports_the_epoch_its_training_kept(tmp_path, log, capsys):
    """The epoch a VM kept on validation travels with its cached weights: a rerun that reuses them logs
    the same `best_epoch` and shows the same flags (a VM that kept its start says so either way)."""
    recipe = _recipe(tmp_path, log)
    window = ["data.validation.days=1", "data.eval.days=1"]
    code, _, err = run_cli(capsys, "run", str(recipe), *window)
    assert code == 0, err
    code, again, err = run_cli(capsys, "run", str(recipe), *window)
    assert code == 0 and again.count("already trained") == 3, err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("reuse").experiment_id], order_by=["attributes.start_time ASC"])
    for role in ("baseline", "student"):
        first, second = [r for r in runs if r.data.tags.get("role") == role]
        assert "reused_from_run_id" not in first.data.tags and second.data.tags["reused_from_run_id"] == first.info.run_id
        assert second.data.metrics["best_epoch"] == first.data.metrics["best_epoch"] in (0.0, 1.0)
        assert ("kept its start" in second.data.tags.get("lift_flags", "")) == (first.data.metrics["best_epoch"] == 0)
    tables = sorted((tmp_path / "runs").rglob("lift.csv"), key=lambda path: path.stat().st_mtime)
    assert pl.read_csv(tables[0])["flags"].to_list() == pl.read_csv(tables[-1])["flags"].to_list()


def _run_from(source: Path, recipe: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run([sys.executable, "-m", "transfer.cli", "run", str(recipe)], capture_output=True, text=True,
                          env=env, cwd=source, timeout=time_limit(900))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_an_edited_loss_retrains_only_what_it_changes(tmp_path, log):
    source = tmp_path / "source"
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    recipe = _recipe(tmp_path / "work", log)
    _run_from(source, recipe)
    before = _lift(tmp_path / "work")

    losses = source / "adapters" / "distillation.py"  # a deliberately wrong distillation loss: 50·BCE(z, 1 − targets)
    text = losses.read_text()
    wrong = text.replace("return F.binary_cross_entropy_with_logits(logits / temperature, targets) * temperature**2",
                         "return 50 * F.binary_cross_entropy_with_logits(logits / temperature, 1 - targets) * temperature**2")
    assert wrong != text
    losses.write_text(wrong)
    rerun = _run_from(source, recipe)
    assert [line.split(" on ")[0] for line in _trained(rerun.stdout)] == ["▸ student: ig_stories_click"]  # a technique's loss: the student only
    assert rerun.stdout.count("already trained") == 2 and "already generated, reused" in rerun.stdout  # teacher, baseline, knowledge
    after = _lift(tmp_path / "work")
    student = pl.col("role") == "student"
    assert after.filter(student)["NE"][0] != pytest.approx(before.filter(student)["NE"][0], rel=1e-4)


class _Planted:
    """Unpickling this would run a command (what a planted checkpoint could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_tampered_or_planted_cache_files_are_never_reused_or_run(tmp_path, log, capsys):
    recipe = _recipe(tmp_path, log)
    assert run_cli(capsys, "run", str(recipe))[0] == 0
    expected = _lift(tmp_path).drop("serving budget")
    stages = tmp_path / "runs" / "stages"

    (knowledge,) = stages.glob("knowledge-*/*.parquet")  # every logit set to 8.0, provenance intact
    table = pq.read_table(knowledge)
    logits = [name for name in table.column_names if name.startswith("logit_")]
    for name in logits:
        table = table.set_column(table.column_names.index(name), name, [np.full(table.num_rows, 8.0, dtype=np.float32)])
    pq.write_table(table, knowledge)
    (weights,) = stages.glob("teacher-*/model.pt")  # the teacher's weights replaced by zeros
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(weights, weights_only=True).items()}, weights)
    (student,) = [p for p in stages.glob("vm-*") if (p / "model.pt").is_file() and "student" in _run_role(p)]
    marker = tmp_path / "planted-code-ran"
    (student / "model.pt").unlink()  # the student as if killed after an epoch, with a planted checkpoint
    (student / "checkpoints").mkdir()
    torch.save({"state_dict": _Planted(marker)}, student / "checkpoints" / "last.ckpt")

    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert "teacher-" in out and "model.pt: its checksum does not match" in out
    assert "knowledge" in out and "its checksum does not match" in out and "generating the knowledge again" in out
    assert "not a loadable checkpoint" in out and not marker.exists()
    assert _lift(tmp_path).drop("serving budget").equals(expected)


def _run_role(stage: Path) -> str:
    """Which role trained a VM stage (from the MLflow run id in its metadata, via the tracking store)."""
    from mlflow.tracking import MlflowClient

    run_id = json.loads((stage / "meta.json").read_text())["run_id"]
    store = stage.parents[2] / "mlflow.db"
    return MlflowClient(f"sqlite:///{store}").get_run(run_id).data.tags["role"]

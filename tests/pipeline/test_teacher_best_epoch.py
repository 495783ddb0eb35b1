"""`teacher.keep_best_epoch`: the teacher keeps its epoch with the lowest mean NE over tasks on the
validation window (its start as epoch 0), as every VM does, and records it beside its cached weights;
without a validation window the option is refused in one line."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_cli

TINY = str(REPO / "recipes" / "tiny.yaml")


def _teacher_run(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'teacher'", order_by=["attributes.start_time DESC"])
    return runs[0]


@pytest.mark.slow
def test_the_teacher_keeps_its_best_validation_epoch(tmp_path, capsys):
    """(A rerun reads the kept epoch back from the stage folder as a VM's does: `fit_or_reuse`, tested
    with the VMs in tests/pipeline/test_stage_reuse.py.)"""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["run", TINY, f"output_dir={tmp_path}", f"tracking.uri={uri}", "teacher.keep_best_epoch=true", "teacher.max_epochs=2",
            "trainer.progress=false"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    kept = _teacher_run(uri).data.metrics["best_epoch"]
    assert kept in (0.0, 1.0, 2.0)
    (meta,) = (tmp_path / "stages").glob("teacher-*/meta.json")
    assert json.loads(meta.read_text())["kept_epoch"] == kept  # what a rerun reads back with the cached weights


def test_keeping_the_teachers_best_epoch_needs_a_validation_window(capsys):
    code, _, err = run_cli(capsys, "validate", TINY, "teacher.keep_best_epoch=true", "data.validation.days=0")
    assert code == 2
    assert err.strip().count("\n") == 0 and "teacher.keep_best_epoch: found true with no validation window" in err

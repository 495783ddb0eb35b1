"""End to end through the CLI, as a modeler runs it: the quickstart recipe, a real Lightning Trainer,
a real sqlite MLflow store. Seeded, so the outcome is reproducible. The quickstart runs on an eighth of its
log (its windows and models as shipped): the full 400k impressions are `make quickstart`'s, and take far
longer for no check this test makes."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, time_limit


def _bounds(cell: str) -> tuple[float, float]:
    low, high = cell.strip("[]").split(",")
    return float(low), float(high)


@pytest.mark.slow
def test_quickstart_reports_each_lift_with_an_interval_and_its_verdict(tmp_path):
    db = tmp_path / "mlflow.db"
    cmd = [
        sys.executable, "-m", "transfer.cli", "run", str(REPO / "recipes" / "quickstart.yaml"),
        f"output_dir={tmp_path / 'runs'}", f"tracking.uri=sqlite:///{db}", "trainer.progress=false",
        f"data.cache_dir={REPO / '.cache' / 'gem-transfer'}", "data.synthetic.rows=50000",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=time_limit(900))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| teacher " in done.stdout and "transfer ratio" in done.stdout and "recal NE" in done.stdout
    assert f"sqlite:///{db}" in done.stdout  # says where the MLflow runs are

    (lift_csv,) = (tmp_path / "runs" / "quickstart").glob("*/lift.csv")
    table = pl.read_csv(lift_csv)
    lifts = {}
    for vertical in ("ig_stories_click", "fb_feed_conversion"):
        rows = table.filter(pl.col("model") == vertical)
        baseline = rows.filter(pl.col("role") == "baseline")["NE"].item()
        student = rows.filter(pl.col("role") == "student").row(0, named=True)
        lift = 100 * (baseline - student["NE"]) / baseline
        assert student["lift %"] == pytest.approx(lift, abs=0.01)
        low, high = _bounds(student["lift % 95% CI"])
        assert low <= lift <= high and int(student["eval positives"]) > 0
        # the verdict is the interval's, not the point estimate's
        expected = "better" if low > 0 else "worse" if high < 0 else "not distinguishable"
        assert student["vs baseline"] == expected, vertical
        assert 0 < student["recal NE"] < 2
        lifts[vertical] = lift

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["teacher.model"] == "skeleton_tiny"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["role"] for r in children) == ["stage", "teacher"]
    (stage,) = [r for r in children if r.data.tags["role"] == "stage"]
    assert stage.data.tags["producer"] == "teacher" and stage.data.tags["consumers"] == "students"
    in_stage = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage.info.run_id]
    roles = sorted(r.data.tags["role"] for r in in_stage)
    assert roles == ["baseline", "baseline", "knowledge", "student", "student"]
    (teacher,) = [r for r in children if r.data.tags["role"] == "teacher"]
    for run in in_stage:
        if run.data.tags["role"] in ("student", "baseline"):
            assert {"eval_ne", "eval_auc", "eval_calibration", "lift_pct"} <= set(run.data.metrics)
            # scored on the validation day too (for choosing knobs), a different slice from eval
            assert {"val_ne", "val_auc", "val_calibration", "val_recal_ne"} <= set(run.data.metrics)
            assert run.data.metrics["val_ne"] != run.data.metrics["eval_ne"]
            # it kept its best epoch there, its start (the regression) counted as epoch 0: never worse than the start
            assert run.data.metrics["best_epoch"] in range(0, 3)  # of the recipe's 2 epochs
            assert run.data.metrics["val_ne"] <= run.data.metrics["val_ne_at_start"] + 1e-9
            assert run.data.tags["surface"] in ("ig_stories", "fb_feed")
        if run.data.tags["role"] == "student":
            assert run.data.tags["producer"] == "skeleton_tiny"
            assert run.data.tags["producer_run_id"] == teacher.info.run_id
            assert run.data.tags["techniques"] == "vanilla_kd"
            assert run.data.metrics["lift_pct"] == pytest.approx(lifts[run.data.tags["vertical"]], abs=0.01)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"recipe.yaml", "lift.csv"} <= artifacts


def test_data_synth_writes_a_seeded_parquet(tmp_path):
    out = tmp_path / "log.parquet"
    cmd = [sys.executable, "-m", "transfer.cli", "data", "synth", "--rows", "5000", "--out", str(out), "--seed", "4"]
    subprocess.run(cmd, check=True, capture_output=True)
    first = pl.read_parquet(out)
    subprocess.run(cmd, check=True, capture_output=True)
    assert first.height == 5000
    assert first.equals(pl.read_parquet(out))

"""Hierarchical transfer end to end through the CLI on a small real parquet log: teacher → one
domain FM per domain → the VMs, each stage its own MLflow child run, lineage on every model run."""

from __future__ import annotations

import polars as pl
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, write_dataset, write_recipe

STAGE_1 = {"producer": "teacher", "consumers": "domain_fms", "distillation": {"weight": 1.0, "head": "auxiliary"},
           "representation": {"weight": 0.5, "loss": "infonce"}, "sharing": {"modules": ["embeddings.ad_id"], "freeze": False}}
STAGE_2 = {"producer": "domain_fms", "consumers": "students", "distillation": {"weight": 1.0, "head": "auxiliary"},
           "representation": {"weight": 0.5}, "sharing": {"modules": ["events.context"]}, "adapter": {"enabled": True, "fit_days": 1}}


def test_hierarchical_recipe_runs_stages_in_order_with_lineage(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    db = tmp_path / "mlflow.db"
    recipe = write_recipe(
        tmp_path, dataset, name="hier",
        teacher={"model": "skeleton_tiny", "batch_size": 256},
        domain_fms={"model": "dfm_tiny", "batch_size": 256},
        transfer={"strategy": "hierarchical", "stages": [STAGE_1, STAGE_2]},
        students=[{"vertical": "ig_stories_click", "batch_size": 64}, {"vertical": "fb_feed_click", "batch_size": 64}],
        tracking={"uri": f"sqlite:///{db}"},
    )
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    assert "dfm_tiny:instagram" in out and "dfm_tiny:facebook" in out

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("hier").experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())  # beside the sqlite store
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    (teacher,) = [r for r in children if r.data.tags["role"] == "teacher"]
    stages = sorted((r for r in children if r.data.tags["role"] == "stage"), key=lambda r: r.data.tags["stage"])
    assert [(s.data.tags["producer"], s.data.tags["consumers"]) for s in stages] == [("teacher", "domain_fms"), ("domain_fms", "students")]
    assert teacher.info.start_time <= stages[0].info.start_time <= stages[0].info.end_time <= stages[1].info.start_time

    def nested(stage, role):
        return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage.info.run_id and r.data.tags["role"] == role]

    fms = {r.data.tags["domain"]: r for r in nested(stages[0], "domain_fm")}
    assert set(fms) == {"facebook", "instagram"}
    for fm in fms.values():
        assert fm.data.tags["producer"] == "skeleton_tiny"
        assert fm.data.tags["producer_run_id"] == teacher.info.run_id
        assert fm.data.tags["techniques"] == "aux_kd,representation_infonce,sharing"
    students = {r.data.tags["vertical"]: r for r in nested(stages[1], "student")}
    for vertical, domain in (("ig_stories_click", "instagram"), ("fb_feed_click", "facebook")):
        run = students[vertical]
        assert run.data.tags["producer"] == f"dfm_tiny:{domain}"
        assert by_id[run.data.tags["producer_run_id"]].data.tags["domain"] == domain
        assert run.data.tags["techniques"] == "aux_kd,representation_cosine,sharing_frozen,adapter"
        assert {"eval_ne", "lift_pct", "teacher_lead_ci_low", "mde_lift_pct"} <= set(run.data.metrics)
        metrics = run.data.metrics  # the adapter was fit on the last day's labelled rows before the VM trained
        assert metrics["adapter_fit_rows"] > 0 and metrics["adapter_corrected_rows"] >= metrics["adapter_fit_rows"]
        assert metrics["adapter_fit_bce_after"] < metrics["adapter_fit_bce_before"]
    knowledge = nested(stages[1], "knowledge")
    assert sorted(k.data.tags["producer"] for k in knowledge) == ["dfm_tiny:facebook", "dfm_tiny:instagram"]

    (lift_csv,) = (tmp_path / "runs" / "hier").glob("*/lift.csv")
    table = pl.read_csv(lift_csv)
    assert table.filter(pl.col("role") == "domain_fm")["model"].sort().to_list() == ["dfm_tiny:facebook", "dfm_tiny:instagram"]

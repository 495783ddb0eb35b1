"""VMs declared in the recipe (no package): validated like catalog VMs, trained, tracked and
registered by name; `ls verticals --dataset` lists what a dataset can train."""

from __future__ import annotations

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, write_dataset, write_recipe

POSITION_VM = {"name": "position_1_click", "surfaces": ["ig_stories"], "task": "click", "architecture": "mlp_xs",
               "sizes": {"hidden": [16]}, "owner": "bandit-team", "budget": {"max_params": 200_000, "max_p99_ms": 50}}


def test_an_inline_vm_trains_is_tracked_and_registers_like_a_catalog_one(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = write_recipe(tmp_path, dataset, verticals=[POSITION_VM], students=[{"vertical": "position_1_click", "batch_size": 64}],
                          teacher={"model": "skeleton_tiny", "batch_size": 256}, tracking={"uri": uri, "experiment": "inline", "log_models": True})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    table = pl.read_csv(next((tmp_path / "runs").rglob("lift.csv")))
    student = table.filter(pl.col("role") == "student").row(0, named=True)
    assert (student["model"], student["slice"], student["serving budget"]) == ("position_1_click", "ig_stories/click", "ok")
    client = MlflowClient(uri)
    run = client.get_run(student["run_id"])
    assert run.data.tags["vertical"] == "position_1_click"
    assert client.get_run(run.data.tags["recipe_run_id"]).data.params["verticals.0.architecture"] == "mlp_xs"  # the recipe's declaration
    assert run.data.metrics["serving_params"] < 200_000
    assert run.data.metrics["wide_start"] == 1.0  # the wide & deep VM started at its regression before training
    assert "best_epoch" not in run.data.metrics  # no validation window: it keeps its last epoch

    code, out, err = run_cli(capsys, "register", student["run_id"], "--alias", "candidate", "--tracking-uri", uri)
    assert code == 0, err
    version = client.get_model_version_by_alias("position_1_click", "candidate")
    assert version.run_id == student["run_id"]
    assert "declared inline in recipe 'tiny'" in client.get_registered_model("position_1_click").description
    assert run.data.tags["declared_in"] == "recipe"

    client.delete_tag(student["run_id"], "declared_in")  # as if its name came from a package no longer installed
    code, _, err = run_cli(capsys, "register", student["run_id"], "--tracking-uri", uri)
    assert code == 2 and "'position_1_click'" in err and "is not in the catalog" in err


@pytest.mark.parametrize(("vm", "expected"), [
    ({"surfaces": ["position_9"]}, ["verticals.0", "serves surface(s) 'position_9'", "its surfaces: fb_feed"]),
    ({"task": "install"}, ["verticals.0", "serves task 'install'", "has tasks: click, conversion"]),
    ({"name": "ig_stories_click"}, ["verticals.0.name", "'ig_stories_click' is already a catalog vertical", "built-in"]),
    ({"architecture": "transformer"}, ["verticals.0.architecture", "'transformer'", "mlp_xs"]),
    ({"sizes": {"width": 3}}, ["verticals.0.sizes: unknown size 'width'", "dim, history_length, hidden"]),
    ({"budget": {"max_params": 0, "max_p99_ms": 5}}, ["verticals.0.budget.max_params", "> 0"]),
])
def test_a_bad_inline_vm_is_one_line_from_validate(tmp_path, capsys, small_log, vm, expected):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, verticals=[{**POSITION_VM, **vm}], students=[{"vertical": vm.get("name", "position_1_click")}])
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for fragment in expected:
        assert fragment in err


def test_ls_verticals_for_a_dataset_lists_what_it_can_train_and_what_needs_an_inline_vm(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log, trainable={"ig_stories": ["click"], "msg_inbox": ["click", "conversion"]})
    code, out, _ = run_cli(capsys, "ls", "verticals", "--dataset", str(dataset))
    assert code == 0
    listed = [line.strip() for line in out.splitlines()[1:]]
    names = [line.split(":")[0] for line in listed]
    assert names == ["ig_stories_click", "msg_inbox_click", "msg_inbox_conversion"]  # the stated pairs' catalog VMs, nothing else
    bad = write_dataset(tmp_path, small_log, trainable={"ig_stories": ["install"]})
    code, _, err = run_cli(capsys, "ls", "verticals", "--dataset", str(bad))
    assert code == 2 and "trainable.ig_stories: task 'install' is not in labels" in err


def test_a_dataset_of_new_surfaces_lists_its_pairs_for_inline_vms(tmp_path, capsys, small_log):
    positions = {f"position_{i}": "bandit" for i in range(3)}
    log = small_log.with_columns(pl.format("position_{}", pl.col("example_id") % 3).alias("surface"))
    dataset = write_dataset(tmp_path, log, surfaces=positions, labels={"click": "click"})
    code, out, _ = run_cli(capsys, "ls", "verticals", "--dataset", str(dataset))
    assert code == 0
    assert [line.split(":")[0].strip() for line in out.splitlines()[1:]] == [f"position_{i} × click" for i in range(3)]
    assert "declare one inline" in out
    recipe = write_recipe(tmp_path, dataset, verticals=[{**POSITION_VM, "surfaces": ["position_1"]}], students=[{"vertical": "position_1_click"}])
    code, out, err = run_cli(capsys, "data", "check", str(recipe))
    assert code == 0 and out.strip().splitlines()[-1].startswith("ok:"), err

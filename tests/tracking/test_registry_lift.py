"""Platform teams and analysts on a real MLflow sqlite store: serving cost logged per VM, over-budget
VMs flagged and refused by `register`, registration with lineage (loaded back with the standard
MLflow API from its pickle-free torch.export graph, scoring the eval window as the run did), and `gem-transfer lift` built from the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import mlflow.models
import mlflow.pytorch
import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_cli, time_limit, write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.evaluation.metrics import NormalizedEntropy

OVER_BUDGET = {"vertical": "fb_feed_click", "batch_size": 64, "sizes": {"hidden": [1024, 1024]}}  # > 1M parameters


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, small_log):
    """One recipe run (a VM within budget, one over) and a second with another technique and its
    vanilla-KD reference (for the gain ratio), in one store."""
    folder = tmp_path_factory.mktemp("registry")
    dataset = write_dataset(folder, small_log)
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    common = dict(teacher={"model": "skeleton_tiny", "batch_size": 256}, tracking={"uri": uri, "experiment": "lift", "log_models": True})
    first = write_recipe(folder, dataset, name="kd", students=[{"vertical": "ig_stories_click", "batch_size": 64}, OVER_BUDGET], **common)
    second = write_recipe(folder, dataset, name="aux", students=[{"vertical": "ig_stories_click", "batch_size": 64}],
                          transfer={"vanilla_reference": True, "stages": [{"producer": "teacher", "consumers": "students",
                                                                           "distillation": {"weight": 1.0, "head": "auxiliary"}}]}, **common)
    for recipe in (first, second):
        assert run_cli_quiet(recipe) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("lift").experiment_id])
    return {"uri": uri, "client": client, "runs": runs, "recipe": first, "folder": folder}


def run_cli_quiet(recipe) -> int:
    from transfer.cli import main

    return main(["run", str(recipe)])


def _one(runs, **tags):
    (run,) = [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]
    return run


def test_each_vm_run_logs_its_serving_cost_and_budget_status(tracked):
    within = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="kd")
    over = _one(tracked["runs"], role="student", vertical="fb_feed_click")
    for run in (within, over):
        metrics = run.data.metrics
        assert metrics["serving_params"] > 0 and 0 < metrics["serving_p50_ms"] <= metrics["serving_p99_ms"]
    assert within.data.tags["budget_status"] == "within budget"
    assert over.data.metrics["serving_params"] > 1_000_000
    assert over.data.tags["budget_status"].startswith("over budget: parameters")
    lift_csv = pl.read_csv(next(tracked["folder"].rglob("kd/*/lift.csv")))
    flagged = lift_csv.filter(pl.col("role") == "student").select("model", "serving budget").rows()
    assert ("ig_stories_click", "ok") in flagged
    assert any(model == "fb_feed_click" and status.startswith("OVER: parameters") for model, status in flagged)


def test_each_vm_row_says_its_forward_flops_against_the_teachers(tracked):
    """The lift table's "FLOPs vs teacher": forward FLOPs per example (full histories) of the VM over
    the teacher's, each row its own model's (the same architecture here on a VM's baseline and student
    rows), blank on the teacher's; from the run and from the store alike."""
    from transfer.catalog import catalog
    from transfer.evaluation.cost import forward_flops_per_example

    inputs = prepare_data(load_recipe(tracked["recipe"]).data).log.inputs
    teacher = forward_flops_per_example(catalog("teacher")["skeleton_tiny"].build(inputs), inputs)
    lift_csv = pl.read_csv(next(tracked["folder"].rglob("kd/*/lift.csv")))
    for vertical, sizes in (("ig_stories_click", {}), ("fb_feed_click", OVER_BUDGET["sizes"])):
        by_hand = forward_flops_per_example(catalog("vertical")[vertical].build(inputs, sizes), inputs) / teacher
        rows = lift_csv.filter((pl.col("model") == vertical) & pl.col("role").is_in(["baseline", "student"]))
        assert rows["FLOPs vs teacher"].to_list() == pytest.approx([by_hand, by_hand])
        student = _one(tracked["runs"], role="student", vertical=vertical, recipe="kd")
        assert student.data.metrics["flops_vs_teacher"] == pytest.approx(by_hand)
    assert lift_csv.filter(pl.col("role") == "teacher")["FLOPs vs teacher"].is_null().all()
    assert 0 < lift_csv.filter(pl.col("model") == "ig_stories_click")["FLOPs vs teacher"][0] < 1 / 20  # the default VM: under 1/20 of the skeleton


def test_register_records_lineage_and_the_model_loads_back_scoring_identically(tracked, capsys, monkeypatch):
    run = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="kd")
    code, out, err = run_cli(capsys, "register", run.info.run_id, "--alias", "candidate", "--tracking-uri", tracked["uri"])
    assert code == 0, err
    client = tracked["client"]
    version = client.get_model_version_by_alias("ig_stories_click", "candidate")
    tags = version.tags
    teacher = _one(tracked["runs"], role="teacher", recipe="kd")
    assert tags["producer"] == "skeleton_tiny" and tags["producer_run_id"] == teacher.info.run_id
    assert tags["recipe"] == "kd" and tags["recipe_hash"] == load_recipe(tracked["recipe"]).hash
    assert tags["knowledge_cutoff"] == run.data.tags["knowledge_cutoff"] and "staleness_days" in tags
    assert tags["techniques"] == "vanilla_kd"
    assert float(tags["lift_pct"]) == pytest.approx(run.data.metrics["lift_pct"], rel=1e-5)
    if run.data.metrics["teacher_lead_ci_low"] > 0:  # a transfer ratio exists only where the teacher's lead is resolvable
        assert float(tags["transfer_ratio"]) == pytest.approx(run.data.metrics["transfer_ratio"], rel=1e-5)
    else:
        assert "transfer_ratio" not in tags and "transfer_ratio" not in run.data.metrics

    # the model is a torch.export graph ("pt2"), no pickle: it loads with pickle deserialization refused;
    # its signature names its input tensors, in order
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    uri = "models:/ig_stories_click@candidate"
    info = mlflow.models.get_model_info(uri)
    inputs = info.signature.inputs.input_names()
    assert inputs[0] == "categorical" and "hist_mask" in inputs
    model = mlflow.pytorch.load_model(uri)
    data = prepare_data(load_recipe(tracked["recipe"]).data)
    rows = data.log.surface_rows(data.eval_rows, "ig_stories")
    ne = NormalizedEntropy()
    with torch.no_grad():
        for batch in window_loader(WindowBatches(data.log, rows, info.metadata["history_length"]), 4096, shuffle=False):
            ne.update(model(*[batch[name] for name in inputs])[:, 0], batch["labels"][:, data.log.tasks.index("click")])
    assert float(ne.compute()) == pytest.approx(run.data.metrics["eval_ne"], abs=1e-6)


@pytest.mark.parametrize(
    ("pick", "expected"),
    [
        (lambda runs: _one(runs, role="baseline", vertical="ig_stories_click", recipe="kd").info.run_id, "no-transfer baseline"),
        (lambda runs: _one(runs, role="teacher", recipe="kd").info.run_id, "is a teacher run"),
        (lambda runs: "0123456789abcdef", "not found in the tracking store"),
        (lambda runs: _one(runs, role="student", vertical="fb_feed_click").info.run_id, "over its serving budget: parameters"),
    ],
    ids=["baseline", "other-kind", "unknown", "over-budget"],
)
def test_register_refuses_with_one_clear_line(tracked, capsys, pick, expected):
    code, _, err = run_cli(capsys, "register", pick(tracked["runs"]), "--tracking-uri", tracked["uri"])
    assert code == 2
    (line,) = err.strip().splitlines()
    assert expected in line


def test_a_student_run_that_logged_no_model_is_refused_naming_the_recipe_key(tmp_path, capsys):
    """A finished student run within its budget, from a recipe with tracking.log_models=false: no version
    is made and the line says which key to set."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("unlogged"), tags={"role": "student", "vertical": "ig_stories_click"})
    for key, value in {"serving_params": 1_000.0, "serving_p50_ms": 0.1, "serving_p99_ms": 0.2}.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status="FINISHED")
    capsys.readouterr()  # the store's creation lines
    code, _, err = run_cli(capsys, "register", run.info.run_id, "--tracking-uri", uri)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "logged no serving model" in line and "tracking.log_models=true" in line
    assert client.search_registered_models() == []


def test_lift_is_built_from_the_store_with_recipe_runs_side_by_side(tracked, capsys, tmp_path):
    code, out, err = run_cli(capsys, "lift", "--experiment", "lift", "--vertical", "ig_stories_click",
                             "--tracking-uri", tracked["uri"], "--out", str(tmp_path))
    assert code == 0, err
    table = pl.read_csv(tmp_path / "lift.csv")
    students = table.filter(pl.col("role") == "student").sort("recipe")
    assert students["recipe"].to_list() == ["aux", "kd"] and students["variant"].to_list() == ["aux_kd", "vanilla_kd"]
    assert set(table["role"]) == {"teacher", "baseline", "vanilla_kd", "student"} and set(table["vertical"]) == {"ig_stories_click"}
    for row in students.iter_rows(named=True):  # the numbers are the runs' own metrics
        run = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe=row["recipe"])
        assert row["NE"] == pytest.approx(run.data.metrics["eval_ne"], rel=1e-9)
        assert row["lift %"] == pytest.approx(run.data.metrics["lift_pct"], rel=1e-6)
        if "transfer_ratio" in run.data.metrics:
            assert row["transfer ratio"] == pytest.approx(run.data.metrics["transfer_ratio"], rel=1e-6)
        else:  # the teacher's lead is not resolvable on this small log: no ratio, and the row says why
            assert row["transfer ratio"] is None and "transfer ratio " in row["flags"]
    baselines = table.filter(pl.col("role") == "baseline")
    assert baselines["lift %"].to_list() == [0.0, 0.0]
    assert (tmp_path / "lift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = tracked["client"]
    for recipe in ("kd", "aux"):
        parent = _parent(tracked["runs"], recipe)
        names = {a.path for a in client.list_artifacts(parent.info.run_id, "lift")}
        assert names == {"lift/lift.csv", "lift/lift.png"}


def _parent(runs, recipe):
    (run,) = [r for r in runs if r.data.tags.get("recipe") == recipe and "mlflow.parentRunId" not in r.data.tags]
    return run


def test_lift_with_nothing_to_show_is_one_clear_line(tracked, capsys, tmp_path):
    code, _, err = run_cli(capsys, "lift", "--since", "2999-01-01", "--tracking-uri", tracked["uri"], "--out", str(tmp_path))
    assert code == 2 and "no vertical-model runs" in err and "since 2999-01-01" in err
    code, _, err = run_cli(capsys, "lift", "--since", "yesterday", "--tracking-uri", tracked["uri"], "--out", str(tmp_path))
    assert code == 2 and "--since: found 'yesterday'" in err
    assert not (tmp_path / "lift.csv").exists()


def test_register_refuses_a_reserved_alias_before_registering_anything(tracked, capsys):
    run = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="aux")
    code, _, err = run_cli(capsys, "register", run.info.run_id, "--alias", "latest", "--tracking-uri", tracked["uri"])
    assert code == 2 and "--alias: found 'latest'" in err
    assert tracked["client"].search_model_versions(f"run_id = '{run.info.run_id}'") == []


def test_each_student_carries_its_interval_in_the_run_table_in_mlflow_and_in_lift(tracked, capsys, tmp_path):
    run_table = pl.read_csv(next((tracked["folder"] / "runs" / "kd").rglob("lift.csv")))
    in_run = run_table.filter((pl.col("role") == "student") & (pl.col("model") == "ig_stories_click")).row(0, named=True)
    student = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="kd")
    metrics = student.data.metrics
    assert metrics["lift_pct_ci_low"] < metrics["lift_pct_ci_high"] and metrics["eval_positives"] > 0
    assert in_run["lift % 95% CI"] == f"[{metrics['lift_pct_ci_low']:.2f}, {metrics['lift_pct_ci_high']:.2f}]"
    assert str(in_run["eval positives"]) == str(int(metrics["eval_positives"]))
    verdict = "better" if metrics["lift_pct_ci_low"] > 0 else "worse" if metrics["lift_pct_ci_high"] < 0 else "not distinguishable"
    assert in_run["vs baseline"] == verdict
    baseline = _one(tracked["runs"], role="baseline", vertical="ig_stories_click", recipe="kd")
    assert "lift_pct_ci_low" not in baseline.data.metrics  # a baseline has no lift to bound

    code, _, err = run_cli(capsys, "lift", "--experiment", "lift", "--tracking-uri", tracked["uri"], "--out", str(tmp_path))
    assert code == 0, err
    from_store = pl.read_csv(tmp_path / "lift.csv").filter(
        (pl.col("role") == "student") & (pl.col("recipe") == "kd") & (pl.col("vertical") == "ig_stories_click")).row(0, named=True)
    for column in ("lift % 95% CI", "TR 95% CI", "vs baseline", "eval positives"):
        assert str(from_store[column]) == str(in_run[column])


def test_a_vanilla_reference_gives_the_student_a_gain_ratio_with_its_interval_in_the_run_table_and_in_lift(tracked, capsys, tmp_path):
    run_table = pl.read_csv(next((tracked["folder"] / "runs" / "aux").rglob("lift.csv")))
    rows = {row["role"]: row for row in run_table.iter_rows(named=True)}
    assert set(rows) == {"teacher", "baseline", "vanilla_kd", "student"}
    student, vanilla, baseline = rows["student"], rows["vanilla_kd"], rows["baseline"]
    student_metrics = _one(tracked["runs"], role="student", recipe="aux").data.metrics
    resolvable = student_metrics["vanilla_gain_ci_low"] > 0  # vanilla KD's gain over the baseline, its interval above 0
    if resolvable:
        assert student["gain ratio"] == pytest.approx((baseline["NE"] - student["NE"]) / (baseline["NE"] - vanilla["NE"]), rel=1e-9)
    else:  # vanilla KD's gain is not resolvable on this small log: the ratio is undefined, and says so
        assert student["gain ratio"] is None and not student["GR 95% CI"] and "gain ratio undefined" in student["flags"]
    assert vanilla["gain ratio"] is None  # a gain ratio is the student's, over this reference
    assert vanilla["vs baseline"] in ("better", "worse", "not distinguishable")  # the reference has its own interval

    student_run = _one(tracked["runs"], role="student", recipe="aux")
    vanilla_run = _one(tracked["runs"], role="vanilla_kd", recipe="aux")
    assert student_run.data.tags["vanilla_kd_run_id"] == vanilla_run.info.run_id
    assert vanilla_run.data.tags["techniques"] == "vanilla_kd" and vanilla_run.data.tags["producer_run_id"] == student_run.data.tags["producer_run_id"]
    metrics = student_run.data.metrics
    shown = f"[{metrics['gain_ratio_ci_low']:.2f}, {metrics['gain_ratio_ci_high']:.2f}]" if resolvable else None
    assert (student["GR 95% CI"] or None) == shown
    low, high = metrics["ne_points_over_vanilla_ci_low"], metrics["ne_points_over_vanilla_ci_high"]
    assert low < high and student["vs vanilla KD"] == ("better" if low > 0 else "worse" if high < 0 else "not distinguishable")

    kd_table = pl.read_csv(next((tracked["folder"] / "runs" / "kd").rglob("lift.csv")))
    assert "gain ratio" not in kd_table.columns and "vanilla_kd" not in kd_table["role"].to_list()  # no reference: no columns

    code, _, err = run_cli(capsys, "lift", "--experiment", "lift", "--tracking-uri", tracked["uri"], "--out", str(tmp_path))
    assert code == 0, err
    from_store = pl.read_csv(tmp_path / "lift.csv").filter(pl.col("recipe") == "aux")
    assert sorted(from_store["role"]) == ["baseline", "student", "teacher", "vanilla_kd"]
    stored = from_store.filter(pl.col("role") == "student").row(0, named=True)
    for column in ("gain ratio", "GR 95% CI", "vs vanilla KD", "lift % 95% CI"):
        assert str(stored[column]) == str(student[column])


def _as_a_user(*argv: str, cwd, env_uri: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a fresh process from `cwd`, as a user's shell runs it (MLflow's URI variables unset unless given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")} | {"PYTHONPATH": str(REPO)}
    if env_uri:
        env["MLFLOW_TRACKING_URI"] = env_uri
    return subprocess.run([sys.executable, "-m", "transfer.cli", *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=time_limit(600))


@pytest.mark.slow
def test_concurrent_registrations_each_report_the_version_they_made(tracked, tmp_path):
    """Three `register` commands at once: three versions in the store, and each command printed its own."""
    run = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="aux")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")} | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "transfer.cli", "register", run.info.run_id, "--tracking-uri", tracked["uri"]]
    processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=time_limit(600)) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    printed = sorted(int(re.search(r"version (\d+)", out).group(1)) for out, _ in outputs)
    stored = sorted(int(v.version) for v in tracked["client"].search_model_versions(f"run_id = '{run.info.run_id}'"))
    assert printed == stored[-3:] and len(set(printed)) == 3  # the run's three newest versions (another test may register it too)


@pytest.mark.slow
def test_register_and_lift_work_as_a_user_runs_them_from_another_folder(tracked, tmp_path):
    """In a fresh process whose MLflow globals are unset: `--tracking-uri` is the store every call
    uses (none falls back to a ./mlflow.db), and the README's bare command reads ./gem_runs/mlflow.db."""
    run = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="aux")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _as_a_user("register", run.info.run_id, "--alias", "user_check", "--tracking-uri", tracked["uri"], cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "registered 'ig_stories_click' version" in done.stdout
    assert tracked["client"].get_model_version_by_alias("ig_stories_click", "user_check").run_id == run.info.run_id
    done = _as_a_user("lift", "--experiment", "lift", "--tracking-uri", tracked["uri"], cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "ig_stories_click" in done.stdout
    assert not (elsewhere / "mlflow.db").exists()  # no stray store in the working folder

    quickstart_folder = tmp_path / "project"  # where `make quickstart` ran: its store is ./gem_runs/mlflow.db
    (quickstart_folder / "gem_runs").mkdir(parents=True)
    shutil.copy(tracked["folder"] / "mlflow.db", quickstart_folder / "gem_runs" / "mlflow.db")
    done = _as_a_user("register", run.info.run_id, "--alias", "bare", cwd=quickstart_folder)
    assert done.returncode == 0, done.stderr
    assert not (quickstart_folder / "mlflow.db").exists()
    copied = MlflowClient(f"sqlite:///{quickstart_folder / 'gem_runs' / 'mlflow.db'}")
    assert copied.get_model_version_by_alias("ig_stories_click", "bare").run_id == run.info.run_id


def test_every_row_names_its_run_and_slice_and_its_flags_are_the_same_in_the_run_in_mlflow_and_in_lift(tracked, capsys, tmp_path):
    run_table = pl.read_csv(next((tracked["folder"] / "runs" / "kd").rglob("lift.csv")))
    by_id = {r.info.run_id: r for r in tracked["runs"]}
    teacher_runs = [r for r in tracked["client"].search_runs([tracked["runs"][0].info.experiment_id])
                    if r.data.tags.get("role") == "teacher" and r.data.tags.get("recipe") == "kd"]
    for row in run_table.iter_rows(named=True):
        if row["role"] == "teacher":
            assert row["run_id"] in {r.info.run_id for r in teacher_runs}  # the teacher's own run, not the student's
        else:
            run = by_id[row["run_id"]]
            assert (run.data.tags["role"], run.data.tags["vertical"]) == (row["role"], row["model"])
            labelled = run.data.metrics
            assert (row["eval rows"], row["eval positives"]) == (int(labelled["eval_rows"]), int(labelled["eval_positives"]))
            assert run.data.tags.get("lift_flags", "") == (row["flags"] or "")
    assert 0 < run_table["eval positives"].min() <= run_table["eval rows"].min()

    code, out, err = run_cli(capsys, "lift", "--experiment", "lift", "--tracking-uri", tracked["uri"], "--out", str(tmp_path), "--format", "csv")
    assert code == 0, err
    printed = pl.read_csv(out.encode())  # --format csv: stdout is the table as CSV, nothing else
    from_store = pl.read_csv(tmp_path / "lift.csv").filter(pl.col("recipe") == "kd")
    assert printed.filter(pl.col("recipe") == "kd").equals(from_store)
    for column in ("run_id", "eval rows", "eval positives", "flags", "MDE lift %"):
        assert from_store[column].to_list() == run_table[column].to_list(), column


def test_the_recipe_run_carries_its_lift_table_and_chart_for_one_click_in_the_ui(tracked):
    client = tracked["client"]
    student = _one(tracked["runs"], role="student", vertical="ig_stories_click", recipe="kd")
    parent = student.data.tags["recipe_run_id"]
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"lift.csv", "lift_table.json", "lift.png"} <= artifacts
    logged = json.loads(open(client.download_artifacts(parent, "lift_table.json", str(tracked["folder"]))).read())  # MLflow's split layout
    shown = pl.DataFrame(logged["data"], schema=logged["columns"], orient="row")
    run_table = pl.read_csv(next((tracked["folder"] / "runs" / "kd").rglob("lift.csv")))
    assert shown["run_id"].to_list() == run_table["run_id"].to_list()
    assert shown["flags"].fill_null("").to_list() == run_table["flags"].fill_null("").to_list()
    local = client.download_artifacts(parent, "lift.png", str(tracked["folder"]))
    assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_registering_leaves_mlflows_global_store_as_it_found_it(tmp_path, monkeypatch):
    """A URI that came from $MLFLOW_TRACKING_URI stays the environment's (a later change to it counts);
    one set by code is restored; none set stays unset."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking

    from transfer.tracking.model_registry import _global_store

    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setattr(tracking, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    with _global_store(store):
        assert mlflow.get_tracking_uri() == store
    assert tracking._tracking_uri is None and os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'later.db'}")
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'later.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with _global_store(store):
        pass
    assert tracking._tracking_uri is None and "MLFLOW_TRACKING_URI" not in os.environ

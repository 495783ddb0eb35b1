"""A real `mlflow server` on 127.0.0.1 (sqlite backend, local artifact root): a tiny recipe tracked
through `tracking.uri`, a VM registered, `gem-transfer lift` read back, and the MLflow UI opened in
headless Chromium showing the student runs and their lift. An unreachable server fails the run
before any work, naming the URI."""

from __future__ import annotations

import html
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_cli, time_limit, write_dataset, write_recipe

SCREENSHOT_DIR = os.environ.get("GEM_SCREENSHOT_DIR")  # keep the screenshots there (default: the test's tmp folder)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    process, uri = _start_server(folder)
    try:
        yield uri
    finally:
        process.terminate()
        process.wait(timeout=30)


def _start_server(folder: Path, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """A healthy `mlflow server` on a free loopback port. The port is free when chosen, but another
    process (a parallel test worker) may take it before the server binds it: then the server exits at
    once, and it is started again on another port."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    for attempt in range(attempts):
        port = _free_port()
        with open(folder / "server.log", "w") as log:  # the server keeps its own copy of the handle
            process = subprocess.Popen(
                [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--default-artifact-root",
                 str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        uri = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(uri, process, folder / "server.log")
            return process, uri
        except RuntimeError:
            exited_by_itself = process.poll() is not None  # e.g. the port was taken meanwhile; not a hang
            process.terminate()
            process.wait(timeout=30)
            if not exited_by_itself or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _wait_healthy(uri: str, process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s} s: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_recipe_register_and_lift_through_a_real_tracking_server(server, tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, name="served", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}, {"vertical": "fb_feed_click", "batch_size": 64}],
                          tracking={"uri": server, "log_models": True})
    code, out, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("served")
    students = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "student"]
    assert len(students) == 2

    student = next(r for r in students if r.data.tags["vertical"] == "ig_stories_click")
    code, _, err = run_cli(capsys, "register", student.info.run_id, "--alias", "candidate", "--tracking-uri", server)
    assert code == 0, err
    version = client.get_model_version_by_alias("ig_stories_click", "candidate")
    assert version.run_id == student.info.run_id and version.tags["recipe"] == "served"

    code, _, err = run_cli(capsys, "lift", "--experiment", "served", "--tracking-uri", server, "--out", str(tmp_path / "lift"))
    assert code == 0, err
    table = pl.read_csv(tmp_path / "lift" / "lift.csv").filter(pl.col("role") == "student")
    assert sorted(table["vertical"]) == ["fb_feed_click", "ig_stories_click"]
    for row in table.iter_rows(named=True):
        run = next(r for r in students if r.data.tags["vertical"] == row["vertical"])
        assert row["lift %"] == pytest.approx(run.data.metrics["lift_pct"], rel=1e-6)

    _check_in_browser(server, experiment.experiment_id, students, tmp_path)
    _check_recipe_run_in_browser(server, experiment.experiment_id, students, out, tmp_path)


def _check_in_browser(server: str, experiment_id: str, students, tmp_path: Path) -> None:
    """The UI's compare view of the student runs, rendered by headless Chromium: run names and lift on the page."""
    assert CHROMIUM, "chromium is not installed: make browser installs Debian's package as root (sudo apt-get install chromium otherwise)"
    ids = ",".join(f'"{r.info.run_id}"' for r in students)
    url = f'{server}/#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]'
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--window-size=1600,1000", "--virtual-time-budget=20000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    # the compare view renders its first ~17 metric rows (alphabetical) without scrolling: the lift and its interval
    assert "lift_pct" in dom and "lift_pct_ci_low" in dom and "lift_pct_ci_high" in dom
    for run in students:  # further down the table: the transfer ratio, only where the teacher's lead is resolvable
        metrics = run.data.metrics
        assert ({"transfer_ratio", "transfer_ratio_ci_low"} <= set(metrics)) == (metrics["teacher_lead_ci_low"] > 0)
    for run in students:
        assert f"student:{run.data.tags['vertical']}" in dom
        lift = run.data.metrics["lift_pct"]
        shown = (repr(lift), f"{lift:.4g}", f"{lift:.3g}", f"{lift:.5g}", f"{lift:.3f}".rstrip("0").rstrip("."))  # the UI rounds to 3 decimals
        assert any(text in dom for text in shown), f"lift {lift} not on the page"
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "mlflow_compare_students.png"
    tall = [f for f in flags if not f.startswith("--window-size")] + ["--window-size=1600,2400"]  # the metrics table too
    subprocess.run([CHROMIUM, *tall, f"--screenshot={shot}", url], capture_output=True, timeout=180, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def _check_recipe_run_in_browser(server: str, experiment_id: str, students, printed: str, tmp_path: Path) -> None:
    """The link `run` prints opens the recipe run's lift table in the UI: every student's run id and
    flags on the page; and its lift chart beside it (the README's screenshot)."""
    parent = students[0].data.tags["recipe_run_id"]
    url = f"{server}/#/experiments/{experiment_id}/runs/{parent}/artifactPath/lift_table.json"
    assert f"this run's lift table and chart: {url}" in printed
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--window-size=1600,1000", "--virtual-time-budget=20000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=time_limit(180)).stdout
    for run in students:
        assert run.info.run_id in dom and html.escape(run.data.tags.get("lift_flags", "").split(";")[0], quote=False) in dom
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    shot = folder / "mlflow_recipe_run_lift.png"
    chart = url.replace("lift_table.json", "lift.png")
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", chart], capture_output=True, timeout=time_limit(180), check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_an_unreachable_tracking_server_fails_before_any_work_naming_the_uri(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    recipe = write_recipe(tmp_path, dataset, name="nowhere", tracking={"uri": uri})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert uri in line and "cannot be reached" in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # no data built, nothing trained


def test_repo_root_is_where_screenshots_are_linked_from():
    readme = (REPO / "README.md").read_text()
    assert "docs/mlflow_recipe_run_lift.png" in readme and (REPO / "docs" / "mlflow_recipe_run_lift.png").is_file()

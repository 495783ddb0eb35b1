"""Refresh the README's screenshot: the newest quickstart recipe run's lift chart in the MLflow UI,
served by a real `mlflow server` on this checkout's store (gem_runs/mlflow.db: run `make quickstart`
first) and rendered by headless Chromium.

    python docs/screenshot.py        # writes docs/mlflow_recipe_run_lift.png
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "gem_runs" / "mlflow.db"
SHOT = REPO / "docs" / "mlflow_recipe_run_lift.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1600,1000",
         "--virtual-time-budget=20000"]


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not STORE.is_file() or browser is None:
        print(f"screenshot: needs {STORE} (make quickstart) and chromium (make browser)", file=sys.stderr)
        return 2
    uri = f"sqlite:///{STORE}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("quickstart")
    finished = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    parent = next(r for r in finished if "mlflow.parentRunId" not in r.data.tags)  # the newest recipe run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}/artifactPath/lift.png"
        subprocess.run([browser, *FLAGS, f"--screenshot={SHOT}", url], capture_output=True, timeout=180, check=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {SHOT} (recipe run {parent.info.run_id})")
    return 0


def _wait(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s} s")


if __name__ == "__main__":
    sys.exit(main())

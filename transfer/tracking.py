"""MLflow tracking: a parent run per recipe run, a child run per stage and per model."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pytorch
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient
from torch import nn

from transfer import ranks
from transfer.atomic import process_alive
from transfer.errors import UserError

HEALTH_TIMEOUT_S = 5.0
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its pickle-format warning, on every VM logged


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def check_reachable(uri: str) -> None:
    """Fail fast, naming the URI, when a tracking server does not answer (before any work starts).
    Local stores (sqlite, file) need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise UserError(f"tracking.uri: the MLflow tracking server at {uri} cannot be reached ({problem}); start it or fix tracking.uri")


class Tracker:
    """Opens runs in one experiment of one tracking store. In a multi-process run only rank 0 talks to
    MLflow; the other ranks get rank 0's run ids (so stage-cache keys agree) and log nothing."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri = uri
        self.experiment = experiment
        self.main = ranks.is_main()
        self.client = MlflowClient(uri) if self.main else None
        if self.main:
            mlflow.set_tracking_uri(uri)
        self.experiment_id = ranks.from_main(self._experiment_id(experiment, artifact_root) if self.main else "")
        self.common_tags: dict[str, str] = {}  # added to every run started from now on

    def _experiment_id(self, experiment: str, artifact_root: Path | None) -> str:
        try:
            found = self.client.get_experiment_by_name(experiment)
        except Exception as exc:  # any failure to reach the store is the user's URI, named here
            raise UserError(f"tracking.uri: cannot reach the MLflow tracking store at {self.uri}: {exc}") from exc
        if found is not None:
            return found.experiment_id
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        return self.client.create_experiment(experiment, artifact_location=location)

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str], nested: bool = False) -> Iterator[str]:
        """Start a run (nested under the active one when `nested`); yields its id. Failures mark it failed."""
        if not self.main:
            yield ranks.from_main("")
            return
        owner = {"pid": str(os.getpid()), "host": socket.gethostname()}  # lets a rerun tell a killed attempt's runs
        with mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=nested, tags={**self.common_tags, **tags, **owner}) as active:
            yield ranks.from_main(active.info.run_id)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics of the active run."""
        if self.main:
            mlflow.log_metrics(metrics)

    def log_params(self, params: dict) -> None:
        if self.main:
            mlflow.log_params(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.main:
            mlflow.set_tags(tags)

    def log_artifact(self, path: Path) -> None:
        if self.main:
            mlflow.log_artifact(str(path))

    def log_serving_model(self, model: nn.Module) -> str:
        """Log a trained serving model as an MLflow PyTorch model in the active run; → its model URI."""
        if not self.main:
            return ""
        # "pickle": the batch is a dict of tensors, which the traced "pt2" format cannot take as its input.
        info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        return info.model_uri

    def fail_abandoned(self, recipe_hash: str) -> list[str]:
        """Mark FAILED the runs of this recipe still RUNNING whose process on this host is gone (an
        attempt killed before it could end them); → their ids."""
        if not self.main:
            return []
        found = self.client.search_runs([self.experiment_id], f"tags.recipe_hash = '{recipe_hash}' and attributes.status = 'RUNNING'")
        here = socket.gethostname()
        abandoned = [r.info.run_id for r in found
                     if r.data.tags.get("host") == here and not process_alive(int(r.data.tags.get("pid", "0") or 0))]
        for run_id in abandoned:
            self.client.set_tag(run_id, "abandoned", "the process running it was killed; a rerun resumed its work")
            self.client.set_terminated(run_id, status="FAILED")
        return abandoned

    def lightning_logger(self, run_id: str) -> MLFlowLogger | bool:
        """A Lightning logger writing training curves into an existing run (none off rank 0)."""
        if not self.main:
            return False
        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, experiment_name=self.experiment)

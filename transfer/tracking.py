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


def log_serving_model(model: nn.Module) -> str:
    """Log a trained serving model as an MLflow PyTorch model in the active run; → its model URI."""
    # "pickle": the batch is a dict of tensors, which the traced "pt2" format cannot take as its input.
    info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    return info.model_uri


class Tracker:
    """Opens runs in one experiment of one tracking store."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri = uri
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
        except Exception as exc:  # any failure to reach the store is the user's URI, named here
            raise UserError(f"tracking.uri: cannot reach the MLflow tracking store at {uri}: {exc}") from exc
        if found is None:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        self.experiment = experiment
        self.common_tags: dict[str, str] = {}  # added to every run started from now on

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str], nested: bool = False) -> Iterator[str]:
        """Start a run (nested under the active one when `nested`); yields its id. Failures mark it failed."""
        owner = {"pid": str(os.getpid()), "host": socket.gethostname()}  # lets a rerun tell a killed attempt's runs
        with mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=nested, tags={**self.common_tags, **tags, **owner}) as active:
            yield active.info.run_id

    def fail_abandoned(self, recipe_hash: str) -> list[str]:
        """Mark FAILED the runs of this recipe still RUNNING whose process on this host is gone (an
        attempt killed before it could end them); → their ids."""
        found = self.client.search_runs([self.experiment_id], f"tags.recipe_hash = '{recipe_hash}' and attributes.status = 'RUNNING'")
        here = socket.gethostname()
        abandoned = [r.info.run_id for r in found
                     if r.data.tags.get("host") == here and not process_alive(int(r.data.tags.get("pid", "0") or 0))]
        for run_id in abandoned:
            self.client.set_tag(run_id, "abandoned", "the process running it was killed; a rerun resumed its work")
            self.client.set_terminated(run_id, status="FAILED")
        return abandoned

    def lightning_logger(self, run_id: str) -> MLFlowLogger:
        """A Lightning logger writing training curves into an existing run."""
        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, experiment_name=self.experiment)

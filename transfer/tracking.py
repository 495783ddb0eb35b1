"""MLflow tracking: a parent run per recipe run, a child run per stage and per model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient

from transfer.errors import UserError


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


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

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str], nested: bool = False) -> Iterator[str]:
        """Start a run (nested under the active one when `nested`); yields its id. Failures mark it failed."""
        with mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=nested, tags=tags) as active:
            yield active.info.run_id

    def lightning_logger(self, run_id: str) -> MLFlowLogger:
        """A Lightning logger writing training curves into an existing run."""
        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, experiment_name=self.experiment)

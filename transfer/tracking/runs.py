"""MLflow tracking: a parent run per recipe run, a child run per stage and per model."""

from __future__ import annotations

import contextlib
import http.client
import inspect
import logging
import os
import socket
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pytorch
import polars as pl
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from sqlalchemy.engine import make_url
from torch import nn

from transfer.errors import RunStopped, UserError
from transfer.tracking import tags as T
from transfer.util import ranks
from transfer.util.atomic import process_alive
from transfer.util.interrupt import Interrupted
from transfer.util.locks import file_lock

HEALTH_TIMEOUT_S = 5.0
TRACKING_FLAG = "--tracking-uri"  # what sets the store of the commands that read runs (lift, register)
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
STORE_LOGGERS = ("mlflow.store.db.utils", "alembic")  # "Creating initial MLflow database tables…", on a new store


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///…` tracking URI (relative to the working directory unless
    absolute, as SQLAlchemy reads it); None for other URIs and in-memory databases."""
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def check_reachable(uri: str, output_dir: Path | None = None, setting: str = "tracking.uri", create: bool = True,
                    ready: bool = True) -> None:
    """Fail fast, naming the URI and the `setting` that gave it (the recipe's `tracking.uri`, or a
    command's `--tracking-uri`), when the tracking store cannot be used (before any work starts): a
    tracking server that does not answer; a sqlite file that is not a healthy SQLite database, or
    whose folder does not exist (allowed: inside `output_dir`, a recipe run's folder, which is
    created), or, for a command that only reads runs (`create` False), that does not exist. A sqlite
    store is made ready here (`ready`; False: checked only, nothing written), once, by one process at
    a time (see `ready_sqlite_store`). An `output_dir` that cannot be a folder fails first."""
    if output_dir is not None:
        check_output_dir(output_dir)
    if (db := sqlite_path(uri)) is not None:
        if not create and not db.exists():
            raise UserError(f"{setting}: {uri}: no MLflow store there ({db} does not exist); allowed: the store your runs wrote "
                            "(a recipe's tracking.uri, by default sqlite:///<output_dir>/mlflow.db), given with --tracking-uri "
                            "or $MLFLOW_TRACKING_URI")
        _check_sqlite_file(uri, db, output_dir, setting)
        if ready:
            ready_sqlite_store(uri, db, setting)
        return
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise UserError(f"{setting}: the MLflow tracking server at {uri} cannot be reached ({problem}); start it or fix {setting}")


def check_output_dir(output_dir: Path) -> None:
    """`output_dir` is a folder, or one can be created there (nothing on its path is a file)."""
    existing = next(p for p in [output_dir, *output_dir.absolute().parents] if p.exists())
    if not existing.is_dir():
        where = "" if existing == output_dir else f", so the folder {output_dir} cannot be created"
        raise UserError(f"output_dir: found {existing}, which is a file{where}; allowed: a folder (existing, or to be created)")


def _check_sqlite_file(uri: str, db: Path, output_dir: Path | None, setting: str) -> None:
    """The store's file is a healthy SQLite database, or it can be created without making folders
    outside `output_dir`."""
    if db.exists():
        problem = _sqlite_problem(db)
        if problem:
            raise UserError(f"{setting}: {uri}: {db} {problem}; allowed: an MLflow sqlite store, or a path where one can be "
                            f"created (move the file away, or fix {setting})")
        return
    if db.parent.is_dir() or (output_dir is not None and db.resolve().is_relative_to(output_dir.resolve())):
        return
    what = "is not a folder" if db.parent.exists() else "does not exist"
    inside = f", or a path inside output_dir ({output_dir}), which is created" if output_dir is not None else ""
    raise UserError(f"{setting}: {uri}: the folder {db.parent} {what}; allowed: a sqlite file in an existing folder{inside}")


def _sqlite_problem(db: Path) -> str | None:
    """What is wrong with an existing file as a SQLite database (None: nothing; an empty file is a
    new database)."""
    if not db.is_file():
        return "is not a file"
    with db.open("rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if not head:
        return None
    if head != SQLITE_HEADER:
        return "is not a SQLite database (it does not start with the SQLite header)"
    # read-write (never creating): a run killed mid-write leaves a hot journal, which SQLite rolls back
    # on the next write-capable open; read-only, that open fails ("attempt to write a readonly database")
    mode = "rw" if os.access(db, os.W_OK) else "ro"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{urllib.parse.quote(str(db.absolute()))}?mode={mode}", uri=True)) as con:
            verdict = con.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as exc:
        verdict = str(exc)
    return None if verdict == "ok" else f"is a damaged or unreadable SQLite database ({verdict})"


def ready_sqlite_store(uri: str, db: Path, setting: str = "tracking.uri") -> None:
    """Open the sqlite store once under an exclusive lock on `<db>.lock`, so that only one process
    creates or migrates a new store's tables (MLflow's migration races: two runs started together on
    a fresh store fail with 'duplicate column name'); the others wait, then find it ready."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock"), optional=True), _quiet(STORE_LOGGERS):
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:  # an old schema, a store of another program: the user's URI, named here
            raise UserError(f"{setting}: cannot open the MLflow tracking store at {uri}: {exc}") from exc


def _check_artifact_location(experiment, artifact_root: Path | None) -> None:
    """An existing experiment of a store kept beside its artifacts (`artifact_root`) keeps them there:
    a store copied elsewhere still names the original's absolute folder, and its new runs would write
    into the original. Refused in one line instead."""
    if artifact_root is None or not experiment.artifact_location.startswith("file:"):
        return
    stored = Path(urllib.parse.unquote(urllib.parse.urlparse(experiment.artifact_location).path))
    if stored.resolve() != artifact_root.resolve():
        raise UserError(f"tracking.uri: experiment '{experiment.name}' of this store keeps its artifacts in {stored}, not beside the store "
                        f"({artifact_root}): was the folder copied or moved? Its new runs would write into the original; allowed: "
                        "another tracking.experiment name (a new experiment, kept beside this store), or run where the store was made")


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """For a sqlite store, hold its lock (`<db>.lock`) for the block: writes that MLflow's sqlite store
    does not serialize itself (registering a version) happen one process at a time. A server
    serializes its own writes: no lock."""
    db = sqlite_path(uri)
    with file_lock(db.with_name(db.name + ".lock"), optional=True) if db is not None else contextlib.nullcontext():  # a read-only store: none
        yield


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Loggers `names` at WARNING and above only, inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class ServingGraph(nn.Module):
    """A vertical model as its exported serving graph: the request's feature tensors as positional
    inputs (torch.export and MLflow's "pt2" format take tensors, not the dict batch the model is
    trained on) → its serving logits [B, T]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor, surface: torch.Tensor, hist_ad: torch.Tensor,
                hist_category: torch.Tensor, hist_surface: torch.Tensor, hist_action: torch.Tensor, hist_age: torch.Tensor,
                hist_mask: torch.Tensor) -> torch.Tensor:
        batch = {"categorical": categorical, "dense": dense, "surface": surface, "hist_ad": hist_ad, "hist_category": hist_category,
                 "hist_surface": hist_surface, "hist_action": hist_action, "hist_age": hist_age, "hist_mask": hist_mask}
        return self.model(batch).logits


SERVING_INPUTS = tuple(inspect.signature(ServingGraph.forward).parameters)[1:]  # the batch keys a served model reads, in order


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
            _check_artifact_location(found, artifact_root)
            return found.experiment_id
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        try:
            return self.client.create_experiment(experiment, artifact_location=location)
        except MlflowException as exc:  # a run started together with this one created it first
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(experiment).experiment_id

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str], nested: bool = False) -> Iterator[str]:
        """Start a run (nested under the active one when `nested`); yields its id. Failures mark it
        FAILED, Ctrl-C (or a `RunStopped`) KILLED."""
        if not self.main:
            yield ranks.from_main("")
            return
        owner = {T.PID: str(os.getpid()), T.HOST: socket.gethostname()}  # lets a rerun tell a killed attempt's runs
        with mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=nested, tags={**self.common_tags, **tags, **owner}) as active:
            try:
                yield ranks.from_main(active.info.run_id)
            except (Interrupted, RunStopped):
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
                raise

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

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Tags on a given run (finished or not), e.g. a VM run's lift-table flags."""
        if self.main and run_id:
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)

    def log_artifact(self, path: Path) -> None:
        if self.main:
            mlflow.log_artifact(str(path))

    def log_table(self, table: pl.DataFrame, artifact_file: str) -> None:
        """`table` as an MLflow table artifact of the active run (the UI shows it under Artifacts,
        and the evaluation view can compare runs by it)."""
        if self.main:
            mlflow.log_table(data=table.to_pandas(), artifact_file=artifact_file)

    def log_serving_model(self, model: nn.Module, request: dict[str, torch.Tensor]) -> str:
        """Log a trained serving model in the active run as an MLflow PyTorch model in the "pt2" format
        (torch.export: a graph and its weights, no pickle), traced on `request` (a batch of the eval
        window); → its model URI. Loaded back, it takes the tensors of `SERVING_INPUTS` in order (the
        model's signature names them) and returns the serving logits [B, T]."""
        if not self.main:
            return ""
        example = tuple(request[name][:2] for name in SERVING_INPUTS)  # 2 rows: the batch dimension stays dynamic
        signature = ModelSignature(inputs=Schema([TensorSpec(t.numpy().dtype, (-1, *t.shape[1:]), name)
                                                  for name, t in zip(SERVING_INPUTS, example, strict=True)]))
        info = mlflow.pytorch.log_model(ServingGraph(model).eval(), name="model", serialization_format="pt2", input_example=example,
                                        signature=signature, metadata={"history_length": model.history_length},
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        return info.model_uri

    def fail_abandoned(self, recipe_hash: str) -> list[str]:
        """Mark FAILED the runs of this recipe still RUNNING whose process on this host is gone (an
        attempt killed before it could end them); → their ids."""
        if not self.main:
            return []
        found = self.client.search_runs([self.experiment_id], f"tags.{T.RECIPE_HASH} = '{recipe_hash}' and attributes.status = 'RUNNING'")
        here = socket.gethostname()
        abandoned = [r.info.run_id for r in found
                     if r.data.tags.get(T.HOST) == here and not process_alive(int(r.data.tags.get(T.PID, "0") or 0))]
        for run_id in abandoned:
            self.client.set_tag(run_id, "abandoned", "the process running it was killed; a rerun resumed its work")
            self.client.set_terminated(run_id, status="FAILED")
        return abandoned

    def lightning_logger(self, run_id: str) -> MLFlowLogger | bool:
        """A Lightning logger writing training curves into an existing run (none off rank 0)."""
        if not self.main:
            return False
        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, experiment_name=self.experiment)

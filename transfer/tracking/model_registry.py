"""Registering trained vertical models in the MLflow Model Registry, with their lineage.

Only a student run (a VM trained with transfer) of a catalogued vertical, within its serving budget,
can be registered; the registered model is named after the vertical and its version carries the
lineage: producer, recipe, knowledge cutoff and staleness, techniques, lift and transfer ratio.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from transfer.catalog import catalog
from transfer.errors import UserError
from transfer.evaluation.serving import ServingCost
from transfer.tracking import tags as T
from transfer.tracking.runs import TRACKING_FLAG, check_reachable, store_lock

LINEAGE_TAGS = T.LINEAGE
LINEAGE_METRICS = (T.LIFT_PCT, T.TRANSFER_RATIO, f"{T.EVAL}{T.NE}", f"{T.EVAL}{T.AUC}", T.SERVING_PARAMS, T.SERVING_P99_MS)


class RegistrationError(UserError):
    """A run that cannot be registered, and why."""


def register_vertical(uri: str, run_id: str, alias: str | None = None) -> ModelVersion:
    """Register the VM trained in `run_id` under its catalog name; → the new model version."""
    if alias is not None:
        _check_alias(alias)
    check_reachable(uri, setting=TRACKING_FLAG, create=False)
    with _global_store(uri), store_lock(uri):  # one registration at a time: MLflow's sqlite store numbers versions racily
        return _register(MlflowClient(uri, registry_uri=uri), uri, run_id, alias)


@contextmanager
def _global_store(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to `uri` for the block, then restored (or unset again).

    The registry's SQL store resolves a version's `models:/<model id>` through a default
    `MlflowClient()`, i.e. the global store, not the client's: without this a CLI process would look
    for the logged model in (and create) ./mlflow.db.
    """
    from mlflow.tracking._tracking_service import (
        utils as tracking,  # the raw setting: set by code, or only by the environment
    )

    set_by_code, from_environment = tracking._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(set_by_code)  # None unsets it (and the variable), as it was
        if from_environment is not None:
            os.environ["MLFLOW_TRACKING_URI"] = from_environment


def _register(client: MlflowClient, uri: str, run_id: str, alias: str | None) -> ModelVersion:
    """A new version of the run's vertical with its lineage tags (the registered model created if new)."""
    run = _student_run(client, uri, run_id)
    name = run.data.tags[T.VERTICAL]
    _check_budget(run, name)
    _check_model_logged(run)
    tags = {key: run.data.tags[key] for key in LINEAGE_TAGS if key in run.data.tags}
    tags |= {key: f"{run.data.metrics[key]:.6g}" for key in LINEAGE_METRICS if key in run.data.metrics}
    tags["run_id"] = run_id
    try:
        client.get_registered_model(name)
    except MlflowException:
        shared = catalog("vertical").get(name)
        description = shared.description if shared else f"{name}: declared inline in recipe '{run.data.tags.get(T.RECIPE, '?')}'"
        client.create_registered_model(name, description=description)
    source = run.data.tags[T.MODEL_URI]  # models:/<model id>
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=source.removeprefix("models:/"))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def _check_alias(alias: str) -> None:
    """The registry's alias rules, checked before anything is registered."""
    if not re.fullmatch(r"[\w-]{1,255}", alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistrationError(f"--alias: found '{alias}'; allowed: letters, digits, '_' and '-', "
                                "except 'latest' and version names like v2 (reserved by MLflow)")


def _student_run(client: MlflowClient, uri: str, run_id: str) -> Run:
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise RegistrationError(f"run '{run_id}': the tracking store {uri} answered: {exc.message}") from None
        raise RegistrationError(f"run '{run_id}' not found in the tracking store {uri}") from None
    role = run.data.tags.get(T.ROLE)
    if role == T.Role.BASELINE:
        raise RegistrationError(
            f"run '{run_id}' is the no-transfer baseline of '{run.data.tags.get(T.VERTICAL)}'; only students (VMs trained "
            "with transfer, role 'student') can be registered"
        )
    if role != T.Role.STUDENT:
        what = f"a {role} run" if role else "not a gem-transfer model run"
        raise RegistrationError(f"run '{run_id}' is {what}; only students (VMs trained with transfer, role 'student') can be registered")
    if run.info.status != "FINISHED":
        raise RegistrationError(f"run '{run_id}' did not finish (status {run.info.status}); there is no trained model to register")
    return run


def _check_model_logged(run: Run) -> None:
    if T.MODEL_URI not in run.data.tags:
        raise RegistrationError(f"run '{run.info.run_id}' logged no serving model (its recipe set tracking.log_models=false); rerun the "
                                "recipe with tracking.log_models=true (its trained stages are reused) and register that run")


def _check_budget(run: Run, name: str) -> None:
    """Within its serving budget: the catalog's, checked again on the run's measured cost; for a VM
    declared inline in its recipe, the status its run logged against the recipe's budget."""
    entries = catalog("vertical")
    if name not in entries and run.data.tags.get(T.DECLARED_IN) != "recipe":
        raise RegistrationError(f"vertical '{name}' of run '{run.info.run_id}' is not in the catalog (is the package that declares it "
                                "installed? see gem-transfer ls verticals)")
    if name not in entries:
        status = run.data.tags.get(T.BUDGET_STATUS, "no budget")
        if status.startswith("over budget"):
            raise RegistrationError(f"'{name}' (run {run.info.run_id}, declared inline in its recipe) is {status}")
        return
    budget = entries[name].budget
    metrics = run.data.metrics
    if budget is None:
        return
    cost = ServingCost(int(metrics[T.SERVING_PARAMS]), metrics[T.SERVING_P50_MS], metrics[T.SERVING_P99_MS])
    violations = budget.violations(cost.params, cost.p99_ms)
    if violations:
        raise RegistrationError(f"'{name}' (run {run.info.run_id}) is over its serving budget: " + "; ".join(violations))

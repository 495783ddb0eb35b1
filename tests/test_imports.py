"""`adapters` and `transfer` also exist on PyPI: the imports must resolve to this repository."""

import importlib

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["transfer", "teacher", "students", "domain_fms", "adapters"])
def test_top_level_package_is_this_repository(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert module.__file__.startswith(str(REPO / name))


# Imports every module of the five packages in a fresh interpreter and reports what changed.
SIDE_EFFECTS_SCRIPT = """
import importlib, json, logging, os, pkgutil, warnings
import lightning, mlflow.pytorch, torchmetrics, polars  # third-party settings made at their own import come first
def state():
    mask = os.umask(0o027); os.umask(mask)
    loggers = {name: logging.getLogger(name).level for name in ("lightning.pytorch", "pytorch_lightning", "torch.distributed.elastic")}
    return {"filters": len(warnings.filters), "loggers": loggers, "umask": mask}
before = state()
for package in ("transfer", "teacher", "students", "domain_fms", "adapters"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        importlib.import_module(info.name)
after = state()
print(json.dumps({"before": before, "after": after}))
"""


def test_importing_any_module_changes_no_global_setting():
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": ""}
    done = subprocess.run([sys.executable, "-c", SIDE_EFFECTS_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # third-party libraries change some settings of their own at import (mlflow.pytorch sets the root
    # logger's level); ours set no logger level and no umask
    assert found["after"]["loggers"] == found["before"]["loggers"]
    assert found["after"]["umask"] == found["before"]["umask"]

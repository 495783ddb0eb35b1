"""`adapters` and `transfer` also exist on PyPI: the imports must resolve to this repository."""

import importlib

import pytest

from tests.conftest import REPO, time_limit


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
    done = subprocess.run([sys.executable, "-c", SIDE_EFFECTS_SCRIPT], capture_output=True, text=True, env=env, timeout=time_limit(300))
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # third-party libraries change some settings of their own at import (mlflow.pytorch sets the root
    # logger's level); ours set no logger level and no umask
    assert found["after"]["loggers"] == found["before"]["loggers"]
    assert found["after"]["umask"] == found["before"]["umask"]


EARLY_ERROR_SCRIPT = """
import json, sys
from transfer.cli import main
codes = [main(argv) for argv in (["run", sys.argv[1]], ["validate", sys.argv[1]], ["plan", sys.argv[2], "trainer.max_epochs"])]
print(json.dumps({"codes": codes, "heavy": sorted(m for m in ("torch", "lightning", "mlflow", "polars") if m in sys.modules)}))
"""


def test_a_bad_recipe_file_or_override_is_answered_before_the_heavy_imports(tmp_path):
    """A missing recipe or a malformed override costs no torch, Lightning or MLflow import (it cost 11 s)."""
    import json
    import os
    import subprocess
    import sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", EARLY_ERROR_SCRIPT, str(tmp_path / "missing.yaml"), str(recipe)],
                          capture_output=True, text=True, env=env, timeout=time_limit(300))
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"codes": [2, 2, 2], "heavy": []}
    assert "recipe file not found" in done.stderr and "is not of the form key=value" in done.stderr


VALUE_ERRORS_SCRIPT = """
import json, sys
from transfer.cli import main
heavy = lambda: sorted(m for m in ("torch", "lightning", "mlflow", "polars") if m in sys.modules)
recipe = sys.argv[1]
bad_values = [
    ["validate", recipe.replace("good", "typo")],               # a misspelled key
    ["run", recipe, "trainer.max_epochs=two"],                   # a wrong type
    ["plan", recipe, "trainer.max_epochs=0"],                    # a value out of range
    ["run", recipe, "transfer.stages.0.distillation.weight=-1"], # a technique's knob out of range
    ["run", recipe, "data.eval.start=2026-13-01"],               # a date that does not parse
    ["data", "check", recipe, "data.dataset=no/such.yaml"],      # a dataset that does not exist
]
codes = [main(argv) for argv in bad_values]
before_models = heavy()
model_code = main(["validate", recipe, "teacher.model=no_such_teacher"])  # the catalog's names need its model packages
print(json.dumps({"codes": codes, "heavy": before_models, "model_code": model_code, "after_models": heavy()}))
"""


def test_a_bad_key_type_or_value_is_answered_before_torch_and_a_bad_model_name_without_lightning_or_mlflow(tmp_path):
    """The recipe's schema and every check of its values come before torch is imported; only the
    catalog's checks (model names, sizes, sharing) import it, and still not Lightning or MLflow."""
    import json
    import os
    import subprocess
    import sys

    good = tmp_path / "good.yaml"
    good.write_text("name: r\nstudents: [{vertical: ig_stories_click}]\n"
                    "transfer: {stages: [{producer: teacher, consumers: students}]}\n")
    (tmp_path / "typo.yaml").write_text(good.read_text() + "teacher: {modle: gem_lite}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", VALUE_ERRORS_SCRIPT, str(good)],
                          capture_output=True, text=True, env=env, timeout=time_limit(300), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["codes"] == [2] * 6 and found["heavy"] == []
    assert found["model_code"] == 2 and "torch" in found["after_models"]
    assert "lightning" not in found["after_models"] and "mlflow" not in found["after_models"]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 7 and all(line.startswith("gem-transfer: error: ") for line in lines)
    for key in ("teacher.modle", "trainer.max_epochs", "trainer.max_epochs", "transfer.stages.0.distillation.weight",
                "data.eval.start", "data.dataset", "teacher.model"):
        assert key in lines.pop(0)

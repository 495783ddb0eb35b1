"""The README's three worked examples (docs/examples: a log per campaign as CSVs, a hive-partitioned
directory, a conversion-only log, each with its dataset YAML and a recipe with inline VMs) load and
validate as shipped, from a copy of the folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, time_limit


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(REPO / "docs" / "examples", root / "docs" / "examples", ignore=shutil.ignore_patterns("data"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "docs/examples/shapes.py"], cwd=root, env=env, capture_output=True, text=True, timeout=time_limit(300))
    assert done.returncode == 0, done.stderr[-2000:]
    return root, env


@pytest.mark.parametrize("shape", ["bandit", "partitioned", "conversions"])
def test_each_example_recipe_validates_and_its_data_checks(examples, shape):
    root, env = examples
    for command in (["validate", f"docs/examples/{shape}_recipe.yaml"],
                    ["data", "check", f"docs/examples/{shape}_recipe.yaml", f"data.cache_dir={root / 'cache'}"]):
        done = subprocess.run([sys.executable, "-m", "transfer.cli", *command], cwd=root, env=env, capture_output=True, text=True,
                              timeout=time_limit(300))
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1].startswith("ok:")

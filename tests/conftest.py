"""Shared fixtures: small real parquet logs, dataset YAMLs and recipes written into tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from transfer.cli import main
from transfer.data.synthetic import SURFACES, SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[1]


def time_limit(seconds: float) -> float:
    """A subprocess's time limit scaled to this machine: × $GEM_TEST_TIME_SCALE when set, else × the
    1-minute load average per core when that exceeds 1 (a shared, loaded host runs everything slower;
    a limit is there to catch a hang, not to time the code)."""
    if os.environ.get("GEM_TEST_TIME_SCALE"):
        return seconds * float(os.environ["GEM_TEST_TIME_SCALE"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return seconds * max(1.0, os.getloadavg()[0] / cores)


def install_example_package(package: str, target: Path) -> None:
    """pip-install the example package `tests/<package>` into `target` (not into this environment),
    building it from a private copy: pip writes build/ and *.egg-info beside the sources, and two test
    processes building the same folder at once collide."""
    with tempfile.TemporaryDirectory(prefix=f"{package}-") as scratch:
        source = shutil.copytree(REPO / "tests" / package, Path(scratch) / package,
                                 ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def small_log() -> pl.DataFrame:
    """2,000 synthetic impressions over 6 days."""
    return generate(SyntheticSpec(rows=2_000, days=6, seed=3))


def write_dataset(folder: Path, frame: pl.DataFrame, **overrides) -> Path:
    """Write `frame` as parquet plus a dataset YAML mapping it (canonical column names)."""
    frame.write_parquet(folder / "log.parquet")
    config = {
        "name": "tiny",
        "source": {"files": {"impressions": "log.parquet"}},
        "tables": [{"file": "impressions"}],
        "timestamp": {"column": "ts", "unit": "datetime"},
        "categorical": ["advertiser", "country"],
        "dense": ["bid"],
        "labels": {"click": "click", "conversion": "conversion"},
        "surfaces": dict(SURFACES),
        "hash_buckets": 512,
    }
    config.update(overrides)
    path = folder / "dataset.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# The test recipes' windows on a 6-day log: teacher 2 days, students 2, no validation, eval 2.
TINY_WINDOWS = {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 0}, "eval": {"days": 2}}


def write_recipe(folder: Path, dataset: Path | str, name: str = "tiny", **sections) -> Path:
    recipe = {
        "name": name,
        "output_dir": str(folder / "runs"),
        "data": {"dataset": str(dataset), **TINY_WINDOWS, "cache_dir": str(folder / "cache")},
        "students": [{"vertical": "ig_stories_click"}],
        "trainer": {"max_epochs": 1, "progress": False},
    }
    recipe.update(sections)
    # tests that register say log_models: true; latency is timed on 8 requests, not 64 (tests read no latency figure)
    recipe["tracking"] = {"log_models": False, "serving_requests": 8, **recipe.get("tracking", {})}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def pytest_collection_modifyitems(config, items):
    """The modules with slow end-to-end tests first, each kept whole (its module fixtures are made
    once): with one worker per core, the longest jobs start early and the short ones fill in behind
    them, instead of a long test starting last."""
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)

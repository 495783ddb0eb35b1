"""Results you can trust: the same recipe and seed give a byte-identical lift table (no measured
timing in it, a VM over its latency budget included), and every benchmark figure records the code
it was made on."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from benchmarks.results_file import code_version
from tests.conftest import REPO, install_example_package
from transfer import catalog
from transfer.cli import main

SMALL = ["data.synthetic.rows=20000", "data.synthetic.days=9", "data.train.days=3", "data.student.days=3",
         "data.validation.days=1", "data.eval.days=2",
         "trainer.max_epochs=1", "trainer.progress=false", "tracking.log_models=false", "tracking.serving_requests=8"]
STRICT = "acme_strict_click"  # tests/example_verticals: a latency budget of 1e-6 ms, which every measurement exceeds


@pytest.fixture(scope="module")
def strict_vertical(tmp_path_factory):
    """The example team package installed in a folder of its own, on sys.path for this module's tests."""
    site = tmp_path_factory.mktemp("site")
    install_example_package("example_verticals", site)
    sys.path.insert(0, str(site))
    catalog.clear_cache()
    yield STRICT
    sys.path.remove(str(site))
    catalog.clear_cache()


def _lift_csv(folder: Path, recipe: str, overrides: list[str]) -> bytes:
    """Run `recipe` with its own output and cache folders under `folder`; → the bytes of its lift.csv."""
    code = main(["run", str(REPO / "recipes" / f"{recipe}.yaml"), f"output_dir={folder / 'runs'}",
                 f"data.cache_dir={folder / 'cache'}", *SMALL, *overrides])
    assert code == 0
    (path,) = (folder / "runs").glob("*/*/lift.csv")
    return results_only(path.read_bytes())


def results_only(csv: bytes) -> bytes:
    """The lift table's bytes without its `run_id` column (each run's MLflow ids are new by design)."""
    frame = pl.read_csv(io.BytesIO(csv), infer_schema_length=0)  # every cell as its text, so nothing is re-formatted
    assert frame["run_id"].str.len_chars().min() == 32  # every row names its run
    return frame.drop("run_id").write_csv().encode()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["quickstart", "direct_all_techniques"])
def test_the_same_recipe_and_seed_give_a_byte_identical_lift_table(tmp_path, recipe, strict_vertical):
    overrides = [f"students.1.vertical={strict_vertical}"] if recipe == "quickstart" else []
    first, second = (_lift_csv(tmp_path / run, recipe, overrides) for run in ("first", "second"))
    assert first == second
    students = pl.read_csv(io.BytesIO(first)).filter(pl.col("role") == "student")
    budgets = dict(zip(students["model"], students["serving budget"], strict=True))
    if recipe == "quickstart":
        assert budgets["ig_stories_click"] == "ok"
        assert budgets[STRICT].startswith("OVER: parameters ") and budgets[STRICT].endswith("; p99 latency over the budget of 1e-06 ms")
    else:
        assert set(budgets.values()) == {"ok"}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_code_version_is_the_commit_and_whether_code_changed_since(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = code_version(tmp_path)
    assert len(clean.commit) == 40 and not clean.dirty and str(clean).endswith("(clean tree)")

    (tmp_path / "benchmarks" / "RESULTS.md").write_text("figures\n")  # what benchmarks write, and their archive, is not code
    for folder in ("results/transfer", "archive/transfer"):
        (tmp_path / "benchmarks" / folder).mkdir(parents=True)
        (tmp_path / "benchmarks" / folder / "ablation.csv").write_text("a\n1\n")
    (tmp_path / "benchmarks" / "archive" / "RESULTS.md").write_text("older figures\n")
    assert code_version(tmp_path) == clean
    (tmp_path / "benchmarks" / "results" / "probe.py").write_text("x = 1\n")  # code beside them is code
    assert code_version(tmp_path).changed == ("benchmarks/results/probe.py",)
    (tmp_path / "benchmarks" / "results" / "probe.py").unlink()

    (tmp_path / "model.py").write_text("x = 2\n")
    edited = code_version(tmp_path)
    assert edited.commit == clean.commit and edited.changed == ("model.py",) and "uncommitted changes to 1 file(s)" in str(edited)
    (tmp_path / "model.py").write_text("x = 3\n")
    assert code_version(tmp_path).content != edited.content  # two different dirty trees are told apart


def test_code_version_outside_a_git_checkout_is_unknown(tmp_path):
    assert code_version(tmp_path).commit == "unknown"

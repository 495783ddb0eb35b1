"""The model catalog: built-in entries, `ls verticals`, a team's own package adding a VM through the
`gem_transfer.verticals` entry point (really installed with pip, used by name in a recipe), and
duplicate names refused naming both sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from students import DEFAULT_BUDGET
from tests.conftest import REPO, install_example_package, run_cli, time_limit, write_dataset, write_recipe
from transfer.catalog import ModelEntry, ServingBudget, catalog

GEM_TRANSFER = [sys.executable, "-m", "transfer.cli"]


def _cli(*argv: str, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([*GEM_TRANSFER, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=time_limit(600))


def test_built_in_verticals_say_what_they_serve_and_their_budget():
    verticals = catalog("vertical")
    entry = verticals["ig_stories_click"]
    assert entry.surfaces == ("ig_stories",) and entry.task == "click" and entry.budget == DEFAULT_BUDGET
    assert entry.builder == "students.mlp:mlp_vm" and entry.size_names() == ["dim", "history_length", "hidden", "aggregates", "wide"]
    assert {"gem_tiny", "skeleton_tiny", "dcn_v2"} <= set(catalog("teacher")) and "dfm_small" in catalog("domain_fm")


def test_sizes_override_the_entry_defaults():
    from transfer.config.dataset import dataset_config_path, inputs_of, load_dataset_config

    inputs = inputs_of(load_dataset_config(dataset_config_path("synthetic")))
    entry = catalog("vertical")["ig_stories_click"]
    assert entry.build(inputs).history_length == 16
    assert entry.build(inputs, {"history_length": 4}).history_length == 4


def test_budget_violations_say_which_limit_and_by_how_much():
    budget = ServingBudget(max_params=1_000, max_p99_ms=2.0)
    assert budget.violations(900, 1.5) == []
    (params,) = budget.violations(1_500, 1.0)
    assert "1,500" in params and "1,000" in params and "by 500" in params and "50%" in params
    (latency,) = budget.violations(10, 3.0)
    assert "p99 latency 3.00 ms" in latency and "2 ms" in latency and "by 1.00 ms" in latency


def test_ls_verticals_lists_the_catalog(capsys):
    code, out, _ = run_cli(capsys, "ls", "verticals")
    assert code == 0
    assert "ig_stories_click: ig_stories × click, students.mlp:mlp_vm(dim=8, history_length=16, hidden=[64, 32])" in out
    assert "budget ≤ 1,000,000 params, p99 ≤ 25 ms" in out


def test_unknown_size_is_refused_naming_the_key_and_the_allowed_sizes(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, students=[{"vertical": "ig_stories_click", "sizes": {"width": 3}}])
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "students.0.sizes: unknown size 'width'" in err and "dim, history_length, hidden" in err


@pytest.mark.slow
def test_a_teams_package_adds_a_vertical_usable_by_name_in_a_recipe(tmp_path, small_log):
    site = tmp_path / "site"
    install_example_package("example_verticals", site)
    listed = _cli("ls", "verticals", site=site, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "acme_stories_click: ig_stories × click, acme_verticals.models:acme_vm(dim=4, hidden=[16]), owner acme-ads" in listed.stdout

    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "acme_stories_click", "batch_size": 64}])
    ran = _cli("run", str(recipe), site=site, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "| acme_stories_click" in ran.stdout and "ig_stories/click" in ran.stdout

    install_example_package("example_duplicate", site)
    clash = _cli("validate", str(recipe), site=site, cwd=tmp_path)
    assert clash.returncode == 2
    (line,) = clash.stderr.strip().splitlines()
    assert "vertical 'ig_stories_click' is registered twice" in line
    assert "built-in (students:CATALOG)" in line and "entry point 'clash' = acme_duplicate:VERTICALS (package acme-duplicate)" in line


def test_a_malformed_entry_point_object_is_named():
    import transfer.catalog as catalog_module

    bad = [ModelEntry("x", "students.mlp:mlp_vm"), "not an entry"]
    with pytest.raises(catalog_module.CatalogError, match="declared str 'not an entry'; expected transfer.contract.ModelEntry"):
        catalog_module._entries(lambda: bad, "entry point 'bad'")


def test_a_builder_path_naming_no_function_is_one_line_of_error(capsys, monkeypatch):
    import transfer.catalog as catalog_module

    broken = ModelEntry("broken", "nowhere_at_all.models:builder")
    monkeypatch.setattr(catalog_module, "_load_with_sources", lambda kind: {"broken": (broken, "a test")})
    code, _, err = run_cli(capsys, "ls", "domain_fms")
    assert code == 2
    assert err.strip() == ("gem-transfer: error: builder 'nowhere_at_all.models:builder' cannot be imported: "
                           "ModuleNotFoundError: No module named 'nowhere_at_all'")


@pytest.mark.parametrize("sizes", [{"dim": "abc"}, {"hidden": 0}, {"dim": -3}])
def test_size_values_that_cannot_build_a_model_are_refused_naming_the_key(tmp_path, small_log, capsys, sizes):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, students=[{"vertical": "ig_stories_click", "sizes": sizes}])
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "students.0.sizes: students.mlp:mlp_vm cannot build with" in line

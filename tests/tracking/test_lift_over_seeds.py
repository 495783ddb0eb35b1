"""`gem-transfer lift` over seeds: a recipe run with several seeds (models and synthetic data) gets,
per VM and variant, its mean lift with the 95% t-interval over the seeds — one run per seed — and,
with vanilla-KD references, the interval of its NE points over vanilla KD."""

from __future__ import annotations

import math
import statistics

import polars as pl
import pytest

from tests.conftest import run_cli, write_dataset, write_recipe

T_975_DF2 = 4.302653  # Student's t, 0.975 quantile, 2 degrees of freedom (from a table)


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("seeds")
    dataset = write_dataset(folder, small_log)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    recipe = write_recipe(folder, dataset, name="seeded", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          transfer={"vanilla_reference": True, "stages": [{"producer": "teacher", "consumers": "students",
                                                                           "distillation": {"weight": 1.0, "head": "auxiliary"}}]},
                          tracking={"uri": uri, "experiment": "seeds"})
    return folder, recipe, uri


def _run(capsys, recipe, *overrides):
    code, _, err = run_cli(capsys, "run", str(recipe), *overrides)
    assert code == 0, err


def test_one_seed_gives_no_over_seed_table_and_three_give_the_t_interval(store, capsys, tmp_path):
    folder, recipe, uri = store
    _run(capsys, recipe)
    code, out, err = run_cli(capsys, "lift", "--tracking-uri", uri, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert "Over seeds" not in out and not (tmp_path / "one" / "lift_over_seeds.csv").exists()

    for seed in (1, 2):
        _run(capsys, recipe, f"seed={seed}")
    _run(capsys, recipe)  # seed 0 again: the same seed counts once (its newest run)
    code, out, err = run_cli(capsys, "lift", "--tracking-uri", uri, "--out", str(tmp_path / "three"))
    assert code == 0, err
    assert "Over seeds" in out
    per_run = pl.read_csv(tmp_path / "three" / "lift.csv")
    (row,) = pl.read_csv(tmp_path / "three" / "lift_over_seeds.csv").iter_rows(named=True)
    assert row["seeds"] == 3 and row["vertical"] == "ig_stories_click" and row["variant"] == "aux_kd"

    students = per_run.filter(pl.col("role") == "student")  # oldest first
    runs = students[-3:]  # the newest run of each seed: seeds 1, 2 and 0 again
    lifts = runs["lift %"].to_list()
    assert students[0, "lift %"] == pytest.approx(students[-1, "lift %"], abs=1e-9)  # same seed, same result
    mean, sd = statistics.mean(lifts), statistics.stdev(lifts)
    half = T_975_DF2 * sd / math.sqrt(3)
    assert row["lift % mean"] == pytest.approx(mean, rel=1e-9)
    assert row["lift % 95% CI over seeds"] == f"[{mean - half:.2f}, {mean + half:.2f}]"
    assert row["vs baseline"] == ("better" if mean - half > 0 else "worse" if mean + half < 0 else "not distinguishable")

    vanilla = per_run.filter(pl.col("role") == "vanilla_kd")[-3:]
    over = [100 * (v - s) for v, s in zip(vanilla["NE"].to_list(), runs["NE"].to_list(), strict=True)]
    mean, half = statistics.mean(over), T_975_DF2 * statistics.stdev(over) / math.sqrt(3)
    assert row["NE points over vanilla KD [95% CI]"] == f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"

    baseline = per_run.filter(pl.col("role") == "baseline")[-3:]["NE"].to_list()
    teacher = per_run.filter(pl.col("role") == "teacher")[-3:]["NE"].to_list()
    gains = [100 * (b - s) for b, s in zip(baseline, runs["NE"].to_list(), strict=True)]
    leads = [100 * (b - t) for b, t in zip(baseline, teacher, strict=True)]
    assert row["transfer ratio [Fieller 95% CI]"] == _fieller_by_hand(gains, leads)


def _fieller_by_hand(x: list[float], y: list[float]) -> str:
    """Fieller's set {θ : (x̄ − θȳ)² ≤ t² (s²_x − 2θ s_xy + θ² s²_y) / n}, solved as a quadratic in θ, written out."""
    n = len(x)
    mx, my = statistics.mean(x), statistics.mean(y)
    sxx, syy = statistics.variance(x), statistics.variance(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / (n - 1)
    t2 = T_975_DF2**2
    a, b, c = my**2 - t2 * syy / n, -2 * (mx * my - t2 * sxy / n), mx**2 - t2 * sxx / n
    if a <= 0:
        return "undefined: its denominator is not resolvable over the seeds"
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return f"{mx / my:.2f} [{(-b - root) / (2 * a):.2f}, {(-b + root) / (2 * a):.2f}]"

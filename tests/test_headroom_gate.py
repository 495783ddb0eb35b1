"""The headroom gate (benchmarks/headroom.py): the teacher's lead over the baseline VM per slice over
seeds, and the gate's verdict — checked on hand-made rows whose leads are known."""

from __future__ import annotations

import re

import polars as pl
import pytest

from benchmarks.headroom import TRAFFIC_CSV, headroom, headroom_table, labelled
from tests.conftest import REPO

REPO_RECIPE = REPO / "recipes" / "quickstart.yaml"


def _rows(dataset: str, slice_: str, leads: list[float], variants=("vanilla KD", "combined")) -> list[dict]:
    """Per seed: a baseline at NE 0.80 and a teacher `lead` NE points better, repeated for each variant
    (as an ablation CSV holds them), and a student row the gate must ignore."""
    rows = []
    for seed, lead in enumerate(leads):
        for variant in variants:
            rows += [{"dataset": dataset, "variant": variant, "seed": seed, "role": "baseline", "slice": slice_, "NE": 0.80, "recal NE": 0.79},
                     {"dataset": dataset, "variant": variant, "seed": seed, "role": "teacher", "slice": slice_, "NE": 0.80 - lead / 100,
                      "recal NE": 0.79 - lead / 200},
                     {"dataset": dataset, "variant": variant, "seed": seed, "role": "student", "slice": slice_, "NE": 0.5, "recal NE": 0.5}]
    return rows


def test_the_gate_passes_a_wide_resolved_lead_and_says_why_each_other_slice_fails():
    frame = pl.DataFrame(_rows("synthetic", "a/click", [4.0, 4.2, 3.8, 4.1, 3.9])        # mean 4.0, tight: passes
                         + _rows("synthetic", "b/click", [2.0, 2.1, 1.9, 2.0, 2.0])      # resolved, but below 3
                         + _rows("synthetic", "c/click", [9.0, -3.0, 6.0, 1.0, 2.0])     # mean 3.0, lower bound far below 2
                         + _rows("movielens", "a/click", [5.0, 5.0, 5.1]))               # too few seeds
    found = {(s.dataset, s.slice): s for s in headroom(frame)}
    passing = found["synthetic", "a/click"]
    assert passing.lead.seeds == 5 and passing.lead.mean == pytest.approx(4.0)
    assert passing.recal_lead.mean == pytest.approx(2.0)  # half the raw lead, by construction
    # t(0.975, 4) = 2.7764; sd of [4.0, 4.2, 3.8, 4.1, 3.9] = 0.1581
    assert passing.lead.low == pytest.approx(4.0 - 2.7764 * 0.1581 / 5**0.5, abs=1e-3)
    assert passing.problem == ""
    assert found["synthetic", "b/click"].problem == "mean lead +2.00 NE points, below 3"
    assert found["synthetic", "c/click"].problem.startswith("95% lower bound") and found["synthetic", "c/click"].lead.mean == pytest.approx(3.0)
    assert found["movielens", "a/click"].problem == "3 seeds; the gate needs 5"
    table = headroom_table(list(found.values()))
    verdicts = {(row["dataset"], row["slice"]): row["gate"] for row in table.iter_rows(named=True)}
    assert verdicts.pop(("synthetic", "a/click")) == "passes" and all(g.startswith("fails: ") for g in verdicts.values())


def test_the_ablation_studies_only_the_vms_whose_slice_passes_the_gate(capsys):
    from benchmarks.transfer_ablation import gated_verticals

    rows = _rows("synthetic", "a/click", [4.0, 4.2, 3.8, 4.1, 3.9]) + _rows("synthetic", "b/click", [2.0, 2.1, 1.9, 2.0, 2.0])
    for row in rows:
        row["model"] = {"a/click": "vm_a", "b/click": "vm_b"}[row["slice"]] if row["role"] != "teacher" else "skeleton_tiny"
    assert gated_verticals(pl.DataFrame(rows)) == {"vm_a"}
    said = capsys.readouterr().out
    assert "synthetic b/click (vm_b) is not studied: mean lead +2.00 NE points, below 3" in said and "vm_a" not in said


def test_each_lever_is_compared_with_todays_teacher_seed_by_seed():
    from benchmarks.headroom_levers import levers_body

    today = _rows("today", "a/click", [1.0, 1.2, 0.8, 1.1, 0.9], variants=("vanilla KD",))
    epochs = _rows("epochs", "a/click", [4.0, 4.3, 3.9, 4.1, 3.7], variants=("vanilla KD",))  # today's + [3.0, 3.1, 3.1, 3.0, 2.8]
    body = levers_body(pl.DataFrame(today + epochs), REPO_RECIPE, minutes=1.0)
    assert "| epochs | a/click | today         | +3.00 [+2.85, +3.15]                | better  |" in body  # t-interval by hand below
    # gains [3.0, 3.1, 3.1, 3.0, 2.8]: mean 3.0, sd 0.1225, t(0.975, 4) = 2.7764 → ± 0.152
    assert "+1.00 [+0.80, +1.20]" in body and "fails: mean lead +1.00 NE points, below 3" in body and body.count("| passes") == 1  # epochs (lead 4.0), not today


def test_a_lever_on_top_of_training_traffic_is_compared_with_training_traffic_not_today():
    from benchmarks.headroom_levers import levers_body

    today = _rows("today", "a/click", [1.0, 1.0, 1.0, 1.0, 1.0], variants=("vanilla KD",))
    traffic = _rows("traffic", "a/click", [4.0, 4.0, 4.0, 4.0, 4.0], variants=("vanilla KD",))
    longer = _rows("traffic_history_1024", "a/click", [4.5, 4.4, 4.6, 4.5, 4.5], variants=("vanilla KD",))
    body = levers_body(pl.DataFrame(today + traffic + longer), REPO_RECIPE, minutes=1.0, ran=["traffic_history_1024"])
    # gains over traffic [0.5, 0.4, 0.6, 0.5, 0.5]: mean 0.5, sd 0.0707, t(0.975, 4) = 2.7764 → ± 0.088
    assert "| traffic_history_1024 | a/click | traffic       | +0.50 [+0.41, +0.59]" in body
    assert re.search(r"\| traffic +\| a/click \| today +\| \+3\.00 \[", body)  # traffic itself is still against today's teacher
    assert "other levers' rows kept from the CSV's earlier run" in body and "- `traffic_history_1024`: knowledge from training traffic and 1,024" in body


def test_runs_of_another_world_under_the_same_dataset_name_are_gated_apart():
    """The quickstart world's training-traffic runs are called "synthetic" in their CSV, like the bench
    world's: labelled by their file, their seeds are never pooled with the others'."""
    bench = pl.DataFrame(_rows("synthetic", "a/click", [1.0, 1.0, 1.0, 1.0, 1.0]))
    traffic = pl.DataFrame(_rows("synthetic", "a/click", [5.0, 5.1, 4.9, 5.0, 5.0]))
    frame = pl.concat([labelled(bench, REPO / "benchmarks" / "elsewhere.csv"), labelled(traffic, TRAFFIC_CSV)])
    found = {(s.dataset, s.slice): s for s in headroom(frame)}
    assert set(found) == {("synthetic", "a/click"), ("synthetic (quickstart world, knowledge from training traffic)", "a/click")}
    assert found["synthetic", "a/click"].lead.mean == pytest.approx(1.0)
    assert not found["synthetic (quickstart world, knowledge from training traffic)", "a/click"].problem

"""The lift table says when it cannot tell: slice rows and positives on every row, NE > 1 flagged,
lifts against such a baseline marked, undefined transfer and gain ratios left empty, the minimum
detectable lift beside each interval. Built from hand-made scores, so every expected cell follows
from the definitions, not from the code."""

from __future__ import annotations

import dataclasses
import math

import pytest

from transfer.evaluation.intervals import LiftInterval
from transfer.evaluation.lift_table import FEW_EVAL_POSITIVES, Scores, VerticalResult, lift_table


def _scores(ne: float) -> Scores:
    return Scores(ne=ne, auc=0.6, calibration=1.0, recal_ne=ne)


RESOLVED = dict(lead_low=5.0, lead_high=15.0, vanilla_gain_low=1.0, vanilla_gain_high=3.0, mde_lift=5.72, units=4_000, unit="users")


def _interval(positives: int = 2_000, **changes) -> LiftInterval:
    """A student's interval whose teacher lead and vanilla-KD gain are resolvable unless `changes` say otherwise."""
    return LiftInterval(-2.0, 6.0, -0.5, 1.5, positives, 1000, 0.1, 2.0, -1.0, 3.0, **(RESOLVED | changes))


def _result(teacher: float, baseline: float, student: float, vanilla: float | None = None, positives: int = 2_000,
            interval: LiftInterval | None = None) -> VerticalResult:
    return VerticalResult(
        "ig_stories_click", "ig_stories", "click", "skeleton_tiny", _scores(teacher), _scores(baseline), _scores(student),
        vanilla=_scores(vanilla) if vanilla is not None else None,
        interval=interval or _interval(positives),
        run_ids={"teacher": "t-run", "baseline": "b-run", "student": "s-run", "vanilla_kd": "v-run"},
        eval_rows=40_000, eval_positives=positives,
    )


def _rows(result: VerticalResult) -> dict[str, dict]:
    return {row["role"]: row for row in lift_table([result]).iter_rows(named=True)}


def test_a_healthy_vm_has_no_flags_and_every_row_its_slice_and_run():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.88))
    assert {role: row["flags"] for role, row in rows.items()} == dict.fromkeys(rows, "")
    assert {(row["eval rows"], row["eval positives"]) for row in rows.values()} == {(40_000, 2_000)}
    assert {role: row["run_id"] for role, row in rows.items()} == {"teacher": "t-run", "baseline": "b-run", "student": "s-run",
                                                                   "vanilla_kd": "v-run"}
    assert rows["student"]["transfer ratio"] == pytest.approx(0.5)  # (0.90 − 0.85) / (0.90 − 0.80)
    assert rows["student"]["TR 95% CI"] == "[-0.500, 1.500]"
    assert rows["student"]["gain ratio"] == pytest.approx(2.5)  # 0.05 / 0.02
    assert rows["student"]["resampled"] == "4,000 users"


def test_what_a_reader_looks_at_first_leads_the_table():
    table = lift_table([_result(teacher=0.80, baseline=0.90, student=0.85)])
    assert table.columns[:7] == ["model", "role", "slice", "NE", "lift %", "lift % 95% CI", "vs baseline"]


def test_the_minimum_detectable_lift_cell_shows_the_intervals_figure_on_the_student_row_only():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85))
    assert rows["student"]["MDE lift %"] == "5.72"
    assert rows["baseline"]["MDE lift %"] == ""


def test_a_baseline_worse_than_the_base_rate_makes_every_lift_against_it_not_meaningful():
    """The bandit log of the issue: baseline NE 3.07, a student "60 % better" than it."""
    rows = _rows(_result(teacher=1.10, baseline=3.07, student=1.21, vanilla=1.5))
    assert "NE > 1: worse than predicting the base rate" in rows["baseline"]["flags"]
    for role in ("teacher", "vanilla_kd", "student"):
        assert "lift not meaningful: baseline NE > 1" in rows[role]["flags"]
    student_flags = rows["student"]["flags"].split("; ")
    assert "NE > 1: worse than predicting the base rate" in student_flags and "transfer ratio not meaningful: teacher NE > 1" in student_flags
    assert rows["student"]["lift %"] == pytest.approx(100 * (3.07 - 1.21) / 3.07)  # shown, but marked


def test_a_teacher_lead_that_is_not_resolvable_leaves_the_transfer_ratio_undefined():
    """The teacher is ahead at its point value (0.80 < 0.90), but its lead's interval spans 0: no ratio, no interval."""
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, interval=_interval(lead_low=-1.0, lead_high=3.0)))
    student = rows["student"]
    assert student["transfer ratio"] is None and student["TR 95% CI"] == ""
    assert "transfer ratio undefined: the teacher's lead over the baseline is not resolvable ([-1.00, 3.00] NE points)" in student["flags"]
    assert student["lift % 95% CI"] == "[-2.00, 6.00]"  # the lift itself is still defined


def test_a_teacher_resolvably_worse_than_the_baseline_leaves_the_transfer_ratio_undefined():
    rows = _rows(_result(teacher=0.95, baseline=0.90, student=0.96, interval=_interval(lead_low=-8.0, lead_high=-2.0)))
    assert rows["student"]["transfer ratio"] is None
    assert "transfer ratio undefined: the teacher's lead over the baseline is negative ([-8.00, -2.00] NE points)" in rows["student"]["flags"]


def test_a_run_logged_before_the_leads_were_measured_has_no_ratio():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, interval=_interval(lead_low=math.nan, lead_high=math.nan)))
    assert rows["student"]["transfer ratio"] is None
    assert "transfer ratio undefined: the teacher's lead over the baseline was not measured" in rows["student"]["flags"]


def test_a_vanilla_gain_that_is_not_resolvable_leaves_the_gain_ratio_undefined():
    """The issue's 4.07× on a vanilla-KD gain of 0.02 NE points: not a ratio."""
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.8998,
                         interval=_interval(vanilla_gain_low=-0.3, vanilla_gain_high=0.34)))
    student = rows["student"]
    assert student["gain ratio"] is None and student["GR 95% CI"] == ""
    assert "gain ratio undefined: vanilla KD's gain over the baseline is not resolvable ([-0.30, 0.34] NE points)" in student["flags"]


def test_a_slice_with_few_positives_is_flagged_on_every_row():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.88, positives=27))
    for role in ("teacher", "baseline", "vanilla_kd", "student"):
        assert f"few eval positives (27 < {FEW_EVAL_POSITIVES})" in rows[role]["flags"]


def test_a_vm_that_kept_its_start_is_flagged_whatever_its_role():
    result = _result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.88)
    rows = _rows(dataclasses.replace(result, best_epochs={"baseline": 0, "vanilla_kd": 0, "student": 2}))
    kept = "kept its start: no trained epoch beat its regression start on the validation slice"
    assert kept in rows["baseline"]["flags"] and kept in rows["vanilla_kd"]["flags"]
    assert kept not in rows["student"]["flags"] and kept not in rows["teacher"]["flags"]


def test_a_missing_recal_ne_says_why():
    result = _result(teacher=0.80, baseline=0.90, student=0.85)
    rows = _rows(dataclasses.replace(result, student=Scores(ne=0.85, auc=0.6, calibration=1.0, recal_ne=math.nan),
                                     baseline=Scores(ne=0.90, auc=0.6, calibration=1.0, recal_ne=0.89)))
    assert "recal NE missing: the recalibration days (data.recalibration_days) hold no labelled rows" in rows["student"]["flags"]
    assert "recal NE" not in rows["baseline"]["flags"]


def test_every_vm_row_carries_its_own_models_cost():
    """With parameter sharing a student is bigger than its baseline (a projection of the shared
    table): each row shows its own model's FLOPs share, the teacher's row none."""
    result = dataclasses.replace(_result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.88),
                                 flops_shares={"baseline": 0.0366, "vanilla_kd": 0.0366, "student": 0.0558})
    rows = _rows(result)
    assert {role: row["FLOPs vs teacher"] for role, row in rows.items()} == {"teacher": None, "baseline": 0.0366, "vanilla_kd": 0.0366,
                                                                             "student": 0.0558}


def test_an_interval_over_user_day_blocks_is_flagged():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, interval=_interval(units=37, unit="user-days")))
    assert "few eval users: the interval resampled 37 user-day blocks" in rows["student"]["flags"]
    assert "few eval users" not in rows["baseline"]["flags"]

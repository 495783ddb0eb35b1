"""The lift table says when it cannot tell: slice rows and positives on every row, NE > 1 flagged,
lifts against such a baseline marked, undefined transfer and gain ratios left empty, the minimum
detectable lift beside each interval. Built from hand-made scores, so every expected cell follows
from the definitions, not from the code."""

from __future__ import annotations

import math

import pytest

from transfer.evaluation.intervals import LiftInterval
from transfer.evaluation.lift_table import FEW_EVAL_POSITIVES, Scores, VerticalResult, lift_table


def _scores(ne: float) -> Scores:
    return Scores(ne=ne, auc=0.6, calibration=1.0)


def _result(teacher: float, baseline: float, student: float, vanilla: float | None = None, positives: int = 2_000,
            interval: LiftInterval | None = None) -> VerticalResult:
    return VerticalResult(
        "ig_stories_click", "ig_stories", "click", "skeleton_tiny", _scores(teacher), _scores(baseline), _scores(student),
        vanilla=_scores(vanilla) if vanilla is not None else None,
        interval=interval or LiftInterval(-2.0, 6.0, -0.5, 1.5, positives, 1000, 0.1, 2.0, -1.0, 3.0),
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
    assert rows["student"]["gain ratio"] == pytest.approx(2.5)  # 0.05 / 0.02


def test_the_minimum_detectable_lift_is_read_from_the_intervals_width():
    """Width 8 points = 2 × 1.96 SE → SE 2.041; MDE at 95 %/80 % = (1.960 + 0.842) × 2.041 = 5.72."""
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85))
    assert float(rows["student"]["MDE lift %"]) == pytest.approx(5.72, abs=0.01)
    assert rows["baseline"]["MDE lift %"] == ""


def test_a_baseline_worse_than_the_base_rate_makes_every_lift_against_it_not_meaningful():
    """The bandit log of the issue: baseline NE 3.07, a student "60 % better" than it."""
    rows = _rows(_result(teacher=1.10, baseline=3.07, student=1.21))
    assert "NE > 1: worse than predicting the base rate" in rows["baseline"]["flags"]
    assert "lift not meaningful: baseline NE > 1" in rows["student"]["flags"]
    student_flags = rows["student"]["flags"].split("; ")
    assert "NE > 1: worse than predicting the base rate" in student_flags and "transfer ratio not meaningful: teacher NE > 1" in student_flags
    assert rows["student"]["lift %"] == pytest.approx(100 * (3.07 - 1.21) / 3.07)  # shown, but marked


def test_a_teacher_no_better_than_the_baseline_leaves_the_transfer_ratio_undefined():
    """A teacher worse than the baseline would flip the ratio's sign (+1.27 for a worse student)."""
    rows = _rows(_result(teacher=0.95, baseline=0.90, student=0.96))
    student = rows["student"]
    assert math.isnan(student["transfer ratio"]) and student["TR 95% CI"] == ""
    assert "transfer ratio undefined: the teacher is no better than the baseline" in student["flags"]
    assert student["lift % 95% CI"] != ""  # the lift itself is still defined


def test_a_vanilla_reference_that_gains_nothing_leaves_the_gain_ratio_undefined():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, vanilla=0.91))
    student = rows["student"]
    assert math.isnan(student["gain ratio"]) and student["GR 95% CI"] == ""
    assert "gain ratio undefined: vanilla KD is no better than the baseline" in student["flags"]


def test_a_slice_with_few_positives_is_flagged_on_the_student():
    rows = _rows(_result(teacher=0.80, baseline=0.90, student=0.85, positives=27))
    assert f"few eval positives (27 < {FEW_EVAL_POSITIVES})" in rows["student"]["flags"]
    assert rows["baseline"]["flags"] == ""

"""Time windows: splits by time only, defaults, and clear errors for empty or overlapping windows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import torch

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.data.prepare import prepare_data
from transfer.errors import DataError


def test_windows_follow_each_other_and_split_by_time(tmp_path, small_log):
    """train → student → validation → eval by default, each starting where the one before ends."""
    data_cfg = {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 1}, "eval": {"days": 1}}
    recipe = load_recipe(write_recipe(tmp_path, write_dataset(tmp_path, small_log), data=_data(tmp_path, **data_cfg)))
    data = prepare_data(recipe.data)
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    windows = [data.train, data.student, data.validation, data.eval]
    assert [(w.start.day, w.end.day) for w in windows] == [(1, 3), (3, 5), (5, 6), (6, 7)]
    assert data.train.start == day
    rows = [data.train_rows, data.student_rows, data.validation_rows, data.eval_rows]
    for window, window_rows in zip(windows, rows, strict=True):
        ts = data.log.ts[window_rows]
        assert window.start.timestamp() <= int(ts.min()) and int(ts.max()) < window.end.timestamp()
    assert sum(len(r) for r in rows) == small_log.height  # 2 + 2 + 1 + 1 days cover the 6-day log
    expected_train = small_log.filter(small_log["ts"] < data.train.end).height
    assert len(data.train_rows) == expected_train


def test_a_log_starting_within_a_day_splits_by_hours(tmp_path, small_log):
    """A 3-day log from 16:00: teacher 30 hours, students 18, eval the last 24 (windows in days only could not)."""
    start = datetime(2026, 1, 1, 16, tzinfo=timezone.utc)
    log = small_log.filter((small_log["ts"] >= start) & (small_log["ts"] < datetime(2026, 1, 4, 16, tzinfo=timezone.utc)))
    data_cfg = {"train": {"start": "2026-01-01T16:00", "days": 1, "hours": 6}, "student": {"days": 0, "hours": 18},
                "validation": {"days": 0}, "eval": {"days": 1}}
    recipe = load_recipe(write_recipe(tmp_path, write_dataset(tmp_path, log), data=_data(tmp_path, **data_cfg)))
    data = prepare_data(recipe.data)
    hours = [(w.start - start).total_seconds() / 3600 for w in (data.train, data.student, data.eval)] + [(data.eval.end - start).total_seconds() / 3600]
    assert hours == [0, 30, 48, 72]
    assert len(data.train_rows) + len(data.student_rows) + len(data.eval_rows) == log.height


@pytest.mark.parametrize(("window", "expected"), [
    ({"days": 0}, ["data.student", "days + hours > 0"]),
    ({"days": 1, "start": "2026-01-03 at noon"}, ["data.student.start", "YYYY-MM-DDTHH:MM"]),
    ({"days": 1, "hours": -2}, ["data.student.hours", ">= 0"]),
])
def test_a_bad_window_is_one_line(tmp_path, small_log, capsys, window, expected):
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log), data=_data(tmp_path, train={"days": 2}, student=window,
                                                                                  validation={"days": 0}, eval={"days": 2}))
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and len(err.strip().splitlines()) == 1
    for fragment in expected:
        assert fragment in err


def test_the_students_knowledge_is_out_of_sample_by_default(tmp_path, small_log):
    recipe = load_recipe(write_recipe(tmp_path, write_dataset(tmp_path, small_log)))
    data = prepare_data(recipe.data)
    assert int(data.log.ts[data.student_rows].min()) >= data.train.end.timestamp()  # the teacher never trained on them
    assert len(data.validation_rows) == 0  # validation: {days: 0} in the test recipe: no validation window


def test_recalibration_rows_are_the_students_last_day(tmp_path, small_log):
    data = prepare_data(load_recipe(write_recipe(tmp_path, write_dataset(tmp_path, small_log))).data)
    ts = data.log.ts[data.recalibration_rows]
    assert int(ts.min()) >= data.student.end.timestamp() - 86_400 and int(ts.max()) < data.student.end.timestamp()
    last_day = (data.log.ts[data.student_rows] >= data.student.end.timestamp() - 86_400).sum()
    assert len(data.recalibration_rows) == int(last_day) > 0


def test_the_recalibration_window_is_a_recipe_setting_within_the_students_window(tmp_path, small_log, capsys):
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log))
    for days in (2, 3):  # the test recipe's students' window is 2 days: 3 takes all of it, never the teacher's rows
        data = prepare_data(load_recipe(recipe, [f"data.recalibration_days={days}"]).data)
        assert torch.equal(data.recalibration_rows, data.student_rows)
    code, _, err = run_cli(capsys, "validate", str(recipe), "data.recalibration_days=0")
    assert code == 2 and err.count("\n") == 1 and "data.recalibration_days" in err and "found 0" in err


def _data(tmp_path, **windows) -> dict:
    return {"dataset": str(tmp_path / "dataset.yaml"), "cache_dir": str(tmp_path / "c"), **windows}


def test_empty_window_names_the_window(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), "train": {"start": "2027-01-01", "days": 3}, "eval": {"days": 1}, "cache_dir": str(tmp_path / "c")})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    assert "data.train" in err and "empty" in err and "2026-01-01" in err


def test_eval_window_may_not_overlap_the_students(tmp_path, small_log):
    dataset = write_dataset(tmp_path, small_log)
    windows = {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 0}, "eval": {"start": "2026-01-04", "days": 2}}
    with pytest.raises(DataError, match="data.eval"):
        prepare_data(load_recipe(write_recipe(tmp_path, dataset, data=_data(tmp_path, **windows))).data)


def test_staleness_moves_only_the_teachers_window(tmp_path, small_log):
    """Design §8: the students' and eval windows stay put; the teacher's cutoff moves d days back."""
    dataset = write_dataset(tmp_path, small_log)
    windows = {"train": {"start": "2026-01-03", "days": 1}, "student": {"days": 2}, "validation": {"days": 0}, "eval": {"days": 1}}
    recipe = load_recipe(write_recipe(tmp_path, dataset, data=_data(tmp_path, **windows)))
    fresh, stale = prepare_data(recipe.data), prepare_data(recipe.data, staleness_days=2)
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert (fresh.train.start, fresh.train.end) == (day.replace(day=3), day.replace(day=4))
    assert (stale.train.start, stale.train.end) == (day.replace(day=1), day.replace(day=2))  # 2 days earlier, same length
    assert (stale.student, stale.eval) == (fresh.student, fresh.eval)
    assert torch.equal(stale.student_rows, fresh.student_rows) and torch.equal(stale.eval_rows, fresh.eval_rows)


def test_staleness_beyond_the_data_names_the_keys(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, transfer={"staleness_days": 5})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "transfer.staleness_days" in line and "data.train" in line and "2026-01-01" in line


def test_a_validation_window_overlapping_eval_names_both(tmp_path, small_log):
    dataset = write_dataset(tmp_path, small_log)
    windows = {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 1}, "eval": {"start": "2026-01-05", "days": 1}}
    with pytest.raises(DataError, match="data.eval: the eval window .* before the validation window"):
        prepare_data(load_recipe(write_recipe(tmp_path, dataset, data=_data(tmp_path, **windows))).data)

"""Time windows: splits by time only, defaults, and clear errors for empty or overlapping windows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.config.recipe import load_recipe
from transfer.data.prepare import prepare_data
from transfer.errors import DataError


def test_train_and_eval_windows_split_by_time(tmp_path, small_log):
    recipe = load_recipe(write_recipe(tmp_path, write_dataset(tmp_path, small_log)))
    data = prepare_data(recipe.data)
    assert data.train.start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert data.eval.start == data.train.end == datetime(2026, 1, 5, tzinfo=timezone.utc)
    assert int(data.log.ts[data.train_rows].max()) < data.train.end.timestamp() <= int(data.log.ts[data.eval_rows].min())
    expected_train = small_log.filter(small_log["ts"] < data.train.end).height
    assert len(data.train_rows) == expected_train
    assert len(data.train_rows) + len(data.eval_rows) == small_log.height  # 4 + 2 days cover the 6-day log


def test_empty_window_names_the_window(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), "train": {"start": "2027-01-01", "days": 3}, "eval": {"days": 1}, "cache_dir": str(tmp_path / "c")})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    assert "data.train" in err and "empty" in err and "2026-01-01" in err


def test_eval_window_may_not_overlap_train(tmp_path, small_log):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), "train": {"days": 4}, "eval": {"start": "2026-01-03", "days": 2}, "cache_dir": str(tmp_path / "c")})
    with pytest.raises(DataError, match="data.eval"):
        prepare_data(load_recipe(recipe).data)


def test_staleness_shifts_the_students_and_eval_windows(tmp_path, small_log):
    dataset = write_dataset(tmp_path, small_log)
    recipe = load_recipe(write_recipe(tmp_path, dataset, data={"dataset": str(dataset), "train": {"days": 3}, "student_days": 2,
                                                                "eval": {"days": 1}, "cache_dir": str(tmp_path / "c")}))
    data = prepare_data(recipe.data, staleness_days=2)
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert (data.train.start, data.train.end) == (day, day.replace(day=4))  # teacher cutoff T0 = Jan 4
    assert (data.student.start, data.student.end) == (day.replace(day=4), day.replace(day=6))  # ends T0 + 2 days
    assert (data.eval.start, data.eval.end) == (day.replace(day=6), day.replace(day=7))
    assert int(data.log.ts[data.student_rows].min()) >= data.train.end.timestamp()


def test_staleness_beyond_the_data_names_the_keys(tmp_path, small_log, capsys):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset, transfer={"staleness_days": 5})
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 2
    assert "data.eval" in err and "empty" in err

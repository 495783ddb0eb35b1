"""Bad data fails before training, naming the file and the column, with exit code 2."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from tests.conftest import TINY_WINDOWS, run_cli, write_dataset, write_recipe
from transfer.data.synthetic import SURFACES


def _run(tmp_path, capsys, frame: pl.DataFrame, **dataset_overrides) -> str:
    dataset = write_dataset(tmp_path, frame, **dataset_overrides)
    code, out, err = run_cli(capsys, "run", str(write_recipe(tmp_path, dataset)))
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "teacher:" not in out  # nothing was trained
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nor a tracking store with an empty experiment left behind
    return err


def test_missing_column(tmp_path, capsys, small_log):
    err = _run(tmp_path, capsys, small_log.drop("advertiser"))
    assert "dataset.yaml" in err and "'advertiser'" in err and "not found" in err


def test_null_key(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.when(pl.col("example_id") == 5).then(None).otherwise(pl.col("user_id")).alias("user_id"))
    err = _run(tmp_path, capsys, frame)
    assert "'user_id'" in err and "1 null" in err


def test_label_not_binary(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.when(pl.col("example_id") == 9).then(2).otherwise(pl.col("click")).alias("click"))
    err = _run(tmp_path, capsys, frame)
    assert "'click'" in err and "0/1" in err and "2" in err


@pytest.mark.parametrize("value", [1, 0])
def test_a_constant_label_is_refused_before_training(tmp_path, capsys, small_log, value):
    """Every row a click (or none): NE would be NaN; the data check says so instead."""
    err = _run(tmp_path, capsys, small_log.with_columns(pl.lit(value).alias("click")))
    assert "label column 'click' (click)" in err and f"has {value} on every one of its {small_log.height:,} labelled impressions" in err


def test_unparsable_timestamp(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S").alias("ts"))
    frame = frame.with_columns(pl.when(pl.col("example_id") == 3).then(pl.lit("yesterday")).otherwise(pl.col("ts")).alias("ts"))
    err = _run(tmp_path, capsys, frame, timestamp={"column": "ts", "unit": "iso"})
    assert "'ts'" in err and "timestamp" in err


@pytest.mark.parametrize(("scale", "unit"), [(1_000, "s"), (1_000_000, "ms")])
def test_epoch_times_in_the_wrong_unit_name_the_column_the_value_and_the_unit(tmp_path, capsys, small_log, scale, unit):
    """Milliseconds read as seconds (or microseconds as milliseconds) would name a year past 50,000."""
    frame = small_log.with_columns((pl.col("ts").dt.epoch("s") * scale).alias("ts"))
    err = _run(tmp_path, capsys, frame, timestamp={"column": "ts", "unit": unit})
    biggest = frame["ts"].max()
    assert f"column 'ts': found {biggest} in unit '{unit}'" in err and "outside 1970–2200" in err and "a finer unit" in err


def test_duplicate_example_id(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.when(pl.col("example_id") == 1).then(0).otherwise(pl.col("example_id")).alias("example_id"))
    err = _run(tmp_path, capsys, frame)
    assert "'example_id'" in err and "duplicate" in err


def test_nan_dense_needs_explicit_fill(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.when(pl.col("example_id") == 4).then(float("nan")).otherwise(pl.col("bid")).alias("bid"))
    err = _run(tmp_path, capsys, frame)
    assert "'bid'" in err and "dense_nan_fill" in err


def test_unknown_surface(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.when(pl.col("example_id") == 4).then(pl.lit("tv")).otherwise(pl.col("surface")).alias("surface"))
    err = _run(tmp_path, capsys, frame)
    assert "'surface'" in err and "tv" in err


def test_unreadable_file(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log)
    (tmp_path / "log.parquet").write_bytes(b"PAR1 this is not parquet")
    code, _, err = run_cli(capsys, "run", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and "log.parquet" in err


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_explicit_nan_fill_is_applied(tmp_path, small_log, fill):
    from transfer.config.dataset import load_dataset_config
    from transfer.data.impressions import load_impressions
    from transfer.data.synthetic import SyntheticSpec

    frame = small_log.with_columns(pl.when(pl.col("example_id") == 4).then(None).otherwise(pl.col("bid")).alias("bid"))
    path = write_dataset(tmp_path, frame, dense_nan_fill=fill)
    loaded = load_impressions(load_dataset_config(path), path, tmp_path / "c", SyntheticSpec())
    assert loaded.filter(pl.col("example_id") == 4)["bid"].item() == fill
    assert loaded["bid"].null_count() == 0


def test_a_vm_with_few_training_positives_is_warned_about_before_anything_trains(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log)
    recipe = write_recipe(tmp_path, dataset)
    code, out, _ = run_cli(capsys, "data", "check", str(recipe), "data.min_train_positives=1000000")
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "students.0.vertical: 'ig_stories_click' has" in line and "fewer than data.min_train_positives (1000000)" in line
    code, out, _ = run_cli(capsys, "data", "check", str(recipe), "data.min_train_positives=0")
    assert code == 0 and "warning:" not in out


def test_data_check_shows_the_log_each_surface_s_rows_per_window_and_each_student_s_positives(tmp_path, capsys, small_log):
    """Counted here from the parquet file itself: teacher Jan 1–2, students Jan 3–4, no validation, eval Jan 5–6."""
    assert TINY_WINDOWS == {"train": {"days": 2}, "student": {"days": 2}, "validation": {"days": 0}, "eval": {"days": 2}}
    recipe = write_recipe(tmp_path, write_dataset(tmp_path, small_log),
                          students=[{"vertical": "ig_stories_click"}, {"vertical": "fb_feed_conversion"}])
    code, out, err = run_cli(capsys, "data", "check", str(recipe), "data.min_train_positives=0")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1].startswith("ok: tiny:")
    day = [datetime(2026, 1, d, tzinfo=timezone.utc) for d in (1, 3, 5, 7)]
    in_window = {name: small_log.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
                 for name, start, end in (("teacher", day[0], day[1]), ("students", day[1], day[2]), ("eval", day[2], day[3]))}
    log_line = (f"log: {small_log.height:,} impressions of {small_log['user_id'].n_unique():,} users, 2026-01-01 → 2026-01-06; "
                f"positives: click {small_log['click'].sum():,}, conversion {small_log['conversion'].sum():,}")
    assert log_line in lines
    header = lines.index(next(line for line in lines if line.startswith("surface ")))
    assert lines[header].split() == ["surface", "domain", "teacher", "rows", "students", "rows", "validation", "rows", "eval", "rows"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 1 + len(SURFACES)]}
    assert sorted(rows) == sorted(SURFACES)  # in the dataset YAML's order (write_dataset's is alphabetical)
    for surface, domain in SURFACES.items():
        counts = [in_window[name].filter(pl.col("surface") == surface).height for name in ("teacher", "students", "eval")]
        assert rows[surface] == [domain, f"{counts[0]:,}", f"{counts[1]:,}", "0", f"{counts[2]:,}"]
    students = lines.index(next(line for line in lines if line.startswith("student ")))
    for line, (name, surface, task) in zip(lines[students + 1:students + 3],
                                           [("ig_stories_click", "ig_stories", "click"), ("fb_feed_conversion", "fb_feed", "conversion")],
                                           strict=True):
        positives = [in_window[w].filter(pl.col("surface") == surface)[task].sum() for w in ("students", "eval")]
        assert line.split() == [name, surface, task, f"{positives[0]:,}", f"{positives[1]:,}"]

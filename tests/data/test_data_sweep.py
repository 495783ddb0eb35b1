"""Bad inputs from the dataset sweep (issue #12), met where a user meets them: `gem-transfer data
check` / `run` on real parquet and CSV files. Each ends in one line naming the key or column, exit
code 2, nothing written outside the cache or half-written inside it, and a rerun that works once
the input is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import polars as pl
import pytest

from tests.conftest import TINY_WINDOWS, run_cli, write_dataset, write_recipe
from transfer.data.cache import cache_path, checksum_file, sha256
from transfer.errors import DataError
from transfer.util.atomic import HOST_TAG, PID_MARK

EVAL_START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # write_recipe: teacher Jan 1–2, students Jan 3–4, then 2 eval days


def _check(tmp_path, capsys, dataset, command: str = "data", **recipe) -> tuple[int, str, str]:
    argv = ["data", "check"] if command == "data" else ["run"]
    return run_cli(capsys, *argv, str(write_recipe(tmp_path, dataset, **recipe)))


def _one_error(code: int, out: str, err: str) -> str:
    """The single error line of a failed command (asserts there is exactly one, and exit code 2)."""
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gem-transfer: error: ") and "Traceback" not in err, err
    return lines[0]


def _no_temps(folder) -> None:
    assert not folder.exists() or list(folder.rglob("*.tmp")) == []


# 1. source.wheel


@pytest.mark.parametrize("wheel", ["{project}", "--index-url=http://127.0.0.1:9/simple", "recbole>=1.2", "recbole",
                                   "recbole==1.*", "recbole==1.2.1 --pre", "https://example.com/recbole-1.2.1.whl", "recbole==1.2.1+local"])
def test_a_wheel_that_is_not_name_equals_version_is_refused_before_pip_runs(tmp_path, capsys, small_log, wheel):
    project = tmp_path / "project"  # a local project whose build backend would leave a mark if pip ran it
    project.mkdir()
    (project / "setup.py").write_text(f"open({str(tmp_path / 'built')!r}, 'w').close()\nfrom setuptools import setup\nsetup(name='p', version='1')\n")
    dataset = write_dataset(tmp_path, small_log, source={"wheel": wheel.format(project=project), "files": {"impressions": "log.parquet"}})
    line = _one_error(*_check(tmp_path, capsys, dataset))
    assert "dataset.yaml: source.wheel:" in line and "name==version" in line
    assert not (tmp_path / "built").exists() and not (tmp_path / "cache" / "wheels").exists()


# 2. dataset names and cache paths


@pytest.mark.parametrize("name", ["../escape", "../../escape", "/tmp/abs", "", "two\nlines", "a/b", ".hidden", "bell\x07", "x" * 101])
def test_a_dataset_name_that_is_not_one_file_name_is_refused_and_nothing_is_written(tmp_path, capsys, small_log, name):
    dataset = write_dataset(tmp_path, small_log, name=name)
    line = _one_error(*_check(tmp_path, capsys, dataset))
    assert "dataset.yaml: name:" in line and "allowed: one file name" in line
    assert sorted(p.name for p in tmp_path.rglob("encoded-*")) == []
    dataset = write_dataset(tmp_path, small_log, name="fixed.name_1")  # the rerun with a good name works
    code, out, err = _check(tmp_path, capsys, dataset)
    assert code == 0 and "ok: fixed.name_1:" in out, err
    assert [p.parent for p in tmp_path.rglob("encoded-*.parquet")] == [tmp_path / "cache"]


def test_cache_paths_outside_the_cache_are_refused(tmp_path):
    assert cache_path(tmp_path, "datasets", "ok", "file.csv") == tmp_path.resolve() / "datasets" / "ok" / "file.csv"
    for parts in (("..", "x"), ("datasets", "..", "..", "x"), ("/etc/passwd",), (".",)):
        with pytest.raises(DataError, match="outside the data cache"):
            cache_path(tmp_path, *parts)


def test_a_cache_dir_under_a_file_is_one_line_and_works_once_the_file_is_gone(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log)
    (tmp_path / "afile").write_text("not a folder")
    data = {"dataset": str(dataset), **TINY_WINDOWS, "cache_dir": str(tmp_path / "afile" / "cache")}
    line = _one_error(*_check(tmp_path, capsys, dataset, data=data))
    assert "data.cache_dir:" in line and f"'{tmp_path / 'afile'}' is a file" in line
    (tmp_path / "afile").unlink()
    code, out, err = _check(tmp_path, capsys, dataset, data=data)
    assert code == 0 and "ok: tiny:" in out, err


# 3. labels stored as floats


def test_float_labels_in_parquet_are_accepted_as_the_same_labels(tmp_path, capsys, small_log):
    from transfer.config.loader import load_recipe
    from transfer.data.prepare import prepare_data

    floats = small_log.with_columns(pl.col("click", "conversion").cast(pl.Float64))
    code, out, err = _check(tmp_path / "f", capsys, write_dataset(_mkdir(tmp_path / "f"), floats))
    assert code == 0 and "ok: tiny:" in out, err
    as_float = prepare_data(load_recipe(write_recipe(tmp_path / "f", tmp_path / "f" / "dataset.yaml")).data).log.labels
    as_int = prepare_data(load_recipe(write_recipe(_mkdir(tmp_path / "i"), write_dataset(tmp_path / "i", small_log))).data).log.labels
    assert as_float.equal(as_int) and set(as_float.unique().tolist()) == {0.0, 1.0}


def test_float_labels_in_a_csv_are_accepted_and_other_values_named(tmp_path, capsys, small_log):
    frame = small_log.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%z"), pl.col("click", "conversion").cast(pl.Float64))
    frame.write_csv(tmp_path / "log.csv")
    assert "1.0" in (tmp_path / "log.csv").read_text()
    overrides = {"source": {"files": {"impressions": "log.csv"}}, "timestamp": {"column": "ts", "unit": "iso"}}
    code, out, err = _check(tmp_path, capsys, write_dataset(tmp_path, small_log, **overrides))
    assert code == 0 and "ok: tiny:" in out, err
    frame.with_columns(pl.when(pl.col("example_id") == 7).then(0.5).otherwise(pl.col("click")).alias("click")).write_csv(tmp_path / "log.csv")
    line = _one_error(*_check(tmp_path, capsys, write_dataset(tmp_path, small_log, **overrides)))
    assert "label column 'click'" in line and "0.5" in line and "allowed: 0, 1, null" in line


# 4. degenerate and unlabelled slices


def _in_eval_slice(surface: str = "ig_stories") -> pl.Expr:
    return (pl.col("surface") == surface) & (pl.col("ts") >= EVAL_START)


def _set_click(frame: pl.DataFrame, where: pl.Expr, value) -> pl.DataFrame:
    return frame.with_columns(pl.when(where).then(pl.lit(value, dtype=pl.Int8)).otherwise(pl.col("click")).alias("click"))


@pytest.mark.parametrize("command", ["data", "run"])
@pytest.mark.parametrize(("value", "found"), [(0, "has no positive label"), (1, "has only positive labels"), (None, "null labels")])
def test_an_eval_slice_without_both_classes_or_with_null_labels_fails_before_training(tmp_path, capsys, small_log, command, value, found):
    frame = _set_click(small_log, _in_eval_slice() if value is not None else _in_eval_slice() & (pl.col("example_id") % 3 == 0), value)
    code, out, err = _check(tmp_path, capsys, write_dataset(tmp_path, frame), command)
    line = _one_error(code, out, err)
    assert "students.0.vertical: 'ig_stories_click' eval slice (surface(s) ig_stories, task click, window 2026-01-05 00:00" in line
    assert found in line and "teacher:" not in out
    code, out, err = _check(tmp_path, capsys, write_dataset(tmp_path, small_log), "data")  # fixed data: the rerun works
    assert code == 0, err


def test_null_labels_outside_the_evaluated_slices_are_allowed(tmp_path, capsys, small_log):
    frame = _set_click(small_log, _in_eval_slice("fb_feed"), None)  # no student serves fb_feed
    code, out, err = _check(tmp_path, capsys, write_dataset(tmp_path, frame))
    assert code == 0 and "ok: tiny:" in out, err


def test_a_training_slice_without_positives_fails_naming_it(tmp_path, capsys, small_log):
    frame = _set_click(small_log, (pl.col("surface") == "ig_stories") & (pl.col("ts") < EVAL_START), 0)
    line = _one_error(*_check(tmp_path, capsys, write_dataset(tmp_path, frame)))
    assert "'ig_stories_click' training slice (surface(s) ig_stories, task click, window 2026-01-03 00:00" in line
    assert "has no positive label" in line


# 5. temporary files of a killed data build


def test_a_killed_writers_temp_file_in_the_data_cache_is_removed_by_the_next_data_check(tmp_path, capsys, small_log):
    dataset = write_dataset(tmp_path, small_log)
    assert _check(tmp_path, capsys, dataset)[0] == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "cache" / f".encoded-tiny-0123.parquet.{HOST_TAG}.{dead.pid}{PID_MARK}x1y2.tmp"
    live = tmp_path / "cache" / f".synthetic-0123.parquet.{HOST_TAG}.{os.getpid()}{PID_MARK}a3b4.tmp"
    stale.write_bytes(b"PAR1 half")
    live.write_bytes(b"PAR1 being written")
    code, out, err = _check(tmp_path, capsys, dataset)
    assert code == 0, err
    assert not stale.exists() and live.exists()
    assert f"removed a file left half-written by a killed data build: {stale}" in out


# 6. derive expressions that reach beyond the row


@pytest.mark.parametrize("expr", [
    "click IN (SELECT column_1 FROM read_csv('{secret}'))",
    "(SELECT * FROM read_csv('{secret}'))",
    "read_parquet('{secret}')",
    "click /* ' */ + (SELECT 1) /* ' */",
    "scan_csv('{secret}')",
])
def test_a_derive_that_could_read_files_is_refused_without_echoing_them(tmp_path, capsys, small_log, expr):
    secret = tmp_path / "secret.csv"
    secret.write_text("TOPSECRET\nline two\n")
    dataset = write_dataset(tmp_path, small_log, derive={"leak": expr.format(secret=secret)})
    code, out, err = _check(tmp_path, capsys, dataset)
    line = _one_error(code, out, err)
    assert "dataset.yaml: derive.leak:" in line and "allowed: a scalar SQL expression" in line and "TOPSECRET" not in out + err


def test_a_derive_that_would_replace_a_column_the_data_has_is_refused(tmp_path, capsys, small_log):
    """`click` is already a column of the log: deriving it again would silently change the label."""
    dataset = write_dataset(tmp_path, small_log, derive={"click": "CAST(bid > 1 AS INT)"})
    line = _one_error(*_check(tmp_path, capsys, dataset))
    assert "dataset.yaml: derive.click: the data already has a column 'click'" in line and "allowed: a new column name" in line


def test_a_derive_over_the_columns_works_and_an_unknown_column_is_named(tmp_path, capsys, small_log):
    from transfer.config.dataset import load_dataset_config
    from transfer.data.impressions import load_impressions
    from transfer.data.synthetic import SyntheticSpec

    derive = {"bid2": "bid * 2", "note": "'select from read_csv'", "clicked": "CAST(click >= 1 AS INT)"}
    path = write_dataset(tmp_path, small_log, derive=derive, labels={"click": "clicked", "conversion": "conversion"})
    assert _check(tmp_path, capsys, path)[0] == 0
    loaded = load_impressions(load_dataset_config(path), path, tmp_path / "c", SyntheticSpec())
    assert loaded["click"].to_list() == small_log["click"].cast(pl.Float32).to_list()
    dataset = write_dataset(tmp_path, small_log, derive={"bid2": "bidd * 2"})
    line = _one_error(*_check(tmp_path, capsys, dataset))
    assert "derive.bid2:" in line and "column 'bidd'" in line


# 7. a damaged data cache


@pytest.mark.parametrize("damage", ["truncate", "no checksum"])
def test_a_damaged_encoded_cache_is_rebuilt_with_a_line_saying_so(tmp_path, capsys, small_log, damage):
    dataset = write_dataset(tmp_path, small_log)
    assert _check(tmp_path, capsys, dataset)[0] == 0
    (encoded,) = (tmp_path / "cache").glob("encoded-*.parquet")
    good = encoded.read_bytes()
    if damage == "truncate":
        encoded.write_bytes(good[: len(good) // 2])
    else:
        checksum_file(encoded).unlink()
    code, out, err = _check(tmp_path, capsys, dataset)
    assert code == 0 and "ok: tiny:" in out, err
    said = "was damaged" if damage == "truncate" else "had no checksum"
    assert f"rebuilt the data cache: {encoded} {said}" in out
    assert encoded.read_bytes() == good and checksum_file(encoded).read_text() == sha256(encoded)
    code, out, _ = _check(tmp_path, capsys, dataset)
    assert code == 0 and "rebuilt" not in out  # verified, reused as is


def test_a_truncated_synthetic_log_is_rebuilt(tmp_path, capsys):
    data = {"dataset": "synthetic", "synthetic": {"rows": 3000, "days": 6, "seed": 1}, **TINY_WINDOWS,
            "cache_dir": str(tmp_path / "cache")}
    assert _check(tmp_path, capsys, "synthetic", data=data)[0] == 0
    (log,) = (tmp_path / "cache").glob("synthetic-*.parquet")
    log.write_bytes(log.read_bytes()[:100])
    for encoded in (tmp_path / "cache").glob("encoded-*"):
        encoded.unlink()  # so that the log is read again
    code, out, err = _check(tmp_path, capsys, "synthetic", data=data)
    assert code == 0 and f"rebuilt the data cache: {log} was damaged" in out, err
    _no_temps(tmp_path / "cache")


# 8. sizes


@pytest.mark.parametrize("buckets", [0, -3])
def test_hash_buckets_below_one_is_refused(tmp_path, capsys, small_log, buckets):
    line = _one_error(*_check(tmp_path, capsys, write_dataset(tmp_path, small_log, hash_buckets=buckets)))
    assert f"dataset.yaml: hash_buckets: found {buckets}; allowed: a whole number >= 1" in line


def test_hash_buckets_whose_tables_cannot_fit_are_refused_with_the_estimate(tmp_path, capsys, small_log):
    """2^40 buckets: 5 features × 2^40 rows × 32 bytes = 160 TiB before any model is built."""
    line = _one_error(*_check(tmp_path, capsys, write_dataset(tmp_path, small_log, hash_buckets=2**40)))
    assert f"hash_buckets: found {2**40:,}; its embedding tables need at least {5 * 2**40 * 32 / 2**30:,.0f} GiB" in line
    assert "(5 features × 1,099,511,627,776 rows × 8 float32 dims)" in line and "allowed: at most" in line


@pytest.mark.parametrize("rows", [10**12, 0])
def test_absurd_synthetic_rows_are_refused_with_the_range(tmp_path, capsys, rows):
    data = {"dataset": "synthetic", "synthetic": {"rows": rows}, "cache_dir": str(tmp_path / "cache")}
    line = _one_error(*_check(tmp_path, capsys, "synthetic", data=data))
    assert f"data.synthetic.rows: found {rows:,}; allowed: 1 to 100,000,000" in line
    assert not (tmp_path / "cache").exists()


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path

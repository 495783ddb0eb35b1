"""Property: any malformed dataset — missing or extra columns, wrong types, nulls, NaN and infinite
features, shuffled timestamps, empty and one-row tables, unseen categories, a corrupted parquet file —
ends in either a correct data build or one clear error line with exit code 2, and never leaves a
partial output file behind. And each class of the dataset sweep (a wheel that is not name==version,
a name that is not one file name, a derive reaching files, hash_buckets < 1, an eval slice without
both classes or with null labels, float labels with other values) is one line naming its key or
column, while float 0/1 labels build."""

from __future__ import annotations

import contextlib
import io
import math
from datetime import datetime, timezone

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_WINDOWS, write_dataset, write_recipe
from transfer.cli import main
from transfer.config.dataset import NAME, WHEEL
from transfer.data.synthetic import SyntheticSpec, generate

BASE = generate(SyntheticSpec(rows=400, days=6, seed=11))
COLUMNS = BASE.columns


def _set(frame: pl.DataFrame, column: str, value) -> pl.DataFrame:
    rows = pl.int_range(pl.len()) % 7 == 3  # some rows, not all
    return frame.with_columns(pl.when(rows).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


MUTATIONS = {
    "drop": lambda f, c, d: f.drop(c),
    "extra": lambda f, c, d: f.with_columns(pl.lit(1).alias(f"extra_{c}")),
    "nulls": lambda f, c, d: _set(f, c, None),
    "as_text": lambda f, c, d: f.with_columns(pl.col(c).cast(pl.String)),
    "nan": lambda f, c, d: _set(f, c, math.nan) if f.schema[c].is_float() else f,
    "inf": lambda f, c, d: _set(f, c, d(st.sampled_from([math.inf, -math.inf]))) if f.schema[c].is_float() else f,
    "shuffle_time": lambda f, c, d: f.with_columns(pl.col("ts").shuffle(seed=d(st.integers(0, 9)))) if "ts" in f.columns else f,
    "head": lambda f, c, d: f.head(d(st.sampled_from([0, 1, 2]))),
    "unseen": lambda f, c, d: _set(f, c, "never-seen-before") if f.schema[c] == pl.String else f,
    "negative": lambda f, c, d: _set(f, c, -5) if f.schema[c].is_numeric() else f,
}


@st.composite
def malformed(draw) -> tuple[pl.DataFrame, bool, list[str]]:
    frame, steps = BASE, []
    for _ in range(draw(st.integers(1, 3))):
        kind, column = draw(st.sampled_from(sorted(MUTATIONS))), draw(st.sampled_from(COLUMNS))
        if column in frame.columns:
            frame = MUTATIONS[kind](frame, column, draw)
            steps.append(f"{kind}({column})")
    return frame, draw(st.integers(0, 9)) == 0, steps  # 1 in 10: a corrupted file


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=malformed())
def test_a_malformed_dataset_builds_or_fails_with_one_clear_line(tmp_path, case):
    frame, corrupt, steps = case
    for old in tmp_path.iterdir():  # hypothesis reuses tmp_path across examples
        if old.is_file():
            old.unlink()
    dataset = write_dataset(tmp_path, frame)
    if corrupt:  # cut the parquet file short
        data = (tmp_path / "log.parquet").read_bytes()
        (tmp_path / "log.parquet").write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), **TINY_WINDOWS,
                                                   "cache_dir": str(cache)})
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "check", str(recipe)])  # an exception escaping here fails the test
    event(f"exit code {code}")
    if code == 0:
        assert "ok: tiny:" in out.getvalue(), steps
    else:
        assert code == 2, steps
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gem-transfer: error: "), (steps, err.getvalue())
    partial = [p for p in cache.rglob("*") if p.name.endswith(".tmp")] if cache.exists() else []
    assert partial == [], steps


# The dataset sweep's classes (issue #12): each bad case is one line naming its key or column, exit
# code 2; float labels with 0/1 values build. LABELLED has both classes in every slice the recipe uses.
LABELLED = BASE.with_columns((pl.col("example_id") % 4 == 0).cast(pl.Int8).alias("click"))
EVAL_SLICE = (pl.col("surface") == "ig_stories") & (pl.col("ts") >= datetime(2026, 1, 5, tzinfo=timezone.utc))  # after 4 train days
SQL_REACHING_OUT = ["(SELECT 1)", "click IN (SELECT column_1 FROM read_csv('/etc/passwd'))", "read_csv('/etc/passwd')",
                    "scan_parquet('x.parquet')", "bid + (select max(bid) from t)", "click -- comment", "1; SELECT 1"]


def _degenerate_eval(draw) -> pl.DataFrame:
    """LABELLED with the eval slice all 0, all 1, or some of its labels null."""
    value = draw(st.sampled_from([0, 1, None]))
    every = 1 if value is not None else draw(st.sampled_from([1, 2, 5]))
    rows = EVAL_SLICE & (pl.int_range(pl.len()) % every == 0)
    return LABELLED.with_columns(pl.when(rows).then(pl.lit(value, dtype=pl.Int8)).otherwise(pl.col("click")).alias("click"))


SWEEP = {
    "wheel": lambda d: ({"source": {"wheel": d(st.text(max_size=24).filter(lambda t: not WHEEL.fullmatch(t))
                                               | st.sampled_from(["./project", "--index-url=http://x", "a>=1", "a==1.*", "a==1 b"])),
                                    "files": {"impressions": "log.parquet"}}}, LABELLED, "source.wheel"),
    "name": lambda d: ({"name": d(st.text(max_size=24).filter(lambda t: not NAME.fullmatch(t))
                                  | st.sampled_from(["../up", "/abs", "", "a\nb", ".", ".."]))}, LABELLED, "name"),
    "float_labels": lambda d: ({}, LABELLED.with_columns(pl.col("click", "conversion").cast(d(st.sampled_from([pl.Float32, pl.Float64])))), None),
    "bad_float_label": lambda d: ({}, LABELLED.with_columns(pl.col("click").cast(pl.Float64)).pipe(
        _set, "click", d(st.sampled_from([0.5, 2.0, -1.0, math.nan]))), "label column 'click'"),
    "degenerate_eval": lambda d: ({}, _degenerate_eval(d), "'ig_stories_click' eval slice"),
    "derive": lambda d: ({"derive": {"leak": d(st.sampled_from(SQL_REACHING_OUT).map(lambda e: e.swapcase() if d(st.booleans()) else e))}},
                         LABELLED, "derive.leak"),
    "hash_buckets": lambda d: ({"hash_buckets": d(st.integers(max_value=0))}, LABELLED, "hash_buckets"),
}


@st.composite
def sweep_case(draw) -> tuple[str, dict, pl.DataFrame, str | None]:
    kind = draw(st.sampled_from([*sorted(SWEEP), "float_labels"]))  # the one valid class twice as often
    overrides, frame, named = SWEEP[kind](draw)
    return kind, overrides, frame, named


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=sweep_case())
def test_a_sweep_case_fails_with_one_line_naming_its_key_and_float_labels_build(tmp_path, case):
    kind, overrides, frame, named = case
    event(kind)
    for old in tmp_path.iterdir():
        if old.is_file():
            old.unlink()
    dataset = write_dataset(tmp_path, frame, **overrides)
    cache = tmp_path / "cache"
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), **TINY_WINDOWS, "cache_dir": str(cache)})
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "check", str(recipe)])
    if named is None:
        assert code == 0 and "ok: " in out.getvalue(), (kind, err.getvalue())
    else:
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("gem-transfer: error: "), (kind, overrides, err.getvalue())
        assert named in lines[0] and "Traceback" not in lines[0], (kind, lines[0])
    assert [p for p in tmp_path.rglob("encoded-*") if p.parent != cache] == []  # nothing written outside the cache
    assert not cache.exists() or list(cache.rglob("*.tmp")) == []

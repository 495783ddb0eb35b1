"""Property: any malformed dataset — missing or extra columns, wrong types, nulls, NaN and infinite
features, shuffled timestamps, empty and one-row tables, unseen categories, a corrupted parquet file —
ends in either a correct data build or one clear error line with exit code 2, and never leaves a
partial output file behind."""

from __future__ import annotations

import contextlib
import io
import math

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import write_dataset, write_recipe
from transfer.cli import main
from transfer.synthetic import SyntheticSpec, generate

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
    recipe = write_recipe(tmp_path, dataset, data={"dataset": str(dataset), "train": {"days": 4}, "eval": {"days": 2},
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

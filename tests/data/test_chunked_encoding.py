"""The data build encodes whole users a chunk at a time: the table is the one encoded in one go."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from transfer.data.chunking import run_bounds
from transfer.data.encoding import EncodingSpec, write_encoded


def _log(n: int = 500, seed: int = 1) -> pl.DataFrame:
    """Many users, coarse timestamps (ties), a label with nulls: every part of the encoding has work."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame({
        "example_id": rng.permutation(n).astype(np.int64),
        "user_id": rng.integers(0, 40, n),
        "ad_id": rng.integers(0, 30, n),
        "ts": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 300, n)],
        "surface": rng.choice(["a", "b"], n),
        "ad_category": rng.integers(0, 5, n),
        "bid": rng.random(n).astype(np.float32),
        "click": rng.integers(0, 2, n).astype(np.float32),
        "buy": pl.Series([None if i % 3 else float(i % 2) for i in range(n)], dtype=pl.Float32),
    })


SPEC = EncodingSpec(["a", "b"], ["click", "buy"], [], ["bid"], 1 << 16, ["ad_id"])


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_a_chunked_build_writes_the_table_encoded_in_one_go(tmp_path, chunk_rows):
    frame = _log()
    write_encoded(frame, SPEC, {}, tmp_path / "whole.parquet", chunk_rows=10**9)
    whole = pl.read_parquet(tmp_path / "whole.parquet")
    write_encoded(frame, SPEC, {"tasks": SPEC.tasks}, tmp_path / "enc.parquet", chunk_rows=chunk_rows)
    chunked = pl.read_parquet(tmp_path / "enc.parquet")
    assert chunked.equals(whole, null_equal=True)
    assert json.loads(pl.read_parquet_metadata(tmp_path / "enc.parquet")["gem_transfer"]) == {"tasks": ["click", "buy"]}
    # the pointers are rows of the whole table: a user's first row, and its history's end, as counted by hand
    users = frame.sort("user_id", "ts", "example_id")["user_id"].to_list()
    assert chunked["hist_start"].to_list() == [users.index(u) for u in users]
    assert chunked.height == 500 and chunked.width == len(whole.columns)


def test_chunks_end_where_a_run_of_equal_values_begins():
    users = pl.Series([3, 3, 3, 5, 8, 8, 9, 9, 9, 9])
    assert run_bounds(users, 2) == [0, 3, 6, 10]  # user 3 keeps its three rows; then the first user to begin at or after 3 + 2
    assert run_bounds(users, 100) == [0, 10]
    assert run_bounds(users, 1) == [0, 3, 4, 6, 10]
    assert run_bounds(pl.Series([], dtype=pl.Int64), 4) == [0, 0]
    assert run_bounds(pl.Series([None, None, 2, 2]), 1) == [0, 2, 4]  # missing values are one run, like a user id

"""Histories: events strictly before the impression, newest last, left-padded — against a naive loop."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import torch

from transfer.contract import AD_FEATURE
from transfer.data.batches import WindowBatches
from transfer.data.encoding import EncodingSpec, load_encoded, write_encoded


def _log_with_ties(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """Few users, coarse timestamps (many equal ones) so ties are common."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame(
        {
            "example_id": rng.permutation(n).astype(np.int64),
            "user_id": rng.integers(0, 7, n),
            "ad_id": rng.integers(0, 50, n),
            "ts": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 60, n)],
            "surface": rng.choice(["a", "b"], n),
            "ad_category": rng.integers(0, 5, n),
            "click": rng.integers(0, 2, n).astype(np.float32),
        }
    )


def _encoded(tmp_path, frame: pl.DataFrame):
    meta = {"tasks": ["click"], "surfaces": ["a", "b"], "categorical": [], "dense": [], "hash_buckets": 1 << 20}
    write_encoded(frame, EncodingSpec(["a", "b"], ["click"], [], [], hash_buckets=1 << 20), meta, tmp_path / "enc.parquet")
    return load_encoded(tmp_path / "enc.parquet")


def _naive_history(frame: pl.DataFrame, example_id: int, length: int) -> list[int]:
    """The ad ids of the user's events strictly before the impression, oldest → newest, last `length`."""
    me = frame.filter(pl.col("example_id") == example_id).row(0, named=True)
    before = frame.filter((pl.col("user_id") == me["user_id"]) & (pl.col("ts") < me["ts"]))
    ordered = before.sort("ts", "example_id")
    return ordered["ad_id"].to_list()[-length:] if length else []


@pytest.mark.parametrize("length", [1, 4, 32])
def test_history_matches_naive_reference(tmp_path, length):
    frame = _log_with_ties()
    log = _encoded(tmp_path, frame)
    data = WindowBatches(log, torch.arange(len(log.ts)), length)
    batch = data[torch.arange(len(log.ts))]
    # map each hashed ad id back to the raw ad id through the rows themselves
    raw_ad = dict(zip(log.categorical[:, AD_FEATURE].tolist(), frame.sort("user_id", "ts", "example_id")["ad_id"].to_list(), strict=False))
    for i, example_id in enumerate(log.example_id.to_list()):
        mask = batch["hist_mask"][i]
        got = [raw_ad[h] for h in batch["hist_ad"][i][mask].tolist()]
        expected = _naive_history(frame, example_id, length)
        assert sorted(got) == sorted(expected)  # same events (order among equal timestamps may differ)
        assert mask.sum() == len(expected)
        if len(expected) < length:  # left padding: the masked positions come first
            assert not mask[: length - len(expected)].any()


def test_history_never_contains_the_impression_or_later_events(tmp_path):
    frame = _log_with_ties(seed=1)
    log = _encoded(tmp_path, frame)
    rows = torch.arange(len(log.ts))
    end, start = log.hist_end[rows], log.hist_start[rows]
    for r in rows.tolist():
        window = torch.arange(int(start[r]), int(end[r]))
        assert (log.ts[window] < log.ts[r]).all()  # strictly before
        if int(end[r]) < len(log.ts) and int(end[r]) != r:
            # the first event after the history is at or after the impression, or another user's
            nxt = int(end[r])
            same_user = log.categorical[nxt, 0] == log.categorical[r, 0]
            assert (not same_user) or log.ts[nxt] >= log.ts[r]


def test_history_is_newest_last(tmp_path):
    log = _encoded(tmp_path, _log_with_ties(seed=2))
    data = WindowBatches(log, torch.arange(len(log.ts)), 16)
    batch = data[torch.arange(len(log.ts))]
    age = batch["hist_age"].float()
    mask = batch["hist_mask"]
    for i in range(len(age)):
        ages = age[i][mask[i]]
        assert (ages[:-1] >= ages[1:]).all()  # older events first, so age never increases along the row

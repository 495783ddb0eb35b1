"""Running counters (the ad's count and label rates as of each impression): hand-computed on a tiny
log, strictly earlier against a naive loop, wired into the encoded log and the dataset YAML."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.config.dataset import counter_names
from transfer.data.counters import PSEUDO_COUNTS, counter_features

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_the_counters_match_a_hand_computation():
    frame = pl.DataFrame({
        "ts": [T0 + timedelta(seconds=s) for s in (0, 1, 1, 2, 3)],
        "ad_id": ["a", "a", "a", "b", "a"],
        "click": [1.0, 0.0, 1.0, None, 0.0],
    })
    got = counter_features(frame, ["ad_id"], ["click"])
    k = PSEUDO_COUNTS
    # the log's rate before each instant, Laplace-smoothed: (positives + 1) / (labelled + 2)
    prior = {0: 1 / 2, 1: 2 / 3, 2: 3 / 5, 3: 3 / 5}  # before ts 2 and 3: 3 labelled (1, 0, 1), 2 positive
    expected_rate = [
        _logit(prior[0]),  # row 0: nothing before it
        _logit((1 + k * prior[1]) / (1 + k)),  # rows 1, 2: only row 0 (the other row at ts 1 is not earlier)
        _logit((1 + k * prior[1]) / (1 + k)),
        _logit(prior[2]),  # row 3: ad b is new; its own null label counts nowhere
        _logit((2 + k * prior[3]) / (3 + k)),  # row 4: rows 0-2 of ad a
    ]
    expected_count = [0.0, math.log(2), math.log(2), 0.0, math.log(4)]
    assert got.columns == ["ad_id.impressions", "ad_id.click_rate"] == counter_names(["ad_id"], ["click"])
    np.testing.assert_allclose(got["ad_id.click_rate"].to_numpy(), expected_rate, rtol=1e-6)
    np.testing.assert_allclose(got["ad_id.impressions"].to_numpy(), expected_count, rtol=1e-6)


def _random_log(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    conversion = rng.integers(0, 2, n).astype(np.float64)
    conversion[rng.random(n) < 0.3] = np.nan  # a task with missing labels
    return pl.DataFrame({
        "ts": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 40, n)],  # coarse: many ties
        "ad_id": rng.integers(0, 6, n),
        "user_id": rng.integers(0, 4, n),
        "click": rng.integers(0, 2, n).astype(np.float64),
        "conversion": conversion,
    }).with_columns(pl.col("conversion").fill_nan(None))


@pytest.mark.parametrize(("seed", "chunk_rows"), [(0, 1 << 18), (1, 1 << 18), (0, 1), (1, 13)])
def test_every_counter_comes_from_strictly_earlier_impressions_of_its_key(seed, chunk_rows):
    """In one chunk, and in time-ordered chunks down to one instant each (the counts carried across)."""
    frame = _random_log(300, seed)
    tasks = ["click", "conversion"]
    got = counter_features(frame, ["ad_id", "user_id"], tasks, chunk_rows=chunk_rows)
    for i in range(0, frame.height, 7):
        me = frame.row(i, named=True)
        before = frame.filter(pl.col("ts") < me["ts"])
        for key in ("ad_id", "user_id"):
            mine = before.filter(pl.col(key) == me[key])
            assert got[f"{key}.impressions"][i] == pytest.approx(math.log1p(mine.height), rel=1e-6)
            for task in tasks:
                prior = (before[task].sum() + 1) / (before[task].count() + 2)
                rate = (mine[task].sum() + PSEUDO_COUNTS * prior) / (mine[task].count() + PSEUDO_COUNTS)
                assert got[f"{key}.{task}_rate"][i] == pytest.approx(_logit(rate), rel=1e-5, abs=1e-5)


def test_a_label_never_informs_its_own_impression_or_its_instant():
    frame = _random_log(200, 2)
    flipped_row = 50
    flipped = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == flipped_row).then(1 - pl.col("click")).otherwise(pl.col("click")).alias("click"))
    before, after = (counter_features(f, ["ad_id"], ["click"])["ad_id.click_rate"].to_numpy() for f in (frame, flipped))
    ts = frame["ts"]
    same_or_earlier = (ts <= ts[flipped_row]).to_numpy()
    np.testing.assert_array_equal(before[same_or_earlier], after[same_or_earlier])
    assert (before != after).any()  # later impressions do see it


def test_the_encoded_log_carries_the_counters_after_the_dense_columns(tmp_path, small_log):
    from transfer.config.dataset import dense_feature_names, inputs_of, load_dataset_config
    from transfer.config.recipe import DataConfig, WindowConfig
    from transfer.data.prepare import prepare_data

    path = write_dataset(tmp_path, small_log, counters=["ad_id", "advertiser"])
    windows = {name: WindowConfig(days=days) for name, days in (("train", 3), ("student", 1), ("validation", 1), ("eval", 1))}
    data = prepare_data(DataConfig(dataset=str(path), cache_dir=str(tmp_path / "cache"), **windows))
    names = ["bid", *counter_names(["ad_id", "advertiser"], ["click", "conversion"])]
    assert data.log.dense_names == names == dense_feature_names(load_dataset_config(path))
    assert data.log.dense.shape[1] == len(names) == inputs_of(load_dataset_config(path)).n_dense
    by_id = dict(zip(small_log["example_id"].to_list(), range(small_log.height), strict=True))
    order = [by_id[e] for e in data.log.example_id.to_list()]  # the encoded rows in the log's order
    direct = counter_features(small_log, ["ad_id", "advertiser"], ["click", "conversion"])[order]
    np.testing.assert_allclose(data.log.dense[:, 1:].numpy(), direct.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("chunk_rows", [1, 1 << 18])  # the null key's count carried from chunk to chunk, or not
def test_a_null_key_is_one_key_value_and_internal_names_never_clash(chunk_rows):
    frame = pl.DataFrame({
        "ts": [T0 + timedelta(seconds=s) for s in (0, 1, 2)],
        "impressions": [None, "x", None],  # a key that shares a name the counters use inside
        "click": [1.0, 0.0, 0.0],
    })
    got = counter_features(frame, ["impressions"], ["click"], chunk_rows=chunk_rows)
    np.testing.assert_allclose(got["impressions.impressions"].to_numpy(), [0.0, 0.0, math.log(2)], rtol=1e-6)
    prior = (1 + 1) / (2 + 2)  # before ts 2: 2 labelled, 1 positive, Laplace-smoothed
    assert got["impressions.click_rate"][2] == pytest.approx(_logit((1 + PSEUDO_COUNTS * prior) / (1 + PSEUDO_COUNTS)), rel=1e-6)


@pytest.mark.parametrize(("counters", "expected"), [
    (["price"], "counters.0: 'price' is not a key of this dataset; allowed: user_id, ad_id, ad_category, advertiser, country"),
    (["ad_id", "ad_id"], "counters.1: 'ad_id' is listed twice"),
])
def test_a_bad_counter_key_is_one_line_naming_it(tmp_path, capsys, small_log, counters, expected):
    dataset = write_dataset(tmp_path, small_log, counters=counters)
    code, out, err = run_cli(capsys, "run", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(dataset) in err and expected in err

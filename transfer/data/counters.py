"""Running counters: the classic CTR features of a key (the ad, its category, …), as of each impression.

For every impression and every key the dataset YAML lists under `counters`, from the impressions of
the same key value with a strictly earlier timestamp (any user, any surface; impressions at the same
instant never inform each other, as histories do not):
- `<key>.impressions`: log1p of how many there are;
- `<key>.<task>_rate`: the log-odds of their label rate per task, smoothed towards the whole log's
  rate strictly before the impression with `PSEUDO_COUNTS` pseudo-impressions (so a new key starts at
  the log's rate, and no rate is 0 or 1).
Nothing after an impression's timestamp is used: a served model reads the same counters from a
feature store at request time. Like the histories, the counters take every label as known at its
impression's timestamp (no label delay): on a log whose conversions arrive days later, they (and the
eval NE of a model reading them) are as optimistic as that delay.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from transfer.config.dataset import counter_names
from transfer.data.chunking import run_bounds

PSEUDO_COUNTS = 5.0  # pseudo-impressions at the log's running rate behind every key's rate


COUNTER_CHUNK_ROWS = 1 << 18  # about how many rows (whole instants) are counted at a time


def counter_features(frame: pl.DataFrame, keys: list[str], tasks: list[str], chunk_rows: int = COUNTER_CHUNK_ROWS) -> pl.DataFrame:
    """The counters of `keys` for every row of `frame` (columns `ts`, the keys and the tasks' 0/1/null
    labels), in `frame`'s row order and named by `counter_names`. → [N, len(keys) · (1 + T)] float32

    The rows are visited in time order, `chunk_rows` at a time (an instant is never split), carrying
    each key value's counts so far (and the log's) from chunk to chunk: besides the features, memory
    holds one chunk's work and one row of counts per key value seen."""
    if not keys:
        return pl.DataFrame()
    names = counter_names(keys, tasks)
    out = {name: np.empty(frame.height, np.float32) for name in names}
    rows = frame.select("ts", *keys, *tasks).with_row_index("__row")
    by_time = rows["ts"].arg_sort()  # [N] rows in time order, ties in row order
    log_counts = _zero_counts({}, tasks)
    key_counts = {key: _zero_counts({key: rows.schema[key]}, tasks) for key in keys}
    bounds = run_bounds(rows["ts"].gather(by_time), chunk_rows)
    for begin, end in itertools.pairwise(bounds):
        chunk = rows[by_time[begin:end]]
        prior, log_counts = _earlier_counts(chunk, [], tasks, log_counts)
        prior = prior.select("ts", *[((pl.col(f"__{t}.positives") + 1) / (pl.col(f"__{t}.labelled") + 2)).alias(f"__{t}.prior") for t in tasks])
        for key in keys:
            per_instant, key_counts[key] = _earlier_counts(chunk, [key], tasks, key_counts[key])
            features = per_instant.join(prior, on="ts", how="left").select(
                key, "ts",
                pl.col("__impressions").cast(pl.Float64).log1p().cast(pl.Float32).alias(f"{key}.impressions"),
                *[_log_odds(task).cast(pl.Float32).alias(f"{key}.{task}_rate") for task in tasks])
            joined = chunk.select("__row", key, "ts").join(features, on=[key, "ts"], how="left", nulls_equal=True)
            at = joined["__row"].to_numpy()
            for name in features.columns[2:]:
                out[name][at] = joined[name].to_numpy()
    return pl.DataFrame(out)


COUNTS = ("__impressions",)  # then per task: "__<task>.labelled", "__<task>.positives" ("__" names: never a dataset's column)


def _count_names(tasks: list[str]) -> list[str]:
    return [*COUNTS, *[f"__{t}.{kind}" for t in tasks for kind in ("labelled", "positives")]]


def _zero_counts(keys: dict[str, pl.DataType], tasks: list[str]) -> pl.DataFrame:
    """Nothing seen yet: the counts carried into the first chunk (no key: the log's, one row of zeros;
    keys, by name and type: no row)."""
    counts = {c: pl.Int64 for c in _count_names(tasks)}
    if not keys:
        return pl.DataFrame({c: [0] for c in counts}, schema=counts)
    return pl.DataFrame(schema=keys | counts)


def _earlier_counts(chunk: pl.DataFrame, keys: list[str], tasks: list[str], carried: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (keys…, ts) instant of `chunk`: how many impressions of the same key value came strictly
    before it (in earlier chunks, `carried`, and earlier in this one), and per task how many of those
    were labelled and positive; and the counts to carry into the next chunk."""
    counts = _count_names(tasks)
    per_instant = chunk.group_by([*keys, "ts"]).agg(
        pl.len().cast(pl.Int64).alias("__impressions"),
        *[pl.col(t).is_not_null().sum().cast(pl.Int64).alias(f"__{t}.labelled") for t in tasks],
        *[pl.col(t).fill_null(0).sum().cast(pl.Int64).alias(f"__{t}.positives") for t in tasks],
    ).sort([*keys, "ts"])
    totals = per_instant.group_by(keys).agg(pl.col(counts).sum()) if keys else per_instant.select(pl.col(counts).sum())
    if keys:
        before = per_instant.join(carried, on=keys, how="left", nulls_equal=True, suffix="__carried", maintain_order="left")  # time order within a key
        earlier = [(pl.col(c).cum_sum() - pl.col(c)).over(keys) + pl.col(f"{c}__carried").fill_null(0) for c in counts]
        carried = pl.concat([carried, totals.select(carried.columns).cast(carried.schema)]).group_by(keys).agg(pl.col(counts).sum())
    else:
        before = per_instant.with_columns(pl.lit(carried[c][0]).alias(f"{c}__carried") for c in counts)
        earlier = [pl.col(c).cum_sum() - pl.col(c) + pl.col(f"{c}__carried") for c in counts]
        carried = pl.concat([carried, totals]).select(pl.col(counts).sum())
    return before.with_columns([e.alias(c) for e, c in zip(earlier, counts, strict=True)]).select(*keys, "ts", *counts), carried


def _log_odds(task: str) -> pl.Expr:
    """A key's smoothed label rate for `task` as log-odds, from its earlier counts and the log's prior."""
    rate = ((pl.col(f"__{task}.positives") + PSEUDO_COUNTS * pl.col(f"__{task}.prior"))
            / (pl.col(f"__{task}.labelled") + PSEUDO_COUNTS))
    return (rate / (1 - rate)).log()

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

import polars as pl

PSEUDO_COUNTS = 5.0  # pseudo-impressions at the log's running rate behind every key's rate


def counter_features(frame: pl.DataFrame, keys: list[str], tasks: list[str]) -> pl.DataFrame:
    """The counters of `keys` for every row of `frame` (columns `ts`, the keys and the tasks' 0/1/null
    labels), in `frame`'s row order and named by `counter_names`. → [N, len(keys) · (1 + T)] float32"""
    rows = frame.select("ts", *keys, *tasks).with_row_index("__row")
    prior = _earlier_sums(rows, [], tasks).select(
        "ts", *[((pl.col(f"__{t}.positives") + 1) / (pl.col(f"__{t}.labelled") + 2)).alias(f"__{t}.prior") for t in tasks])
    rows = rows.join(prior, on="ts", how="left")
    columns = []
    for key in keys:
        joined = rows.join(_earlier_sums(rows, [key], tasks), on=[key, "ts"], how="left", nulls_equal=True).sort("__row")
        columns.append(joined["__impressions"].cast(pl.Float64).log1p().alias(f"{key}.impressions"))
        for task in tasks:
            rate = ((joined[f"__{task}.positives"] + PSEUDO_COUNTS * joined[f"__{task}.prior"])
                    / (joined[f"__{task}.labelled"] + PSEUDO_COUNTS))
            columns.append((rate / (1 - rate)).log().alias(f"{key}.{task}_rate"))
    return pl.DataFrame(columns).cast(pl.Float32)


def _earlier_sums(rows: pl.DataFrame, keys: list[str], tasks: list[str]) -> pl.DataFrame:
    """Per (keys…, ts) instant: how many impressions of the same key value came strictly before it,
    and per task how many of those were labelled and positive."""
    group = [*keys, "ts"]
    per_instant = rows.group_by(group).agg(  # "__" names: never a dataset's column
        pl.len().alias("__impressions"),
        *[pl.col(t).is_not_null().sum().alias(f"__{t}.labelled") for t in tasks],
        *[pl.col(t).fill_null(0).sum().alias(f"__{t}.positives") for t in tasks],
    ).sort(group)
    counts = ["__impressions", *[f"__{t}.{kind}" for t in tasks for kind in ("labelled", "positives")]]
    earlier = [(pl.col(c).cum_sum() - pl.col(c)) for c in counts]
    if keys:
        earlier = [e.over(keys) for e in earlier]
    return per_instant.with_columns([e.alias(c) for e, c in zip(earlier, counts, strict=True)])

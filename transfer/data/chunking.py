"""Cutting sorted rows into chunks that never split a run of equal values (a user, an instant)."""

from __future__ import annotations

import numpy as np
import polars as pl


def run_bounds(values: pl.Series, chunk_rows: int) -> list[int]:
    """Chunk boundaries over `values` (sorted, so equal values are adjacent): 0, then the first row of
    a run at or after every `chunk_rows` rows, then the row count; a run longer than `chunk_rows`
    stays whole. An empty series is one empty chunk ([0, 0])."""
    n = len(values)
    if n == 0:
        return [0, 0]
    firsts = np.flatnonzero(np.r_[True, values[1:].ne_missing(values[:-1]).to_numpy()])
    bounds = [0]
    while bounds[-1] < n:
        at = int(np.searchsorted(firsts, bounds[-1] + max(chunk_rows, 1)))
        bounds.append(int(firsts[at]) if at < len(firsts) else n)
    return bounds

"""Stable hashing of categorical values into fixed-size vocabularies.

Stable across processes, machines and library versions (unlike Python's `hash` or polars' `hash`),
so a model trained today reads tomorrow's data with the same ids. Unseen values simply land in a
bucket. Integers are mixed with splitmix64; strings are hashed once per distinct value (blake2b).
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def stable_hash(values: pl.Series, salt: str, buckets: int) -> np.ndarray:
    """Hash a column into `[0, buckets)`. `salt` (the feature name) decorrelates features. → [N] int64"""
    keys = _integer_keys(values) if values.dtype.is_integer() else _string_keys(values)
    mixed = _splitmix64(keys ^ np.uint64(_digest(salt)))
    return (mixed % np.uint64(buckets)).astype(np.int64)


def _integer_keys(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Int64).fill_null(-1).to_numpy().astype(np.int64).view(np.uint64)


def _string_keys(values: pl.Series) -> np.ndarray:
    text = values.cast(pl.String).fill_null("\x00null")
    distinct = text.unique()
    digests = pl.Series([_digest(v) for v in distinct.to_list()], dtype=pl.UInt64)
    return text.replace_strict(distinct, digests, return_dtype=pl.UInt64).to_numpy()


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))

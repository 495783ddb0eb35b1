"""Encode the canonical log into tensors once per dataset, with each row's history pointers.

Rows are sorted by (user, time, example_id). A row's history is the contiguous slice
`[hist_start, hist_end)` of the same sorted arrays: the user's events strictly before the row's
timestamp (events at the same instant are excluded, so a label never leaks into its own features).
Batches gather the last `L` events of that slice by tensor indexing (`transfer.data.batches`), so the
same cache serves a long-history teacher and a short-history VM.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from transfer.contract import ID_FEATURES, InputSpec
from transfer.data.cache import cached, checksum_file, sha256
from transfer.data.chunking import run_bounds
from transfer.data.counters import counter_features
from transfer.data.hashing import stable_hash
from transfer.util.progress import step


@dataclass
class EncodedLog:
    """The whole dataset as tensors, sorted by (user, time). N rows, F categorical, D dense, T tasks."""

    example_id: pl.Series  # [N] original keys
    ts: torch.Tensor  # [N] int64 seconds since epoch
    categorical: torch.Tensor  # [N, F] int64 hashed ids (user_id, ad_id, ad_category, then the rest)
    dense: torch.Tensor  # [N, D] float32: the dataset's own (signed log1p), then its counters
    surface: torch.Tensor  # [N] int64 index into `surfaces`
    labels: torch.Tensor  # [N, T] float32, NaN where a task's label is missing
    action: torch.Tensor  # [N] int64: 0 seen, k = 1 + the last positive task's index
    hist_start: torch.Tensor  # [N] int64 first row of the user's history
    hist_end: torch.Tensor  # [N] int64 one past the last event strictly before this row
    tasks: list[str]
    surfaces: list[str]
    categorical_names: list[str]
    dense_names: list[str]
    hash_buckets: int

    @property
    def inputs(self) -> InputSpec:
        return InputSpec(
            n_categorical=self.categorical.shape[1],
            n_dense=self.dense.shape[1],
            n_surfaces=len(self.surfaces),
            n_tasks=len(self.tasks),
            hash_buckets=self.hash_buckets,
            categorical_names=tuple(self.categorical_names),
        )

    def window_rows(self, start: datetime, end: datetime) -> torch.Tensor:
        """Row indices with start <= ts < end. → [n] int64"""
        lo, hi = int(start.timestamp()), int(end.timestamp())
        return torch.nonzero((self.ts >= lo) & (self.ts < hi)).squeeze(1)

    def users(self, rows: torch.Tensor) -> torch.Tensor:
        """Which user each of `rows` belongs to: one int64 id per user (its first row in the log, so
        two users never share one, unlike hashed ids). rows: [n] → [n]"""
        return self.hist_start[rows]

    def surface_rows(self, rows: torch.Tensor, surfaces: str | tuple[str, ...]) -> torch.Tensor:
        """The subset of `rows` shown on `surfaces` (one name or several). → [m] int64"""
        wanted = torch.tensor([self.surfaces.index(s) for s in ([surfaces] if isinstance(surfaces, str) else surfaces)])
        return rows[torch.isin(self.surface[rows], wanted)]


ENCODE_CHUNK_ROWS = 1 << 18  # about how many rows (whole users) are encoded at a time


@dataclass(frozen=True)
class EncodingSpec:
    """What the encoded table is made of: the dataset's surfaces, tasks, categorical and dense
    columns, hash buckets and counter keys, in column order."""

    surfaces: list[str]
    tasks: list[str]
    categorical: list[str]
    dense: list[str]
    hash_buckets: int
    counters: list[str] = field(default_factory=list)


def write_encoded(frame: pl.DataFrame, spec: EncodingSpec, meta: dict, target: Path, chunk_rows: int = ENCODE_CHUNK_ROWS) -> None:
    """The encoded table written to the parquet file `target` chunk by chunk (one row group or more
    per chunk), with `meta` in its metadata: only one chunk's encoding is in memory at a time."""
    writer = None
    try:
        for chunk in encoded_chunks(frame, spec, chunk_rows):
            table = chunk.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(target, table.schema.with_metadata({"gem_transfer": json.dumps(meta)}))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def encoded_chunks(frame: pl.DataFrame, spec: EncodingSpec, chunk_rows: int = ENCODE_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """The encoded table in its row order (user, time, example_id), as chunks of whole users of about
    `chunk_rows` rows (more when one user has more). The sort runs once over the three columns it
    reads, the counters (which count across users) in time-ordered chunks of their own; everything
    else, chunk by chunk."""
    order = frame.select("user_id", "ts", "example_id").with_row_index("source").sort("user_id", "ts", "example_id")
    counted = counter_features(frame, spec.counters, spec.tasks)  # [N, C]
    counted = counted[order["source"]] if counted.width else counted  # in the table's order
    bounds = run_bounds(order["user_id"], chunk_rows)
    source = order["source"]
    del order
    for begin, end in itertools.pairwise(bounds):
        yield _encode_rows(frame[source[begin:end]], begin, spec, counted[begin:end])


def _encode_rows(rows: pl.DataFrame, offset: int, spec: EncodingSpec, counted: pl.DataFrame) -> pl.DataFrame:
    """Encode whole users' rows, already in the table's order, that start at row `offset` of it."""
    frame = rows.with_row_index("row", offset=offset)
    names = [*ID_FEATURES, *spec.categorical]
    hashed = {f"cat_{i}": stable_hash(frame[name], name, spec.hash_buckets) for i, name in enumerate(names)}
    positive_task = pl.max_horizontal(
        *[pl.when(pl.col(t) == 1).then(pl.lit(i + 1)).otherwise(0) for i, t in enumerate(spec.tasks)]
    )
    ts = pl.col("ts").dt.epoch("s")
    user_start = pl.col("row").cast(pl.Int64).min().over("user_id")
    return frame.select(
        "example_id",
        ts.alias("ts"),
        pl.col("surface").replace_strict(spec.surfaces, list(range(len(spec.surfaces))), return_dtype=pl.Int64),
        *[pl.col(t).alias(f"label_{i}") for i, t in enumerate(spec.tasks)],
        *[_signed_log1p(pl.col(d).cast(pl.Float32)).alias(f"dense_{i}") for i, d in enumerate(spec.dense)],
        positive_task.cast(pl.Int64).alias("action"),
        user_start.alias("hist_start"),
        (user_start + pl.col("ts").rank("min").over("user_id").cast(pl.Int64) - 1).alias("hist_end"),
    ).with_columns(**{k: pl.Series(v) for k, v in hashed.items()},
                   **{f"dense_{len(spec.dense) + i}": counted[name] for i, name in enumerate(counted.columns)})


def _signed_log1p(x: pl.Expr) -> pl.Expr:
    return x.sign() * x.abs().log1p()


# The encoded log's tensors, one uncompressed `.npy` file per block, memory-mapped by every process:
# block → (its parquet columns' prefix, or one column; its dtype). Blocks with a prefix are [N, k].
BLOCKS: dict[str, tuple[str, np.dtype]] = {
    "ts": ("ts", np.dtype(np.int64)),
    "categorical": ("cat_", np.dtype(np.int64)),
    "dense": ("dense_", np.dtype(np.float32)),
    "surface": ("surface", np.dtype(np.int64)),
    "labels": ("label_", np.dtype(np.float32)),
    "action": ("action", np.dtype(np.int64)),
    "hist_start": ("hist_start", np.dtype(np.int64)),
    "hist_end": ("hist_end", np.dtype(np.int64)),
}
BLOCK_CHUNK_ROWS = 1 << 20  # rows read from the parquet at a time while a block is written
COLUMNS_PREFIX = "columns-"


def load_encoded(path: Path) -> EncodedLog:
    """The encoded table at `path` as tensors that are memory-mapped, not read: each block is an
    uncompressed `.npy` file in a folder beside the parquet, named by the parquet's checksum
    (`columns-<sha256>/`), written once (atomically, in bounded memory, with its own checksum) and
    mapped copy-on-write by every process that loads it, so the processes of one host share one
    copy in the page cache and a process holds only the pages it touches."""
    meta = json.loads(pl.read_parquet_metadata(path)["gem_transfer"])
    folder = path.parent / f"{COLUMNS_PREFIX}{_content_digest(path)[:32]}"
    n = pl.scan_parquet(path).select(pl.len()).collect().item()
    names = pl.read_parquet_schema(path)
    first_time = not all(checksum_file(folder / f"{block}.npy").is_file() for block in BLOCKS)
    with step(f"data: mapping {n:,} encoded rows into {folder.name}") if first_time else contextlib.nullcontext():
        blocks = {block: _mapped_block(path, folder, block, [c for c in names if _in_block(c, block)], n) for block in BLOCKS}
    return EncodedLog(
        example_id=pl.read_parquet(path, columns=["example_id"])["example_id"],
        **blocks,
        tasks=meta["tasks"],
        surfaces=meta["surfaces"],
        categorical_names=[*ID_FEATURES, *meta["categorical"]],
        dense_names=meta["dense"],
        hash_buckets=meta["hash_buckets"],
    )


def _in_block(column: str, block: str) -> bool:
    prefix = BLOCKS[block][0]
    return column.startswith(prefix) if prefix.endswith("_") else column == prefix


def _content_digest(path: Path) -> str:
    """The parquet's sha256: the one recorded beside it by the data cache, else computed."""
    recorded = checksum_file(path)
    return recorded.read_text().strip() if recorded.is_file() else sha256(path)


def _mapped_block(path: Path, folder: Path, block: str, columns: list[str], n: int) -> torch.Tensor:
    """One block's tensor ([N] or [N, k], columns in their numbered order), mapped from its `.npy`
    file, which is written first from the parquet when it is missing or damaged (its checksum is
    written, but a reuse checks only its layout and size: the parquet it comes from was verified)."""
    prefix, dtype = BLOCKS[block]
    if prefix.endswith("_"):
        columns = sorted(columns, key=lambda c: int(c[len(prefix):]))
    shape = (n, len(columns)) if prefix.endswith("_") else (n,)
    target = cached(folder / f"{block}.npy", lambda tmp: _write_block(path, columns, shape, dtype, tmp),
                    intact=lambda p: _block_intact(p, shape, dtype))
    if math.prod(shape) == 0:
        return torch.from_numpy(np.zeros(shape, dtype))  # nothing to map (a dataset without dense columns)
    return torch.from_numpy(np.load(target, mmap_mode="c"))


def _block_intact(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """The `.npy` file holds an array of `shape` and `dtype`, every byte of it there."""
    try:
        with open(path, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
            found_shape, fortran, found_dtype = read_header(f)
            header = f.tell()
    except (OSError, ValueError, KeyError):
        return False
    size = header + math.prod(shape) * dtype.itemsize
    return found_shape == shape and found_dtype == dtype and not fortran and path.stat().st_size == size


def _write_block(path: Path, columns: list[str], shape: tuple[int, ...], dtype: np.dtype, target: Path) -> None:
    """Fill a `.npy` file of `shape` from the parquet's `columns`, `BLOCK_CHUNK_ROWS` rows at a time."""
    if math.prod(shape) == 0:
        with open(target, "wb") as f:
            np.save(f, np.zeros(shape, dtype))
        return
    out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=shape)
    for start in range(0, shape[0], BLOCK_CHUNK_ROWS):
        chunk = pl.scan_parquet(path).select(columns).slice(start, BLOCK_CHUNK_ROWS).collect()
        for j, name in enumerate(columns):
            values = chunk[name].to_numpy().astype(dtype, copy=False)
            if len(shape) == 1:
                out[start : start + chunk.height] = values
            else:
                out[start : start + chunk.height, j] = values
    out.flush()
    del out

"""Embedding tables: a producer's embedding of each id of one feature (the user, optionally the ad),
for consumers that take it as an input (`adapters/embedding_features.py`).

An id's embedding is the mean of the producer's embeddings of that id's impressions over the last
`days` days before the producer's cutoff, scored by the producer as it was at its cutoff (eval mode):
each of those embeddings pools the user's long history up to its impression, so the mean summarises
what the producer knew of the id when it stopped learning. Ids are the log's hashed ids (the key the
consumer's own features use), so serving looks up the same key it already has.

One parquet file per (producer, feature, days): columns `key` (int64, sorted) and `embedding`
(float16 fixed-size list), with the knowledge table's provenance (`gem_transfer.provenance`) and
the table's own metadata (`gem_transfer.embedding_table`: feature, days, rows scored, width); written under a
temporary name, renamed into place with its checksum beside it, and reused while the checksum and the
producer's run id agree.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from transfer.data.batches import WindowBatches
from transfer.data.cache import checksum_matches, write_checksum
from transfer.data.encoding import EncodedLog
from transfer.errors import DataError
from transfer.knowledge.table import PROVENANCE_KEY, Provenance, check_provenance
from transfer.util import ranks
from transfer.util.atomic import atomic_path

TABLE_KEY = "gem_transfer.embedding_table"


@dataclass(frozen=True)
class EmbeddingTableInfo:
    """What an embedding table holds: which feature's ids, over how many of the producer's last days."""

    feature: str  # the categorical feature whose ids key the table (user_id, ad_id)
    days: int
    rows_scored: int  # the producer's impressions its means were taken over
    dim: int  # the embedding's width E (an empty table keeps it)


@dataclass(frozen=True)
class EmbeddingTable:
    """keys [U] int64 hashed ids, sorted; vectors [U, E] float16, row u the embedding of keys[u]."""

    keys: torch.Tensor
    vectors: torch.Tensor
    provenance: Provenance
    info: EmbeddingTableInfo

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]


@torch.no_grad()
def mean_embeddings(model: torch.nn.Module, log: EncodedLog, rows: torch.Tensor, feature: int,
                    batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Score `rows` [n] with `model` in eval mode, in float32 (a copy, whatever precision it trained at),
    and average its embeddings by the rows' ids of categorical `feature`. → (keys [U] sorted int64, vectors [U, E] float32)."""
    model = copy.deepcopy(model).float().eval()
    device = next(model.parameters()).device
    batches = WindowBatches(log, rows, model.history_length)
    parts = []
    for start in range(0, len(rows), batch_size):
        positions = torch.arange(start, min(start + batch_size, len(rows)))
        batch = {name: value.to(device) for name, value in batches[positions].items()}
        parts.append(model(batch).embedding.float().cpu())
    embeddings = torch.cat(parts) if parts else torch.zeros(0, model.embedding_dim)  # [n, E]
    keys, which = torch.unique(log.categorical[rows, feature], sorted=True, return_inverse=True)  # [U], [n]
    sums = torch.zeros(len(keys), embeddings.shape[1]).index_add_(0, which, embeddings)
    counts = torch.zeros(len(keys)).index_add_(0, which, torch.ones(len(which)))
    return keys, sums / counts[:, None]


def write_embedding_table(path: Path, keys: torch.Tensor, vectors: torch.Tensor, provenance: Provenance,
                          info: EmbeddingTableInfo) -> None:
    """Write the table atomically, its checksum beside it. keys [U] int64, vectors [U, E] (stored float16)."""
    emb = vectors.to(torch.float16).numpy()
    table = pa.table({"key": pa.array(keys.numpy()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
    metadata = {PROVENANCE_KEY: json.dumps(asdict(provenance)), TABLE_KEY: json.dumps(asdict(info))}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
    write_checksum(path)


def read_embedding_table(path: Path, producer: str, run_id: str | None = None) -> EmbeddingTable:
    """The table at `path`, refused in one line (`DataError`) when it is not an embedding table or
    comes from another producer (or another run of it) than the consumer's."""
    provenance = check_provenance(path, producer, run_id)
    meta = pl.read_parquet_metadata(path)
    if TABLE_KEY not in meta:
        raise DataError(f"{path}: not an embedding table (no {TABLE_KEY} metadata)")
    frame = pl.read_parquet(path)
    if frame.columns != ["key", "embedding"] or frame["key"].dtype != pl.Int64 or not frame["key"].is_sorted():
        raise DataError(f"{path}: found columns {frame.columns} ({frame.dtypes}); allowed: key (int64, sorted), embedding (float16 array)")
    info = EmbeddingTableInfo(**json.loads(meta[TABLE_KEY]))
    vectors = torch.from_numpy(frame["embedding"].to_numpy().astype("float16").reshape(frame.height, info.dim).copy())
    return EmbeddingTable(torch.from_numpy(frame["key"].to_numpy().copy()), vectors, provenance, info)


def embedding_table(path: Path, model: torch.nn.Module, log: EncodedLog, rows: torch.Tensor, feature: int,
                    provenance: Provenance, days: int) -> EmbeddingTable:
    """The producer's embedding table of categorical `feature` over `rows` (its last `days` days):
    reused from `path` when complete (checksum) and made by the same producer run, else made — every
    process computes the same table, the first writes it."""
    name = log.categorical_names[feature]
    if path.is_file() and checksum_matches(path):
        found = read_embedding_table(path, provenance.producer)
        if found.provenance.producer_run_id == provenance.producer_run_id and found.info.feature == name and found.info.days == days:
            return found
    keys, vectors = mean_embeddings(model, log, rows, feature)
    info = EmbeddingTableInfo(name, days, len(rows), vectors.shape[1])
    if ranks.is_main():
        write_embedding_table(path, keys, vectors, provenance, info)
    return EmbeddingTable(keys, vectors.to(torch.float16), provenance, info)

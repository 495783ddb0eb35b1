"""Knowledge tables (design §5): what a producer emits per example, with its provenance.

One parquet file — or, from a multi-process run, one shard per rank (`<stem>.rank<r>-of-<w>.parquet`,
each rank's rows, every shard with the same provenance) — with columns `example_id`, `logit_<task>`
(float32) per task, `embedding` (float16 array), and key-value metadata `gem_transfer.provenance` (producer, producer run id, data cutoff, created at,
recipe hash). Streamed to disk batch by batch under a temporary name, renamed when complete; read by
students through a polars join on `example_id`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from transfer.errors import DataError
from transfer.util.atomic import atomic_path

PROVENANCE_KEY = "gem_transfer.provenance"


@dataclass(frozen=True)
class Provenance:
    producer: str  # the producing model's name (e.g. the teacher preset)
    producer_run_id: str  # its MLflow run id
    cutoff: str  # ISO time: the producer saw no data at or after this
    created_at: str  # ISO time
    recipe_hash: str


def write_knowledge(
    path: Path,
    example_id: pl.Series,
    logits: torch.Tensor,
    embedding: torch.Tensor,
    tasks: list[str],
    provenance: Provenance,
) -> None:
    """Write a whole table at once. example_id: [N], logits: [N, T] (float32), embedding: [N, E] (stored as float16)."""
    with atomic_path(path) as tmp:
        writer = KnowledgeWriter(tmp, tasks, provenance)
        writer.append(example_id, logits, embedding)
        writer.close()


class KnowledgeWriter:
    """Streams a knowledge table to one parquet file, a batch (one row group) at a time: memory holds
    one batch, whatever the window's size. Write to a temporary path and rename it when closed."""

    def __init__(self, path: Path, tasks: list[str], provenance: Provenance, embedding_dim: int = 1,
                 example_id_dtype: pl.DataType = pl.Int64):
        self.path, self.tasks = path, tasks
        self.embedding_dim, self.example_id_dtype = embedding_dim, example_id_dtype  # what an empty table (shard) still declares
        self.metadata = {PROVENANCE_KEY: json.dumps(asdict(provenance))}
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def append(self, example_id: pl.Series, logits: torch.Tensor, embedding: torch.Tensor) -> None:
        """example_id: [B], logits: [B, T], embedding: [B, E]"""
        table = _arrow_table(example_id, logits, embedding, self.tasks)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema.with_metadata(self.metadata))
        self._writer.write_table(table)
        self.rows += len(example_id)

    def close(self) -> None:
        if self._writer is None:  # no rows: still a table, with its columns and provenance
            empty = _arrow_table(pl.Series("example_id", [], self.example_id_dtype), torch.zeros(0, len(self.tasks)), torch.zeros(0, self.embedding_dim), self.tasks)
            pq.write_table(empty.replace_schema_metadata(self.metadata), self.path)
            return
        self._writer.close()


def _arrow_table(example_id: pl.Series, logits: torch.Tensor, embedding: torch.Tensor, tasks: list[str]) -> pa.Table:
    """The table's columns built by pyarrow straight from numpy (one buffer each, nothing retained
    between batches). example_id: [B], logits: [B, T], embedding: [B, E] → float16 fixed-size lists."""
    columns = {"example_id": example_id.to_arrow()}
    for i, task in enumerate(tasks):
        columns[f"logit_{task}"] = pa.array(logits[:, i].float().numpy())
    emb = embedding.to(torch.float16).numpy()
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    return pa.table(columns)


KnowledgeTable = Path | list[Path]  # one file, or the shards of a multi-process run


def shard_path(folder: Path, stem: str, rank: int, world: int) -> Path:
    """Where rank `rank` of `world` writes its part of the table (a single process: the whole table)."""
    return folder / (f"{stem}.parquet" if world == 1 else f"{stem}.rank{rank}-of-{world}.parquet")


def finished_table(folder: Path, stem: str) -> list[Path] | None:
    """The complete table `stem` in `folder`: the single file, or a full set of shards (from any
    number of ranks); None while none is complete (each shard is renamed into place when finished)."""
    if (folder / f"{stem}.parquet").is_file():
        return [folder / f"{stem}.parquet"]
    for first in sorted(folder.glob(f"{stem}.rank0-of-*.parquet")):
        world = int(first.stem.rsplit("-of-", 1)[1])
        shards = [shard_path(folder, stem, rank, world) for rank in range(world)]
        if all(shard.is_file() for shard in shards):
            return shards
    return None


def _shards(table: KnowledgeTable) -> list[Path]:
    return [table] if isinstance(table, Path) else list(table)


def _name(table: KnowledgeTable) -> str:
    """How errors name a table: its file, or its shard set."""
    shards = _shards(table)
    if len(shards) == 1:
        return str(shards[0])
    return str(shards[0]).replace(".rank0-of-", ".rank*-of-")


def table_provenance(table: KnowledgeTable) -> Provenance:
    """The provenance of a table; every shard must carry the same."""
    shards = _shards(table)
    first = read_provenance(shards[0])
    for shard in shards[1:]:
        if read_provenance(shard) != first:
            raise DataError(f"{shard}: its provenance differs from {shards[0]}'s; the shards come from different generations")
    return first


def read_provenance(path: Path) -> Provenance:
    """The provenance stored in a knowledge table; a `DataError` if there is none."""
    if not path.is_file():
        raise DataError(f"{path}: knowledge table not found")
    meta = _readable(path, lambda: pl.read_parquet_metadata(path))
    if PROVENANCE_KEY not in meta:
        raise DataError(f"{path}: not a knowledge table (no {PROVENANCE_KEY} metadata)")
    return Provenance(**json.loads(meta[PROVENANCE_KEY]))


def check_provenance(table: KnowledgeTable, expected_producer: str, expected_run_id: str | None = None) -> Provenance:
    """Refuse knowledge from another producer than the recipe names."""
    found, path = table_provenance(table), _name(table)
    if found.producer != expected_producer:
        raise DataError(
            f"{path}: knowledge was produced by '{found.producer}', but the recipe's producer is '{expected_producer}'"
        )
    if expected_run_id is not None and found.producer_run_id != expected_run_id:
        raise DataError(
            f"{path}: knowledge comes from run {found.producer_run_id} of '{found.producer}', "
            f"expected run {expected_run_id}"
        )
    return found


def check_age(table: KnowledgeTable, provenance: Provenance, newest_example: datetime, max_age_days: int | None) -> float:
    """Days between the producer's cutoff and the newest example it teaches; refuse beyond `max_age_days`."""
    age = (newest_example - datetime.fromisoformat(provenance.cutoff)).total_seconds() / 86400
    if max_age_days is not None and age > max_age_days:
        raise DataError(
            f"{_name(table)}: knowledge from '{provenance.producer}' (cutoff {provenance.cutoff}) is {age:.1f} days old "
            f"at the end of the consumers' window; transfer.max_age_days allows {max_age_days}"
        )
    return age


@dataclass
class JoinedKnowledge:
    """A producer's knowledge aligned with a consumer's training rows."""

    logits: torch.Tensor  # [N, T] the producer's logits for the consumer's tasks
    embedding: torch.Tensor | None  # [N, E] float16, when asked for


def join_knowledge(table: KnowledgeTable, example_id: pl.Series, tasks: list[str], embedding: bool = False) -> JoinedKnowledge:
    """The producer's logits for `tasks` (and its embeddings), aligned with `example_id` by a polars
    left join. The table is the contract between a producer and its students, so it is checked as it is
    read, whoever wrote it: its columns and their types, one row per `example_id`, a row for every
    training example, finite values. A `DataError` names the table, the column and what is wrong."""
    shards, path = _shards(table), _name(table)
    schemas = [_readable(shard, lambda shard=shard: pl.read_parquet_schema(shard)) for shard in shards]  # a bad shard is named itself
    available = schemas[0]
    for shard, schema in zip(shards[1:], schemas[1:], strict=True):
        if schema != available:
            raise DataError(f"{shard}: its columns differ from {shards[0]}'s ({dict(schema)} against {dict(available)}); the shards "
                            "come from different producers")
    columns = [f"logit_{task}" for task in tasks] + (["embedding"] if embedding else [])
    absent = [c for c in ["example_id", *columns] if c not in available]
    if absent:
        raise DataError(f"{path}: knowledge has no column {', '.join(absent)}; it has {', '.join(available)}")
    _check_types(path, available, columns, example_id.dtype)
    knowledge = _readable(Path(path), lambda: pl.read_parquet(shards, columns=["example_id", *columns]))
    _check_unique(path, knowledge["example_id"])
    _check_finite_logits(path, knowledge, columns[: len(tasks)])
    keys = pl.DataFrame({"example_id": example_id})
    joined = keys.join(knowledge, on="example_id", how="left", maintain_order="left")
    if joined.height != keys.height:  # cannot happen with unique keys; a join that adds rows would shift every later row
        raise DataError(f"{path}: joining its knowledge gave {joined.height} rows for {keys.height} training examples")
    missing = joined[columns[0]].null_count()
    if missing:
        raise DataError(f"{path}: knowledge has no {columns[0]} for {missing} of the {len(keys)} training examples")
    logits = torch.from_numpy(joined.select(columns[: len(tasks)]).to_numpy().astype(np.float32))
    emb = torch.from_numpy(np.stack(joined["embedding"].to_numpy())) if embedding else None
    if emb is not None and not torch.isfinite(emb).all():
        bad = ~torch.isfinite(emb).all(dim=1)
        raise DataError(f"{path}: column embedding holds non-finite values on {int(bad.sum())} of the training examples "
                        f"(e.g. example_id {joined['example_id'][int(bad.nonzero()[0])]!r}); allowed: finite numbers")
    return JoinedKnowledge(logits, emb)


def _readable(path: Path, read):
    """`read()`, with a file polars cannot read (truncated, not parquet) said in one line."""
    try:
        return read()
    except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable knowledge table ({first[:200]}); delete it and rerun to generate it again") from None


def _check_types(path: str, schema: pl.Schema, columns: list[str], id_dtype: pl.DataType) -> None:
    """Logits are float32, the embedding a float16 array, `example_id` the log's key type."""
    if schema["example_id"] != id_dtype:
        raise DataError(f"{path}: column example_id is {schema['example_id']}; allowed: {id_dtype}, the impression log's example_id type")
    for column in columns:
        found = schema[column]
        if column == "embedding":
            if not (isinstance(found, (pl.Array, pl.List)) and found.inner == pl.Float16):
                raise DataError(f"{path}: column embedding is {found}; allowed: a fixed-size array of float16")
        elif found != pl.Float32:
            raise DataError(f"{path}: column {column} is {found}; allowed: float32")


def _check_unique(path: str, example_id: pl.Series) -> None:
    duplicated = example_id.filter(example_id.is_duplicated())
    if len(duplicated):
        raise DataError(f"{path}: column example_id has {duplicated.n_unique()} duplicated key(s) (e.g. {duplicated[0]!r}); "
                        "allowed: one row per example")


def _check_finite_logits(path: str, knowledge: pl.DataFrame, columns: list[str]) -> None:
    """Every logit of the table finite (NaN would end a student's training in a NaN loss, ±inf in a
    saturated soft label), whichever rows a consumer reads."""
    for column in columns:
        bad = knowledge.filter(~pl.col(column).is_finite() | pl.col(column).is_null())
        if bad.height:
            raise DataError(f"{path}: column {column} holds {bad.height} non-finite value(s) (e.g. {bad[column][0]} for example_id "
                            f"{bad['example_id'][0]!r}); allowed: finite numbers")

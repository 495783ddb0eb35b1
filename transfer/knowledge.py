"""Knowledge tables (design §5): what a producer emits per example, with its provenance.

One parquet file: `example_id`, `logit_<task>` (float32) per task, `embedding` (float16 array), and
key-value metadata `gem_transfer.provenance` (producer, producer run id, data cutoff, created at,
recipe hash). Written atomically once; read by students through a polars join on `example_id`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from transfer.atomic import atomic_path
from transfer.errors import DataError

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
    """example_id: [N], logits: [N, T] (float32), embedding: [N, E] (stored as float16)."""
    columns = {"example_id": example_id}
    for i, task in enumerate(tasks):
        columns[f"logit_{task}"] = pl.Series(logits[:, i].float().numpy())
    emb = embedding.to(torch.float16).numpy()
    columns["embedding"] = pl.Series(emb, dtype=pl.Array(pl.Float16, emb.shape[1]))
    frame = pl.DataFrame(columns)
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, metadata={PROVENANCE_KEY: json.dumps(asdict(provenance))})


def read_provenance(path: Path) -> Provenance:
    """The provenance stored in a knowledge table; a `DataError` if there is none."""
    if not path.is_file():
        raise DataError(f"{path}: knowledge table not found")
    meta = pl.read_parquet_metadata(path)
    if PROVENANCE_KEY not in meta:
        raise DataError(f"{path}: not a knowledge table (no {PROVENANCE_KEY} metadata)")
    return Provenance(**json.loads(meta[PROVENANCE_KEY]))


def check_provenance(path: Path, expected_producer: str, expected_run_id: str | None = None) -> Provenance:
    """Refuse knowledge from another producer than the recipe names."""
    found = read_provenance(path)
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


def check_age(path: Path, provenance: Provenance, newest_example: datetime, max_age_days: int | None) -> float:
    """Days between the producer's cutoff and the newest example it teaches; refuse beyond `max_age_days`."""
    age = (newest_example - datetime.fromisoformat(provenance.cutoff)).total_seconds() / 86400
    if max_age_days is not None and age > max_age_days:
        raise DataError(
            f"{path}: knowledge from '{provenance.producer}' (cutoff {provenance.cutoff}) is {age:.1f} days old "
            f"at the end of the consumers' window; transfer.max_age_days allows {max_age_days}"
        )
    return age


@dataclass
class JoinedKnowledge:
    """A producer's knowledge aligned with a consumer's training rows."""

    logits: torch.Tensor  # [N, T] the producer's logits for the consumer's tasks
    embedding: torch.Tensor | None  # [N, E] float16, when asked for


def join_knowledge(path: Path, example_id: pl.Series, tasks: list[str], embedding: bool = False) -> JoinedKnowledge:
    """The producer's logits for `tasks` (and its embeddings), aligned with `example_id` by a polars
    left join; a `DataError` names the table and the count of examples it lacks."""
    available = pl.read_parquet_schema(path)
    columns = [f"logit_{task}" for task in tasks] + (["embedding"] if embedding else [])
    absent = [c for c in columns if c not in available]
    if absent:
        raise DataError(f"{path}: knowledge has no column {', '.join(absent)}; it has {', '.join(available)}")
    table = pl.read_parquet(path, columns=["example_id", *columns])
    keys = pl.DataFrame({"example_id": example_id})
    joined = keys.join(table, on="example_id", how="left", maintain_order="left")
    missing = joined[columns[0]].null_count()
    if missing:
        raise DataError(f"{path}: knowledge has no {columns[0]} for {missing} of the {len(keys)} training examples")
    logits = torch.from_numpy(joined.select(columns[: len(tasks)]).to_numpy().astype(np.float32))
    emb = torch.from_numpy(np.stack(joined["embedding"].to_numpy())) if embedding else None
    return JoinedKnowledge(logits, emb)

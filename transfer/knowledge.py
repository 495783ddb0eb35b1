"""Knowledge tables (design §5): what a producer emits per example, with its provenance.

One parquet file: `example_id`, `logit_<task>` (float32) per task, `embedding` (float16 array), and
key-value metadata `gem_transfer.provenance` (producer, producer run id, data cutoff, created at,
recipe hash). Written atomically once; read by students through a polars join on `example_id`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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


def join_soft_logits(path: Path, example_id: pl.Series, task: str) -> torch.Tensor:
    """The producer's logits for `task`, aligned with `example_id` (a polars left join). → [N, 1]"""
    column = f"logit_{task}"
    table = pl.read_parquet(path, columns=["example_id", column])
    keys = pl.DataFrame({"example_id": example_id})
    joined = keys.join(table, on="example_id", how="left", maintain_order="left")
    missing = joined[column].null_count()
    if missing:
        raise DataError(f"{path}: knowledge has no '{column}' for {missing} of the {len(keys)} training examples")
    return torch.from_numpy(joined[column].to_numpy().astype(np.float32)).unsqueeze(1)

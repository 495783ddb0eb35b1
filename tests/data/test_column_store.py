"""The encoded log is memory-mapped from one `.npy` file per block, not read into each process."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from transfer.data import encoding
from transfer.data.cache import checksum_file, sha256
from transfer.data.encoding import BLOCKS, EncodingSpec, load_encoded, write_encoded


def _saved(tmp_path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(4)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    frame = pl.DataFrame({
        "example_id": np.arange(n, dtype=np.int64),
        "user_id": rng.integers(0, 9, n),
        "ad_id": rng.integers(0, 40, n),
        "ts": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 600, n)],
        "surface": rng.choice(["a", "b"], n),
        "ad_category": rng.integers(0, 5, n),
        "bid": rng.random(n),
        "click": pl.Series([None if i % 11 == 0 else float(v) for i, v in enumerate(rng.integers(0, 2, n))], dtype=pl.Float32),
    })
    meta = {"tasks": ["click"], "surfaces": ["a", "b"], "categorical": [], "dense": ["bid"], "hash_buckets": 1 << 16}
    write_encoded(frame, EncodingSpec(["a", "b"], ["click"], [], ["bid"], hash_buckets=1 << 16), meta, tmp_path / "enc.parquet")
    return tmp_path / "enc.parquet"


def _mapped_files() -> set[str]:
    return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(".npy")}


@pytest.mark.parametrize("chunk_rows", [7, 1 << 20])  # many chunks and one: the same tensors
def test_the_blocks_hold_the_parquets_columns_and_are_mapped_from_files(tmp_path, monkeypatch, chunk_rows):
    path = _saved(tmp_path)
    monkeypatch.setattr(encoding, "BLOCK_CHUNK_ROWS", chunk_rows)
    log = load_encoded(path)
    table = pl.read_parquet(path)  # the source, read whole by polars
    folder = tmp_path / f"columns-{sha256(path)[:32]}"
    assert sorted(p.name for p in folder.glob("*.npy")) == sorted(f"{b}.npy" for b in BLOCKS)
    assert all(checksum_file(p).read_text() == sha256(p) for p in folder.glob("*.npy"))
    assert log.ts.tolist() == table["ts"].to_list() and log.hist_end.tolist() == table["hist_end"].to_list()
    assert log.categorical[:, 1].tolist() == table["cat_1"].cast(pl.Int64).to_list() and log.categorical.shape == (300, 3)
    assert torch.equal(log.dense[:, 0], torch.tensor(table["dense_0"].to_list()))
    labels = table["label_0"].to_list()
    assert [None if np.isnan(v) else v for v in log.labels[:, 0].tolist()] == labels and labels.count(None) > 0
    assert {str(folder / f"{b}.npy") for b in BLOCKS} <= _mapped_files()  # mapped, not read into the heap


def test_a_write_to_a_loaded_tensor_stays_in_its_process(tmp_path):
    """Copy-on-write: a process that changes a tensor in place changes its own copy, never the shared file."""
    path = _saved(tmp_path)
    log = load_encoded(path)
    first = log.labels.clone()
    log.labels.fill_(7.0)
    again = load_encoded(path)
    assert torch.equal(again.labels.nan_to_num(-1), first.nan_to_num(-1))
    (npy,) = tmp_path.glob("columns-*/labels.npy")
    assert checksum_file(npy).read_text() == sha256(npy)


def test_a_damaged_block_is_written_again_and_a_changed_parquet_gets_its_own_folder(tmp_path, capsys):
    path = _saved(tmp_path)
    good = load_encoded(path).ts.clone()
    (npy,) = tmp_path.glob("columns-*/ts.npy")
    npy.write_bytes(npy.read_bytes()[:200])
    assert torch.equal(load_encoded(path).ts, good)
    assert f"rebuilt the data cache: {npy} was damaged" in capsys.readouterr().out
    path.unlink()
    _saved(tmp_path, n=120)  # another log under the same name
    assert len(load_encoded(path).ts) == 120 and len(list(tmp_path.glob("columns-*"))) == 2


def test_a_block_of_another_shape_is_written_again_without_hashing_on_reuse(tmp_path, capsys):
    """A reused block is checked by its layout and size (its parquet was verified): one of another
    shape, checksum and all, is damaged and written again from the parquet."""
    path = _saved(tmp_path)
    good = load_encoded(path).hist_end.clone()
    (npy,) = tmp_path.glob("columns-*/hist_end.npy")
    with open(npy, "wb") as f:
        np.save(f, np.zeros(7, np.int64))
    assert torch.equal(load_encoded(path).hist_end, good)
    assert f"rebuilt the data cache: {npy} was damaged" in capsys.readouterr().out

"""Knowledge tables: round trip, provenance, refusal of another producer's knowledge, join."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
import torch

from transfer.errors import DataError
from transfer.knowledge.table import (
    Provenance,
    check_age,
    check_provenance,
    join_knowledge,
    read_provenance,
    write_knowledge,
)

PROV = Provenance("skeleton_tiny", "run123", "2026-01-22T00:00:00+00:00", "2026-11-23T10:00:00+00:00", "abc")


def _write(tmp_path, n=6):
    ids = pl.Series("example_id", [10 * i for i in range(n)], dtype=pl.Int64)
    logits = torch.randn(n, 2)
    embedding = torch.randn(n, 8)
    path = tmp_path / "k.parquet"
    write_knowledge(path, ids, logits, embedding, ["click", "conversion"], PROV)
    return path, ids, logits, embedding


def test_round_trip_keeps_dtypes_values_and_provenance(tmp_path):
    path, ids, logits, embedding = _write(tmp_path)
    table = pl.read_parquet(path)
    assert table.schema["logit_click"] == pl.Float32
    assert table.schema["embedding"] == pl.Array(pl.Float16, 8)
    assert table["example_id"].to_list() == ids.to_list()
    assert torch.equal(torch.from_numpy(table["logit_conversion"].to_numpy().copy()), logits[:, 1])
    stored = torch.from_numpy(table["embedding"].to_numpy().astype("float32"))
    assert torch.equal(stored, embedding.half().float())
    assert read_provenance(path) == PROV


def test_join_aligns_with_requested_order(tmp_path):
    path, ids, logits, embedding = _write(tmp_path)
    wanted = pl.Series([50, 0, 20])
    joined = join_knowledge(path, wanted, ["click"])
    assert joined.logits.shape == (3, 1) and joined.embedding is None
    assert torch.equal(joined.logits[:, 0], logits[[5, 0, 2], 0])
    both = join_knowledge(path, wanted, ["conversion", "click"], embedding=True)
    assert torch.equal(both.logits, logits[[5, 0, 2]][:, [1, 0]])
    assert both.embedding.dtype == torch.float16
    assert torch.equal(both.embedding, embedding[[5, 0, 2]].half())


def test_join_refuses_missing_examples_and_tasks(tmp_path):
    path, *_ = _write(tmp_path)
    with pytest.raises(DataError, match="1 of the 2"):
        join_knowledge(path, pl.Series([0, 999]), ["click"])
    with pytest.raises(DataError, match="no column logit_like"):
        join_knowledge(path, pl.Series([0]), ["like"])


def test_max_age_refuses_stale_knowledge(tmp_path):
    path, *_ = _write(tmp_path)
    newest = datetime(2026, 1, 29, tzinfo=timezone.utc)  # 7 days after the cutoff
    assert check_age(path, PROV, newest, None) == pytest.approx(7.0)
    assert check_age(path, PROV, newest, 7) == pytest.approx(7.0)
    with pytest.raises(DataError, match="7.0 days old.*max_age_days allows 3"):
        check_age(path, PROV, newest, 3)


def test_refuses_knowledge_from_another_producer(tmp_path):
    path, *_ = _write(tmp_path)
    assert check_provenance(path, "skeleton_tiny", "run123") == PROV
    with pytest.raises(DataError, match="produced by 'skeleton_tiny'.*'gem_base'"):
        check_provenance(path, "gem_base")
    with pytest.raises(DataError, match="run123"):
        check_provenance(path, "skeleton_tiny", "another_run")


def test_a_plain_parquet_is_not_knowledge(tmp_path):
    path = tmp_path / "plain.parquet"
    pl.DataFrame({"example_id": [1]}).write_parquet(path)
    with pytest.raises(DataError, match="not a knowledge table"):
        read_provenance(path)


def test_a_streamed_table_equals_the_whole_one_and_keeps_one_row_group_per_batch(tmp_path):
    import pyarrow.parquet as pq

    from transfer.knowledge.table import KnowledgeWriter

    ids = pl.Series("example_id", list(range(10)), pl.Int64)
    logits, embedding = torch.randn(10, 2), torch.randn(10, 4)
    write_knowledge(tmp_path / "whole.parquet", ids, logits, embedding, ["click", "conversion"], PROV)
    writer = KnowledgeWriter(tmp_path / "streamed.parquet", ["click", "conversion"], PROV)
    for start in (0, 4, 8):
        writer.append(ids[start : start + 4], logits[start : start + 4], embedding[start : start + 4])
    writer.close()
    assert pl.read_parquet(tmp_path / "streamed.parquet").equals(pl.read_parquet(tmp_path / "whole.parquet"))
    assert pq.ParquetFile(tmp_path / "streamed.parquet").num_row_groups == 3
    assert read_provenance(tmp_path / "streamed.parquet") == PROV


def _shard(folder, rank, world, ids, provenance=PROV):
    from transfer.knowledge.table import shard_path

    ids = pl.Series("example_id", ids, dtype=pl.Int64)
    logits = torch.arange(2 * len(ids), dtype=torch.float32).reshape(-1, 2) + 100 * rank
    write_knowledge(shard_path(folder, "teacher", rank, world), ids, logits, torch.zeros(len(ids), 4), ["click", "conversion"], provenance)
    return logits


def test_a_table_is_finished_only_with_every_rank_shard(tmp_path):
    from transfer.knowledge.table import finished_table

    assert finished_table(tmp_path, "teacher") is None
    _shard(tmp_path, 0, 3, [0, 3])
    _shard(tmp_path, 2, 3, [2, 5])
    assert finished_table(tmp_path, "teacher") is None  # rank 1 of 3 still writing
    _shard(tmp_path, 1, 3, [1, 4])
    shards = finished_table(tmp_path, "teacher")
    assert [p.name for p in shards] == [f"teacher.rank{r}-of-3.parquet" for r in range(3)]


def test_join_reads_the_shards_as_one_table(tmp_path):
    from transfer.knowledge.table import finished_table

    first, second = _shard(tmp_path, 0, 2, [0, 2]), _shard(tmp_path, 1, 2, [1, 3])
    shards = finished_table(tmp_path, "teacher")
    assert check_provenance(shards, "skeleton_tiny", "run123") == PROV
    joined = join_knowledge(shards, pl.Series([3, 0, 1]), ["conversion"])
    assert joined.logits[:, 0].tolist() == [second[1, 1].item(), first[0, 1].item(), second[0, 1].item()]


def test_shards_from_different_generations_are_refused(tmp_path):
    from dataclasses import replace

    from transfer.knowledge.table import finished_table

    _shard(tmp_path, 0, 2, [0])
    _shard(tmp_path, 1, 2, [1], provenance=replace(PROV, created_at="2026-11-24T00:00:00+00:00"))
    with pytest.raises(DataError, match=r"teacher.rank1-of-2.parquet: its provenance differs"):
        check_provenance(finished_table(tmp_path, "teacher"), "skeleton_tiny")


def test_a_rank_without_rows_writes_an_empty_shard_the_others_can_be_read_with(tmp_path):
    from transfer.knowledge.table import KnowledgeWriter, finished_table, shard_path

    _shard(tmp_path, 0, 2, [0, 1])  # embeddings of width 4
    writer = KnowledgeWriter(shard_path(tmp_path, "teacher", 1, 2), ["click", "conversion"], PROV, embedding_dim=4)
    writer.close()
    shards = finished_table(tmp_path, "teacher")
    assert pl.read_parquet(shards[1]).height == 0
    joined = join_knowledge(shards, pl.Series([1, 0]), ["click"], embedding=True)
    assert joined.embedding.shape == (2, 4)
    assert check_provenance(shards, "skeleton_tiny") == PROV


def test_a_damaged_shard_is_named_itself_not_the_first(tmp_path):
    from transfer.knowledge.table import finished_table

    _shard(tmp_path, 0, 2, [0, 2])
    _shard(tmp_path, 1, 2, [1, 3])
    shards = finished_table(tmp_path, "teacher")
    shards[1].write_bytes(shards[1].read_bytes()[:40])
    with pytest.raises(DataError, match=r"teacher.rank1-of-2.parquet: not a readable knowledge table") as raised:
        join_knowledge(shards, pl.Series([0, 1]), ["click"])
    assert "rank0" not in str(raised.value)

"""A knowledge table is checked as it is read, whoever wrote it: rewritten by a buggy or external
producer with a checksum that matches its bytes, a table with NaN or infinite logits, duplicated
example ids, a wrong logit dtype, missing rows or a truncated file stops the run before the student
trains, with one line naming the file and the column (exit 2) — never a loss gone NaN, a traceback,
or a student silently trained on other examples' logits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli, write_dataset, write_recipe
from transfer.data.cache import write_checksum
from transfer.data.synthetic import SyntheticSpec, generate


def _logits(table: pa.Table, change: Callable[[np.ndarray], np.ndarray], dtype=np.float32) -> pa.Table:
    for name in [n for n in table.column_names if n.startswith("logit_")]:
        values = change(table[name].to_numpy().astype(np.float64)).astype(dtype)
        table = table.set_column(table.column_names.index(name), name, [values])
    return table


def _nan_on_one(values: np.ndarray) -> np.ndarray:
    values[3] = np.nan
    return values


def _inf_on_one(values: np.ndarray) -> np.ndarray:
    values[5] = np.inf
    return values


def _duplicated(table: pa.Table) -> pa.Table:
    """Row 10 written twice: a join on example_id would add a row and shift every later one."""
    return pa.concat_tables([table.slice(0, 11), table.slice(10)])


TAMPERS = {
    "nan": (lambda t: _logits(t, _nan_on_one), "non-finite value(s) (e.g. nan"),
    "inf": (lambda t: _logits(t, _inf_on_one), "non-finite value(s) (e.g. inf"),
    "duplicated ids": (_duplicated, "column example_id has 1 duplicated key(s)"),
    "float64 logits": (lambda t: _logits(t, lambda v: v, np.float64), "is Float64; allowed: float32"),
    "missing rows": (lambda t: t.slice(0, t.num_rows // 2), "knowledge has no logit_"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One finished run of a small recipe: (its folder, the recipe)."""
    folder = tmp_path_factory.mktemp("contract")
    dataset = write_dataset(folder, generate(SyntheticSpec(rows=6_000, days=6, seed=3)))
    recipe = write_recipe(folder, dataset, name="contract", teacher={"model": "skeleton_tiny", "batch_size": 256},
                          students=[{"vertical": "ig_stories_click", "batch_size": 64}], tracking={"uri": f"sqlite:///{folder / 'mlflow.db'}"})
    return folder, recipe


def _knowledge(folder: Path) -> Path:
    (path,) = (folder / "runs" / "stages").glob("knowledge-*/*.parquet")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_rewritten_table_with_a_matching_checksum_is_refused_naming_file_and_column(trained, capsys, tamper):
    folder, recipe = trained
    code, _, err = run_cli(capsys, "run", str(recipe))
    assert code == 0, err
    path = _knowledge(folder)
    original = pq.read_table(path)
    change, expected = TAMPERS[tamper]
    try:
        pq.write_table(change(original), path)
        write_checksum(path)  # as a producer that writes its own checksum would: the cache trusts the bytes
        code, out, err = run_cli(capsys, "run", str(recipe), "students.0.lr=0.003")  # the student trains again, on this table
        assert code == 2, out + err
        assert err.count("\n") == 1 and str(path) in err and expected in err
        assert "▸ student" not in out  # refused before the student trained
    finally:
        pq.write_table(original, path)
        write_checksum(path)


@pytest.mark.slow
def test_a_truncated_table_is_one_line_not_a_traceback(trained, capsys):
    folder, recipe = trained
    assert run_cli(capsys, "run", str(recipe))[0] == 0
    path = _knowledge(folder)
    original = path.read_bytes()
    try:
        path.write_bytes(original[: len(original) // 2])
        write_checksum(path)
        code, _, err = run_cli(capsys, "run", str(recipe), "students.0.lr=0.003")
        assert code == 2 and err.count("\n") == 1
        assert f"{path}: not a readable knowledge table" in err
    finally:
        path.write_bytes(original)
        write_checksum(path)
    assert pl.read_parquet(path).height > 0

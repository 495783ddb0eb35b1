"""The regime map's analysis (benchmarks/regimes.py) on hand-made lift-table rows whose gains are known."""

from __future__ import annotations

import polars as pl
import pytest

from benchmarks.regimes import COMBINED, EMBEDDINGS_KD, VANILLA, cell_slices, lift_table, primary_table


def _rows(cell: str, baseline: list[float], teacher: list[float], students: dict[str, list[float]]) -> list[dict]:
    """Each variant's run repeats the baseline and teacher rows (as the stage cache makes them)."""
    rows = []
    for variant, student in students.items():
        for seed, (b, t, s) in enumerate(zip(baseline, teacher, student, strict=True)):
            common = {"cell": cell, "variant": variant, "seed": seed, "slice": "a/click", "eval positives": 100 + seed}
            rows += [common | {"role": "baseline", "NE": b}, common | {"role": "teacher", "NE": t}, common | {"role": "student", "NE": s}]
    return rows


def test_each_cell_gets_the_teachers_lead_each_variants_gain_and_the_primary_differences():
    baseline = [0.90, 0.91, 0.92]
    teacher = [0.86, 0.87, 0.88]  # lead 4 points on every seed: resolvable, so ratios exist
    students = {VANILLA: [0.89, 0.90, 0.91], EMBEDDINGS_KD: [0.885, 0.895, 0.903], COMBINED: [0.88, 0.89, 0.90]}
    (found,) = cell_slices(pl.DataFrame(_rows("centre", baseline, teacher, students)))
    assert found.lead == pytest.approx([4.0, 4.0, 4.0])
    assert [round(g, 6) for g in found.gains[EMBEDDINGS_KD]] == [1.5, 1.5, 1.7] and found.positives == 100
    primary = primary_table([found])
    # emb+KD − KD per seed: 0.5, 0.5, 0.7 → mean 0.5667, sd 0.1155, t(0.975, 2) = 4.3027 → ± 0.287
    assert "| embedding features + vanilla KD − vanilla KD | centre | a/click | +0.57 [+0.28, +0.85] |" in primary
    # combination − 2 × KD per seed: 2 − 2 = 0 on every seed → exactly 0, no verdict
    assert "| combination − 2 × vanilla KD | centre | a/click | +0.00 [+0.00, +0.00] |" in primary and "not distinguishable" in primary
    lifts = lift_table([found])
    assert "| centre | a/click | 100 | +4.00 [+4.00, +4.00] | vanilla KD | +1.00 [+1.00, +1.00] | 0.00 | 0.25 [0.25, 0.25] |" in lifts


def test_a_transfer_ratio_is_undefined_where_the_teachers_lead_is_not_resolvable():
    baseline = [0.90, 0.91, 0.92]
    teacher = [0.89, 0.92, 0.915]  # lead +1, −1, +0.5: not resolvable
    (found,) = cell_slices(pl.DataFrame(_rows("lag 7", baseline, teacher, {VANILLA: [0.895, 0.905, 0.915]})))
    assert "undefined (lead not resolvable)" in lift_table([found])


def test_the_primary_endpoints_are_one_holm_family_and_pair_by_seed():
    """Two cells, two endpoints each: four p-values adjusted together (Holm: the smallest × 4, …), and a
    variant's rows listed out of seed order still pair with their own seed's baseline."""
    baseline = [0.90, 0.91, 0.92]
    teacher = [0.86, 0.87, 0.88]
    students = {VANILLA: [0.89, 0.90, 0.91], EMBEDDINGS_KD: [0.885, 0.895, 0.903], COMBINED: [0.88, 0.89, 0.90]}
    rows = _rows("centre", baseline, teacher, students) + _rows("history 0", baseline, teacher, students)
    frame = pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=3)  # any row order
    slices = cell_slices(frame)
    assert [s.cell for s in slices] == ["centre", "history 0"] and slices[0].seeds == [0, 1, 2]
    assert [round(g, 6) for g in slices[0].gains[EMBEDDINGS_KD]] == [1.5, 1.5, 1.7]
    primary = primary_table(slices)
    # emb+KD − KD: 0.5, 0.5, 0.7 → t = 0.5667 / (0.1155 / √3) = 8.5, p = 0.01356 (t, 2 df); two such endpoints
    # and two exact zeros (p = 1): Holm gives 4 × 0.01356 = 0.054, then max(0.054, 3 × 0.01356) = 0.054
    assert primary.count("| 0.054 | not distinguishable |") == 2, primary
    assert primary.count("| 1.000 | not distinguishable |") == 2


def test_a_rerun_of_some_cells_keeps_the_other_cells_and_variants_rows(tmp_path, monkeypatch):
    """Rerunning `--cells "days 28"` with vanilla KD must not drop the centre's rows nor days 28's other variants."""
    from benchmarks import regimes

    csv = tmp_path / "regimes.csv"
    pl.DataFrame({"cell": ["centre", "days 28", "days 28"], "variant": [VANILLA, VANILLA, EMBEDDINGS_KD], "seed": [0, 0, 0]}).write_csv(csv)
    monkeypatch.setattr(regimes, "CSV", csv)
    kept = regimes.earlier_rows(["days 28"], [VANILLA])
    assert kept.select("cell", "variant").rows() == [("centre", VANILLA), ("days 28", EMBEDDINGS_KD)]
    monkeypatch.setattr(regimes, "CSV", tmp_path / "absent.csv")
    assert regimes.earlier_rows(["days 28"], [VANILLA]) is None

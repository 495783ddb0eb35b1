"""The ablation's transfer-ratio table (benchmarks/transfer_ablation.py): a ratio only where the
teacher's lead is resolvable, and vanilla KD's verdict against GEM's 0.7 from its adjusted interval —
checked on hand-made rows whose gains and leads are known."""

from __future__ import annotations

import polars as pl

from benchmarks.transfer_ablation import transfer_ratio_table


def _rows(slice_: str, leads: list[float], shares: list[float], flops: float = 0.03) -> list[dict]:
    """Per seed: a baseline at NE 0.80, the teacher `lead` NE points better and a vanilla-KD student
    that gains `share` of that lead."""
    rows = []
    for seed, (lead, share) in enumerate(zip(leads, shares, strict=True)):
        common = {"dataset": "synthetic", "variant": "vanilla KD", "seed": seed, "slice": slice_, "FLOPs vs teacher": flops}
        rows += [common | {"role": "baseline", "NE": 0.80}, common | {"role": "teacher", "NE": 0.80 - lead / 100},
                 common | {"role": "student", "NE": 0.80 - share * lead / 100}]
    return rows


def test_a_ratio_only_where_the_lead_is_resolvable_and_the_verdict_from_its_interval():
    frame = pl.DataFrame(_rows("a/click", [4.0, 4.2, 3.8, 4.1, 3.9], [0.2, 0.25, 0.15, 0.2, 0.2])      # ratio 0.2: under 0.7
                         + _rows("b/click", [4.0, 4.1, 3.9, 4.0, 4.0], [0.9, 0.92, 0.88, 0.9, 0.9])     # 0.9: over
                         + _rows("c/click", [3.0, -3.0, 2.0, -2.0, 0.5], [0.5] * 5))                   # no resolvable lead
    lines = {line.split(" | ")[0].strip("| "): line for line in transfer_ratio_table(frame, "synthetic").splitlines() if line.startswith("| ")}
    assert "c/click" not in lines
    assert lines["a/click"].endswith("| refuted |") and "| 0.20 [" in lines["a/click"]
    assert lines["b/click"].endswith("| holds |") and "| 0.90 [" in lines["b/click"]


def test_a_student_over_the_flops_share_is_not_judged():
    frame = pl.DataFrame(_rows("a/click", [4.0, 4.2, 3.8, 4.1, 3.9], [0.9] * 5, flops=0.2))
    assert "not applicable (over the FLOPs share)" in transfer_ratio_table(frame, "synthetic")

"""The lift table: teacher, each VM and its baseline on the eval window, with lift and transfer ratio."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transfer.evaluation.metrics import lift_percent, transfer_ratio


@dataclass(frozen=True)
class Scores:
    ne: float
    auc: float
    calibration: float

    def as_dict(self) -> dict[str, float]:
        return {"ne": self.ne, "auc": self.auc, "calibration": self.calibration}


@dataclass(frozen=True)
class VerticalResult:
    vertical: str
    surface: str
    task: str
    teacher: Scores  # the teacher scored on the VM's eval slice
    baseline: Scores
    student: Scores
    producer: str | None = None  # the VM's direct producer when it is not the teacher (a domain FM)
    producer_scores: Scores | None = None
    budget: str = "no budget"  # the student's serving budget status (see transfer.evaluation.serving)


def lift_table(results: list[VerticalResult], teacher_name: str) -> pl.DataFrame:
    """One row per model: teacher (on each VM's slice), its domain FM if any, baseline, distilled VM."""
    rows = []
    for r in results:
        models = [(teacher_name, "teacher", r.teacher)]
        if r.producer is not None and r.producer_scores is not None:
            models.append((r.producer, "domain_fm", r.producer_scores))
        models += [(r.vertical, "baseline", r.baseline), (r.vertical, "student", r.student)]
        for model, role, s in models:
            rows.append(
                {
                    "model": model,
                    "role": role,
                    "slice": f"{r.surface}/{r.task}",
                    "NE": s.ne,
                    "AUC": s.auc,
                    "calibration": s.calibration,
                    "lift %": lift_percent(r.baseline.ne, s.ne),
                    "transfer ratio": transfer_ratio(r.baseline.ne, s.ne, r.teacher.ne),
                    "serving budget": budget_cell(r.budget) if role == "student" else "",
                }
            )
    return pl.DataFrame(rows)


def budget_cell(status: str) -> str:
    """"ok", "OVER: <limits exceeded>", or "-" when the VM has no budget."""
    if status == "within budget":
        return "ok"
    return "-" if status == "no budget" else "OVER: " + status.removeprefix("over budget: ")


def format_table(table: pl.DataFrame) -> str:
    """The table as aligned text, numbers rounded for reading."""
    digits = {"lift %": 2, "transfer ratio": 3, "refresh gain %": 2}
    shown = table.with_columns(
        pl.col(name).round(digits.get(name, 4)) for name, dtype in table.schema.items() if dtype.is_float()
    )
    with pl.Config(
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=200,
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return str(shown)

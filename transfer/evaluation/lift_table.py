"""The lift table — teacher, each VM's producer, baseline and student on the VM's eval slice, with lift
and transfer ratio — built in one place for a run and for `gem-transfer lift` (from MLflow)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import polars as pl

from transfer.evaluation.intervals import LiftInterval
from transfer.evaluation.metrics import lift_percent, transfer_ratio


@dataclass(frozen=True)
class Scores:
    """A model on an eval slice: raw NE, AUC, calibration and NE after a one-parameter recalibration
    fitted on the consumers' last training day (design §7), which tells ranking from calibration."""

    ne: float
    auc: float
    calibration: float
    recal_ne: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)  # the field names are the metric names' suffixes


@dataclass(frozen=True)
class VerticalResult:
    """One VM's comparison on its eval slice: the teacher, its producer when that is a domain FM, its
    no-transfer baseline and its student; with, from MLflow, the runs behind them and their recipe run."""

    vertical: str
    surface: str
    task: str
    teacher_name: str
    teacher: Scores  # the teacher scored on the VM's eval slice
    baseline: Scores
    student: Scores
    producer: str | None = None  # the VM's direct producer when it is not the teacher (a domain FM)
    producer_scores: Scores | None = None
    budget: str = "no budget"  # the student's serving budget status (see transfer.evaluation.serving)
    variant: str = ""  # the student's transfer variant (its techniques, and its producer if a domain FM)
    run_ids: dict[str, str] = field(default_factory=dict)  # role → the MLflow run that scored it
    context: dict[str, str] = field(default_factory=dict)  # leading columns: recipe, recipe_run_id, started
    interval: LiftInterval | None = None  # the student's 95% interval over its baseline

    def models(self) -> list[tuple[str, str, str, Scores]]:
        """(role, variant, model, scores) for each row: teacher, domain FM if any, baseline, student."""
        rows = [("teacher", "", self.teacher_name, self.teacher)]
        if self.producer is not None and self.producer_scores is not None:
            rows.append(("domain_fm", "", self.producer, self.producer_scores))
        return rows + [("baseline", "no transfer", self.vertical, self.baseline), ("student", self.variant, self.vertical, self.student)]


INTERVAL_COLUMNS = ["lift % 95% CI", "TR 95% CI", "vs baseline", "eval positives"]
RUN_COLUMNS = ["model", "role", "slice", "NE", "AUC", "calibration", "recal NE", "lift %", "transfer ratio", *INTERVAL_COLUMNS, "serving budget"]


def lift_rows(results: list[VerticalResult]) -> pl.DataFrame:
    """The lift table, every column: one row per model per VM (its context columns first, then
    vertical, role, variant, model, slice, the scores, lift % and transfer ratio against the VM's
    baseline, the student's serving budget, and the run behind the row). The one builder of the
    table: a run's (`lift_table`) and `gem-transfer lift`'s (from MLflow) both select from it."""
    rows = []
    for r in results:
        for role, variant, model, s in r.models():
            rows.append({
                **r.context,
                "vertical": r.vertical,
                "role": role,
                "variant": variant,
                "model": model,
                "slice": f"{r.surface}/{r.task}",
                "NE": s.ne,
                "AUC": s.auc,
                "calibration": s.calibration,
                "recal NE": s.recal_ne,
                "lift %": lift_percent(r.baseline.ne, s.ne),
                "transfer ratio": transfer_ratio(r.baseline.ne, s.ne, r.teacher.ne),
                **interval_cells(r.interval if role == "student" else None),
                "serving budget": budget_cell(r.budget) if role == "student" else "",
                "run_id": r.run_ids.get(role, ""),
            })
    return pl.DataFrame(rows, schema_overrides={"AUC": pl.Float64, "calibration": pl.Float64, "recal NE": pl.Float64})


def lift_table(results: list[VerticalResult]) -> pl.DataFrame:
    """A recipe run's lift table (lift.csv): model, role, slice, scores, lift, transfer ratio, budget."""
    return lift_rows(results).select(RUN_COLUMNS)


def interval_cells(interval: LiftInterval | None) -> dict[str, str]:
    """A student's interval as the table shows it; empty cells for other rows (or no interval)."""
    if interval is None:
        return dict.fromkeys(INTERVAL_COLUMNS, "")
    return {
        "lift % 95% CI": f"[{interval.lift_low:.2f}, {interval.lift_high:.2f}]",
        "TR 95% CI": f"[{interval.ratio_low:.3f}, {interval.ratio_high:.3f}]",
        "vs baseline": interval.verdict,
        "eval positives": str(interval.positives),
    }


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
        tbl_width_chars=1000,  # a markdown table must not wrap its cells
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return str(shown)

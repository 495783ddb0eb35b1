"""The lift table — teacher, each VM's producer, baseline and student on the VM's eval slice, with lift
and transfer ratio — built in one place for a run and for `gem-transfer lift` (from MLflow)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Final

import polars as pl

from transfer.evaluation.intervals import LiftInterval
from transfer.evaluation.metrics import lift_percent, transfer_ratio


class Role:
    """What a model is in a recipe run (the MLflow `role` tag's values); the lift table has a row per role."""

    STAGE: Final = "stage"
    TEACHER: Final = "teacher"
    KNOWLEDGE: Final = "knowledge"
    DOMAIN_FM: Final = "domain_fm"
    BASELINE: Final = "baseline"
    STUDENT: Final = "student"
    VANILLA_KD: Final = "vanilla_kd"  # a VM's vanilla-KD reference student (the gain ratio's denominator)
    MODELS: Final = (STUDENT, VANILLA_KD, BASELINE, TEACHER)  # the runs the lift table reads


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
    interval: LiftInterval | None = None  # the student's 95% interval over its baseline (and its vanilla-KD reference)
    vanilla: Scores | None = None  # the VM's vanilla-KD reference student, when the recipe trained one
    vanilla_interval: LiftInterval | None = None  # its 95% interval over the baseline
    flops_shares: dict[str, float] = field(default_factory=dict)  # VM role → its model's forward FLOPs per example over the teacher's
    eval_rows: int | None = None  # the VM's eval slice: impressions with a label for its task
    eval_positives: int | None = None  # … and its labelled positives (the power behind every row)
    best_epochs: dict[str, int] = field(default_factory=dict)  # VM role → the epoch it kept on validation (0: its start)

    def models(self) -> list[tuple[str, str, str, Scores]]:
        """(role, variant, model, scores) for each row: teacher, domain FM if any, baseline, the
        vanilla-KD reference if any, student."""
        rows = [("teacher", "", self.teacher_name, self.teacher)]
        if self.producer is not None and self.producer_scores is not None:
            rows.append(("domain_fm", "", self.producer, self.producer_scores))
        rows.append(("baseline", "no transfer", self.vertical, self.baseline))
        if self.vanilla is not None:
            rows.append((VANILLA_ROLE, VANILLA_ROLE, self.vertical, self.vanilla))
        return rows + [("student", self.variant, self.vertical, self.student)]

    def interval_of(self, role: str) -> LiftInterval | None:
        return {"student": self.interval, VANILLA_ROLE: self.vanilla_interval}.get(role)

    def lead(self) -> LiftInterval | None:
        """The interval that carries the teacher's lead over the baseline on this slice (the student's,
        else the vanilla-KD reference's; None for runs logged without one)."""
        return self.interval or self.vanilla_interval

    def ratio_defined(self) -> bool:
        """Whether this VM's transfer ratios exist: the teacher's lead over its baseline is resolvable."""
        lead = self.lead()
        return lead is not None and lead.ratio_defined

    def transfer_ratio(self, role: str, scores: Scores) -> float | None:
        """A row's transfer ratio: None on the teacher's own row, and wherever the teacher's lead is not resolvable."""
        if role == "teacher" or not self.ratio_defined():
            return None
        return transfer_ratio(self.baseline.ne, scores.ne, self.teacher.ne)

    def gain_ratio(self, role: str, scores: Scores) -> float | None:
        """The student's gain ratio over the vanilla-KD reference: None for other rows, without one,
        and where vanilla KD's gain over the baseline is not resolvable (undefined)."""
        if role != "student" or self.vanilla is None or self.interval is None or not self.interval.gain_defined:
            return None
        return transfer_ratio(self.baseline.ne, scores.ne, self.vanilla.ne)  # the same ratio, vanilla KD in the teacher's place

    def positives(self) -> int | None:
        """The eval slice's positives (from the student's interval for runs logged before slices were)."""
        if self.eval_positives is not None:
            return self.eval_positives
        return self.interval.positives if self.interval is not None else None

    def flags(self, role: str, scores: Scores) -> list[str]:
        """What makes a row's numbers unreliable, in words (empty when nothing does), computed the same
        way for every role: a model worse than predicting the eval base rate (NE > 1); a lift or
        transfer ratio against such a baseline or teacher; a transfer or gain ratio whose denominator
        is not resolvable (undefined, with its interval); a VM that kept its start (epoch 0: its
        training never beat its regression start on validation); an eval slice with fewer than
        FEW_EVAL_POSITIVES positives."""
        flags = []
        if not math.isfinite(scores.ne):
            flags.append("NE undefined (the slice lacks positives or negatives)")
        elif scores.ne > 1:
            flags.append("NE > 1: worse than predicting the base rate")
        if math.isfinite(scores.ne) and not math.isfinite(scores.recal_ne):
            flags.append("recal NE missing: the recalibration days (data.recalibration_days) hold no labelled rows of this slice "
                         "or one class only")
        if role != "baseline" and self.baseline.ne > 1:
            flags.append("lift not meaningful: baseline NE > 1")
        if role in RATIO_ROLES:
            if self.teacher.ne > 1:
                flags.append("transfer ratio not meaningful: teacher NE > 1")
            elif self.lead() is not None and not self.ratio_defined():
                flags.append(f"transfer ratio {self.lead().ratio_reason()}")
        if role == "student" and self.interval is not None and self.interval.gain_reason():
            flags.append(f"gain ratio {self.interval.gain_reason()}")
        interval = self.interval_of(role)
        if interval is not None and interval.unit == "user-days":
            flags.append(f"few eval users: the interval resampled {interval.units:,} user-day blocks, and may be too narrow "
                         "where a user's days are alike")
        if self.best_epochs.get(role) == 0:
            flags.append("kept its start: no trained epoch beat its regression start on the validation slice")
        positives = self.positives()
        if positives is not None and positives < FEW_EVAL_POSITIVES:  # a property of the slice: on every row
            flags.append(f"few eval positives ({positives} < {FEW_EVAL_POSITIVES})")
        return flags


VANILLA_ROLE = Role.VANILLA_KD  # the role of a VM's vanilla-KD reference (the gain ratio's denominator)
RATIO_ROLES = (Role.DOMAIN_FM, VANILLA_ROLE, Role.STUDENT)  # rows whose transfer ratio says something
FEW_EVAL_POSITIVES = 100  # below this many eval positives every row of the slice is flagged (its lift is noise-dominated)

SLICE_COLUMNS = ["eval rows", "eval positives"]  # the VM's eval slice, on each of its rows
INTERVAL_COLUMNS = ["lift % 95% CI", "vs baseline", "TR 95% CI", "MDE lift %", "resampled"]
GAIN_COLUMNS = ["gain ratio", "GR 95% CI", "vs vanilla KD"]  # only where a VM has a vanilla-KD reference
# what a reader looks at first — the model, its NE, its lift with its interval and verdict — leads, so it shows without scrolling
SCORE_COLUMNS = ["NE", "lift %", "lift % 95% CI", "vs baseline", "AUC", "calibration", "recal NE", "transfer ratio", "TR 95% CI", *GAIN_COLUMNS,
                 "MDE lift %", *SLICE_COLUMNS, "resampled", "FLOPs vs teacher", "serving budget", "flags", "run_id"]  # after a row's model
RUN_COLUMNS = ["model", "role", "slice", *SCORE_COLUMNS]
# what the terminal shows after a run (every column stays in lift.csv and on the MLflow runs)
READER_COLUMNS = ["model", "role", "slice", "NE", "lift %", "lift % 95% CI", "vs baseline", "recal NE", "transfer ratio", "TR 95% CI",
                  *GAIN_COLUMNS, "eval positives", "flags"]
VM_ROLES = (Role.BASELINE, VANILLA_ROLE, Role.STUDENT)  # the rows that are the VM itself


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
                "eval rows": r.eval_rows,
                "eval positives": r.positives(),
                "NE": s.ne,
                "AUC": s.auc,
                "calibration": s.calibration,
                "recal NE": s.recal_ne,
                "lift %": lift_percent(r.baseline.ne, s.ne),
                "transfer ratio": r.transfer_ratio(role, s),
                **interval_cells(r.interval_of(role)),
                **interval_bounds(r.interval_of(role)),
                "gain ratio": r.gain_ratio(role, s),
                **gain_cells(r.interval if role == "student" and r.vanilla is not None else None),
                "FLOPs vs teacher": r.flops_shares.get(role) if role in VM_ROLES else None,  # each row its own model's cost
                "serving budget": budget_cell(r.budget) if role == "student" else "",
                "flags": "; ".join(r.flags(role, s)),
                "run_id": r.run_ids.get(role, ""),
            })
    return pl.DataFrame(rows, schema_overrides={"AUC": pl.Float64, "calibration": pl.Float64, "recal NE": pl.Float64, "transfer ratio": pl.Float64, "gain ratio": pl.Float64,
                                             "FLOPs vs teacher": pl.Float64, "eval rows": pl.Int64, "eval positives": pl.Int64,
                                             "lift % low": pl.Float64, "lift % high": pl.Float64})


def lift_table(results: list[VerticalResult]) -> pl.DataFrame:
    """A recipe run's lift table (lift.csv): model, role, slice, scores, lift, transfer ratio, the
    intervals, the gain ratio (when the recipe trained vanilla-KD references), budget."""
    return without_unused_gain_columns(lift_rows(results).select(RUN_COLUMNS))


def reader_view(table: pl.DataFrame) -> pl.DataFrame:
    """The run table's columns a reader needs first (`READER_COLUMNS`, those the table has)."""
    return table.select([name for name in READER_COLUMNS if name in table.columns])


def without_unused_gain_columns(table: pl.DataFrame) -> pl.DataFrame:
    """The table without the gain-ratio columns when no VM in it has a vanilla-KD reference."""
    return table if (table["role"] == VANILLA_ROLE).any() else table.drop(GAIN_COLUMNS)


def interval_cells(interval: LiftInterval | None) -> dict[str, str]:
    """A student's interval as the table shows it, with its slice's minimum detectable lift (95%
    level, 80% power) and what the bootstrap resampled; empty cells for other rows (or no interval),
    and for the transfer ratio's interval where the ratio is undefined (the teacher's lead over the
    baseline not resolvable: the row's flags say why)."""
    if interval is None:
        return dict.fromkeys(INTERVAL_COLUMNS, "")
    return {
        "lift % 95% CI": f"[{interval.lift_low:.2f}, {interval.lift_high:.2f}]",
        "vs baseline": interval.verdict,
        "TR 95% CI": f"[{interval.ratio_low:.3f}, {interval.ratio_high:.3f}]" if interval.ratio_defined else "",
        "MDE lift %": "" if math.isnan(interval.mde_lift) else f"{interval.mde_lift:.2f}",
        "resampled": f"{interval.units:,} {interval.unit}" if interval.units else "",
    }


def interval_bounds(interval: LiftInterval | None) -> dict[str, float | None]:
    """The lift interval's bounds as numbers (for the chart's whiskers); None without an interval."""
    return {"lift % low": interval.lift_low if interval else None, "lift % high": interval.lift_high if interval else None}


def gain_cells(interval: LiftInterval | None) -> dict[str, str]:
    """A student's gain-ratio interval and its verdict against vanilla KD; empty cells otherwise (and
    for the ratio's interval where vanilla KD's gain is not resolvable, which leaves the ratio undefined)."""
    if interval is None:
        return {"GR 95% CI": "", "vs vanilla KD": ""}
    return {"GR 95% CI": f"[{interval.gain_low:.2f}, {interval.gain_high:.2f}]" if interval.gain_defined else "",
            "vs vanilla KD": interval.vanilla_verdict}


def budget_cell(status: str) -> str:
    """"ok", "OVER: <limits exceeded>", or "-" when the VM has no budget."""
    if status == "within budget":
        return "ok"
    return "-" if status == "no budget" else "OVER: " + status.removeprefix("over budget: ")


def format_table(table: pl.DataFrame) -> str:
    """The table as aligned text, numbers rounded for reading."""
    digits = {"lift %": 2, "transfer ratio": 3, "gain ratio": 2, "refresh gain %": 2}
    shown = table.with_columns(  # rounded for reading; an empty cell (null) stays empty
        pl.col(name).round(digits.get(name, 4)).cast(pl.String).fill_null("") for name, dtype in table.schema.items() if dtype.is_float()
    )
    with pl.Config(
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=65_535,  # a markdown table must not wrap its cells…
        fmt_str_lengths=1000,  # …nor cut them (run ids, recipe names, flags)
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return str(shown)

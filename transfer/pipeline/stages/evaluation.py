"""The evaluation stage: the lift table of every VM, written to the run folder and logged."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl
import torch

from adapters import techniques_tag
from transfer.data.prepare import PreparedData
from transfer.evaluation.lift_table import VM_ROLES, VerticalResult, lift_rows, lift_table
from transfer.evaluation.scoring import labels_of
from transfer.pipeline import keys
from transfer.pipeline.keys import StageKey
from transfer.pipeline.stages.base import ALWAYS, RunContext, Stage
from transfer.pipeline.stages.producers import TeacherStage
from transfer.pipeline.stages.verticals import VerticalStage
from transfer.tracking import tags as T
from transfer.util import ranks
from transfer.util.atomic import atomic_path


@dataclass(eq=False)
class EvaluationStage(Stage):
    """The lift table: the teacher, each VM's producer, baseline and student on the VM's eval slice
    (scored as each VM finished); written to the run folder and logged on the recipe's run."""

    teacher: TeacherStage
    students: list[VerticalStage]
    data: PreparedData
    kind: str = "evaluation"
    group: int = 0
    name: str = "evaluation:lift table"
    output: pl.DataFrame | None = None

    @property
    def inputs(self) -> tuple[Stage, ...]:
        return (self.teacher, *(s for student in self.students for s in (student.baseline, student.vanilla, student) if s is not None))

    @functools.cached_property
    def key(self) -> StageKey:
        return keys.key_of(self.kind, evaluation_reads(str(self.data.eval), self.data.eval_rows, [s.key for s in self.inputs]))

    def status(self, ctx: RunContext) -> str:
        return ALWAYS

    def run(self, ctx: RunContext) -> None:
        results = [self._result(ctx, student) for student in self.students]
        self.output = lift_table(results)
        if ranks.is_main():
            with atomic_path(ctx.run_dir / "lift.csv") as tmp:
                self.output.write_csv(tmp)
            ctx.tracker.log_artifact(ctx.run_dir / "lift.csv")
            self._log_for_analysts(ctx, results)
            self._tag_flags(ctx)

    def _log_for_analysts(self, ctx: RunContext, results: list[VerticalResult]) -> None:
        """The lift table as an MLflow table and the lift chart, on the recipe's parent run: one
        click from the experiment's runs list shows an analyst every VM's result."""
        from transfer.tracking.lift import draw_lift_chart

        ctx.tracker.log_table(self.output, "lift_table.json")
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
        chart = ctx.run_dir / "lift.png"
        draw_lift_chart(lift_rows(results).with_columns(pl.lit(ctx.recipe.name).alias(T.RECIPE), pl.lit(started).alias("started")), chart)
        ctx.tracker.log_artifact(chart)

    def _tag_flags(self, ctx: RunContext) -> None:
        """Each VM run's flags (its own, as its lift table row shows them) as a tag on that run."""
        for row in self.output.filter(pl.col("role").is_in(list(VM_ROLES)) & (pl.col("flags") != "")).iter_rows(named=True):
            ctx.tracker.tag_run(row["run_id"], {T.LIFT_FLAGS: row["flags"]})

    def _result(self, ctx: RunContext, student: VerticalStage) -> VerticalResult:
        """One VM's row group of the lift table, from its stages' outputs."""
        spec, base, out = student.vertical.spec, student.baseline.output, student.output
        vanilla = student.vanilla.output if student.vanilla is not None else None
        producer = student.teaching.producer.output if out.producer is not None else None
        slices = student.vertical.slices(self.data)
        counts = T.slice_metrics(labels_of(self.data.log, slices.eval, slices.task))
        run_ids = {T.Role.TEACHER: self.teacher.output.run_id, T.Role.BASELINE: base.run_id, T.Role.STUDENT: out.run_id}
        run_ids |= ({T.Role.VANILLA_KD: vanilla.run_id} if vanilla else {}) | ({T.Role.DOMAIN_FM: producer.run_id} if producer else {})
        vms = {role: o for role, o in ((T.Role.BASELINE, base), (T.Role.STUDENT, out), (T.Role.VANILLA_KD, vanilla)) if o is not None}
        return VerticalResult(spec.name, "/".join(spec.surfaces), spec.task, self.teacher.producer_name, out.teacher, base.scores,
                              out.scores, producer=producer.name if producer else None, producer_scores=out.producer, budget=out.budget,
                              variant=techniques_tag(student.teaching.config), run_ids=run_ids,
                              interval=out.interval, vanilla=vanilla.scores if vanilla else None,
                              vanilla_interval=vanilla.interval if vanilla else None,
                              flops_shares={role: o.flops_share for role, o in vms.items()},
                              eval_rows=int(counts[T.EVAL_ROWS]), eval_positives=int(counts[T.EVAL_POSITIVES]),
                              best_epochs={role: o.best_epoch for role, o in vms.items() if o.best_epoch is not None})


def evaluation_reads(window: str, rows: torch.Tensor, models: list[StageKey]) -> keys.Reads:
    """What the lift table reads: the models it scores (their keys) on exactly the eval window's `rows`."""
    return keys.Reads({"window": window, "rows": keys.rows_digest(rows)}, {f"model{i}": key for i, key in enumerate(models)})

"""Every MLflow tag and metric name the engine writes and reads, in one typed module.

Runs are found again by these names (`gem-transfer lift`, `register`, cleaning up a killed
attempt), so a name is written here once and imported wherever it is set or read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from transfer.evaluation.lift_table import Role  # noqa: F401  (the `role` tag's values; the lift table's rows are by role)
from transfer.evaluation.metrics import lift_percent, transfer_ratio

if TYPE_CHECKING:
    import torch

    from transfer.evaluation.intervals import LiftInterval
    from transfer.evaluation.lift_table import Scores
    from transfer.evaluation.serving import ServingCost


# which recipe run a run belongs to (on every run of a recipe run)
RECIPE: Final = "recipe"
RECIPE_HASH: Final = "recipe_hash"
RECIPE_RUN_ID: Final = "recipe_run_id"
STRATEGY: Final = "strategy"  # the parent run's transfer strategy
CYCLE: Final = "cycle"  # a continuous cycle's number, on its recipe run
CYCLE_OF: Final = "cycle_of"
PREVIOUS_CYCLE_RUN_ID: Final = "previous_cycle_run_id"
HOST: Final = "host"  # the process that owns a run (a killed attempt's runs are marked failed)
PID: Final = "pid"

# what a run is
ROLE: Final = "role"
STAGE: Final = "stage"  # the recipe stage's number
CONSUMERS: Final = "consumers"
MODEL: Final = "model"
DOMAIN: Final = "domain"
VERTICAL: Final = "vertical"
SURFACE: Final = "surface"
TASK: Final = "task"
CONTINUED_FROM: Final = "continued_from"

# lineage: who taught a model, with what, from how old knowledge
PRODUCER: Final = "producer"
PRODUCER_RUN_ID: Final = "producer_run_id"
KNOWLEDGE_CUTOFF: Final = "knowledge_cutoff"
KNOWLEDGE_AGE_DAYS: Final = "knowledge_age_days"
STALENESS_DAYS: Final = "staleness_days"
TECHNIQUES: Final = "techniques"
BASELINE_RUN_ID: Final = "baseline_run_id"
VANILLA_RUN_ID: Final = "vanilla_kd_run_id"  # a student's vanilla-KD reference, when the recipe trained one
LINEAGE: Final = (PRODUCER, PRODUCER_RUN_ID, RECIPE, RECIPE_HASH, RECIPE_RUN_ID, KNOWLEDGE_CUTOFF, KNOWLEDGE_AGE_DAYS,
                  STALENESS_DAYS, TECHNIQUES, BASELINE_RUN_ID, VANILLA_RUN_ID)

# outcomes
BUDGET_STATUS: Final = "budget_status"
DECLARED_IN: Final = "declared_in"  # "recipe" on the runs of a VM the recipe declares inline (not a catalog entry)
LIFT_FLAGS: Final = "lift_flags"  # what makes a model row's numbers unreliable (the lift table's flags), "; "-joined
MODEL_URI: Final = "model_uri"  # the logged serving model (models:/<id>)
REUSED_FROM_RUN_ID: Final = "reused_from_run_id"
STAGE_CACHE: Final = "stage_cache"
RESAMPLED_UNIT: Final = "resampled_unit"  # what a student's interval resampled: "users", "user-days" (or "rows")

# metrics
PARAMETERS: Final = "parameters"
EVAL: Final = "eval_"  # + ne / auc / calibration: the model itself on its eval slice
TEACHER_EVAL: Final = "teacher_eval_"  # the teacher on the same slice
PRODUCER_EVAL: Final = "producer_eval_"  # its producer (a domain FM) on the same slice
LIFT_PCT: Final = "lift_pct"
TRANSFER_RATIO: Final = "transfer_ratio"
SERVING_PARAMS: Final = "serving_params"
SERVING_P50_MS: Final = "serving_p50_ms"
SERVING_P99_MS: Final = "serving_p99_ms"
SERVING_FLOPS: Final = "serving_flops"
FLOPS_VS_TEACHER: Final = "flops_vs_teacher"  # a VM's forward FLOPs per example over its teacher's (full histories)
NE, AUC, CALIBRATION, RECAL_NE = "ne", "auc", "calibration", "recal_ne"
VALIDATION: Final = "val_"  # + ne / auc / calibration / recal_ne: a VM on its validation slice (for choosing knobs)
BEST_EPOCH: Final = "best_epoch"  # the epoch a VM kept, best by NE on its validation slice (0: its start)…
START_VAL_NE: Final = "val_ne_at_start"  # …and its start's NE there
VAL_MEAN_NE: Final = "val_mean_ne"  # a teacher's kept epoch: its mean NE over tasks on the validation window (what tune --teacher minimizes)
LIFT_PCT_LOW: Final = "lift_pct_ci_low"  # a student's 95% interval (paired bootstrap over eval users)
LIFT_PCT_HIGH: Final = "lift_pct_ci_high"
TRANSFER_RATIO_LOW: Final = "transfer_ratio_ci_low"
TRANSFER_RATIO_HIGH: Final = "transfer_ratio_ci_high"
EVAL_POSITIVES: Final = "eval_positives"  # a VM's eval slice: its labelled positives…
EVAL_ROWS: Final = "eval_rows"  # …and its labelled impressions
GAIN_RATIO: Final = "gain_ratio"  # a student's gain ratio over its vanilla-KD reference, with its interval
GAIN_RATIO_LOW: Final = "gain_ratio_ci_low"
GAIN_RATIO_HIGH: Final = "gain_ratio_ci_high"
OVER_VANILLA_LOW: Final = "ne_points_over_vanilla_ci_low"  # 100 · (NE_vanilla − NE_student)
OVER_VANILLA_HIGH: Final = "ne_points_over_vanilla_ci_high"
TEACHER_LEAD_LOW: Final = "teacher_lead_ci_low"  # 100 · (NE_baseline − NE_teacher): the transfer ratio's denominator
TEACHER_LEAD_HIGH: Final = "teacher_lead_ci_high"
VANILLA_GAIN_LOW: Final = "vanilla_gain_ci_low"  # 100 · (NE_baseline − NE_vanilla): the gain ratio's denominator
VANILLA_GAIN_HIGH: Final = "vanilla_gain_ci_high"
MDE_LIFT_PCT: Final = "mde_lift_pct"  # the eval slice's minimum detectable lift % (95% level, 80% power)
RESAMPLED_UNITS: Final = "resampled_units"  # the users (or user-days) the interval's bootstrap draws


def model_metrics(scores: Scores, teacher: Scores, producer: Scores | None, baseline: Scores) -> dict[str, float]:
    """Every model run's metrics under the same names (a baseline's lift is 0 against itself), so the
    MLflow UI's compare view lines runs up column by column. Ratios are not among them: a student's
    come with its interval (`interval_metrics`), and only where they exist."""
    metrics = {f"{EVAL}{name}": value for name, value in scores.as_dict().items()}
    metrics |= {f"{TEACHER_EVAL}{name}": value for name, value in teacher.as_dict().items()}
    if producer is not None:
        metrics |= {f"{PRODUCER_EVAL}{name}": value for name, value in producer.as_dict().items()}
    metrics[LIFT_PCT] = lift_percent(baseline.ne, scores.ne)
    return metrics


def interval_metrics(interval: LiftInterval | None, scores: Scores, baseline: Scores, teacher: Scores,
                     vanilla: Scores | None) -> dict[str, float]:
    """A student's interval as metrics (none for a baseline): lift, the slice's minimum detectable
    lift, the units resampled, the denominators' intervals, and the transfer and gain ratios with
    their intervals only where their denominator is resolvable (no bare ratio is ever logged)."""
    if interval is None:
        return {}
    metrics = {LIFT_PCT_LOW: interval.lift_low, LIFT_PCT_HIGH: interval.lift_high, MDE_LIFT_PCT: interval.mde_lift,
               RESAMPLED_UNITS: float(interval.units), TEACHER_LEAD_LOW: interval.lead_low, TEACHER_LEAD_HIGH: interval.lead_high}
    if interval.ratio_defined:
        metrics |= {TRANSFER_RATIO: transfer_ratio(baseline.ne, scores.ne, teacher.ne), TRANSFER_RATIO_LOW: interval.ratio_low,
                    TRANSFER_RATIO_HIGH: interval.ratio_high}
    if vanilla is not None and interval.vanilla_verdict:
        metrics |= {OVER_VANILLA_LOW: interval.over_vanilla_low, OVER_VANILLA_HIGH: interval.over_vanilla_high,
                    VANILLA_GAIN_LOW: interval.vanilla_gain_low, VANILLA_GAIN_HIGH: interval.vanilla_gain_high}
        if interval.gain_defined:
            metrics |= {GAIN_RATIO: transfer_ratio(baseline.ne, scores.ne, vanilla.ne), GAIN_RATIO_LOW: interval.gain_low,
                        GAIN_RATIO_HIGH: interval.gain_high}
    return metrics


def serving_metrics(cost: ServingCost) -> dict[str, float]:
    """What scoring one request costs, as metrics (FLOPs only where they were counted)."""
    found = {SERVING_PARAMS: cost.params, SERVING_P50_MS: cost.p50_ms, SERVING_P99_MS: cost.p99_ms}
    return found | ({SERVING_FLOPS: cost.flops} if cost.flops is not None else {})


def validation_metrics(validation: Scores | None) -> dict[str, float]:
    """A VM's scores on its validation slice as `val_*` metrics (none without them)."""
    return {f"{VALIDATION}{name}": value for name, value in validation.as_dict().items()} if validation is not None else {}


def slice_metrics(labels: torch.Tensor) -> dict[str, float]:
    """A VM's eval slice: labelled rows and positives. labels: [n] (NaN where unlabelled)."""
    known = labels[~labels.isnan()]
    return {EVAL_ROWS: float(len(known)), EVAL_POSITIVES: float(known.sum().item())}

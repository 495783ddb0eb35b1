"""The lift table from the MLflow tracking store (not from local files), for analysts.

Per vertical model and recipe run: the teacher and the VM's producer (on the VM's eval slice), the
no-transfer baseline, and each transfer variant (student), with NE, AUC, calibration, lift % and
transfer ratio — rows from several recipe runs side by side. Written as CSV and a PNG chart, and
logged as artifacts on each recipe run it covers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from transfer.errors import UserError
from transfer.evaluation.intervals import RESAMPLES, LiftInterval, fieller_interval, seed_interval
from transfer.evaluation.lift_table import (
    SCORE_COLUMNS,
    Scores,
    VerticalResult,
    without_unused_gain_columns,
)
from transfer.evaluation.lift_table import lift_rows as lift_table_rows
from transfer.tracking import tags as T
from transfer.tracking.runs import TRACKING_FLAG, check_reachable
from transfer.util.atomic import atomic_path

COLUMNS = [T.RECIPE, T.RECIPE_RUN_ID, "started", "vertical", "slice", "role", "variant", "model", *SCORE_COLUMNS]

@dataclass
class LiftReport:
    table: pl.DataFrame
    csv: Path
    chart: Path
    recipe_runs: list[str]
    over_seeds: pl.DataFrame | None = None  # where a recipe ran with several seeds: each effect's interval over them
    over_seeds_csv: Path | None = None


def lift_from_tracking(uri: str, experiments: list[str] | None, vertical: str | None, since: str | None, out: Path) -> LiftReport:
    check_reachable(uri, setting=TRACKING_FLAG, create=False)
    client = MlflowClient(uri)
    ids = _experiment_ids(client, uri, experiments)
    runs = _model_runs(client, ids, vertical, _since_ms(since))
    if not any(r.data.tags[T.ROLE] == T.Role.STUDENT for r in runs):
        scope = f"experiment(s) {', '.join(experiments)}" if experiments else "any experiment"
        raise UserError(f"no vertical-model runs in {scope} of {uri}" + (f" for vertical '{vertical}'" if vertical else "")
                        + (f" since {since}" if since else ""))
    rows = lift_rows(runs)
    table = without_unused_gain_columns(rows.select(COLUMNS))
    csv, chart = out / "lift.csv", out / "lift.png"
    with atomic_path(csv) as tmp:
        table.write_csv(tmp)
    draw_lift_chart(rows, chart)
    recipe_runs = sorted(set(table[T.RECIPE_RUN_ID].to_list()) - {""})
    summary = over_seeds(table, {run_id: _seeds(client, run_id) for run_id in recipe_runs})
    summary_csv = None
    if summary is not None:
        summary_csv = out / "lift_over_seeds.csv"
        with atomic_path(summary_csv) as tmp:
            summary.write_csv(tmp)
    for run_id in recipe_runs:
        for path in (csv, chart, summary_csv):
            if path is not None:
                client.log_artifact(run_id, str(path), artifact_path="lift")
    return LiftReport(table, csv, chart, recipe_runs, summary, summary_csv)


SEED_PARAMS = ("seed", "data.synthetic.seed")  # what a seed varies: the models, and the synthetic world


def _seeds(client: MlflowClient, recipe_run_id: str) -> str:
    """The recipe run's seeds as one label ("seed=1 data.synthetic.seed=1")."""
    params = client.get_run(recipe_run_id).data.params
    return " ".join(f"{name}={params[name]}" for name in SEED_PARAMS if name in params)


def over_seeds(table: pl.DataFrame, seeds: dict[str, str]) -> pl.DataFrame | None:
    """Per recipe, VM and variant run with several seeds (`seeds`: recipe run → its seeds; one run
    per seed, the newest): the mean lift % with its 95% t-interval over the seeds and its verdict, and
    with vanilla-KD references the same for NE points over vanilla KD. None when no recipe ran with
    two seeds. The per-seed lifts are paired with their own baselines; with seeds that vary the data,
    the interval holds the eval set's noise as well as the models'."""
    students = table.filter(pl.col("role") == "student").with_columns(
        pl.col(T.RECIPE_RUN_ID).replace_strict(seeds, default="").alias("seeds"))
    for role, column in (("vanilla_kd", "vanilla NE"), ("baseline", "baseline NE"), ("teacher", "teacher NE")):
        other = table.filter(pl.col("role") == role).select(T.RECIPE_RUN_ID, "vertical", pl.col("NE").alias(column))
        students = students.join(other.unique([T.RECIPE_RUN_ID, "vertical"], keep="last"), on=[T.RECIPE_RUN_ID, "vertical"], how="left",
                                 maintain_order="left")
    students = students.unique(["recipe", "vertical", "variant", "seeds"], keep="last", maintain_order=True)  # rows are oldest first
    rows = []
    for (recipe, vertical, slice_, variant), group in students.group_by(["recipe", "vertical", "slice", "variant"], maintain_order=True):
        if len(group) < 2:
            continue
        rows.append({"recipe": recipe, "vertical": vertical, "slice": slice_, "variant": variant, "seeds": len(group)} | _seed_effects(group))
    return pl.DataFrame(rows) if rows else None


def _seed_effects(group: pl.DataFrame) -> dict[str, object]:
    """One student's effects over its seeds (a row each, with its baseline's, teacher's and vanilla-KD
    reference's NE): mean lift % with its t-interval and verdict, the transfer ratio with Fieller's
    interval, and against vanilla KD the NE points over it and the gain ratio (Fieller) — each ratio
    "undefined" where its denominator is not resolvable over the seeds."""
    lift = seed_interval(group["lift %"].to_list())
    gain = (100 * (group["baseline NE"] - group["NE"])).to_list()
    ratio = "undefined: a seed's teacher row is missing"
    if group["teacher NE"].null_count() == 0:
        ratio = fieller_interval(gain, (100 * (group["baseline NE"] - group["teacher NE"])).to_list()).cell()
    row = {"lift % mean": lift.mean, "lift % 95% CI over seeds": f"[{lift.low:.2f}, {lift.high:.2f}]", "vs baseline": lift.verdict,
           "transfer ratio [Fieller 95% CI]": ratio,
           "NE points over vanilla KD [95% CI]": "", "vs vanilla KD": "", "gain ratio [Fieller 95% CI]": ""}
    if group["vanilla NE"].null_count() == 0:
        over = seed_interval((100 * (group["vanilla NE"] - group["NE"])).to_list())
        row |= {"NE points over vanilla KD [95% CI]": f"{over.mean:.2f} [{over.low:.2f}, {over.high:.2f}]", "vs vanilla KD": over.verdict,
                "gain ratio [Fieller 95% CI]": fieller_interval(gain, (100 * (group["baseline NE"] - group["vanilla NE"])).to_list()).cell()}
    return row


def _experiment_ids(client: MlflowClient, uri: str, names: list[str] | None) -> list[str]:
    if not names:
        return [e.experiment_id for e in client.search_experiments()]
    ids = []
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None:
            known = ", ".join(sorted(e.name for e in client.search_experiments()))
            raise UserError(f"--experiment: no experiment '{name}' in {uri}; experiments there: {known}")
        ids.append(found.experiment_id)
    return ids


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        day = date.fromisoformat(since)
    except ValueError:
        raise UserError(f"--since: found '{since}'; allowed: a date YYYY-MM-DD") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)


def _model_runs(client: MlflowClient, experiment_ids: list[str], vertical: str | None, since_ms: int | None) -> list[Run]:
    """Finished student, vanilla-KD reference, baseline and teacher runs of the experiments, oldest
    first; a student's baseline and reference are fetched by their run ids when the filters left them out."""
    conditions = ["attributes.status = 'FINISHED'"]
    if since_ms is not None:
        conditions.append(f"attributes.start_time >= {since_ms}")
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, " and ".join(conditions), max_results=1000, page_token=token)
        runs += [r for r in page if r.data.tags.get(T.ROLE) in T.Role.MODELS]
        token = page.token
        if not token:
            break
    if vertical is not None:
        runs = [r for r in runs if r.data.tags.get(T.ROLE) == T.Role.TEACHER or r.data.tags.get(T.VERTICAL) == vertical]
    have = {r.info.run_id for r in runs}
    wanted = {r.data.tags[key] for r in runs if r.data.tags.get(T.ROLE) == T.Role.STUDENT
              for key in (T.BASELINE_RUN_ID, T.VANILLA_RUN_ID) if key in r.data.tags}
    runs += [client.get_run(run_id) for run_id in sorted(wanted - have)]
    return sorted(runs, key=lambda r: r.info.start_time)


def lift_rows(runs: list[Run]) -> pl.DataFrame:
    """One row per model per (recipe run, vertical): teacher, producer (if a domain FM), baseline,
    vanilla-KD reference (if one ran), student; every column (`COLUMNS` selects what the table shows)."""
    by_id = {r.info.run_id: r for r in runs}
    teachers = {r.data.tags.get(T.RECIPE_RUN_ID, ""): r for r in runs if r.data.tags[T.ROLE] == T.Role.TEACHER}
    starts: dict[str, str] = {}  # recipe run → when its first model run started (labels one recipe run as one)
    for r in runs:
        starts.setdefault(r.data.tags.get(T.RECIPE_RUN_ID, ""), _started(r))
    results = []
    for student in (r for r in runs if r.data.tags[T.ROLE] == T.Role.STUDENT):
        baseline = by_id.get(student.data.tags.get(T.BASELINE_RUN_ID, ""))
        if baseline is None:
            print(f"  ! student run {student.info.run_id}: its baseline run is not in the store; left out of the table", flush=True)
            continue
        results.append(_vertical_result(student, baseline, by_id.get(student.data.tags.get(T.VANILLA_RUN_ID, "")), teachers, starts))
    return lift_table_rows(results)


def _vertical_result(student: Run, baseline: Run, vanilla: Run | None, teachers: dict[str, Run], starts: dict[str, str]) -> VerticalResult:
    """A student run, its baseline's and its vanilla-KD reference's (if any) as one VM's comparison
    (the teacher's and producer's scores are logged on the student run; each row keeps the run that
    trained its model: the recipe run's teacher run, the student's producer run)."""
    tags, metrics = student.data.tags, student.data.metrics
    recipe_run = tags.get(T.RECIPE_RUN_ID, "")
    producer = tags.get(T.PRODUCER, "") if f"{T.PRODUCER_EVAL}{T.NE}" in metrics else None
    teacher = teachers.get(recipe_run)
    on_baseline = baseline.data.metrics
    return VerticalResult(
        tags[T.VERTICAL], tags.get(T.SURFACE, ""), tags.get(T.TASK, ""), teacher.data.tags.get(T.MODEL, "teacher") if teacher else "teacher",
        teacher=_scores(metrics, T.TEACHER_EVAL), baseline=_scores(baseline.data.metrics, T.EVAL), student=_scores(metrics, T.EVAL),
        producer=producer, producer_scores=_scores(metrics, T.PRODUCER_EVAL) if producer is not None else None,
        budget=tags.get(T.BUDGET_STATUS, "no budget"), variant=variant_of(tags),
        run_ids={T.Role.TEACHER: teacher.info.run_id if teacher else "", T.Role.DOMAIN_FM: tags.get(T.PRODUCER_RUN_ID, "") if producer else "",
                 T.Role.BASELINE: baseline.info.run_id, T.Role.STUDENT: student.info.run_id}
                | ({T.Role.VANILLA_KD: vanilla.info.run_id} if vanilla is not None else {}),
        context={T.RECIPE: tags.get(T.RECIPE, ""), T.RECIPE_RUN_ID: recipe_run, "started": starts.get(recipe_run, _started(student))},
        interval=_interval(metrics, tags),
        vanilla=_scores(vanilla.data.metrics, T.EVAL) if vanilla is not None else None,
        vanilla_interval=_interval(vanilla.data.metrics, vanilla.data.tags) if vanilla is not None else None,
        flops_shares={role: run.data.metrics[T.FLOPS_VS_TEACHER] for role, run in ((T.Role.BASELINE, baseline), (T.Role.STUDENT, student),
                                                                                 (T.Role.VANILLA_KD, vanilla))
                      if run is not None and T.FLOPS_VS_TEACHER in run.data.metrics},
        eval_rows=int(on_baseline[T.EVAL_ROWS]) if T.EVAL_ROWS in on_baseline else None,
        eval_positives=int(on_baseline[T.EVAL_POSITIVES]) if T.EVAL_POSITIVES in on_baseline else None,
        best_epochs={role: int(run.data.metrics[T.BEST_EPOCH]) for role, run in
                     ((T.Role.BASELINE, baseline), (T.Role.STUDENT, student), (T.Role.VANILLA_KD, vanilla)) if run is not None and T.BEST_EPOCH in run.data.metrics},
    )


def _interval(metrics: dict[str, float], tags: dict[str, str]) -> LiftInterval | None:
    """The student's logged interval (runs from before intervals were logged have none; runs from
    before the denominators' intervals were logged have undefined ratios)."""
    if T.LIFT_PCT_LOW not in metrics:
        return None
    def get(name: str) -> float:
        return metrics.get(name, math.nan)

    return LiftInterval(metrics[T.LIFT_PCT_LOW], metrics[T.LIFT_PCT_HIGH], get(T.TRANSFER_RATIO_LOW), get(T.TRANSFER_RATIO_HIGH),
                        int(metrics.get(T.EVAL_POSITIVES, 0)), RESAMPLES,
                        *(get(name) for name in (T.GAIN_RATIO_LOW, T.GAIN_RATIO_HIGH, T.OVER_VANILLA_LOW, T.OVER_VANILLA_HIGH,
                                                 T.TEACHER_LEAD_LOW, T.TEACHER_LEAD_HIGH, T.VANILLA_GAIN_LOW, T.VANILLA_GAIN_HIGH)),
                        mde_lift=get(T.MDE_LIFT_PCT), units=int(metrics.get(T.RESAMPLED_UNITS, 0)), unit=tags.get(T.RESAMPLED_UNIT, "rows"))


def _scores(metrics: dict[str, float], prefix: str) -> Scores:
    return Scores(metrics[f"{prefix}{T.NE}"], metrics.get(f"{prefix}{T.AUC}"), metrics.get(f"{prefix}{T.CALIBRATION}"),
                  metrics.get(f"{prefix}{T.RECAL_NE}", math.nan))


def variant_of(tags: dict[str, str]) -> str:
    """A student's transfer variant: its techniques, and its producer when that is a domain FM."""
    techniques = tags.get(T.TECHNIQUES, "?")
    producer = tags.get(T.PRODUCER, "")
    return f"{techniques} via {producer.split(':')[0]}" if ":" in producer else techniques


def _started(run: Run) -> str:
    return datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def draw_lift_chart(table: pl.DataFrame, path: Path) -> None:
    """Bars of lift % per VM, one colour per (recipe, variant), each student's 95% interval as a
    whisker, and above each bar its verdict against the baseline ("n.d." where not distinguishable)
    and its transfer ratio where that exists; the no-transfer baseline is the zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = table.filter(pl.col("role") == "student").with_columns(
        (pl.col("recipe") + ": " + pl.col("variant") + " (" + pl.col("started") + ")").alias("label")
    )
    verticals = students["vertical"].unique(maintain_order=True).to_list()
    labels = students["label"].unique(maintain_order=True).to_list()
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(verticals) * max(1, len(labels) / 2)), 4.8))
    colours = plt.get_cmap("tab10")
    for j, label in enumerate(labels):
        rows = students.filter(pl.col("label") == label)
        for row in rows.iter_rows(named=True):
            x = verticals.index(row["vertical"]) - 0.4 + width * (j + 0.5)
            lift, low, high = row["lift %"], row["lift % low"], row["lift % high"]
            ax.bar(x, lift, width, color=colours(j % 10), label=label)
            top = lift
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                ax.errorbar(x, lift, yerr=[[max(lift - low, 0.0)], [max(high - lift, 0.0)]], color="black", capsize=4, linewidth=1)
                top = high if lift >= 0 else low
            ax.annotate(_bar_note(row), (x, top), ha="center", va="bottom" if lift >= 0 else "top", fontsize=8)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xticks(range(len(verticals)), verticals)
    ax.set_xlabel("vertical model")
    ax.set_ylabel("NE lift over the no-transfer baseline (%)")
    ax.set_title("Student lift per vertical model, 95% interval over eval users\n(n.d. = not distinguishable; TR = transfer ratio, where it exists)",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _bar_note(row: dict) -> str:
    """What a student's bar says: its verdict against the baseline, and its transfer ratio where defined."""
    verdict = {"not distinguishable": "n.d.", "": ""}.get(row["vs baseline"], row["vs baseline"])
    ratio = row["transfer ratio"]
    return "\n".join(part for part in (verdict, f"TR {ratio:.2f}" if ratio is not None and math.isfinite(ratio) else "") if part)

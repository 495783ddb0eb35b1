"""The lift table from the MLflow tracking store (not from local files), for analysts.

Per vertical model and recipe run: the teacher and the VM's producer (on the VM's eval slice), the
no-transfer baseline, and each transfer variant (student), with NE, AUC, calibration, lift % and
transfer ratio — rows from several recipe runs side by side. Written as CSV and a PNG chart, and
logged as artifacts on each recipe run it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from transfer.errors import UserError
from transfer.evaluation.metrics import lift_percent, transfer_ratio
from transfer.evaluation.report import budget_cell
from transfer.tracking.runs import check_reachable
from transfer.util.atomic import atomic_path

COLUMNS = ["recipe", "recipe_run_id", "started", "vertical", "slice", "role", "variant", "model",
           "NE", "AUC", "calibration", "lift %", "transfer ratio", "serving budget", "run_id"]


@dataclass
class LiftReport:
    table: pl.DataFrame
    csv: Path
    chart: Path
    recipe_runs: list[str]


def lift_from_tracking(uri: str, experiments: list[str] | None, vertical: str | None, since: str | None, out: Path) -> LiftReport:
    check_reachable(uri)
    client = MlflowClient(uri)
    ids = _experiment_ids(client, uri, experiments)
    runs = _model_runs(client, ids, vertical, _since_ms(since))
    if not any(r.data.tags["role"] == "student" for r in runs):
        scope = f"experiment(s) {', '.join(experiments)}" if experiments else "any experiment"
        raise UserError(f"no vertical-model runs in {scope} of {uri}" + (f" for vertical '{vertical}'" if vertical else "")
                        + (f" since {since}" if since else ""))
    table = lift_rows(runs)
    csv, chart = out / "lift.csv", out / "lift.png"
    with atomic_path(csv) as tmp:
        table.drop("run_id").write_csv(tmp)
    draw_lift_chart(table, chart)
    recipe_runs = sorted(set(table["recipe_run_id"].to_list()) - {""})
    for run_id in recipe_runs:
        client.log_artifact(run_id, str(csv), artifact_path="lift")
        client.log_artifact(run_id, str(chart), artifact_path="lift")
    return LiftReport(table, csv, chart, recipe_runs)


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
    """Finished student, baseline and teacher runs of the experiments, oldest first."""
    conditions = ["attributes.status = 'FINISHED'"]
    if since_ms is not None:
        conditions.append(f"attributes.start_time >= {since_ms}")
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, " and ".join(conditions), max_results=1000, page_token=token)
        runs += [r for r in page if r.data.tags.get("role") in ("student", "baseline", "teacher")]
        token = page.token
        if not token:
            break
    if vertical is not None:
        runs = [r for r in runs if r.data.tags.get("role") == "teacher" or r.data.tags.get("vertical") == vertical]
    return sorted(runs, key=lambda r: r.info.start_time)


def lift_rows(runs: list[Run]) -> pl.DataFrame:
    """One row per model per (recipe run, vertical): teacher, producer (if a domain FM), baseline, student."""
    teachers = {r.data.tags.get("recipe_run_id", ""): r.data.tags.get("model", "teacher") for r in runs if r.data.tags["role"] == "teacher"}
    baselines = {(r.data.tags.get("recipe_run_id", ""), r.data.tags["vertical"]): r for r in runs if r.data.tags["role"] == "baseline"}
    starts: dict[str, str] = {}  # recipe run → when its first model run started (labels one recipe run as one)
    for r in runs:
        starts.setdefault(r.data.tags.get("recipe_run_id", ""), _started(r))
    rows = []
    for student in (r for r in runs if r.data.tags["role"] == "student"):
        tags, metrics = student.data.tags, student.data.metrics
        recipe_run = tags.get("recipe_run_id", "")
        baseline = baselines.get((recipe_run, tags["vertical"]))
        base_ne = baseline.data.metrics["eval_ne"] if baseline else metrics["eval_ne"] / (1 - metrics["lift_pct"] / 100)
        teacher_ne = metrics["teacher_eval_ne"]
        common = {"recipe": tags.get("recipe", ""), "recipe_run_id": recipe_run, "started": starts.get(recipe_run, _started(student)),
                  "vertical": tags["vertical"], "slice": f"{tags.get('surface', '')}/{tags.get('task', '')}"}
        models = [("teacher", "", teachers.get(recipe_run, "teacher"), "teacher_eval_", metrics, student)]
        if "producer_eval_ne" in metrics:
            models.append(("domain_fm", "", tags["producer"], "producer_eval_", metrics, student))
        if baseline is not None:
            models.append(("baseline", "no transfer", tags["vertical"], "eval_", baseline.data.metrics, baseline))
        models.append(("student", variant_of(tags), tags["vertical"], "eval_", metrics, student))
        for role, variant, model, prefix, values, run in models:
            ne = values[f"{prefix}ne"]
            rows.append({
                **common, "role": role, "variant": variant, "model": model, "NE": ne, "AUC": values.get(f"{prefix}auc"),
                "calibration": values.get(f"{prefix}calibration"), "lift %": lift_percent(base_ne, ne),
                "transfer ratio": transfer_ratio(base_ne, ne, teacher_ne),
                "serving budget": budget_cell(tags.get("budget_status", "no budget")) if role == "student" else "",
                "run_id": run.info.run_id,
            })
    return pl.DataFrame(rows, schema_overrides={"AUC": pl.Float64, "calibration": pl.Float64}).select(COLUMNS)


def variant_of(tags: dict[str, str]) -> str:
    """A student's transfer variant: its techniques, and its producer when that is a domain FM."""
    techniques = tags.get("techniques", "?")
    producer = tags.get("producer", "")
    return f"{techniques} via {producer.split(':')[0]}" if ":" in producer else techniques


def _started(run: Run) -> str:
    return datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def draw_lift_chart(table: pl.DataFrame, path: Path) -> None:
    """Bars of lift % per VM, one colour per (recipe, variant), the transfer ratio written on each bar;
    the no-transfer baseline is the zero line."""
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
            ax.bar(x, row["lift %"], width, color=colours(j % 10), label=label)
            ax.annotate(f"TR {row['transfer ratio']:.2f}", (x, row["lift %"]), ha="center",
                        va="bottom" if row["lift %"] >= 0 else "top", fontsize=8)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xticks(range(len(verticals)), verticals)
    ax.set_xlabel("vertical model")
    ax.set_ylabel("NE lift over the no-transfer baseline (%)")
    ax.set_title("Student lift per vertical model (TR = transfer ratio; 0 = baseline)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

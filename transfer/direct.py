"""Direct transfer, teacher → VMs (design §3): the stages, run in order, each an MLflow child run.

1. train the teacher on the train window (every surface and task);
2. generate knowledge for the train window (a parquet table, written atomically);
3. for each VM: train it distilled from that knowledge, and its baseline without transfer
   (same architecture, data and seed);
4. evaluate teacher, VMs and baselines on the eval window → the lift table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import mlflow
import polars as pl

from students import ARCHITECTURES, VERTICALS, VerticalSpec
from teacher import TEACHERS
from transfer.atomic import atomic_path, write_text_atomic
from transfer.batches import WindowBatches, window_loader
from transfer.data import PreparedData, prepare_data
from transfer.errors import RecipeError
from transfer.knowledge import Provenance, check_provenance, join_soft_logits, write_knowledge
from transfer.metrics import lift_percent, transfer_ratio
from transfer.module import RankingModule
from transfer.progress import step
from transfer.recipe import Recipe, StudentConfig
from transfer.report import Scores, VerticalResult, lift_table
from transfer.tracking import Tracker, default_tracking_uri
from transfer.training import evaluate, fit, predict

EVAL_BATCH = 4096


@dataclass
class RunResult:
    table: pl.DataFrame
    parent_run_id: str
    tracking_uri: str
    experiment: str
    run_dir: Path


def run_direct(recipe: Recipe, recipe_path: Path) -> RunResult:
    """Run a direct-transfer recipe end to end; returns the lift table and where it was tracked."""
    data = prepare_data(recipe.data)
    verticals = [_vertical(recipe_path, i, s, data) for i, s in enumerate(recipe.students)]
    run_dir = Path(recipe.output_dir) / recipe.name / recipe.hash
    uri = recipe.tracking.uri or default_tracking_uri(Path(recipe.output_dir))
    experiment = recipe.tracking.experiment or recipe.name
    artifacts = Path(recipe.output_dir) / "mlartifacts" if recipe.tracking.uri is None else None
    tracker = Tracker(uri, experiment, artifacts)
    print(f"▸ data: {data.dataset}: train {data.train} ({len(data.train_rows):,} rows), eval {data.eval} ({len(data.eval_rows):,} rows)", flush=True)

    with tracker.run(recipe.name, {"recipe": recipe.name, "recipe_hash": recipe.hash, "strategy": "direct"}) as parent_id:
        _log_recipe(recipe, run_dir)
        teacher, teacher_run = _train_teacher(recipe, data, tracker)
        knowledge = _generate_knowledge(recipe, data, teacher, teacher_run, tracker, run_dir)
        results = [
            _transfer_to_vertical(recipe, data, spec, student, teacher, teacher_run, knowledge, tracker, seed=recipe.seed + 1 + i)
            for i, (spec, student) in enumerate(zip(verticals, recipe.students, strict=False))
        ]
        table = lift_table(results, recipe.teacher.model)
        with atomic_path(run_dir / "lift.csv") as tmp:
            table.write_csv(tmp)
        mlflow.log_artifact(str(run_dir / "lift.csv"))
    return RunResult(table, parent_id, uri, experiment, run_dir)


def _vertical(recipe_path: Path, i: int, student: StudentConfig, data: PreparedData) -> VerticalSpec:
    spec = VERTICALS[student.vertical]
    if spec.surface not in data.log.surfaces:
        raise RecipeError(
            f"{recipe_path}: students.{i}.vertical: '{spec.name}' serves surface '{spec.surface}', which dataset "
            f"'{data.dataset}' does not have; its surfaces: {', '.join(data.log.surfaces)}"
        )
    if spec.task not in data.log.tasks:
        raise RecipeError(
            f"{recipe_path}: students.{i}.vertical: '{spec.name}' serves task '{spec.task}'; dataset "
            f"'{data.dataset}' has tasks: {', '.join(data.log.tasks)}"
        )
    return spec


def _log_recipe(recipe: Recipe, run_dir: Path) -> None:
    mlflow.log_params(recipe.flat())
    write_text_atomic(run_dir / "recipe.yaml", recipe.to_yaml())
    mlflow.log_artifact(str(run_dir / "recipe.yaml"))


def _train_teacher(recipe: Recipe, data: PreparedData, tracker: Tracker) -> tuple[RankingModule, str]:
    cfg = recipe.teacher
    tags = {"role": "teacher", "model": cfg.model, "surface": "all", "task": ",".join(data.log.tasks)}
    with tracker.run(f"teacher:{cfg.model}", tags, nested=True) as run_id:
        L.seed_everything(recipe.seed, verbose=False)
        model = TEACHERS[cfg.model](data.log.inputs)
        module = RankingModule(model, data.log.tasks, list(range(len(data.log.tasks))), lr=cfg.lr)
        batches = WindowBatches(data.log, data.train_rows, model.history_length)
        loader = window_loader(batches, cfg.batch_size, shuffle=True, seed=recipe.seed)
        with step(f"teacher: training {cfg.model} on {len(data.train_rows):,} impressions"):
            fit(module, loader, recipe.trainer, cfg.max_epochs, tracker.lightning_logger(run_id))
        mlflow.log_metric("parameters", sum(p.numel() for p in model.parameters()))
    return module, run_id


def _generate_knowledge(
    recipe: Recipe, data: PreparedData, teacher: RankingModule, teacher_run: str, tracker: Tracker, run_dir: Path
) -> Path:
    path = run_dir / "knowledge" / f"{recipe.teacher.model}-train.parquet"
    tags = {"role": "knowledge", "producer": recipe.teacher.model, "producer_run_id": teacher_run}
    with tracker.run(f"knowledge:{recipe.teacher.model}", tags, nested=True):
        batches = WindowBatches(data.log, data.train_rows, teacher.model.history_length)
        with step(f"knowledge: scoring {len(data.train_rows):,} train impressions with the teacher"):
            rows, logits, embedding = predict(teacher, window_loader(batches, EVAL_BATCH, shuffle=False), recipe.trainer)
        provenance = Provenance(
            producer=recipe.teacher.model,
            producer_run_id=teacher_run,
            cutoff=data.train.end.isoformat(),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            recipe_hash=recipe.hash,
        )
        example_id = data.log.example_id.gather(rows.numpy())
        write_knowledge(path, example_id, logits, embedding, data.log.tasks, provenance)
        mlflow.log_params({"path": str(path), "rows": len(rows), "embedding_dim": embedding.shape[1]})
    return path


def _transfer_to_vertical(
    recipe: Recipe,
    data: PreparedData,
    spec: VerticalSpec,
    student: StudentConfig,
    teacher: RankingModule,
    teacher_run: str,
    knowledge: Path,
    tracker: Tracker,
    seed: int,
) -> VerticalResult:
    task_col = data.log.tasks.index(spec.task)
    train_rows = data.log.surface_rows(data.train_rows, spec.surface)
    eval_rows = data.log.surface_rows(data.eval_rows, spec.surface)
    check_provenance(knowledge, recipe.teacher.model, teacher_run)
    soft = join_soft_logits(knowledge, data.log.example_id.gather(train_rows.numpy()), spec.task)
    teacher_scores = evaluate(teacher, _eval_loader(data, eval_rows, teacher.model.history_length), recipe.trainer, spec.task)

    scores: dict[str, Scores] = {}
    for role, weight in (("baseline", 0.0), ("student", recipe.transfer.distillation.weight)):
        tags = {"role": role, "vertical": spec.name, "surface": spec.surface, "task": spec.task}
        if role == "student":
            tags |= {"producer": recipe.teacher.model, "producer_run_id": teacher_run, "technique": "vanilla_kd"}
        with tracker.run(f"{role}:{spec.name}", tags, nested=True) as run_id:
            L.seed_everything(seed, verbose=False)
            model = ARCHITECTURES[student.architecture or spec.architecture](data.log.inputs)
            module = RankingModule(model, [spec.task], [task_col], lr=student.lr, distill_weight=weight)
            batches = WindowBatches(data.log, train_rows, model.history_length, soft if weight > 0 else None)
            loader = window_loader(batches, student.batch_size, shuffle=True, seed=seed)
            with step(f"{role}: {spec.name} on {len(train_rows):,} impressions of {spec.surface}"):
                fit(module, loader, recipe.trainer, recipe.trainer.max_epochs, tracker.lightning_logger(run_id))
            scores[role] = evaluate(module, _eval_loader(data, eval_rows, model.history_length), recipe.trainer, spec.task)
            mlflow.log_metrics(_metric_dict(scores[role], teacher_scores, scores.get("baseline")))
            mlflow.log_metric("parameters", sum(p.numel() for p in model.parameters()))
    return VerticalResult(spec.name, spec.surface, spec.task, teacher_scores, scores["baseline"], scores["student"])


def _eval_loader(data: PreparedData, rows, history_length: int):
    return window_loader(WindowBatches(data.log, rows, history_length), EVAL_BATCH, shuffle=False)


def _metric_dict(scores: Scores, teacher: Scores, baseline: Scores | None) -> dict[str, float]:
    metrics = {"eval_ne": scores.ne, "eval_auc": scores.auc, "eval_calibration": scores.calibration, "teacher_eval_ne": teacher.ne}
    if baseline is not None:
        metrics["lift_pct"] = lift_percent(baseline.ne, scores.ne)
        metrics["transfer_ratio"] = transfer_ratio(baseline.ne, scores.ne, teacher.ne)
    return metrics

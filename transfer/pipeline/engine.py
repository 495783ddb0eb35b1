"""The transfer engine: one path for direct and hierarchical recipes (design §3, §8).

1. train the teacher on the train window (every surface and task), or reuse an identical one;
2. run the recipe's stages in order, each its own MLflow child run: a producer (the teacher, or
   each domain's FM) generates knowledge for the consumers' window once, and its consumers (the
   domain FMs, or the VMs and their no-transfer baselines) train on it with the stage's techniques;
3. evaluate teacher, producers, VMs and baselines on the eval window → the lift table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import polars as pl

from adapters import techniques_tag
from transfer.catalog import ModelEntry, catalog
from transfer.config.recipe import Recipe, StageConfig, StudentConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import PreparedData, check_slices, prepare_data, resolve_verticals
from transfer.evaluation.cost import parameter_count
from transfer.evaluation.metrics import lift_percent, transfer_ratio
from transfer.evaluation.report import Scores, VerticalResult, lift_table
from transfer.evaluation.serving import budget_status, measure, requests
from transfer.knowledge.generate import SCORING_BATCH, Producer, knowledge_for, knowledge_stage_key, train_teacher
from transfer.pipeline.cache import StageCache
from transfer.pipeline.consumers import ConsumerTarget, knowledge_batches, transfer_module
from transfer.pipeline.keys import StageKey, domain_fm_key, vm_key
from transfer.tracking.runs import Tracker, check_reachable, default_tracking_uri, sqlite_path
from transfer.training.module import RankingModule
from transfer.training.resumable import fit_or_reuse
from transfer.training.trainer import evaluate
from transfer.util import ranks
from transfer.util.atomic import atomic_path, remove_stale_temps, write_text_atomic


@dataclass
class RunResult:
    table: pl.DataFrame
    parent_run_id: str
    tracking_uri: str
    experiment: str
    run_dir: Path
    teacher_weights: Path | None = None
    students: dict[str, RankingModule] = field(default_factory=dict)  # vertical → its trained student


@dataclass
class _Run:
    """What every stage of one recipe run shares."""

    recipe: Recipe
    data: PreparedData
    tracker: Tracker
    cache: StageCache
    teacher: Producer | None = None
    domain_fms: dict[str, Producer] | None = None
    parent_run_id: str = ""
    students: dict[str, RankingModule] = field(default_factory=dict)

    def recipe_tags(self) -> dict[str, str]:
        """Which recipe run a run belongs to (for `lift`, `register`, and cleaning up a killed attempt)."""
        return {"recipe": self.recipe.name, "recipe_hash": self.recipe.hash, "recipe_run_id": self.parent_run_id}


def run_recipe(recipe: Recipe, recipe_path: Path, extra_tags: dict[str, str] | None = None) -> RunResult:
    """Run a recipe end to end; returns the lift table and where it was tracked. `extra_tags` go on
    the recipe's parent run (the continuous cycle's lineage)."""
    ranks.start()
    uri = recipe.tracking.uri or default_tracking_uri(Path(recipe.output_dir))
    if ranks.is_main():  # only rank 0 talks to the tracking server
        check_reachable(uri, Path(recipe.output_dir))
    data = _prepared_data(recipe)
    verticals = resolve_verticals(recipe_path, recipe.students, data)
    check_slices(data, verticals)
    run_dir = Path(recipe.output_dir) / recipe.name / recipe.hash
    experiment = recipe.tracking.experiment or recipe.name
    artifacts = _artifact_root(recipe.tracking.uri, Path(recipe.output_dir))
    run = _Run(recipe, data, Tracker(uri, experiment, artifacts), StageCache(Path(recipe.output_dir) / "stages"))
    _clean_up_killed_attempts(run)
    print(
        f"▸ data: {data.dataset}: teacher {data.train} ({len(data.train_rows):,} rows), students {data.student} "
        f"({len(data.student_rows):,}), eval {data.eval} ({len(data.eval_rows):,})",
        flush=True,
    )
    tags = {"recipe": recipe.name, "recipe_hash": recipe.hash, "strategy": recipe.transfer.strategy, **(extra_tags or {})}
    with run.tracker.run(recipe.name, tags) as parent_id:
        run.parent_run_id = parent_id
        run.tracker.common_tags = run.recipe_tags()  # on every run below: recipe, recipe_hash, recipe_run_id
        _log_recipe(run, run_dir)
        run.teacher = train_teacher(recipe, data, run.tracker, run.cache)
        results: list[VerticalResult] = []
        for index, stage in enumerate(recipe.transfer.stages, start=1):
            with run.tracker.run(f"stage {index}: {stage.producer} → {stage.consumers}", _stage_tags(run, index, stage), nested=True):
                if stage.consumers == "domain_fms":
                    run.domain_fms = {domain: _train_domain_fm(run, domain, stage, index) for domain in _student_domains(run, verticals)}
                else:
                    results = [
                        _transfer_to_vertical(run, spec, student, stage, index, seed=recipe.seed + i + 1)
                        for i, (spec, student) in enumerate(zip(verticals, recipe.students, strict=True))
                    ]
        table = lift_table(results, recipe.teacher.model)
        if ranks.is_main():
            with atomic_path(run_dir / "lift.csv") as tmp:
                table.write_csv(tmp)
            run.tracker.log_artifact(run_dir / "lift.csv")
    return RunResult(table, parent_id, uri, experiment, run_dir, run.teacher.weights, run.students)


def _prepared_data(recipe: Recipe) -> PreparedData:
    """The recipe's data; in a multi-process run rank 0 builds the cache first and the others read it."""
    with ranks.main_first():
        return prepare_data(recipe.data, recipe.transfer.staleness_days)


def _clean_up_killed_attempts(run: _Run) -> None:
    """Before resuming: drop half-written files (the first process of each node, for its host's) and
    mark the killed attempt's MLflow runs failed (rank 0), while the other ranks wait."""
    if ranks.is_node_main():
        for path in remove_stale_temps(Path(run.recipe.output_dir)):
            print(f"  removed a file left half-written by a killed run: {path}", flush=True)
    failed = run.tracker.fail_abandoned(run.recipe.hash)
    if failed:
        print(f"  marked {len(failed)} MLflow run(s) of a killed attempt as FAILED", flush=True)
    ranks.barrier()


def _artifact_root(uri: str | None, output_dir: Path) -> Path | None:
    """Where a new experiment keeps its artifacts: beside a local sqlite store (never the working
    directory); a tracking server decides for itself (None)."""
    if uri is None:
        return output_dir / "mlartifacts"
    db = sqlite_path(uri)
    return db.parent / "mlartifacts" if db is not None else None


def _log_recipe(run: _Run, run_dir: Path) -> None:
    if not ranks.is_main():
        return
    run.tracker.log_params(run.recipe.flat())
    write_text_atomic(run_dir / "recipe.yaml", run.recipe.to_yaml())
    run.tracker.log_artifact(run_dir / "recipe.yaml")


def _stage_tags(run: _Run, index: int, stage: StageConfig) -> dict[str, str]:
    return {
        "role": "stage",
        "stage": str(index),
        "producer": stage.producer,
        "consumers": stage.consumers,
        "techniques": techniques_tag(stage),
        "staleness_days": str(run.recipe.transfer.staleness_days),
    }


def _student_domains(run: _Run, verticals: list[ModelEntry]) -> list[str]:
    """The domains the recipe's VMs serve (each gets a domain FM), in the dataset's order."""
    surfaces = {surface for spec in verticals for surface in spec.surfaces}
    return [domain for domain, members in run.data.domains.items() if surfaces & set(members)]


def _producer_for(run: _Run, stage: StageConfig, domain: str) -> Producer:
    if stage.producer == "teacher":
        return run.teacher
    return run.domain_fms[domain]


def _lineage_tags(run: _Run, producer: Producer, stage: StageConfig, index: int) -> dict[str, str]:
    return {
        "producer": producer.name,
        "producer_run_id": producer.run_id,
        "knowledge_cutoff": producer.cutoff.isoformat(),
        "knowledge_age_days": f"{(run.data.student.end - producer.cutoff).total_seconds() / 86400:g}",
        "staleness_days": str(run.recipe.transfer.staleness_days),
        "stage": str(index),
        "techniques": techniques_tag(stage),
    }


def _train_domain_fm(run: _Run, domain: str, stage: StageConfig, index: int) -> Producer:
    """Train one domain's FM on its surfaces of the consumers' window, taught by the stage's producer."""
    cfg, data = run.recipe.domain_fms, run.data
    producer = _producer_for(run, stage, domain)
    target = ConsumerTarget(data.log.tasks, list(range(len(data.log.tasks))), data.domain_rows(data.student_rows, domain))
    knowledge = knowledge_for(producer, data, run.recipe, run.tracker, run.cache)
    name = f"{cfg.model}:{domain}"
    entry = catalog("domain_fm")[cfg.model]
    tags = {"role": "domain_fm", "model": cfg.model, "domain": domain, "surface": ",".join(data.domains[domain]),
            "task": ",".join(data.log.tasks), **_lineage_tags(run, producer, stage, index)}
    with run.tracker.run(f"domain_fm:{name}", tags, nested=True) as run_id:
        L.seed_everything(run.recipe.seed, verbose=False)
        model = entry.build(data.log.inputs, cfg.sizes)
        module = transfer_module(model, target, cfg.lr, stage, producer, len(data.log.surfaces), target.base_rates(data))
        batches = knowledge_batches(data, target, model.history_length, stage, producer, knowledge, run.recipe.transfer.max_age_days)
        loader = window_loader(batches, cfg.batch_size, shuffle=True, seed=run.recipe.seed)
        key = domain_fm_key(run.recipe, data.fingerprint, str(data.student), domain, stage, producer.key,
                            knowledge_stage_key(producer, data, run.recipe), entry.builder)
        trained_by = fit_or_reuse(run.cache, run.cache.folder(key), module, loader, run.recipe.trainer, cfg.max_epochs,
                                  run.tracker, run_id, f"domain FM: {name}", f"on {len(target.rows):,} impressions")
        run.tracker.log_metrics({"parameters": parameter_count(module.export())})
    return Producer(name, module, trained_by, data.student.end, target.rows, key)


def _transfer_to_vertical(run: _Run, spec: ModelEntry, student: StudentConfig, stage: StageConfig, index: int, seed: int) -> VerticalResult:
    data = run.data
    domain = next(d for d, surfaces in data.domains.items() if spec.surfaces[0] in surfaces)
    producer = _producer_for(run, stage, domain)
    target = ConsumerTarget([spec.task], [data.log.tasks.index(spec.task)], data.log.surface_rows(data.student_rows, spec.surfaces))
    eval_rows = data.log.surface_rows(data.eval_rows, spec.surfaces)
    knowledge = knowledge_for(producer, data, run.recipe, run.tracker, run.cache)
    teacher_scores = _score(run, run.teacher.module, eval_rows, spec.task)
    producer_scores = _score(run, producer.module, eval_rows, spec.task) if producer is not run.teacher else None

    scores: dict[str, Scores] = {}
    run_ids: dict[str, str] = {}
    for role in ("baseline", "student"):
        tags = {"role": role, "vertical": spec.name, "surface": ",".join(spec.surfaces), "task": spec.task}
        if role == "student":
            tags |= _lineage_tags(run, producer, stage, index) | {"baseline_run_id": run_ids["baseline"]}
        with run.tracker.run(f"{role}:{spec.name}", tags, nested=True) as run_id:
            run_ids[role] = run_id
            L.seed_everything(seed, verbose=False)
            model = spec.build(data.log.inputs, student.sizes)
            if role == "baseline":
                module = RankingModule(model, target.tasks, target.task_columns, lr=student.lr, base_rates=target.base_rates(data))
                batches = WindowBatches(data.log, target.rows, model.history_length)
            else:
                module = transfer_module(model, target, student.lr, stage, producer, len(data.log.surfaces), target.base_rates(data))
                batches = knowledge_batches(data, target, model.history_length, stage, producer, knowledge, run.recipe.transfer.max_age_days)
            loader = window_loader(batches, student.batch_size, shuffle=True, seed=seed)
            key = _vm_key(run, role, spec, student, seed, stage, producer)
            fit_or_reuse(run.cache, run.cache.folder(key), module, loader, run.recipe.trainer, run.recipe.trainer.max_epochs,
                         run.tracker, run_id, f"{role}: {spec.name}", f"on {len(target.rows):,} impressions of {'/'.join(spec.surfaces)}")
            scores[role] = _score(run, module, eval_rows, spec.task)
            if role == "student":
                run.students[spec.name] = module
            run.tracker.log_metrics(_metric_dict(scores[role], teacher_scores, producer_scores, scores["baseline"]))
            status = _log_serving(run.tracker, module, spec, WindowBatches(data.log, eval_rows, model.history_length), role)
    return VerticalResult(
        spec.name, "/".join(spec.surfaces), spec.task, teacher_scores, scores["baseline"], scores["student"],
        producer=producer.name if producer_scores is not None else None, producer_scores=producer_scores, budget=status,
    )


def _vm_key(run: _Run, role: str, spec: ModelEntry, student: StudentConfig, seed: int, stage: StageConfig,
            producer: Producer) -> StageKey:
    """A VM's stage key: a baseline depends on no stage, producer or knowledge."""
    transfer = {}
    if role == "student":
        transfer = {"stage": stage, "producer": producer.key, "knowledge": knowledge_stage_key(producer, run.data, run.recipe)}
    return vm_key(run.recipe, run.data.fingerprint, str(run.data.student), role, spec.name, spec.builder, dict(spec.sizes),
                  student, seed, **transfer)


def _log_serving(tracker: Tracker, module: RankingModule, spec: ModelEntry, eval_batches: WindowBatches, role: str) -> str:
    """Measure the serving model's cost on requests from the eval window, log it (and, for a student,
    the model itself, for `gem-transfer register`) and print it; → its budget status (no measured
    figures in it, so the lift table is the same on every run). Rank 0 measures, every rank gets its status."""
    if not ranks.is_main():
        return ranks.from_main("")
    served, batches = module.export(), requests(eval_batches)
    cost = measure(served, batches)
    status = budget_status(cost, spec.budget)
    print(f"  serving {role} {spec.name}: {cost.summary()}: {status}", flush=True)
    tracker.log_metrics(cost.metrics())
    tracker.set_tags({"budget_status": status})
    if role == "student":
        tracker.set_tags({"model_uri": tracker.log_serving_model(served, batches[0])})
    return ranks.from_main(status)


def _score(run: _Run, module: RankingModule, rows, task: str) -> Scores:
    loader = window_loader(WindowBatches(run.data.log, rows, module.model.history_length), SCORING_BATCH, shuffle=False)
    return evaluate(module, loader, run.recipe.trainer, task)


def _metric_dict(scores: Scores, teacher: Scores, producer: Scores | None, baseline: Scores) -> dict[str, float]:
    """Every model run's metrics under the same names (a baseline's lift is 0 against itself), so the
    MLflow UI's compare view lines runs up column by column."""
    metrics = {f"eval_{name}": value for name, value in scores.as_dict().items()}
    metrics |= {f"teacher_eval_{name}": value for name, value in teacher.as_dict().items()}
    if producer is not None:
        metrics |= {f"producer_eval_{name}": value for name, value in producer.as_dict().items()}
    metrics["lift_pct"] = lift_percent(baseline.ne, scores.ne)
    metrics["transfer_ratio"] = transfer_ratio(baseline.ne, scores.ne, teacher.ne)
    return metrics

"""Prepare a recipe's data: load and validate the dataset, encode it once (cached), cut windows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import torch

from transfer.catalog import ModelEntry
from transfer.config.dataset import DatasetConfig, dataset_config_path, dense_feature_names, load_dataset_config
from transfer.config.recipe import DataConfig, Recipe, UserSampleConfig, WindowConfig
from transfer.config.verticals import recipe_verticals
from transfer.data.cache import cache_path, cached, prepare_cache_dir
from transfer.data.encoding import EncodedLog, EncodingSpec, load_encoded, write_encoded
from transfer.data.hashing import stable_hash
from transfer.data.impressions import load_impressions
from transfer.data.synthetic import GENERATOR_VERSION, SyntheticSpec
from transfer.data.tables import expand_files
from transfer.errors import DataError, RecipeError
from transfer.util.fingerprint import fingerprint
from transfer.util.progress import step

ENCODING_VERSION = 3  # bump when the encoded layout changes, to invalidate caches


@dataclass(frozen=True)
class Window:
    name: str
    start: datetime
    end: datetime  # exclusive

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC"


@dataclass
class PreparedData:
    """The log and its four windows (design §8, staleness protocol): the teacher trains on `train`
    (its cutoff is `train.end`); consumers train on `student`, which by default starts at the
    teacher's cutoff (so the knowledge for their rows is out-of-sample) and `staleness_days` after
    it when stale; knobs are chosen on `validation` (may be empty); everyone is reported on `eval`."""

    dataset: str
    log: EncodedLog
    domains: dict[str, list[str]]  # domain → its surfaces
    fingerprint: str  # identifies the encoded log (for stage caches)
    train: Window
    student: Window
    validation: Window
    eval: Window
    train_rows: torch.Tensor  # [n_train] row indices into log
    student_rows: torch.Tensor  # [n_student]
    validation_rows: torch.Tensor  # [n_validation] (0 rows when the recipe has no validation window)
    eval_rows: torch.Tensor  # [n_eval]
    recalibration_days: int = 1  # how many of the students' last days the recalibration is fitted on

    def summary(self) -> str:
        """One line: each window with its rows."""
        windows = [("teacher", self.train, self.train_rows), ("students", self.student, self.student_rows),
                   ("validation", self.validation, self.validation_rows), ("eval", self.eval, self.eval_rows)]
        return f"{self.dataset}: " + ", ".join(f"{name} {w} ({len(rows):,} rows)" for name, w, rows in windows)

    @property
    def recalibration_rows(self) -> torch.Tensor:
        """The consumers' last training days (the last `recalibration_days` × 24 h of `student`, all of
        it when shorter), where every model's one-parameter recalibration is fitted (design §7). → [m]"""
        start = max(self.student.start, self.student.end - timedelta(days=self.recalibration_days))
        return self.log.window_rows(start, self.student.end)

    def base_rates(self, rows: torch.Tensor, task_columns: list[int]) -> torch.Tensor:
        """Mean label per task over `rows` (the whole log's where a task has no label there). → [T]"""
        return label_rates(self.log.labels[rows][:, task_columns], self.log.labels[:, task_columns])

    def domain_rows(self, rows: torch.Tensor, domain: str) -> torch.Tensor:
        """The subset of `rows` on any surface of `domain`. → [m]"""
        codes = torch.tensor([self.log.surfaces.index(s) for s in self.domains[domain]])
        return rows[torch.isin(self.log.surface[rows], codes)]


def label_rates(labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Per-column mean of 0/1 labels ignoring NaN; a column with no label takes `fallback`'s mean. [N, T] → [T]"""
    rates = torch.nanmean(labels, dim=0)
    return torch.where(torch.isnan(rates), torch.nanmean(fallback, dim=0).nan_to_num(0.5), rates)


def prepare_data(cfg: DataConfig, staleness_days: int = 0) -> PreparedData:
    """Load, validate and encode (once, cached) the recipe's dataset and cut its four windows."""
    cfg_path = dataset_config_path(cfg.dataset)
    dataset = load_dataset_config(cfg_path)
    synthetic = SyntheticSpec(**asdict(cfg.synthetic))
    log, path = _encoded_log(dataset, cfg_path, prepare_cache_dir(Path(cfg.cache_dir)), synthetic, cfg.users)
    first_day = datetime.fromtimestamp(int(log.ts.min()), tz=timezone.utc).replace(hour=0, minute=0, second=0)
    train, student, validation, evaluation = _windows(cfg, first_day, staleness_days)
    domains: dict[str, list[str]] = {}
    for surface, domain in dataset.surfaces.items():
        domains.setdefault(domain, []).append(surface)
    return PreparedData(
        dataset=dataset.name,
        log=log,
        domains=domains,
        fingerprint=path.stem,
        train=train,
        student=student,
        validation=validation,
        eval=evaluation,
        train_rows=_rows(log, train, dataset.name),
        student_rows=_rows(log, student, dataset.name),
        validation_rows=log.window_rows(validation.start, validation.end),
        eval_rows=_rows(log, evaluation, dataset.name),
        recalibration_days=cfg.recalibration_days,
    )


def _windows(cfg: DataConfig, first_day: datetime, staleness_days: int) -> tuple[Window, Window, Window, Window]:
    """train (moved `staleness_days` earlier), student, validation and eval; each starts by default
    where the one before it ends (at staleness 0); a `DataError` when they overlap or the moved
    teacher window starts before the data."""
    fresh_train = _window("train", cfg.train, default_start=first_day)
    student = _window("student", cfg.student, default_start=fresh_train.end)
    validation = _window("validation", cfg.validation, default_start=student.end)
    evaluation = _window("eval", cfg.eval, default_start=validation.end)
    for before, after in ((student, validation), (validation, evaluation)):
        if after.start < before.end:
            raise DataError(f"data.{after.name}: the {after.name} window ({after}) starts before the {before.name} window ({before}) ends")
    shift = timedelta(days=staleness_days)
    train = Window("train", fresh_train.start - shift, fresh_train.end - shift)
    if staleness_days and train.start < first_day:
        raise DataError(
            f"transfer.staleness_days: {staleness_days} moves the teacher's window (data.train) to {train}, before the data's "
            f"first day {first_day:%Y-%m-%d}; allowed: data.train.start at least {staleness_days} days after it"
        )
    return train, student, validation, evaluation


def _encoded_log(dataset: DatasetConfig, cfg_path: Path, cache_dir: Path, synthetic: SyntheticSpec,
                 users: UserSampleConfig) -> tuple[EncodedLog, Path]:
    key = {
        "version": ENCODING_VERSION,
        "config": cfg_path.read_text(),
        "synthetic": [GENERATOR_VERSION, asdict(synthetic)] if dataset.source.synthetic else None,
        "files": _local_file_stats(dataset, cfg_path),
    }
    if users.fraction < 1:
        key["users"] = asdict(users)
    path = cache_path(cache_dir, f"encoded-{dataset.name}-{fingerprint(key)}.parquet")
    cached(path, lambda tmp: _encode_dataset(dataset, cfg_path, cache_dir, synthetic, users, tmp))
    return load_encoded(path), path


def _encode_dataset(dataset: DatasetConfig, cfg_path: Path, cache_dir: Path, synthetic: SyntheticSpec, users: UserSampleConfig,
                    target: Path) -> None:
    """Read, validate, sample users from and encode the dataset into `target`."""
    with step(f"data: reading and validating {dataset.name}"):
        frame = sample_users(load_impressions(dataset, cfg_path, cache_dir, synthetic), users)
    if frame.height == 0:
        raise DataError(f"{cfg_path}: dataset '{dataset.name}' has no impressions (0 rows after validation); allowed: at least one")
    tasks, surfaces = list(dataset.labels), list(dataset.surfaces)
    meta = {
        "tasks": tasks,
        "surfaces": surfaces,
        "categorical": dataset.categorical,
        "dense": dense_feature_names(dataset),
        "hash_buckets": dataset.hash_buckets,
    }
    spec = EncodingSpec(surfaces, tasks, dataset.categorical, dataset.dense, dataset.hash_buckets, list(dataset.counters))
    with step(f"data: encoding {frame.height:,} impressions and their histories"):
        write_encoded(frame, spec, meta, target)


def sample_users(frame: pl.DataFrame, users: UserSampleConfig) -> pl.DataFrame:
    """The canonical log's impressions of a seeded `users.fraction` of its users (all of them at
    fraction 1): a user is kept when a stable hash of its id, salted with `users.seed`, falls below
    the fraction. Histories are per user, so the kept users' rows are as they were."""
    if users.fraction >= 1:
        return frame
    buckets = 1_000_000
    kept = stable_hash(frame["user_id"], f"users:{users.seed}", buckets) < round(users.fraction * buckets)
    return frame.filter(pl.Series(kept))


def _local_file_stats(dataset: DatasetConfig, cfg_path: Path) -> list[tuple[str, int, int]]:
    if dataset.source.synthetic or dataset.source.wheel:
        return []
    stats = []
    for name, spec in dataset.source.files.items():
        try:
            paths = expand_files(spec, cfg_path.parent, f"{cfg_path}: source.files.{name}")
        except DataError:
            continue  # reading the data names the problem
        for path in paths:
            if path.is_file():
                st = path.stat()
                stats.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    return stats


def _window(name: str, cfg: WindowConfig, default_start: datetime) -> Window:
    start = default_start
    if cfg.start is not None:
        start = datetime.fromisoformat(cfg.start).replace(tzinfo=timezone.utc)
    return Window(name, start, start + timedelta(days=cfg.days, hours=cfg.hours))


def _rows(log: EncodedLog, window: Window, dataset: str) -> torch.Tensor:
    rows = log.window_rows(window.start, window.end)
    if len(rows) == 0:
        first = datetime.fromtimestamp(int(log.ts.min()), tz=timezone.utc)
        last = datetime.fromtimestamp(int(log.ts.max()), tz=timezone.utc)
        key = "data.train (moved by transfer.staleness_days)" if window.name == "train" else f"data.{window.name}"
        raise DataError(
            f"{key}: window {window} of dataset '{dataset}' is empty; "
            f"the data spans {first:%Y-%m-%d} → {last:%Y-%m-%d}"
        )
    return rows


def resolve_verticals(recipe_path: Path, recipe: Recipe, data: PreparedData) -> list[ModelEntry]:
    """The entries (catalog or inline) of the recipe's students, each serving surfaces and a task the dataset has."""
    entries = recipe_verticals(recipe)
    return [_vertical(recipe_path, i, entries[student.vertical], data) for i, student in enumerate(recipe.students)]


def _vertical(recipe_path: Path, i: int, spec: ModelEntry, data: PreparedData) -> ModelEntry:
    missing = [s for s in spec.surfaces if s not in data.log.surfaces]
    if missing or not spec.surfaces:
        raise RecipeError(
            f"{recipe_path}: students.{i}.vertical: '{spec.name}' serves surface(s) '{', '.join(spec.surfaces)}', which dataset "
            f"'{data.dataset}' does not have; its surfaces: {', '.join(data.log.surfaces)}"
        )
    if spec.task not in data.log.tasks:
        raise RecipeError(
            f"{recipe_path}: students.{i}.vertical: '{spec.name}' serves task '{spec.task}'; dataset "
            f"'{data.dataset}' has tasks: {', '.join(data.log.tasks)}"
        )
    return spec


def check_slices(data: PreparedData, verticals: list[ModelEntry], min_train_positives: int = 0) -> None:
    """Before any training: every VM's slice (its surface(s) × task) of the students' window has
    impressions and a positive, and its eval slice has a 0/1 label on every impression and both
    classes (NE and AUC are undefined otherwise: the teacher and producers are scored there too).
    A `DataError` naming the slice otherwise; a warning line for a training slice with fewer than
    `min_train_positives` positives (`data.min_train_positives`)."""
    for i, spec in enumerate(verticals):
        _warn_few_positives(data, i, spec, min_train_positives)
        column = data.log.tasks.index(spec.task)
        for window, rows in ((data.student, data.student_rows), (data.eval, data.eval_rows)):
            labels = data.log.labels[data.log.surface_rows(rows, spec.surfaces), column]  # [m]
            if len(labels) == 0:
                raise DataError(f"students.{i}.vertical: '{spec.name}' has no impressions of surface(s) '{', '.join(spec.surfaces)}' in window {window}")
            problem = _slice_problem(labels, evaluated=window is data.eval)
            if problem:
                kind = "eval" if window is data.eval else "training"
                raise DataError(
                    f"students.{i}.vertical: '{spec.name}' {kind} slice (surface(s) {'/'.join(spec.surfaces)}, task {spec.task}, "
                    f"window {window}) of dataset '{data.dataset}' {problem}"
                )


def describe(data: PreparedData, verticals: list[ModelEntry]) -> list[str]:
    """What `data check` shows before its `ok:` line: the log's size and positives per task, each
    surface's rows per window, and each VM's positives in its training and eval slices."""
    log = data.log
    first, last = (datetime.fromtimestamp(int(t), tz=timezone.utc) for t in (log.ts.min(), log.ts.max()))
    positives = ", ".join(f"{task} {int((log.labels[:, j] == 1).sum()):,}" for j, task in enumerate(log.tasks))
    lines = [f"log: {len(log.ts):,} impressions of {len(torch.unique(log.hist_start)):,} users, {first:%Y-%m-%d} → {last:%Y-%m-%d}; "
             f"positives: {positives}"]
    windows = (("teacher", data.train_rows), ("students", data.student_rows), ("validation", data.validation_rows), ("eval", data.eval_rows))
    domain_of = {surface: domain for domain, surfaces in data.domains.items() for surface in surfaces}
    table = [["surface", "domain", *(f"{name} rows" for name, _ in windows)]]
    for code, surface in enumerate(log.surfaces):
        table.append([surface, domain_of[surface], *(f"{int((log.surface[rows] == code).sum()):,}" for _, rows in windows)])
    lines += _aligned(table)
    if verticals:
        table = [["student", "surface(s)", "task", "training positives", "eval positives"]]
        for spec in verticals:
            column = log.tasks.index(spec.task)
            counts = [int((log.labels[log.surface_rows(rows, spec.surfaces), column] == 1).sum()) for rows in (data.student_rows, data.eval_rows)]
            table.append([spec.name, "/".join(spec.surfaces), spec.task, *(f"{n:,}" for n in counts)])
        lines += _aligned(table)
    return lines


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as text lines, each column padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _warn_few_positives(data: PreparedData, i: int, spec: ModelEntry, threshold: int) -> None:
    labels = data.log.labels[data.log.surface_rows(data.student_rows, spec.surfaces), data.log.tasks.index(spec.task)]
    positives = int((labels == 1).sum())
    if 0 < positives < threshold:
        print(f"warning: students.{i}.vertical: '{spec.name}' has {positives} positive labels in its training slice (surface(s) "
              f"{'/'.join(spec.surfaces)}, task {spec.task}, window {data.student}), fewer than data.min_train_positives ({threshold}): "
              "expect a noisy model and a lift its interval cannot resolve", flush=True)


def _slice_problem(labels: torch.Tensor, evaluated: bool) -> str | None:
    """What makes a slice's labels ([m] float, NaN = no label) unusable, or None."""
    nulls = int(torch.isnan(labels).sum())
    positives = int((labels == 1).sum())
    negatives = int((labels == 0).sum())
    if evaluated and nulls:
        return f"has {nulls} null labels among {len(labels):,} impressions; allowed: a 0/1 label on every eval impression"
    if positives == 0:
        return f"has no positive label ({len(labels):,} impressions); allowed: at least one 1 and one 0"
    if evaluated and negatives == 0:
        return f"has only positive labels ({len(labels):,} impressions); allowed: at least one 1 and one 0"
    return None

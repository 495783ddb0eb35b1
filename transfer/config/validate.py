"""Recipe checks the schema cannot express, in two passes, each failure one `RecipeError` line naming
the file and the key path:

1. `validate_values` (this module, free of torch): values are in range, dates parse, the dataset
   exists, stages have the strategy's shape, every technique's knobs are in range;
2. `transfer.config.validate_models`: the models a recipe names exist in the catalog, build with
   their sizes, serve what the dataset has, and shared modules fit. The catalog is made of model
   packages, which import torch, so this pass comes second: a bad value is answered without them.
"""

from __future__ import annotations

import math
import os
import re
from datetime import date, datetime
from pathlib import Path

from adapters import TECHNIQUES, enabled
from transfer.config.dataset import builtin_datasets, dataset_config_path, load_dataset_config
from transfer.config.recipe import ORDERS, STRATEGY_STAGES, Recipe, StageConfig
from transfer.errors import RecipeError
from transfer.util.checks import check_non_negative, check_one_of, check_positive

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "64-true")  # what Lightning runs on a CPU
ACCELERATOR_PRECISIONS = ("16-mixed", "16-true")


def default_stages(strategy: str) -> list[StageConfig]:
    return [StageConfig(producer=p, consumers=c) for p, c in STRATEGY_STAGES[strategy]]


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
KNOWLEDGE_SOURCES = ("separate", "training_traffic")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # one path component: a folder under output_dir
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def validate_values(recipe: Recipe, path: Path) -> None:
    """Every check that needs no model: answered before torch is imported."""
    check_name(path, "name", recipe.name)
    for key, seed in (("seed", recipe.seed), ("data.synthetic.seed", recipe.data.synthetic.seed)):
        if not 0 <= seed <= MAX_SEED:
            raise RecipeError(f"{path}: {key}: found {seed}; allowed: a whole number from 0 to {MAX_SEED}")
    _check_processes(recipe, path)
    one_of(path, "trainer.accelerator", recipe.trainer.accelerator, ACCELERATORS)
    one_of(path, "trainer.order", recipe.trainer.order, ORDERS)
    precisions = PRECISIONS if recipe.trainer.accelerator == "cpu" else (*PRECISIONS, *ACCELERATOR_PRECISIONS)
    one_of(path, "trainer.precision", recipe.trainer.precision, precisions)
    if recipe.teacher.precision is not None:
        one_of(path, "teacher.precision", recipe.teacher.precision, precisions)
    _check_dataset(recipe, path)
    _check_students(recipe, path)
    _check_windows(recipe, path)
    for key, value in (
        ("data.synthetic.rows", recipe.data.synthetic.rows),
        ("teacher.max_epochs", recipe.teacher.max_epochs),
        ("teacher.lr", recipe.teacher.lr),
        ("teacher.batch_size", recipe.teacher.batch_size),
        ("domain_fms.max_epochs", recipe.domain_fms.max_epochs),
        ("domain_fms.lr", recipe.domain_fms.lr),
        ("domain_fms.batch_size", recipe.domain_fms.batch_size),
        ("trainer.max_epochs", recipe.trainer.max_epochs),
        ("data.recalibration_days", recipe.data.recalibration_days),
        ("tracking.serving_requests", recipe.tracking.serving_requests),
    ):
        positive(path, key, value)
    non_negative(path, "teacher.warmup_steps", recipe.teacher.warmup_steps)
    non_negative(path, "data.min_train_positives", recipe.data.min_train_positives)
    non_negative(path, "trainer.threads", recipe.trainer.threads)
    _check_transfer(recipe, path)


def _check_dataset(recipe: Recipe, path: Path) -> None:
    if recipe.data.dataset not in builtin_datasets() and not Path(recipe.data.dataset).is_file():
        raise RecipeError(
            f"{path}: data.dataset: '{recipe.data.dataset}' is neither a built-in dataset "
            f"({', '.join(builtin_datasets())}) nor an existing dataset YAML file"
        )
    load_dataset_config(dataset_config_path(recipe.data.dataset))  # its own checks: one line naming the dataset YAML's key


def _check_students(recipe: Recipe, path: Path) -> None:
    if not recipe.students:
        raise RecipeError(f"{path}: students: at least one student is needed, e.g. [{{vertical: ig_stories_click}}]")
    _check_inline_vertical_names(recipe, path)
    for i, student in enumerate(recipe.students):
        positive(path, f"students.{i}.lr", student.lr)
        positive(path, f"students.{i}.batch_size", student.batch_size)
    verticals = [s.vertical for s in recipe.students]
    if len(set(verticals)) != len(verticals):
        raise RecipeError(f"{path}: students: a vertical is listed twice ({verticals})")


def _check_inline_vertical_names(recipe: Recipe, path: Path) -> None:
    """Each inline VM's name (a folder name, declared once) and budget; its architecture, sizes, surfaces
    and task need the catalog and the dataset (`validate_models`)."""
    seen: set[str] = set()
    for i, cfg in enumerate(recipe.verticals):
        check_name(path, f"verticals.{i}.name", cfg.name)
        if cfg.name in seen:
            raise RecipeError(f"{path}: verticals.{i}.name: '{cfg.name}' is declared twice in verticals; allowed: a new name")
        seen.add(cfg.name)
        if cfg.budget is not None:
            positive(path, f"verticals.{i}.budget.max_params", cfg.budget.max_params)
            positive(path, f"verticals.{i}.budget.max_p99_ms", cfg.budget.max_p99_ms)


def _check_windows(recipe: Recipe, path: Path) -> None:
    data = recipe.data
    for key, window in (("data.train", data.train), ("data.student", data.student), ("data.validation", data.validation), ("data.eval", data.eval)):
        non_negative(path, f"{key}.days", window.days)
        non_negative(path, f"{key}.hours", window.hours)
        if key != "data.validation" and window.length_days <= 0:
            raise RecipeError(f"{path}: {key}: found days {window.days}, hours {window.hours}; allowed: a window longer than 0 (days + hours > 0)")
        if window.start is not None:
            _moment(path, f"{key}.start", window.start)
    if recipe.teacher.keep_best_epoch and data.validation.length_days <= 0:
        raise RecipeError(f"{path}: teacher.keep_best_epoch: found true with no validation window (data.validation.days 0); "
                          "allowed: false, or a validation window longer than 0")
    _date(path, "data.synthetic.start", recipe.data.synthetic.start)
    _check_synthetic_rows(path, recipe.data.synthetic.rows)
    fraction = data.users.fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise RecipeError(f"{path}: data.users.fraction: found {fraction!r}; allowed: a share of users above 0 and at most 1")
    if not 0 <= data.users.seed <= MAX_SEED:
        raise RecipeError(f"{path}: data.users.seed: found {data.users.seed}; allowed: a whole number from 0 to {MAX_SEED}")


def _check_transfer(recipe: Recipe, path: Path) -> None:
    transfer = recipe.transfer
    one_of(path, "transfer.strategy", transfer.strategy, STRATEGY_STAGES)
    shape = [(s.producer, s.consumers) for s in transfer.stages]
    expected = STRATEGY_STAGES[transfer.strategy]
    if shape != expected:
        raise RecipeError(
            f"{path}: transfer.stages: found {_arrows(shape)}; strategy '{transfer.strategy}' needs {_arrows(expected)}"
        )
    if transfer.staleness_days < 0:
        raise RecipeError(f"{path}: transfer.staleness_days: found {transfer.staleness_days}; allowed: >= 0")
    _check_knowledge_source(recipe, path)
    oldest = math.ceil(transfer.staleness_days + recipe.data.student.length_days)  # the knowledge's age at the consumers' window end
    if transfer.knowledge == "training_traffic":  # every row scored just before the teacher trained on it, or lag days + its day before
        oldest = transfer.staleness_days + 1 if transfer.staleness_days else 0
    if transfer.max_age_days is not None and recipe.data.student.start is None and oldest > transfer.max_age_days:
        made = (f"knowledge from training traffic transfer.staleness_days ({transfer.staleness_days}) behind is up to {oldest} days old"
                if transfer.knowledge == "training_traffic" else
                f"the consumers' window ends transfer.staleness_days ({transfer.staleness_days}) + data.student.days "
                f"({recipe.data.student.days}) days after the teacher's cutoff")
        raise RecipeError(f"{path}: transfer.max_age_days: {transfer.max_age_days} refuses the knowledge this recipe makes: {made}; "
                          f"allowed: max_age_days >= {oldest}")
    age = oldest if recipe.data.student.start is None else None  # the knowledge's age at the consumers' window end, when the recipe fixes it
    for i, stage in enumerate(transfer.stages):
        _check_stage(path, f"transfer.stages.{i}", stage, recipe.data.student.days, transfer.knowledge, age)


def _check_knowledge_source(recipe: Recipe, path: Path) -> None:
    """Knowledge from training traffic needs a teacher that trains through time (days in order); its
    staleness, a lag behind the rows it scores, must stay inside the teacher's training."""
    transfer = recipe.transfer
    one_of(path, "transfer.knowledge", transfer.knowledge, KNOWLEDGE_SOURCES)
    if transfer.knowledge != "training_traffic":
        return
    if recipe.trainer.order != "time":
        raise RecipeError(f"{path}: trainer.order: found '{recipe.trainer.order}'; transfer.knowledge 'training_traffic' needs 'time' "
                          "(the teacher scores each day before it trains on it)")
    teacher_days = recipe.data.train.length_days
    if transfer.staleness_days > teacher_days:
        raise RecipeError(f"{path}: transfer.staleness_days: found {transfer.staleness_days}; with transfer.knowledge 'training_traffic' "
                          f"the knowledge lags the consumers' rows by that many days of the teacher's training, which starts "
                          f"data.train.days ({teacher_days:g}) before them; allowed: 0 to {math.floor(teacher_days)}")
    if transfer.staleness_days and recipe.trainer.strategy == "fsdp":
        raise RecipeError(f"{path}: trainer.strategy: found 'fsdp'; knowledge from training traffic {transfer.staleness_days} days behind "
                          "keeps whole copies of the teacher's weights; allowed: auto or ddp (or transfer.staleness_days 0)")


def _check_stage(path: Path, key: str, stage: StageConfig, student_days: int, knowledge: str, age_days: float | None) -> None:
    """Each technique's config checks its own knobs, and an enabled technique that depends on where
    the stage sits (`check_context`) checks that (a `ValueError` naming the key)."""
    for name in TECHNIQUE_FIELDS:
        _in_file(path, getattr(stage, name).check, f"{key}.{name}", student_days)
    for technique in enabled(stage):
        if hasattr(technique, "check_context"):
            try:
                technique.check_context(stage, stage.producer, stage.consumers, knowledge, age_days)
            except ValueError as exc:
                raise RecipeError(f"{path}: {key}.{technique.KEY}.{exc}") from None


def _arrows(shape: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{p} → {c}" for p, c in shape) + "]"


STRATEGIES = ("auto", "ddp", "fsdp")
SHARDINGS = ("full", "hybrid")


TECHNIQUE_FIELDS = [technique.KEY for technique in TECHNIQUES]  # each a technique's config


def _check_processes(recipe: Recipe, path: Path) -> None:
    """Lightning's strategy and process counts; several processes need a strategy the launcher starts
    (every process runs every stage, so Lightning's own spawning, `ddp_spawn`, cannot be used)."""
    t = recipe.trainer
    one_of(path, "trainer.strategy", t.strategy, STRATEGIES)
    if not (isinstance(t.devices, int) or str(t.devices).isdigit()) or int(t.devices) < 1:
        raise RecipeError(f"{path}: trainer.devices: found {t.devices!r}; allowed: a whole number ≥ 1 (processes per node)")
    positive(path, "trainer.num_nodes", t.num_nodes)
    one_of(path, "trainer.sharding", t.sharding, SHARDINGS)
    if t.sharding != "full" and t.strategy != "fsdp":
        raise RecipeError(f"{path}: trainer.sharding: found '{t.sharding}' with strategy '{t.strategy}'; sharding applies to strategy fsdp only")
    if t.strategy == "fsdp" and t.accelerator == "cpu":
        raise RecipeError(
            f"{path}: trainer.strategy: found 'fsdp' with accelerator 'cpu'; Lightning's FSDP runs on GPUs only "
            "(allowed on CPU: auto, ddp)"
        )
    if int(t.devices) * t.num_nodes > 1 and t.strategy == "auto":
        raise RecipeError(
            f"{path}: trainer.strategy: found 'auto' with devices {t.devices} × num_nodes {t.num_nodes}; "
            "allowed for several processes: ddp, fsdp"
        )


def one_of(path: Path, key: str, value: str, allowed) -> None:
    _in_file(path, check_one_of, key, value, tuple(allowed))


def positive(path: Path, key: str, value: float) -> None:
    _in_file(path, check_positive, key, value)


def non_negative(path: Path, key: str, value: float) -> None:
    _in_file(path, check_non_negative, key, value)


def _in_file(path: Path, check, *args) -> None:
    """A `transfer.util.checks` or technique check, its `ValueError` as the recipe file's one-line error."""
    try:
        check(*args)
    except ValueError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def check_name(path: Path, key: str, name: str) -> None:
    """A name that becomes a folder: one path component of letters, digits, '.', '_' and '-'."""
    if not NAME.fullmatch(name):
        raise RecipeError(f"{path}: {key}: found {name!r}; allowed: 1 to 100 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit (it names a folder under output_dir)")


def _moment(path: Path, key: str, value: str) -> None:
    """A window's start: a date, or a date and time within it."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?", value):
        raise RecipeError(f"{path}: {key}: found '{value}'; allowed: a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM (UTC)")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise RecipeError(f"{path}: {key}: found '{value}'; allowed: a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM (UTC)") from None


def _date(path: Path, key: str, value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise RecipeError(f"{path}: {key}: found '{value}'; allowed: a date YYYY-MM-DD") from None


MAX_SYNTHETIC_ROWS = 100_000_000  # tens of GiB to generate (SYNTHETIC_BYTES_PER_ROW each); larger logs belong in files


def _check_synthetic_rows(path: Path, rows: int) -> None:
    problem = synthetic_rows_problem(rows)
    if problem:
        raise RecipeError(f"{path}: data.synthetic.rows: {problem}")


# Peak memory of generating and encoding the synthetic world, per impression: a one-off measurement made
# when this check came in (commit e24e058); no benchmark re-measures it, no section of benchmarks/RESULTS.md holds it.
SYNTHETIC_BYTES_PER_ROW = 680


def synthetic_rows_problem(rows: int) -> str:
    """What is wrong with a synthetic world of `rows` impressions on this machine ("" when nothing):
    outside 1..MAX_SYNTHETIC_ROWS, or more than its memory holds while it is generated and encoded."""
    if not 1 <= rows <= MAX_SYNTHETIC_ROWS:
        return f"found {rows:,}; allowed: 1 to {MAX_SYNTHETIC_ROWS:,}"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if rows * SYNTHETIC_BYTES_PER_ROW > memory:
        return (f"found {rows:,}, which needs about {rows * SYNTHETIC_BYTES_PER_ROW / 2**30:,.0f} GiB to generate and encode "
                f"({SYNTHETIC_BYTES_PER_ROW} bytes an impression), more than this machine's {memory / 2**30:,.0f} GiB; "
                f"allowed here: at most {memory // SYNTHETIC_BYTES_PER_ROW:,}")
    return ""

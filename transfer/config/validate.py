"""Recipe checks the schema cannot express: names exist, values are in range, dates parse, stages
have the strategy's shape, and shared modules exist and fit. Each failure is one `RecipeError` line
naming the file and the key path."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path

from adapters import TECHNIQUES
from adapters.sharing import SharingError, share_parts
from transfer.catalog import CatalogError, ModelEntry, catalog, sources
from transfer.config.dataset import DatasetConfig, builtin_datasets, dataset_config_path, load_dataset_config
from transfer.config.recipe import STRATEGY_STAGES, Recipe, StageConfig
from transfer.config.verticals import architectures, inline_entry, recipe_verticals
from transfer.contract import BuilderError
from transfer.data.batches import ORDERS
from transfer.data.encoding import inputs_of
from transfer.errors import RecipeError, UserError

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "64-true")  # what Lightning runs on a CPU
ACCELERATOR_PRECISIONS = ("16-mixed", "16-true")


def default_stages(strategy: str) -> list[StageConfig]:
    return [StageConfig(producer=p, consumers=c) for p, c in STRATEGY_STAGES[strategy]]


KNOWLEDGE_SOURCES = ("separate", "training_traffic")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # one path component: a folder under output_dir
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def validate(recipe: Recipe, path: Path) -> None:
    check_name(path, "name", recipe.name)
    for key, seed in (("seed", recipe.seed), ("data.synthetic.seed", recipe.data.synthetic.seed)):
        if not 0 <= seed <= MAX_SEED:
            raise RecipeError(f"{path}: {key}: found {seed}; allowed: a whole number from 0 to {MAX_SEED}")
    _check_model(path, "teacher", "teacher.model", recipe.teacher.model, recipe.teacher.sizes)
    _check_model(path, "domain_fm", "domain_fms.model", recipe.domain_fms.model, recipe.domain_fms.sizes)
    _check_processes(recipe, path)
    _one_of(path, "trainer.accelerator", recipe.trainer.accelerator, ACCELERATORS)
    _one_of(path, "trainer.order", recipe.trainer.order, ORDERS)
    precisions = PRECISIONS if recipe.trainer.accelerator == "cpu" else (*PRECISIONS, *ACCELERATOR_PRECISIONS)
    _one_of(path, "trainer.precision", recipe.trainer.precision, precisions)
    if recipe.teacher.precision is not None:
        _one_of(path, "teacher.precision", recipe.teacher.precision, precisions)
    _check_dataset(recipe, path)
    if recipe.teacher.init_from is not None:
        _check_state_dict(path, "teacher.init_from", recipe.teacher.init_from)
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
    ):
        _positive(path, key, value)
    _non_negative(path, "teacher.warmup_steps", recipe.teacher.warmup_steps)
    _non_negative(path, "data.min_train_positives", recipe.data.min_train_positives)
    _non_negative(path, "trainer.threads", recipe.trainer.threads)
    _check_transfer(recipe, path)
    _check_sharing(recipe, path)


def _check_dataset(recipe: Recipe, path: Path) -> None:
    if recipe.data.dataset not in builtin_datasets() and not Path(recipe.data.dataset).is_file():
        raise RecipeError(
            f"{path}: data.dataset: '{recipe.data.dataset}' is neither a built-in dataset "
            f"({', '.join(builtin_datasets())}) nor an existing dataset YAML file"
        )


def _check_students(recipe: Recipe, path: Path) -> None:
    if not recipe.students:
        raise RecipeError(f"{path}: students: at least one student is needed, e.g. [{{vertical: ig_stories_click}}]")
    dataset = load_dataset_config(dataset_config_path(recipe.data.dataset))
    _check_inline_verticals(recipe, path, dataset)
    entries = recipe_verticals(recipe)
    for i, student in enumerate(recipe.students):
        entry = _check_model(path, "vertical", f"students.{i}.vertical", student.vertical, student.sizes, entries)
        _check_serves(path, f"students.{i}.vertical", entry, dataset)
        _positive(path, f"students.{i}.lr", student.lr)
        _positive(path, f"students.{i}.batch_size", student.batch_size)
    verticals = [s.vertical for s in recipe.students]
    if len(set(verticals)) != len(verticals):
        raise RecipeError(f"{path}: students: a vertical is listed twice ({verticals})")


def _check_inline_verticals(recipe: Recipe, path: Path, dataset: DatasetConfig) -> None:
    """Each inline VM: a new name, a known architecture with sizes it takes (and builds), surfaces
    and a task the dataset has, a positive budget."""
    shared, known, seen = catalog("vertical"), architectures(), set()
    for i, cfg in enumerate(recipe.verticals):
        key = f"verticals.{i}"
        check_name(path, f"{key}.name", cfg.name)
        if cfg.name in shared or cfg.name in seen:
            where = f"a catalog vertical ({sources('vertical')[cfg.name]})" if cfg.name in shared else "declared twice in verticals"
            raise RecipeError(f"{path}: {key}.name: '{cfg.name}' is already {where}; allowed: a new name")
        seen.add(cfg.name)
        _one_of(path, f"{key}.architecture", cfg.architecture, known)
        if cfg.budget is not None:
            _positive(path, f"{key}.budget.max_params", cfg.budget.max_params)
            _positive(path, f"{key}.budget.max_p99_ms", cfg.budget.max_p99_ms)
        entry = inline_entry(cfg)
        _check_sizes(path, f"{key}.sizes", entry, dict(cfg.sizes))
        _check_serves(path, key, entry, dataset)


def _check_serves(path: Path, key: str, entry: ModelEntry, dataset: DatasetConfig) -> None:
    """The VM's surfaces and task are ones the dataset YAML declares (so `validate` catches what
    `run` would only find after loading the data)."""
    missing = [s for s in entry.surfaces if s not in dataset.surfaces]
    if missing or not entry.surfaces:
        raise RecipeError(f"{path}: {key}: '{entry.name}' serves surface(s) '{', '.join(entry.surfaces)}', which dataset "
                          f"'{dataset.name}' does not have; its surfaces: {', '.join(dataset.surfaces)}")
    if entry.task not in dataset.labels:
        raise RecipeError(f"{path}: {key}: '{entry.name}' serves task '{entry.task}'; dataset '{dataset.name}' has tasks: "
                          f"{', '.join(dataset.labels)}")


def _check_windows(recipe: Recipe, path: Path) -> None:
    data = recipe.data
    for key, window in (("data.train", data.train), ("data.student", data.student), ("data.validation", data.validation), ("data.eval", data.eval)):
        _non_negative(path, f"{key}.days", window.days)
        _non_negative(path, f"{key}.hours", window.hours)
        if key != "data.validation" and window.length_days <= 0:
            raise RecipeError(f"{path}: {key}: found days {window.days}, hours {window.hours}; allowed: a window longer than 0 (days + hours > 0)")
        if window.start is not None:
            _moment(path, f"{key}.start", window.start)
    _date(path, "data.synthetic.start", recipe.data.synthetic.start)
    _check_synthetic_rows(path, recipe.data.synthetic.rows)
    fraction = data.users.fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise RecipeError(f"{path}: data.users.fraction: found {fraction!r}; allowed: a share of users above 0 and at most 1")
    if not 0 <= data.users.seed <= MAX_SEED:
        raise RecipeError(f"{path}: data.users.seed: found {data.users.seed}; allowed: a whole number from 0 to {MAX_SEED}")


def _check_transfer(recipe: Recipe, path: Path) -> None:
    transfer = recipe.transfer
    _one_of(path, "transfer.strategy", transfer.strategy, STRATEGY_STAGES)
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
    if transfer.knowledge == "training_traffic":
        oldest = 0  # every row scored just before the teacher trained on it
    if transfer.max_age_days is not None and recipe.data.student.start is None and oldest > transfer.max_age_days:
        raise RecipeError(
            f"{path}: transfer.max_age_days: {transfer.max_age_days} refuses the knowledge this recipe makes: the consumers' "
            f"window ends transfer.staleness_days ({transfer.staleness_days}) + data.student.days ({recipe.data.student.days}) "
            f"days after the teacher's cutoff; allowed: max_age_days >= {oldest}"
        )
    for i, stage in enumerate(transfer.stages):
        _check_stage(path, f"transfer.stages.{i}", stage, recipe.data.student.days)


def _check_knowledge_source(recipe: Recipe, path: Path) -> None:
    """Knowledge from training traffic needs a teacher that trains through time: days in order, and
    no staleness (its knowledge is as fresh as the rows it scores)."""
    transfer = recipe.transfer
    _one_of(path, "transfer.knowledge", transfer.knowledge, KNOWLEDGE_SOURCES)
    if transfer.knowledge != "training_traffic":
        return
    if recipe.trainer.order != "time":
        raise RecipeError(f"{path}: trainer.order: found '{recipe.trainer.order}'; transfer.knowledge 'training_traffic' needs 'time' "
                          "(the teacher scores each day before it trains on it)")
    if transfer.staleness_days != 0:
        raise RecipeError(f"{path}: transfer.staleness_days: found {transfer.staleness_days}; transfer.knowledge 'training_traffic' "
                          "makes knowledge 0 days old and needs 0 (or transfer.knowledge: separate)")


def _check_stage(path: Path, key: str, stage: StageConfig, student_days: int) -> None:
    """Each technique checks its own config (a `ValueError` naming the key)."""
    try:
        for name, module in TECHNIQUES.items():
            extra = (student_days,) if name == "adapter" else ()
            module.check(getattr(stage, name), f"{key}.{name}", *extra)
    except ValueError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def _check_sharing(recipe: Recipe, path: Path) -> None:
    """Build the producer and consumer of each stage that shares, and try the import."""
    if not any(stage.sharing.modules for stage in recipe.transfer.stages):
        return
    try:
        inputs = inputs_of(load_dataset_config(dataset_config_path(recipe.data.dataset)))
    except UserError as exc:
        raise RecipeError(f"{path}: data.dataset: {exc}") from None
    producers = {"teacher": (catalog("teacher")[recipe.teacher.model], recipe.teacher.sizes),
                 "domain_fms": (catalog("domain_fm")[recipe.domain_fms.model], recipe.domain_fms.sizes)}
    verticals = recipe_verticals(recipe)
    for i, stage in enumerate(recipe.transfer.stages):
        if not stage.sharing.modules:
            continue
        consumers = [producers["domain_fms"]] if stage.consumers == "domain_fms" else [
            (verticals[s.vertical], s.sizes) for s in recipe.students
        ]
        producer, producer_sizes = producers[stage.producer]
        for entry, sizes in consumers:
            try:
                share_parts(producer.build(inputs, producer_sizes), entry.build(inputs, sizes), list(stage.sharing.modules), stage.sharing.freeze)
            except SharingError as exc:
                raise RecipeError(f"{path}: transfer.stages.{i}.sharing.modules: {exc}") from None


def _arrows(shape: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{p} → {c}" for p, c in shape) + "]"


STRATEGIES = ("auto", "ddp", "fsdp")
SHARDINGS = ("full", "hybrid")


def _check_processes(recipe: Recipe, path: Path) -> None:
    """Lightning's strategy and process counts; several processes need a strategy the launcher starts
    (every process runs every stage, so Lightning's own spawning, `ddp_spawn`, cannot be used)."""
    t = recipe.trainer
    _one_of(path, "trainer.strategy", t.strategy, STRATEGIES)
    if not (isinstance(t.devices, int) or str(t.devices).isdigit()) or int(t.devices) < 1:
        raise RecipeError(f"{path}: trainer.devices: found {t.devices!r}; allowed: a whole number ≥ 1 (processes per node)")
    _positive(path, "trainer.num_nodes", t.num_nodes)
    _one_of(path, "trainer.sharding", t.sharding, SHARDINGS)
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


def _check_model(path: Path, kind: str, key: str, name: str, sizes: dict, entries: dict[str, ModelEntry] | None = None) -> ModelEntry:
    """`name` is in the catalog of `kind` (or in `entries`, when given), and `sizes` only names sizes
    its builder takes."""
    try:
        entries = catalog(kind) if entries is None else entries
    except CatalogError as exc:
        raise RecipeError(f"{path}: {key}: {exc}") from None
    _one_of(path, key, name, entries)
    entry = entries[name]
    _check_sizes(path, key.rsplit(".", 1)[0] + ".sizes", entry, sizes)
    return entry


def _check_sizes(path: Path, sizes_key: str, entry: ModelEntry, sizes: dict) -> None:
    """`sizes` only names sizes the entry's builder takes, and the model builds with them."""
    try:
        allowed = entry.size_names()
    except BuilderError as exc:
        raise RecipeError(f"{path}: {sizes_key.rsplit('.', 1)[0]}: {exc}") from None
    unknown = [k for k in sizes if k not in allowed]
    if unknown:
        raise RecipeError(f"{path}: {sizes_key}: unknown size '{unknown[0]}' for {entry.builder}; allowed: {', '.join(allowed)}")
    if sizes:
        _check_builds(path, sizes_key, entry, sizes)


def _check_builds(path: Path, sizes_key: str, entry: ModelEntry, sizes: dict) -> None:
    """Overridden sizes must make a model: build it once on the synthetic dataset's features."""
    inputs = inputs_of(load_dataset_config(dataset_config_path("synthetic")))
    try:
        entry.build(inputs, sizes)
    except Exception as exc:  # a wrong type or value fails anywhere inside the builder: name the key instead
        shown = ", ".join(f"{k}={v!r}" for k, v in sizes.items())
        raise RecipeError(f"{path}: {sizes_key}: {entry.builder} cannot build with {shown} ({type(exc).__name__}: {exc})") from None


def _one_of(path: Path, key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise RecipeError(f"{path}: {key}: unknown name '{value}'; allowed: {', '.join(sorted(allowed))}")


def _positive(path: Path, key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise RecipeError(f"{path}: {key}: found {value}; allowed: a finite number > 0")


def _non_negative(path: Path, key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise RecipeError(f"{path}: {key}: found {value}; allowed: a finite number >= 0")


def check_name(path: Path, key: str, name: str) -> None:
    """A name that becomes a folder: one path component of letters, digits, '.', '_' and '-'."""
    if not NAME.fullmatch(name):
        raise RecipeError(f"{path}: {key}: found {name!r}; allowed: 1 to 100 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit (it names a folder under output_dir)")


def _check_state_dict(path: Path, key: str, weights: str) -> None:
    """`weights` is a file holding a saved state dict (tensors by parameter name), loadable without running code."""
    import torch

    allowed = "a state dict saved with torch.save(model.state_dict(), path), or null"
    if not Path(weights).is_file():
        raise RecipeError(f"{path}: {key}: '{weights}' is not a file; allowed: {allowed}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # not a torch file, truncated, or holding objects that would run code
        raise RecipeError(f"{path}: {key}: '{weights}' does not load as a checkpoint ({type(exc).__name__}); allowed: {allowed}") from None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise RecipeError(f"{path}: {key}: '{weights}' holds no state dict of tensors; allowed: {allowed}")


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def check_machine(recipe: Recipe, path: Path) -> None:
    """The recipe's accelerator exists on this machine (checked before any data is read)."""
    import torch

    accelerator = recipe.trainer.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RecipeError(f"{path}: trainer.accelerator: found '{accelerator}', but this machine has no CUDA GPU; allowed here: cpu, auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(f"{path}: trainer.accelerator: found 'mps', but this machine has no Apple GPU; allowed here: cpu, auto")


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


MAX_SYNTHETIC_ROWS = 100_000_000  # about 3 minutes and tens of GiB to generate; larger logs belong in files


def _check_synthetic_rows(path: Path, rows: int) -> None:
    if not 1 <= rows <= MAX_SYNTHETIC_ROWS:
        raise RecipeError(f"{path}: data.synthetic.rows: found {rows:,}; allowed: 1 to {MAX_SYNTHETIC_ROWS:,}")

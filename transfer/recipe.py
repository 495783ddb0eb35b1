"""Recipes: a typed schema (design §6), loading with overrides, and validation against the catalog.

A recipe is a small diff from these defaults. Every error names the file and the key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from students import ARCHITECTURES, VERTICALS
from teacher import TEACHERS
from transfer.config_loading import load_structured
from transfer.dataset_config import builtin_datasets
from transfer.errors import RecipeError
from transfer.fingerprint import fingerprint


@dataclass
class WindowConfig:
    """A time range of the log. `start` defaults to the dataset's first day (train) or the end of the
    train window (eval)."""

    start: str | None = None  # YYYY-MM-DD, UTC
    days: int = MISSING


@dataclass
class SyntheticConfig:
    rows: int = 300_000
    days: int = 24
    start: str = "2026-01-01"
    seed: int = 0


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # a built-in dataset name or a path to a dataset YAML
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train: WindowConfig = field(default_factory=lambda: WindowConfig(days=21))
    eval: WindowConfig = field(default_factory=lambda: WindowConfig(days=3))
    cache_dir: str = ".cache/gem-transfer"


@dataclass
class TeacherConfig:
    model: str = "skeleton_tiny"  # a key of teacher.TEACHERS
    max_epochs: int = 1
    lr: float = 2e-3
    batch_size: int = 1024


@dataclass
class DistillationConfig:
    weight: float = 1.0  # w in BCE(z, y) + w·BCE(z, σ(z_t))


@dataclass
class TransferConfig:
    strategy: str = "direct"
    distillation: DistillationConfig = field(default_factory=DistillationConfig)


@dataclass
class StudentConfig:
    vertical: str = MISSING  # a key of students.VERTICALS
    architecture: str | None = None  # overrides the vertical's architecture (a key of ARCHITECTURES)
    lr: float = 2e-3
    batch_size: int = 512


@dataclass
class TrainerConfig:
    """Passed to Lightning's Trainer (students use max_epochs; the teacher has its own)."""

    max_epochs: int = 2
    accelerator: str = "cpu"
    devices: int | str = 1
    precision: str = "32-true"
    progress: bool = True


@dataclass
class TrackingConfig:
    uri: str | None = None  # default: sqlite:///<output_dir>/mlflow.db
    experiment: str | None = None  # default: the recipe's name


@dataclass
class Recipe:
    name: str = MISSING
    seed: int = 0
    output_dir: str = "gem_runs"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    students: list[StudentConfig] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.structured(self))

    def flat(self) -> dict[str, object]:
        """Dotted keys → values, for MLflow params."""
        return _flatten(OmegaConf.to_container(OmegaConf.structured(self)))

    @property
    def hash(self) -> str:
        return fingerprint(OmegaConf.to_container(OmegaConf.structured(self)))


STRATEGIES = ("direct",)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe; raises `RecipeError` with one line on any problem."""
    recipe = load_structured(Recipe, Path(path), overrides or [])
    validate(recipe, Path(path))
    return recipe


def validate(recipe: Recipe, path: Path) -> None:
    """Checks the schema cannot express: names exist, values are in range, dates parse."""
    _one_of(path, "teacher.model", recipe.teacher.model, TEACHERS)
    _one_of(path, "transfer.strategy", recipe.transfer.strategy, STRATEGIES)
    if recipe.data.dataset not in builtin_datasets() and not Path(recipe.data.dataset).is_file():
        raise RecipeError(
            f"{path}: data.dataset: '{recipe.data.dataset}' is neither a built-in dataset "
            f"({', '.join(builtin_datasets())}) nor an existing dataset YAML file"
        )
    if not recipe.students:
        raise RecipeError(f"{path}: students: at least one student is needed, e.g. [{{vertical: ig_stories_click}}]")
    for i, student in enumerate(recipe.students):
        _one_of(path, f"students.{i}.vertical", student.vertical, VERTICALS)
        if student.architecture is not None:
            _one_of(path, f"students.{i}.architecture", student.architecture, ARCHITECTURES)
        _positive(path, f"students.{i}.lr", student.lr)
        _positive(path, f"students.{i}.batch_size", student.batch_size)
    verticals = [s.vertical for s in recipe.students]
    if len(set(verticals)) != len(verticals):
        raise RecipeError(f"{path}: students: a vertical is listed twice ({verticals})")
    for key, window in (("data.train", recipe.data.train), ("data.eval", recipe.data.eval)):
        _positive(path, f"{key}.days", window.days)
        if window.start is not None:
            _date(path, f"{key}.start", window.start)
    _date(path, "data.synthetic.start", recipe.data.synthetic.start)
    for key, value in (
        ("data.synthetic.rows", recipe.data.synthetic.rows),
        ("teacher.max_epochs", recipe.teacher.max_epochs),
        ("teacher.lr", recipe.teacher.lr),
        ("teacher.batch_size", recipe.teacher.batch_size),
        ("trainer.max_epochs", recipe.trainer.max_epochs),
    ):
        _positive(path, key, value)
    if recipe.transfer.distillation.weight < 0:
        raise RecipeError(f"{path}: transfer.distillation.weight: found {recipe.transfer.distillation.weight}; allowed: >= 0")


def _one_of(path: Path, key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise RecipeError(f"{path}: {key}: unknown name '{value}'; allowed: {', '.join(sorted(allowed))}")


def _positive(path: Path, key: str, value: float) -> None:
    if value <= 0:
        raise RecipeError(f"{path}: {key}: found {value}; allowed: a number > 0")


def _date(path: Path, key: str, value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise RecipeError(f"{path}: {key}: found '{value}'; allowed: a date YYYY-MM-DD") from None


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat

"""Dataset configs: how any parquet/CSV maps onto the canonical impression log (design §5).

A dataset config is YAML read into `DatasetConfig`; a new dataset needs no code. Derived columns
are polars SQL expressions (`click: "rating >= 4"`), evaluated in order after the tables are joined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from transfer.config_loading import load_structured

BUILTIN_DIR = Path(__file__).parent / "datasets"


@dataclass
class TableConfig:
    """One input table. The first table is the impression table; later ones are joined onto it."""

    file: str = MISSING  # a key of `source.files`
    format: str = "auto"  # auto (from the suffix), parquet, csv
    separator: str = ","
    column_names: list[str] | None = None  # rename the columns, in order (CSV headers, say)
    join_on: str | None = None  # left-join onto the impression table on this column


@dataclass
class SourceConfig:
    """Where the files come from: paths relative to the dataset YAML, or members of a PyPI wheel."""

    wheel: str | None = None  # e.g. "recbole==1.2.1": `pip download --no-deps` on first use, cached
    files: dict[str, str] = field(default_factory=dict)  # name -> path (in the wheel, or beside the YAML)
    synthetic: bool = False  # the `impressions` file is made by the synthetic generator


@dataclass
class TimestampConfig:
    column: str = "ts"
    unit: str = "datetime"  # datetime (already a datetime), s or ms (epoch numbers), iso (text)


@dataclass
class DatasetConfig:
    """Roles of the columns. Every role names a column after `derive` has run."""

    name: str = MISSING
    source: SourceConfig = field(default_factory=SourceConfig)
    tables: list[TableConfig] = field(default_factory=list)
    timestamp: TimestampConfig = field(default_factory=TimestampConfig)
    derive: dict[str, str] = field(default_factory=dict)  # new column -> polars SQL expression
    example_id: str = "example_id"
    user_id: str = "user_id"
    ad_id: str = "ad_id"
    surface: str = "surface"
    ad_category: str = "ad_category"
    categorical: list[str] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    dense_nan_fill: float | None = None  # None: a NaN or null dense value is an error
    labels: dict[str, str] = field(default_factory=dict)  # task -> 0/1 column
    surfaces: dict[str, str] = field(default_factory=dict)  # surface -> domain
    hash_buckets: int = 8192  # rows per categorical vocabulary (stable hashing, unseen values allowed)


def builtin_datasets() -> list[str]:
    """Names of the dataset configs shipped with gem-transfer."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def dataset_config_path(name_or_path: str) -> Path:
    """A built-in dataset name (`movielens100k`) or a path to a dataset YAML."""
    if name_or_path in builtin_datasets():
        return BUILTIN_DIR / f"{name_or_path}.yaml"
    return Path(name_or_path)


def load_dataset_config(path: Path) -> DatasetConfig:
    """Read and type-check a dataset YAML; errors name the file and the key."""
    return load_structured(DatasetConfig, path, overrides=[], what="dataset config")

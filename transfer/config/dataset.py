"""Dataset configs: how any parquet/CSV maps onto the canonical impression log (design §5).

A dataset config is YAML read into `DatasetConfig`; a new dataset needs no code. Derived columns
are polars SQL expressions (`click: "rating >= 4"`), evaluated in order after the tables are joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from transfer.config.structured import load_structured
from transfer.errors import DataError

BUILTIN_DIR = Path(__file__).parent / "datasets"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # one path component: it names files in the data cache
# `source.wheel`: exactly `name==version` (a PEP 508 name, a PEP 440 release without wildcards or
# local parts), so that pip can only download that wheel: never a path, a URL or an option
WHEEL = re.compile(r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?)")
# `derive`: a scalar expression over the dataset's columns; these words would reach other tables or
# files (a subquery, a table function), so they are refused before polars parses the text
SQL_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--|/\*|\w+|\S")
SQL_REFUSED = {"SELECT", "VALUES", "TABLE", "WITH", "UNION", "JOIN", "EXCEPT", "INTERSECT", "LATERAL", "--", "/*", ";"}
SQL_TABLE_FUNCTION = re.compile(r"(read|scan)_\w*", re.IGNORECASE)


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
    cfg = load_structured(DatasetConfig, path, overrides=[], what="dataset config")
    check_dataset_config(cfg, path)
    return cfg


def check_dataset_config(cfg: DatasetConfig, path: Path) -> None:
    """Values the schema cannot check: the name, the wheel requirement, derive expressions, sizes."""
    if not NAME.fullmatch(cfg.name):
        raise DataError(
            f"{path}: name: found {cfg.name!r}; allowed: one file name of letters, digits, '.', '_', '-' "
            "(at most 100, starting with a letter or digit)"
        )
    if cfg.source.wheel is not None and not WHEEL.fullmatch(cfg.source.wheel):
        raise DataError(
            f"{path}: source.wheel: found {cfg.source.wheel!r}; allowed: a requirement name==version "
            "(a PyPI project and one exact version, e.g. recbole==1.2.1)"
        )
    for column, expr in cfg.derive.items():
        refused = refused_sql(expr)
        if refused:
            raise DataError(
                f"{path}: derive.{column}: '{refused}' is not allowed; allowed: a scalar SQL expression "
                "over the dataset's columns (no subqueries, tables or files)"
            )
    if cfg.hash_buckets < 1:
        raise DataError(f"{path}: hash_buckets: found {cfg.hash_buckets}; allowed: a whole number >= 1")


def refused_sql(expr: str) -> str | None:
    """The first word of `expr` (outside quotes) that could reach beyond its own row, or None.

    >>> refused_sql("CAST(rating >= 4 AS INT)") is None
    True
    >>> refused_sql("a + (SELECT 1 FROM read_csv('/etc/passwd'))")
    'SELECT'
    """
    for token in SQL_TOKEN.findall(expr):
        if token.upper() in SQL_REFUSED or SQL_TABLE_FUNCTION.fullmatch(token):
            return token
    return None

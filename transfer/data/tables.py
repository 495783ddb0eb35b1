"""Reading a dataset's tables: each from one file, a glob, a list or a (hive-partitioned) directory,
scanned lazily with polars and concatenated, then the later tables left-joined onto the first.

Every problem is a `DataError` naming the file, the table or the column, what was found and what is
allowed.
"""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl

from transfer.config.dataset import TableConfig
from transfer.errors import DataError

FORMATS = {"parquet": "parquet", "csv": "csv", "tsv": "csv", "txt": "csv"}  # file suffix → reader
GLOB_CHARS = set("*?[")


def expand_files(spec: str | list[str], base: Path, key: str) -> list[Path]:
    """The files `spec` names, relative to `base`: a file, a glob, a directory (every parquet/CSV
    file under it) or a list of those; sorted, each once. A `DataError` naming `key` when nothing matches."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs or not all(isinstance(s, str) and s for s in specs):
        raise DataError(f"{key}: found {spec!r}; allowed: a path, a glob, a directory or a list of those")
    found: dict[Path, None] = {}
    for item in specs:
        path = base / item
        if GLOB_CHARS & set(item):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True)) if Path(m).is_file()]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lstrip(".").lower() in FORMATS)
        else:
            matches = [path]
        if not matches:
            raise DataError(f"{key}: '{item}' matches no file under {base}")
        found.update(dict.fromkeys(matches))
    return list(found)


def read_tables(tables: list[TableConfig], files: dict[str, list[Path]], cfg_path: Path) -> pl.DataFrame:
    """The impression table (the first) with every later table left-joined onto it on its `join_on`."""
    if not tables:
        raise DataError(f"{cfg_path}: tables: at least one table is needed")
    frame = read_table(tables[0], files, cfg_path)
    for i, table in enumerate(tables[1:], start=1):
        keys = _join_keys(table, i, cfg_path)
        other = read_table(table, files, cfg_path)
        for side, data in (("the impression table", frame), (f"table '{table.file}'", other)):
            missing = [k for k in keys if k not in data.columns]
            if missing:
                raise DataError(f"{cfg_path}: tables.{i}.join_on: column '{missing[0]}' missing from {side} (joins run before the "
                                f"dataset's derive: derive a join key in that table's own derive); its columns: {', '.join(data.columns)}")
        frame = frame.join(other, on=keys, how="left")
    return frame


def _join_keys(table: TableConfig, i: int, cfg_path: Path) -> list[str]:
    keys = [table.join_on] if isinstance(table.join_on, str) else table.join_on
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise DataError(f"{cfg_path}: tables.{i}.join_on: found {table.join_on!r}; allowed: a column or a list of columns "
                        f"to left-join '{table.file}' onto the impression table")
    return list(keys)


def read_table(table: TableConfig, files: dict[str, list[Path]], cfg_path: Path) -> pl.DataFrame:
    """One table: its files scanned (with their partition values, constants, file and row columns),
    concatenated by column name, then its own `derive` columns."""
    if table.file not in files:
        raise DataError(f"{cfg_path}: tables: file '{table.file}' is not in source.files ({', '.join(files)})")
    scans = [_scan(table, path, cfg_path) for path in files[table.file]]
    try:
        frame = pl.concat(scans, how="diagonal_relaxed").collect() if len(scans) > 1 else scans[0].collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        where = _failing_file(scans, files[table.file])
        raise DataError(f"{cfg_path}: table '{table.file}': cannot read its files: {f'{where}: ' if where else ''}"
                        f"{str(exc).splitlines()[0]}") from exc
    return derive_columns(frame, table.derive, f"{cfg_path}: table '{table.file}'")


def _failing_file(scans: list[pl.LazyFrame], paths: list[Path]) -> Path | None:
    """The file whose rows could not be read (a value its column's type cannot parse), so that the error
    names it: the only one, or the first that fails alone; None when each reads alone (they do not concatenate)."""
    if len(paths) == 1:
        return paths[0]
    for scan, path in zip(scans, paths, strict=True):
        try:
            scan.collect()
        except (pl.exceptions.PolarsError, OSError):
            return path
    return None


def _scan(table: TableConfig, path: Path, cfg_path: Path) -> pl.LazyFrame:
    """One file as a lazy frame with the table's extra columns."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (source.files.{table.file} in {cfg_path})")
    declared = table.format if table.format != "auto" else path.suffix.lstrip(".").lower()
    fmt = FORMATS.get(declared, declared)  # tsv and txt read as CSV (with the table's separator)
    dtypes = _dtypes(table, cfg_path)
    try:
        if fmt == "parquet":
            scan = pl.scan_parquet(path)
        elif fmt == "csv":
            header = pl.scan_csv(path, separator=table.separator, infer_schema_length=0).collect_schema().names()
            scan = pl.scan_csv(path, separator=table.separator, infer_schema_length=10_000,
                               schema_overrides=_by_file_names(dtypes, table, header) or None)
        else:
            raise DataError(f"{cfg_path}: tables: format '{fmt}' of {path.name} is not one of parquet, csv")
        names = scan.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot read as {fmt}: {str(exc).splitlines()[0]}") from exc
    if table.column_names is not None:
        if len(table.column_names) != len(names):
            raise DataError(f"{cfg_path}: column_names for '{table.file}' lists {len(table.column_names)} names, "
                            f"{path.name} has {len(names)} columns")
        scan = scan.rename(dict(zip(names, table.column_names, strict=True)))
    if table.row_index:
        scan = scan.with_row_index(table.row_index)
    extra = {**_partitions(path, cfg_path.parent), **table.constants}
    if table.file_column:
        extra[table.file_column] = _relative(path, cfg_path.parent)
    scan = scan.with_columns(pl.lit(value).alias(name) for name, value in extra.items())
    if fmt == "parquet" and dtypes:
        scan = scan.with_columns(pl.col(name).cast(dtype) for name, dtype in dtypes.items() if name in scan.collect_schema().names())
    return scan


def _dtypes(table: TableConfig, cfg_path: Path) -> dict[str, pl.DataType]:
    """The table's `dtypes` as polars types, keyed by the file's own column names (`dtypes` names the
    columns as `column_names` renames them); a `DataError` naming an unknown type or column."""
    renamed = {new: i for i, new in enumerate(table.column_names or [])}
    types = {}
    for column, name in table.dtypes.items():
        if table.column_names is not None and column not in renamed:
            raise DataError(f"{cfg_path}: tables: dtypes.{column}: not one of column_names ({', '.join(table.column_names)})")
        dtype = getattr(pl, str(name), None)
        if not (isinstance(dtype, type) and issubclass(dtype, pl.DataType)) and not isinstance(dtype, pl.DataType):
            raise DataError(f"{cfg_path}: tables: dtypes.{column}: found '{name}'; allowed: a polars type name such as "
                            "Int64, Float64, String, Boolean, Date, Datetime")
        types[column] = dtype
    return types


def _by_file_names(dtypes: dict[str, pl.DataType], table: TableConfig, names: list[str]) -> dict[str, pl.DataType]:
    """`dtypes` keyed by the file's header names (the position `column_names` gives each renamed column)."""
    if table.column_names is None:
        return dtypes
    position = {new: i for i, new in enumerate(table.column_names)}
    return {names[position[column]]: dtype for column, dtype in dtypes.items() if position[column] < len(names)}


def _partitions(path: Path, base: Path) -> dict[str, str]:
    """The `key=value` directory names on the way from `base` to the file (hive partitioning)."""
    parts = Path(_relative(path, base)).parts[:-1]
    return dict(part.split("=", 1) for part in parts if "=" in part and not part.startswith("="))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def derive_columns(frame: pl.DataFrame, derive: dict[str, str], where: str) -> pl.DataFrame:
    """Add `derive`'s columns in order, each a scalar polars SQL expression over the columns so far (the
    text was screened for subqueries and table functions when the config was loaded); `where` starts
    each error line (the dataset YAML, and the table when it is a table's own derive). A derived column
    never replaces one the data already has: that would silently change a label or a key."""
    for name, text in derive.items():
        if name in frame.columns:
            raise DataError(f"{where}: derive.{name}: the data already has a column '{name}', which this would silently replace; "
                            f"allowed: a new column name (e.g. {name}_derived, then name it in the role that reads it)")
        try:
            expr = pl.sql_expr(text)
            unknown = sorted(set(expr.meta.root_names()) - set(frame.columns))
            if unknown or "subplan" in str(expr):
                raise DataError(
                    f"{where}: derive.{name}: '{text}' uses {f'column {unknown[0]!r}' if unknown else 'a subquery'}; "
                    f"allowed: an expression over the columns {', '.join(frame.columns)}"
                )
            frame = frame.with_columns(expr.alias(name))
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise DataError(f"{where}: derive.{name}: cannot evaluate '{text}': {str(exc).splitlines()[0]}") from exc
    return frame

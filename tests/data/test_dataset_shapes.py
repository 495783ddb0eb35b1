"""Datasets of common shapes, mapped with a dataset YAML only: one file per campaign (ids restarting
in each), a hive-partitioned parquet directory, a single-task log, composite and derived join keys,
per-column CSV types. Real files in tmp_path, read through the CLI's data check and the loader."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import run_cli, write_recipe
from transfer.config.dataset import load_dataset_config
from transfer.data.impressions import load_impressions
from transfer.data.synthetic import SURFACES, SyntheticSpec

BASE = {"timestamp": {"column": "ts", "unit": "datetime"}, "categorical": ["advertiser", "country"], "dense": ["bid"],
        "labels": {"click": "click", "conversion": "conversion"}, "surfaces": dict(SURFACES), "hash_buckets": 512}


def _dataset(folder: Path, **config) -> Path:
    path = folder / "dataset.yaml"
    path.write_text(yaml.safe_dump({"name": "shaped", **BASE, **config}))
    return path


def _load(path: Path) -> pl.DataFrame:
    return load_impressions(load_dataset_config(path), path, path.parent / "cache", SyntheticSpec())


def _check(tmp_path: Path, capsys, dataset: Path, *overrides: str) -> str:
    code, out, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)), *overrides)
    assert code == 0, err
    return out


def test_one_csv_file_per_campaign_with_ids_restarting_in_each(tmp_path, capsys, small_log):
    """Three campaigns, each its own CSV numbering its rows from 0 and without a campaign column:
    a glob reads them all, the file and the row number become columns, a derived key makes ids unique."""
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    for i, part in enumerate(small_log.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S")).iter_slices(700)):
        part.drop("example_id").write_csv(campaigns / f"campaign_{i}.csv")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "campaigns/campaign_*.csv"}},
                       tables=[{"file": "impressions", "file_column": "campaign_file", "row_index": "row"}],
                       timestamp={"column": "ts", "unit": "iso"},
                       derive={"uid": "campaign_file || '#' || CAST(row AS VARCHAR)"}, example_id="uid")
    frame = _load(dataset)
    assert frame.height == small_log.height and frame["example_id"].n_unique() == small_log.height
    assert sorted(frame["example_id"].str.split("#").list.first().unique()) == [f"campaigns/campaign_{i}.csv" for i in range(3)]
    assert frame["click"].sum() == small_log["click"].sum()
    assert "ok:" in _check(tmp_path, capsys, dataset)


def test_a_list_of_files_and_a_constant_per_table(tmp_path, small_log):
    first, second = small_log.head(1_000), small_log.tail(1_000)
    first.write_parquet(tmp_path / "a.parquet")
    second.write_parquet(tmp_path / "b.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": ["a.parquet", "b.parquet"]}},
                       tables=[{"file": "impressions", "constants": {"source_log": "bandit"}}],
                       categorical=["advertiser", "country", "source_log"])
    frame = _load(dataset)
    assert frame.height == 2_000 and frame["source_log"].unique().to_list() == ["bandit"]


def test_a_hive_partitioned_parquet_directory_gives_its_partition_values_as_columns(tmp_path, capsys, small_log):
    """surface=…/day=…/part.parquet with the surface only in the path: the loader reads it from there."""
    root = tmp_path / "log"
    days = small_log.with_columns(pl.col("ts").dt.strftime("%Y-%m-%d").alias("day"))
    for (surface, day), part in days.group_by(["surface", "day"]):
        folder = root / f"surface={surface}" / f"day={day}"
        folder.mkdir(parents=True)
        part.drop("surface", "day").write_parquet(folder / "part-0.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log"}}, tables=[{"file": "impressions"}])
    frame = _load(dataset).sort("example_id")
    expected = small_log.sort("example_id")
    assert frame["surface"].to_list() == expected["surface"].to_list()
    assert frame["ts"].to_list() == expected["ts"].to_list()
    assert "ok:" in _check(tmp_path, capsys, dataset)


def test_a_single_task_log(tmp_path, capsys, small_log):
    small_log.drop("click").write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}],
                       labels={"conversion": "conversion"})
    assert "ok:" in _check(tmp_path, capsys, dataset, "students=[{vertical: fb_feed_conversion}]")
    code, _, err = run_cli(capsys, "validate", str(write_recipe(tmp_path, dataset)))  # the default VM is a click model
    assert code == 2 and "serves task 'click'; dataset 'shaped' has tasks: conversion" in err


def test_a_log_without_users(tmp_path, capsys, small_log):
    """user_id: null: every impression is its own user (no histories), instead of a column named ''."""
    small_log.drop("user_id").write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}], user_id=None)
    frame = _load(dataset)
    assert frame["user_id"].n_unique() == small_log.height
    assert "ok:" in _check(tmp_path, capsys, dataset)


def test_a_composite_join_key_and_a_join_on_a_derived_column(tmp_path, small_log):
    """Ad metadata keyed by (advertiser, country), and bids keyed by a column the impression table
    only has once its own derive made it."""
    small_log.drop("bid").write_parquet(tmp_path / "log.parquet")
    meta = small_log.select("advertiser", "country").unique().with_columns(pl.lit("retail").alias("vertical_name"))
    meta.write_parquet(tmp_path / "meta.parquet")
    bids = small_log.select((pl.col("example_id") * 10).alias("bid_key"), "bid")
    bids.write_parquet(tmp_path / "bids.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet", "meta": "meta.parquet", "bids": "bids.parquet"}},
                       tables=[{"file": "impressions", "derive": {"bid_key": "example_id * 10"}},
                               {"file": "meta", "join_on": ["advertiser", "country"]},
                               {"file": "bids", "join_on": "bid_key"}],
                       categorical=["advertiser", "country", "vertical_name"])
    frame = _load(dataset).sort("example_id")
    assert frame["vertical_name"].unique().to_list() == ["retail"]
    assert frame["bid"].to_list() == pytest.approx(small_log.sort("example_id")["bid"].to_list())


def test_csv_types_can_be_declared_per_column(tmp_path, small_log):
    """A column of numbers for 10,000 rows and then a code: inference reads it as a number and fails;
    `dtypes` reads it as text."""
    log = pl.concat([small_log] * 6).with_row_index("example_id_new").drop("example_id").rename({"example_id_new": "example_id"})
    codes = pl.Series("country", [str(i % 7) for i in range(10_500)] + ["x7"] * (log.height - 10_500))
    log = log.with_columns(codes, pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S"))
    log.write_csv(tmp_path / "log.csv")
    config = {"source": {"files": {"impressions": "log.csv"}}, "timestamp": {"column": "ts", "unit": "iso"}}
    with pytest.raises(Exception, match="cannot read its files"):
        _load(_dataset(tmp_path, tables=[{"file": "impressions"}], **config))
    frame = _load(_dataset(tmp_path, tables=[{"file": "impressions", "dtypes": {"country": "String"}}], **config))
    assert frame["country"].tail(1).to_list() == ["x7"]


def test_a_value_its_declared_type_cannot_parse_names_the_file_among_several_and_its_column(tmp_path, capsys, small_log):
    parts = tmp_path / "parts"
    parts.mkdir()
    log = small_log.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S"), pl.col("bid").cast(pl.String))
    log.head(1_000).write_csv(parts / "a.csv")
    log.tail(1_000).with_columns(pl.when(pl.col("example_id") == small_log["example_id"][-3]).then(pl.lit("n/a"))
                                 .otherwise(pl.col("bid")).alias("bid")).write_csv(parts / "b.csv")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "parts/*.csv"}}, timestamp={"column": "ts", "unit": "iso"},
                       tables=[{"file": "impressions", "dtypes": {"bid": "Float64"}}])
    code, out, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"table 'impressions': cannot read its files: {parts / 'b.csv'}: " in err and "`n/a`" in err and "'bid'" in err, err


@pytest.mark.parametrize(("files", "tables", "expected"), [
    ({"impressions": "campaigns/*.csv"}, [{"file": "impressions"}], ["source.files.impressions", "'campaigns/*.csv' matches no file"]),
    ({"impressions": "log.parquet"}, [{"file": "impressions", "dtypes": {"bid": "Decimalish"}}], ["dtypes.bid", "'Decimalish'", "Int64"]),
    ({"impressions": "log.parquet", "m": "log.parquet"}, [{"file": "impressions"}, {"file": "m", "join_on": ["advertiser", 3]}],
     ["tables.1.join_on", "a column or a list of columns"]),
    ({"impressions": "log.parquet", "m": "log.parquet"}, [{"file": "impressions"}, {"file": "m", "join_on": "item_key"}],
     ["tables.1.join_on: column 'item_key' missing from the impression table", "that table's own derive"]),
])
def test_what_a_table_cannot_express_is_one_line(tmp_path, capsys, small_log, files, tables, expected):
    small_log.write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": files}, tables=tables)
    code, out, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in err


@pytest.mark.parametrize("kind", ["teacher", "vertical", "domain_fm"])
def test_every_catalog_model_builds_quietly_on_a_dataset_without_dense_features(tmp_path, kind):
    """dense: [] used to print torch's "Initializing zero-element tensors is a no-op" on every command."""
    import warnings

    import torch

    from transfer.catalog import catalog
    from transfer.config.dataset import inputs_of

    inputs = inputs_of(load_dataset_config(_dataset(tmp_path, dense=[], source={"files": {"impressions": "x.parquet"}},
                                                    tables=[{"file": "impressions"}])))
    assert inputs.n_dense == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for entry in catalog(kind).values():
            model = entry.build(inputs)
            assert all(torch.isfinite(p).all() for p in model.parameters()), entry.name


def test_dtypes_name_columns_as_column_names_renames_them_and_tsv_reads(tmp_path, small_log):
    """A headered TSV renamed by column_names: `dtypes` uses the new names (a typo is refused), and format: tsv reads."""
    log = small_log.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S"))
    log.rename({c: f"col{i}" for i, c in enumerate(log.columns)}).write_csv(tmp_path / "log.tsv", separator="\t")
    table = {"file": "impressions", "format": "tsv", "separator": "\t", "column_names": log.columns, "dtypes": {"hour": "String"}}
    config = {"source": {"files": {"impressions": "log.tsv"}}, "timestamp": {"column": "ts", "unit": "iso"},
              "categorical": ["advertiser", "country", "hour"]}
    frame = _load(_dataset(tmp_path, tables=[table], **config))
    assert small_log.schema["hour"] != pl.String and frame.schema["hour"] == pl.String and frame.height == small_log.height
    with pytest.raises(Exception, match="dtypes.contry: not one of column_names"):
        _load(_dataset(tmp_path, tables=[{**table, "dtypes": {"contry": "String"}}], **config))


def _platform_log(small_log: pl.DataFrame) -> pl.DataFrame:
    """The log as a two-column surface: a platform and a placement whose names repeat across platforms
    (`feed` and `stories` on facebook and on instagram), with no column naming the pair."""
    platform = pl.col("surface").str.split("_").list.first().replace({"fb": "facebook", "ig": "instagram", "msg": "messenger"})
    return small_log.with_columns(platform.alias("platform"), pl.col("surface").str.split("_").list.last().alias("placement")).drop("surface")


PLATFORMS = {"facebook": ["feed", "marketplace"], "instagram": ["feed", "stories", "reels"], "messenger": ["inbox", "stories"]}


def test_the_same_surface_name_in_two_domains_is_two_surfaces(tmp_path, capsys, small_log):
    """`domain` + `domains`: a placement named `feed` on two platforms becomes facebook_feed and
    instagram_feed, each in its own domain; an inline VM serves one of them."""
    _platform_log(small_log).write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}], surfaces={}, surface="placement",
                       domain="platform", domains=PLATFORMS, trainable={"instagram_feed": ["click"]})
    cfg = load_dataset_config(dataset)
    assert cfg.surfaces == {"facebook_feed": "facebook", "facebook_marketplace": "facebook", "instagram_feed": "instagram",
                            "instagram_stories": "instagram", "instagram_reels": "instagram", "messenger_inbox": "messenger",
                            "messenger_stories": "messenger"}
    frame = _load(dataset)
    original = {f"{SURFACES[s]}_{s.split('_')[1]}": n for s, n in small_log["surface"].value_counts().iter_rows()}
    assert dict(frame["surface"].value_counts().iter_rows()) == original
    vm = {"name": "ig_feed_click_inline", "surfaces": ["instagram_feed"], "task": "click"}
    recipe = write_recipe(tmp_path, dataset, verticals=[vm], students=[{"vertical": vm["name"]}])
    code, out, err = run_cli(capsys, "data", "check", str(recipe))
    assert code == 0, err
    code, _, err = run_cli(capsys, "validate", str(write_recipe(tmp_path, dataset, name="feed", verticals=[{**vm, "surfaces": ["feed"]}],
                                                                 students=[{"vertical": vm["name"]}])))
    assert code == 2 and "serves surface(s) 'feed'" in err and "instagram_feed" in err


@pytest.mark.parametrize(("config", "named"), [
    ({"domain": "platform"}, "domains empty"),                                      # a domain column but no domains
    ({"domain": "platform", "domains": PLATFORMS, "surfaces": {"feed": "facebook"}}, "surfaces set"),  # both forms at once
    ({"domain": "platform", "domains": {"a_b": ["c"], "a": ["b_c"]}}, "'a_b_c'"),   # two pairs make one name
])
def test_a_domain_mapping_that_cannot_tell_surfaces_apart_is_one_line(tmp_path, capsys, small_log, config, named):
    _platform_log(small_log).write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}], surface="placement", **{"surfaces": {}, **config})
    code, _, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{dataset}: domain" in err and named in err


def test_a_row_whose_domain_and_surface_are_not_listed_is_named_by_both_columns(tmp_path, small_log):
    _platform_log(small_log).write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}], surfaces={}, surface="placement",
                       domain="platform", domains={**PLATFORMS, "messenger": ["inbox"]})
    with pytest.raises(Exception, match=r"column 'platform' \+ 'placement' \(surface\) has values \['messenger_stories'\]"):
        _load(dataset)


def test_a_surface_listed_twice_in_surfaces_says_how_to_map_it_to_two_domains(tmp_path, capsys, small_log):
    small_log.write_parquet(tmp_path / "log.parquet")
    dataset = _dataset(tmp_path, source={"files": {"impressions": "log.parquet"}}, tables=[{"file": "impressions"}])
    dataset.write_text(dataset.read_text().replace("surfaces:\n", "surfaces:\n  fb_feed: instagram\n"))
    code, _, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "duplicate key fb_feed" in err and "`domain:`" in err and "`domains:`" in err
    dataset.write_text(dataset.read_text().replace("  fb_feed: instagram\n", "").replace("labels:\n", "labels:\n  click: click\n"))
    code, _, err = run_cli(capsys, "data", "check", str(write_recipe(tmp_path, dataset)))
    assert code == 2 and "duplicate key click" in err and "domains" not in err  # a key twice elsewhere: no surface advice

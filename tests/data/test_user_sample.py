"""`data.users`: a seeded sample of a fixed log's users, so seeds can vary the data (MovieLens) —
each user kept with all of its impressions or not at all."""

from __future__ import annotations

import polars as pl

from tests.conftest import write_dataset, write_recipe
from transfer.config.loader import load_recipe
from transfer.config.recipe import UserSampleConfig
from transfer.data.prepare import prepare_data, sample_users


def _log(users: int = 2_000, rows_per_user: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [u for u in range(users) for _ in range(rows_per_user)], "row": range(users * rows_per_user)})


def test_a_sample_keeps_whole_users_near_the_fraction_and_its_seed_decides_which():
    log = _log()
    half = sample_users(log, UserSampleConfig(fraction=0.5, seed=1))
    assert half.group_by("user_id").len()["len"].unique().to_list() == [3]  # every kept user with all its rows
    assert 900 < half["user_id"].n_unique() < 1_100  # 1,000 expected; binomial sd ≈ 22
    assert half.equals(sample_users(log, UserSampleConfig(fraction=0.5, seed=1)))
    other = set(sample_users(log, UserSampleConfig(fraction=0.5, seed=2))["user_id"].to_list())
    overlap = len(other & set(half["user_id"].to_list()))
    assert 400 < overlap < 600  # independent draws share about a quarter of the users (500)
    assert sample_users(log, UserSampleConfig(fraction=1.0, seed=7)).equals(log)


def test_a_recipe_with_a_user_sample_prepares_only_those_users_with_their_full_histories(tmp_path, small_log):
    dataset = write_dataset(tmp_path, small_log)
    recipe = load_recipe(write_recipe(tmp_path, dataset))
    full = prepare_data(recipe.data)
    recipe.data.users = UserSampleConfig(fraction=0.6, seed=3)
    sampled = prepare_data(recipe.data)
    assert sampled.fingerprint != full.fingerprint  # its own encoded log (and so its own stage caches)
    per_user = lambda data: pl.DataFrame({"user": data.log.categorical[:, 0].numpy()}).group_by("user").len()  # noqa: E731 — hashed user id
    everyone, kept = per_user(full), per_user(sampled)
    assert 0.45 * everyone.height < kept.height < 0.75 * everyone.height
    assert kept.join(everyone, on="user", suffix="_full").filter(pl.col("len") != pl.col("len_full")).is_empty()

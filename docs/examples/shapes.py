"""Write the README's three example logs, each in a shape the loader reads with a dataset YAML only
(made from the synthetic world, so they need no download):

- data/bandit/campaign_<k>.csv — one CSV per campaign, no campaign column, row ids restarting at 0 in
  each file, ad positions as surfaces, clicks only and rare (~0.5 %);
- data/partitioned/surface=<s>/day=<d>/part-0.parquet — a hive-partitioned directory whose surface
  and day live only in the path;
- data/conversions.parquet — a conversion-only log (one task).

    python docs/examples/shapes.py          # then: gem-transfer run docs/examples/bandit_recipe.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transfer.data.synthetic import SyntheticSpec, generate  # noqa: E402

HERE = Path(__file__).resolve().parent
POSITIONS = {"fb_feed": "position_1", "ig_feed": "position_2", "ig_stories": "position_3"}


def main() -> None:
    log = generate(SyntheticSpec(rows=120_000, days=14, seed=0))
    data = HERE / "data"
    bandit = data / "bandit"
    bandit.mkdir(parents=True, exist_ok=True)
    shown = log.filter(pl.col("surface").is_in(list(POSITIONS))).with_columns(
        pl.col("surface").replace_strict(POSITIONS).alias("position"), pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S"))
    rare = shown.filter((pl.col("click") == 0) | (pl.col("user_id").hash(seed=2) % 12 == 0))  # ~0.5 % clicks, as bandit logs have
    campaigns = rare.with_columns((pl.col("advertiser").hash(seed=1) % 4).alias("campaign"))
    for (k,), part in campaigns.group_by("campaign"):
        part.drop("example_id", "surface", "conversion", "campaign").write_csv(bandit / f"campaign_{k}.csv")
    for (surface, day), part in log.with_columns(pl.col("ts").dt.strftime("%Y-%m-%d").alias("day")).group_by("surface", "day"):
        folder = data / "partitioned" / f"surface={surface}" / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part.drop("surface", "day").write_parquet(folder / "part-0.parquet")
    log.drop("click").write_parquet(data / "conversions.parquet")
    print(f"wrote {data}: bandit/ ({len(list(bandit.glob('*.csv')))} campaign files), partitioned/, conversions.parquet")


if __name__ == "__main__":
    main()

"""The continuous transfer cycle on the drifting synthetic data (issue #6): do refreshed VMs hold
their NE across cycles better than VMs trained once? Runs `recipes/continuous_cycle.yaml` through the
same path as `gem-transfer cycle` and writes the per-cycle table.

    python benchmarks/continuous_cycle.py [--windows 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import write_section  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.evaluation.lift_table import format_table  # noqa: E402
from transfer.pipeline.cycle import run_cycle  # noqa: E402

RECIPE = REPO / "recipes" / "continuous_cycle.yaml"
COMMAND = "make bench-cycle  (python benchmarks/continuous_cycle.py)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args()
    recipe = load_recipe(RECIPE, [f"output_dir={REPO / 'benchmarks' / '.runs'}", "trainer.progress=false"])
    result = run_cycle(recipe, RECIPE, args.windows)
    later = result.table.filter(pl.col("cycle") > 0)
    summary = later.group_by("vertical", maintain_order=True).agg(
        pl.col("refreshed VM NE").mean().alias("refreshed"), pl.col("trained-once VM NE").mean().alias("once"),
        (pl.col("refreshed VM NE") < pl.col("trained-once VM NE")).sum().alias("wins"), pl.len().alias("cycles"))
    lines = [f"`{RECIPE.relative_to(REPO)}`, {args.windows} windows (cycle 0 = the recipe; each later cycle 3 days later), seed 0.",
             "", "```", format_table(result.table), "```", ""]
    for row in summary.iter_rows(named=True):
        lines.append(f"- **{row['vertical']}**: over cycles 1…{args.windows - 1}, refreshed NE {row['refreshed']:.4f} vs trained-once "
                     f"{row['once']:.4f}; refreshed better in {row['wins']} of {row['cycles']} cycles.")
    body = "\n".join(lines)
    print(body)
    write_section("continuous-cycle", COMMAND, body)


if __name__ == "__main__":
    main()

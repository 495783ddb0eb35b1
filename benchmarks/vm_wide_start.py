"""Does starting a VM at its regression make it stable on a small slice? (#15's "VMs that train stably")

`recipes/movielens_direct.yaml` (two VMs, weekday_night click and conversion: about 6k training rows
each) on 5 seeds, each a seeded 80 % of MovieLens's users (`data.users`) and its own model seed, as
`make bench-transfer` draws them; every VM reads the ad's running counters (`counters: [ad_id]`). Two
arms, the same runs otherwise:
- random start: `sizes: {wide: false}`, the MLP VM without its wide term, from its random initialisation;
- started at the regression: the wide & deep VM as shipped, its wide term and bias set to the logistic
  regression on its raw features before training (`transfer.training.wide_start`).
Reported per slice and role (baseline: labels only; student: vanilla KD): NE mean ± sd over seeds,
the teacher beside them, and the paired difference (NE points, positive = the started VM better) with
its 95 % t-interval.

    python benchmarks/vm_wide_start.py      # writes the section vm-wide-start, with its run time (`make bench-vm-start`)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import transfer_ablation  # noqa: E402
from benchmarks.results_file import shown, study_dir, write_csv, write_section  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.evaluation.intervals import seed_interval  # noqa: E402

RECIPE = REPO / "recipes" / "movielens_direct.yaml"
SEEDS = range(5)
ARMS = {"random start": {"wide": False}, "started at the regression": {}}
COMMAND = "make bench-vm-start  (python benchmarks/vm_wide_start.py)"
CSV = study_dir("vm-start") / "vm_wide_start.csv"


def run_arm(sizes: dict, seed: int) -> pl.DataFrame:
    """The lift table of the recipe on `seed` (its users and models) with every VM built with `sizes`."""
    recipe = load_recipe(RECIPE)
    overrides = {f"students.{i}.sizes": dict(sizes) for i in range(len(recipe.students))}
    return transfer_ablation.run_quietly(recipe, RECIPE, seed, overrides)


def table(frame: pl.DataFrame) -> str:
    """Markdown: per slice and role, each arm's NE (mean ± sd) and the started arm's paired gain."""
    random, started = ARMS
    lines = ["| slice | eval positives per seed | role | random start NE | started NE | started better by, NE points [95% CI] | verdict |",
             "|---|---|---|---|---|---|---|"]
    for (slice_name, role), rows in frame.group_by("slice", "role", maintain_order=True):
        by_arm = {arm: rows.filter(pl.col("arm") == arm).sort("seed") for arm in ARMS}
        interval = seed_interval((100 * (by_arm[random]["NE"] - by_arm[started]["NE"])).to_list())
        positives = by_arm[started]["eval positives"]
        cells = [f"{by_arm[arm]['NE'].mean():.4f} ± {by_arm[arm]['NE'].std():.4f}" for arm in ARMS]
        verdict = interval.verdict if role != "teacher" else "(the same teacher)"
        lines.append(f"| {slice_name} | {positives.min():,}–{positives.max():,} | {role} | {cells[0]} | {cells[1]} | "
                     f"{interval.mean:+.2f} [{interval.low:.2f}, {interval.high:.2f}] | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    start = time.perf_counter()
    transfer_ablation.SCALE["users"] = 0.8
    rows = []
    for seed in SEEDS:
        for arm, sizes in ARMS.items():
            lift = run_arm(sizes, seed)
            rows += [{"arm": arm, "seed": seed, "slice": r["slice"], "role": r["role"], "eval positives": int(r["eval positives"]),
                      "NE": r["NE"], "AUC": r["AUC"], "calibration": r["calibration"]} for r in lift.iter_rows(named=True)]
            print(f"  seed {seed}: {arm} ({time.perf_counter() - start:.0f} s)", flush=True)
    frame = pl.DataFrame(rows)
    write_csv(frame, CSV)
    body = (f"`{RECIPE.relative_to(REPO)}`, {len(SEEDS)} seeds (recipe `seed` and `data.users`, a seeded 80 % of the users: models "
            f"and data); {(time.perf_counter() - start) / 60:.0f} min for this run (torch on {torch.get_num_threads()} threads). "
            f"CSV `{shown(CSV)}`.\n\n" + table(frame))
    write_section("vm-wide-start", COMMAND, body)
    print(body)


if __name__ == "__main__":
    main()

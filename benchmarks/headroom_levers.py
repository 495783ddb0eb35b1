"""Which teacher-side lever gives the teacher a lead over the baseline VM? (`make bench-levers`)

Each lever is a set of recipe overrides on the teacher's side only — the baseline VM keeps its counters,
regression start and best epoch, and is the same model for every lever of a seed (its stage is reused).
For every lever and seed (the recipe `seed` and `data.synthetic.seed`: models and data vary), the
direct vanilla-KD recipe runs and the headroom gate (`benchmarks/headroom.py`) is read off its teacher and
baseline rows: the teacher's lead over the baseline VM per slice, with its 95 % t-interval over seeds.
The primary endpoint, named before the run: each lever's lead on each slice, against the gate; the
levers are compared with today's teacher (one epoch, separate knowledge) as secondary findings.

    python benchmarks/headroom_levers.py [--seeds 5] [--levers NAME ...] [--recipe recipes/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import transfer_ablation  # noqa: E402
from benchmarks.headroom import headroom, headroom_table  # noqa: E402
from benchmarks.results_file import command_line, shown, study_dir, write_csv, write_section  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.evaluation.intervals import seed_interval  # noqa: E402

SECTION = "headroom-levers"
CSV = study_dir("transfer") / "headroom_levers.csv"
TODAY = "today"
# lever → (what it is, its recipe overrides)
LEVERS: dict[str, tuple[str, dict[str, object]]] = {
    TODAY: ("one epoch on the teacher's window, knowledge from a separate scoring pass (the recipes' default)", {}),
    "epochs": ("4 epochs, the best kept on the validation window", {"teacher.max_epochs": 4, "teacher.keep_best_epoch": True}),
    "traffic": ("knowledge from training traffic: the teacher trains on through the consumers' window in time order",
                {"transfer.knowledge": "training_traffic", "trainer.order": "time"}),
    "scaled_vm": ("the scaled-VM teacher: wide & deep, started at its regressions, the VM's architecture with 256 events",
                  {"teacher.model": "scaled_vm"}),
}


def run(recipe_path: Path, levers: list[str], seeds: list[int]) -> pl.DataFrame:
    """Every lever on every seed: the direct vanilla-KD recipe's lift-table rows, tagged with the lever."""
    recipe = load_recipe(recipe_path)
    transfer_ablation.SCALE["synthetic"] = "recipe"  # the recipe's own world and windows
    rows = []
    for seed in seeds:
        for lever in levers:
            start = time.perf_counter()
            table = transfer_ablation.run_quietly(recipe, recipe_path, seed, LEVERS[lever][1])
            rows.append(table.with_columns(pl.lit(lever).alias("dataset"), pl.lit(seed).alias("seed")))
            print(f"  seed {seed}: {lever} ({time.perf_counter() - start:.0f} s)", flush=True)
    return pl.concat(rows, how="diagonal_relaxed")


def levers_body(frame: pl.DataFrame, recipe_path: Path, minutes: float | None) -> str:
    """The gate per lever and slice, then each lever's lead against today's teacher (paired by seed)."""
    gate = headroom_table(headroom(frame)).rename({"dataset": "lever"})
    leads = {(s.dataset, s.slice): s for s in headroom(frame)}
    compared = []
    for lever, slice_ in leads:
        if lever == TODAY or (TODAY, slice_) not in leads:
            continue
        paired = _per_seed_lead(frame, lever, slice_).join(_per_seed_lead(frame, TODAY, slice_), on="seed", suffix="_today")
        gain = seed_interval((paired["lead"] - paired["lead_today"]).to_list())
        compared.append({"lever": lever, "slice": slice_, "lead − today's (NE points, 95% CI)":
                         f"{gain.mean:+.2f} [{gain.low:+.2f}, {gain.high:+.2f}]", "vs today": gain.verdict})
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1, tbl_cols=-1,
                   tbl_width_chars=10_000, fmt_str_lengths=200, tbl_formatting="ASCII_MARKDOWN"):
        tables = f"{gate}\n\nSecondary (no verdict on the claim; each lever against today's teacher, paired by seed):\n\n{pl.DataFrame(compared)}"
    seeds = sorted(set(frame["seed"].to_list()))
    timing = f"{minutes:.0f} min for this run" if minutes is not None else f"analysed again from `{shown(CSV)}`"
    return (f"`{shown(recipe_path)}` (direct, vanilla KD), its own world and windows; {len(seeds)} seeds (models and data); {timing} "
            f"(torch on {torch.get_num_threads()} threads). Primary endpoint, named before the run: each lever's lead over the "
            f"baseline VM on each slice, against the headroom gate. CSV `{shown(CSV)}`. The levers:\n\n"
            + "".join(f"- `{name}`: {what}\n" for name, (what, _) in LEVERS.items()) + f"\n{tables}\n")


def _per_seed_lead(frame: pl.DataFrame, lever: str, slice_: str) -> pl.DataFrame:
    rows = frame.filter((pl.col("dataset") == lever) & (pl.col("slice") == slice_) & pl.col("role").is_in(["teacher", "baseline"]))
    wide = rows.unique(subset=["seed", "role"], keep="first").pivot(on="role", index="seed", values="NE")
    return wide.select("seed", ((pl.col("baseline") - pl.col("teacher")) * 100).alias("lead"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "quickstart.yaml")
    parser.add_argument("--from-csv", action="store_true", help=f"analyse {shown(CSV)} again instead of running")
    args = parser.parse_args()
    if args.from_csv:
        frame, minutes = pl.read_csv(CSV, infer_schema_length=None), None
    else:
        start = time.perf_counter()
        frame = run(args.recipe, [TODAY, *(lever for lever in args.levers if lever != TODAY)], list(range(args.seeds)))
        minutes = (time.perf_counter() - start) / 60
        write_csv(frame.select("dataset", "seed", "model", "role", "slice", "NE", "recal NE", "eval positives"), CSV)
    body = levers_body(frame, args.recipe, minutes)
    print(body)
    write_section(SECTION, command_line(), body)


if __name__ == "__main__":
    main()

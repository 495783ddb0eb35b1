"""Which teacher-side lever gives the teacher a lead over the baseline VM? (`make bench-levers`)

Each lever is a set of recipe overrides on the teacher's side only — the baseline VM keeps its counters,
regression start and best epoch, and is the same model for every lever of a seed that trains the same way
(its stage is reused; the levers from training traffic visit the rows in time order, the VMs too).
For every lever and seed (the recipe `seed` and `data.synthetic.seed`: models and data vary), the
direct vanilla-KD recipe runs and the headroom gate (`benchmarks/headroom.py`) is read off its teacher and
baseline rows: the teacher's lead over the baseline VM per slice, with its 95 % t-interval over seeds.
The primary endpoint, named before the run: each lever's lead on each slice, against the gate; each
lever is compared with the lever it builds on (today's teacher: one epoch, separate knowledge; or
knowledge from training traffic) as secondary findings.

    python benchmarks/headroom_levers.py [--seeds 5] [--levers NAME ...] [--recipe recipes/quickstart.yaml] [--from-csv]

With `--levers`, only those levers train; the CSV keeps the other levers' rows from its earlier run
(each row stamped with its commit, every seed it holds), and the section reads them all; they must
come from the same recipe (the default one).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
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
DEFAULT_RECIPE = REPO / "recipes" / "quickstart.yaml"  # the recipe the CSV's rows come from
COLUMNS = ("dataset", "seed", "model", "role", "slice", "NE", "recal NE", "eval positives")
TODAY = "today"
TRAFFIC = "traffic"
TRAFFIC_PROTOCOL = {"transfer.knowledge": "training_traffic", "trainer.order": "time"}
LONG_HISTORY = {"teacher.sizes": {"history_length": 1024}}


@dataclass(frozen=True)
class Lever:
    """One teacher-side change: what it is, its recipe overrides, and the lever it is compared with."""

    what: str
    overrides: dict[str, object]
    compared_with: str = TODAY


LEVERS: dict[str, Lever] = {
    TODAY: Lever("one epoch on the teacher's window, knowledge from a separate scoring pass (the recipes' default)", {}),
    "epochs": Lever("4 epochs, the best kept on the validation window", {"teacher.max_epochs": 4, "teacher.keep_best_epoch": True}),
    TRAFFIC: Lever("knowledge from training traffic: the teacher trains on through the consumers' window in time order", TRAFFIC_PROTOCOL),
    "scaled_vm": Lever("the scaled-VM teacher: wide & deep, started at its regressions, the VM's architecture with 256 events",
                       {"teacher.model": "scaled_vm"}),
    "history_1024": Lever("the teacher reads 1,024 events of each user's history instead of 256 (`teacher.sizes`)", LONG_HISTORY),
    "traffic_history_1024": Lever("knowledge from training traffic and 1,024 events of history", TRAFFIC_PROTOCOL | LONG_HISTORY, TRAFFIC),
    "traffic_capacity": Lever("knowledge from training traffic and the larger skeleton (`skeleton_small`: embeddings twice as wide, "
                              "dense layers 512-256-64, 1,024 events: against 1,024 events with the tiny one)",
                              TRAFFIC_PROTOCOL | {"teacher.model": "skeleton_small"}, "traffic_history_1024"),
}


def run(recipe_path: Path, levers: list[str], seeds: list[int]) -> pl.DataFrame:
    """Every lever on every seed: the direct vanilla-KD recipe's lift-table rows, tagged with the lever."""
    recipe = load_recipe(recipe_path)
    transfer_ablation.SCALE["synthetic"] = "recipe"  # the recipe's own world and windows
    rows = []
    for seed in seeds:
        for lever in levers:
            start = time.perf_counter()
            table = transfer_ablation.run_quietly(recipe, recipe_path, seed, LEVERS[lever].overrides)
            rows.append(table.with_columns(pl.lit(lever).alias("dataset"), pl.lit(seed).alias("seed")))
            print(f"  seed {seed}: {lever} ({time.perf_counter() - start:.0f} s)", flush=True)
    return pl.concat(rows, how="diagonal_relaxed")


def levers_body(frame: pl.DataFrame, recipe_path: Path, minutes: float | None, ran: list[str] | None = None) -> str:
    """The gate per lever and slice, then each lever's lead against the lever it builds on (paired by
    seed). `ran`: the levers this run trained (None: all of them); the others' rows came from the CSV."""
    gate = headroom_table(headroom(frame)).rename({"dataset": "lever"})
    leads = {(s.dataset, s.slice): s for s in headroom(frame)}
    compared = []
    for lever, slice_ in leads:
        base = LEVERS[lever].compared_with if lever in LEVERS else TODAY
        if lever == TODAY or (base, slice_) not in leads:
            continue
        paired = _per_seed_lead(frame, lever, slice_).join(_per_seed_lead(frame, base, slice_), on="seed", suffix="_base")
        gain = seed_interval((paired["lead"] - paired["lead_base"]).to_list())
        compared.append({"lever": lever, "slice": slice_, "compared with": base,
                         "lead − its lead (NE points, 95% CI)": f"{gain.mean:+.2f} [{gain.low:+.2f}, {gain.high:+.2f}]", "verdict": gain.verdict})
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1, tbl_cols=-1,
                   tbl_width_chars=10_000, fmt_str_lengths=200, tbl_formatting="ASCII_MARKDOWN"):
        tables = (f"{gate}\n\nSecondary (no verdict on the claim; each lever against the lever it builds on, paired by seed):"
                  f"\n\n{pl.DataFrame(compared)}")
    seeds = sorted(set(frame["seed"].to_list()))
    present = list(dict.fromkeys(frame["dataset"].to_list()))
    timing = f"analysed again from `{shown(CSV)}`" if minutes is None else f"{minutes:.0f} min for this run"
    if minutes is not None and ran is not None and set(ran) != set(present):
        timing += f" of {', '.join(f'`{name}`' for name in ran)}; the other levers' rows kept from the CSV's earlier run (its `commit` column)"
    return (f"`{shown(recipe_path)}` (direct, vanilla KD), its own world and windows; {len(seeds)} seeds (models and data); {timing} "
            f"(torch on {torch.get_num_threads()} threads). Primary endpoint, named before the run: each lever's lead over the "
            f"baseline VM on each slice, against the headroom gate. CSV `{shown(CSV)}`. The levers:\n\n"
            + "".join(f"- `{name}`: {LEVERS[name].what}\n" for name in present if name in LEVERS) + f"\n{tables}\n")


def _per_seed_lead(frame: pl.DataFrame, lever: str, slice_: str) -> pl.DataFrame:
    rows = frame.filter((pl.col("dataset") == lever) & (pl.col("slice") == slice_) & pl.col("role").is_in(["teacher", "baseline"]))
    wide = rows.unique(subset=["seed", "role"], keep="first").pivot(on="role", index="seed", values="NE")
    return wide.select("seed", ((pl.col("baseline") - pl.col("teacher")) * 100).alias("lead"))


def _earlier_rows(ran: list[str]) -> pl.DataFrame | None:
    """The CSV's rows of the levers this run does not train, all its seeds (None: no CSV yet)."""
    if not CSV.exists():
        return None
    earlier = pl.read_csv(CSV, infer_schema_length=None)
    return earlier.filter(~pl.col("dataset").is_in(ran))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--from-csv", action="store_true", help=f"analyse {shown(CSV)} again instead of running")
    args = parser.parse_args()
    ran = None
    if args.from_csv:
        frame, minutes = pl.read_csv(CSV, infer_schema_length=None), None
    else:
        ran = list(dict.fromkeys(args.levers))
        start = time.perf_counter()
        fresh = run(args.recipe, ran, list(range(args.seeds)))
        minutes = (time.perf_counter() - start) / 60
        kept = _earlier_rows(ran) if args.recipe.resolve() == DEFAULT_RECIPE.resolve() else None  # another recipe: the CSV holds this run's rows only
        write_csv(fresh.select(*COLUMNS), CSV, kept=kept)
        frame = pl.read_csv(CSV, infer_schema_length=None)
    body = levers_body(frame, args.recipe, minutes, ran)
    print(body)
    write_section(SECTION, command_line(), body)


if __name__ == "__main__":
    main()

"""The regime map: where transfer pays, and through which channel (`make bench-regimes`).

Around a centre cell — the VM serving 16 events of history, trained on its surface's last 7 days,
knowledge and embeddings from a teacher whose window ends where the VMs' begins — one factor moves
at a time: the VM's history (0, 64 events), its training days (3 or 28: the validation and eval windows
follow the VMs' window, so they move with it and the knowledge's age at its end changes too; 28 days
need a world 21 days longer, another draw of it at the same density), the lag
of the teacher's cutoff (3, 7 days: knowledge and embeddings both that much older). In every cell and seed the shipped
all-techniques recipe runs as four variants — vanilla KD, the combination (aux-head KD +
representation + sharing), embedding features, embedding features + vanilla KD — beside the
no-transfer baseline VM and the teacher (both shared by the variants of a cell through the stage cache).

Per cell and slice: the teacher's lead over the baseline VM, each variant's gain over it (NE points,
95 % t-interval over seeds that vary the world and the models, its minimum detectable effect at 80 %
power) and transfer ratio (Fieller; only where the lead is resolvable). Primary endpoints, named
before the run, one family Holm-adjusted together: in every cell and slice, embedding features +
vanilla KD against vanilla KD (does the embedding channel add to soft labels?) and GEM's 2× (the
combination's gain − 2 × vanilla KD's). Everything else is secondary (unadjusted).

    python benchmarks/regimes.py [--seeds 5] [--cells NAME ...] [--variants NAME ...] [--from-csv]

A primary endpoint whose variant did not run is left out of the family (and said so by its absence).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import transfer_ablation  # noqa: E402
from benchmarks.results_file import RESULTS, command_line, shown, study_dir, write_csv, write_section  # noqa: E402
from transfer.config.loader import load_recipe  # noqa: E402
from transfer.config.recipe import StudentConfig  # noqa: E402
from transfer.evaluation.intervals import SeedInterval, fieller_interval, holm_adjusted, holm_verdict, seed_interval  # noqa: E402
from transfer.util.atomic import atomic_path  # noqa: E402

SECTION = "regime-map-400k"
CSV = study_dir("regimes") / "regimes_400k.csv"
PLOT = study_dir("regimes") / "regimes_400k.png"
RECIPE = REPO / "recipes" / "direct_all_techniques.yaml"
# the staleness study's layout: a week of log before the teacher's window, so a teacher 7 days stale still has 21 days
WORLD = {"data.synthetic.rows": 490_000, "data.synthetic.days": 39, "data.train.start": "2026-01-08"}
VANILLA, COMBINED = "vanilla KD", transfer_ablation.CLAIMED
EMBEDDINGS, EMBEDDINGS_KD = transfer_ablation.EMBEDDINGS, transfer_ablation.EMBEDDINGS_KD
VARIANTS = (VANILLA, COMBINED, EMBEDDINGS, EMBEDDINGS_KD)
SHORT = {"teacher lead": "teacher\nlead", VANILLA: "vanilla\nKD", COMBINED: "combination", EMBEDDINGS: "embeddings", EMBEDDINGS_KD: "embeddings\n+ KD"}


@dataclass(frozen=True)
class Cell:
    """One point of the map: what it changes from the centre, and the recipe overrides that do it."""

    name: str
    axis: str  # "centre", "VM history", "VM training days", "lag"
    level: str
    overrides: dict[str, object]


def _history(events: int) -> dict[str, object]:
    return {"students": [StudentConfig(vertical=v, sizes={"history_length": events}) for v in ("ig_stories_click", "fb_feed_conversion")]}


CELLS = {cell.name: cell for cell in (
    Cell("centre", "centre", "16 events, 7 days, lag 0", {}),
    Cell("history 0", "VM history", "0 events", _history(0)),
    Cell("history 64", "VM history", "64 events", _history(64)),
    Cell("days 3", "VM training days", "3 days", {"data.student.days": 3}),
    # 28 days: the same layout 21 days longer at the same density (another draw of the world), the VMs' window 28 days
    Cell("days 28", "VM training days", "28 days (a 60-day world)",
         {"data.synthetic.days": 60, "data.synthetic.rows": round(490_000 * 60 / 39), "data.student.days": 28}),
    Cell("lag 3", "lag", "3 days", {"transfer.staleness_days": 3}),
    Cell("lag 7", "lag", "7 days", {"transfer.staleness_days": 7}),
)}


def run(cells: list[str], seeds: list[int], chosen: list[str]) -> pl.DataFrame:
    """Every chosen variant of every cell on every seed: the lift table's rows, tagged with cell, variant and seed."""
    base = load_recipe(RECIPE)
    variants = transfer_ablation.ablation_variants(base, base)
    transfer_ablation.SCALE["synthetic"] = "recipe"  # the recipe's own layout, moved by WORLD
    rows = []
    for seed in seeds:
        for name in cells:
            for variant in chosen:
                start = time.perf_counter()
                table = transfer_ablation.run_quietly(variants[variant], RECIPE, seed, WORLD | CELLS[name].overrides)
                rows.append(table.with_columns(pl.lit(name).alias("cell"), pl.lit(variant).alias("variant"), pl.lit(seed).alias("seed")))
                print(f"  seed {seed}: {name} / {variant} ({time.perf_counter() - start:.0f} s)", flush=True)
    return pl.concat(rows, how="diagonal_relaxed")


@dataclass(frozen=True)
class CellSlice:
    """One cell's results on one slice: the teacher's lead and each variant's gain over the baseline VM
    (NE points, per seed), and the eval positives."""

    cell: str
    slice: str
    seeds: list[int]  # the seeds with a teacher and a baseline, in order; every list below follows them
    lead: list[float]
    gains: dict[str, list[float]]  # only the variants that ran on every one of those seeds
    positives: int  # the fewest eval positives of any seed


def cell_slices(frame: pl.DataFrame) -> list[CellSlice]:
    """Per cell and slice, every per-seed difference paired by seed (a variant missing a seed is left
    out of that variant's figures only where it lacks it, never shifted onto another seed)."""
    found = []
    for (cell, slice_), rows in frame.group_by(["cell", "slice"], maintain_order=True):
        baseline = _per_seed(rows, "baseline", VANILLA).select("seed", pl.col("NE").alias("base"), "eval positives")
        teacher = _per_seed(rows, "teacher", VANILLA).join(baseline, on="seed")
        seeds = teacher["seed"].to_list()
        gains = {}
        for variant in VARIANTS:
            student = _per_seed(rows, "student", variant).join(baseline, on="seed")
            if student["seed"].to_list() == seeds:
                gains[variant] = (100 * (student["base"] - student["NE"])).to_list()
        found.append(CellSlice(cell, slice_, seeds, (100 * (teacher["base"] - teacher["NE"])).to_list(), gains,
                               int(baseline["eval positives"].min())))
    order = list(CELLS)
    return sorted(found, key=lambda c: (order.index(c.cell) if c.cell in order else len(order), c.slice))


def _per_seed(rows: pl.DataFrame, role: str, variant: str) -> pl.DataFrame:
    return rows.filter((pl.col("role") == role) & (pl.col("variant") == variant)).unique(subset=["seed"], keep="first").sort("seed")


def _cell(interval: SeedInterval) -> str:
    return f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"


def lift_table(slices: list[CellSlice]) -> str:
    """Per cell and slice: the teacher's lead, then each variant's gain with its MDE and transfer ratio."""
    lines = ["| cell | slice | eval positives (fewest of any seed) | teacher lead | variant | gain over the baseline VM (NE points, 95% CI) | "
             "MDE (80% power) | transfer ratio [Fieller 95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for s in slices:
        lead = seed_interval(s.lead)
        for variant, gain in s.gains.items():
            interval = seed_interval(gain)
            ratio = fieller_interval(gain, s.lead)
            shown_ratio = ratio.cell() if ratio.defined else "undefined (lead not resolvable)"
            lines.append(f"| {s.cell} | {s.slice} | {s.positives} | {_cell(lead)} | {variant} | {_cell(interval)} | "
                         f"{interval.minimum_detectable():.2f} | {shown_ratio} |")
    return "\n".join(lines)


def primary_table(slices: list[CellSlice]) -> str:
    """The primary endpoints, one family Holm-adjusted together: embedding features + vanilla KD −
    vanilla KD, and the combination − 2 × vanilla KD, per cell and slice."""
    endpoints = {"embedding features + vanilla KD − vanilla KD": (EMBEDDINGS_KD, 1.0), "combination − 2 × vanilla KD": (COMBINED, 2.0)}
    measured = [(endpoint, s, seed_interval([g - times * v for g, v in zip(s.gains[variant], s.gains[VANILLA], strict=True)]))
                for endpoint, (variant, times) in endpoints.items() for s in slices if variant in s.gains and VANILLA in s.gains]
    adjusted = holm_adjusted([interval.p_value for _, _, interval in measured])
    lines = ["| endpoint | cell | slice | NE points [95% CI] | MDE (80% power) | Holm-adjusted p | verdict |", "|---|---|---|---|---|---|---|"]
    for (endpoint, s, interval), p in zip(measured, adjusted, strict=True):
        lines.append(f"| {endpoint} | {s.cell} | {s.slice} | {_cell(interval)} | {interval.minimum_detectable():.2f} | {p:.3f} | "
                     f"{holm_verdict(interval, p)} |")
    return "\n".join(lines)


def heatmap(slices: list[CellSlice]) -> None:
    """A PNG: per slice, cells × (teacher lead, each variant's gain), coloured by NE points; a cell's
    text is its mean and a * where its unadjusted 95 % interval excludes 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(s.slice for s in slices))
    columns = ["teacher lead", *VARIANTS]
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    for ax, slice_ in zip(axes[0], names, strict=True):
        rows = [s for s in slices if s.slice == slice_]
        values = [[seed_interval(s.lead if c == "teacher lead" else s.gains.get(c, [math.nan])) for c in columns] for s in rows]
        grid = [[v.mean for v in row] for row in values]
        bound = max(1.0, max(abs(x) for row in grid for x in row if not math.isnan(x)))
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                resolved = not math.isnan(v.low) and (v.low > 0 or v.high < 0)
                ax.text(j, i, f"{v.mean:+.2f}{'*' if resolved else ''}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(columns)), [SHORT[c] for c in columns], fontsize=8)
        ax.set_yticks(range(len(rows)), [f"{s.cell}" for s in rows], fontsize=8)
        ax.set_title(f"{slice_}: NE points over the baseline VM (* unadjusted 95% CI excludes 0)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(PLOT) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def body(frame: pl.DataFrame, minutes: float | None, ran: list[str] | None = None) -> str:
    slices = cell_slices(frame)
    heatmap(slices)
    seeds = sorted(set(frame["seed"].to_list()))
    timing = f"{minutes:.0f} min for this run" if minutes is not None else f"analysed again from `{shown(CSV)}`"
    threads = "; ".join(f"torch on {n} thread(s): {', '.join(f'`{c}`' for c in cells)}" for n, cells in _threads(frame).items())
    if minutes is not None and ran is not None and set(ran) != set(frame["cell"].to_list()):
        timing += f" of {', '.join(f'`{name}`' for name in ran)}; the other cells' rows kept from the CSV's earlier run (its `commit` column)"
    cells = "".join(f"- `{c.name}`: {c.axis} — {c.level}\n" for c in CELLS.values() if c.name in set(frame["cell"].to_list()))
    return (f"`{shown(RECIPE)}` on the staleness study's layout (490k impressions over 39 days; the teacher's 21 days end where "
            f"the VMs' 7 begin, validation 1 day, eval 3), knowledge scored in a separate pass; {len(seeds)} seeds (world and models); "
            f"{timing} ({threads}). CSV `{shown(CSV)}`. The cells (one factor moved from the centre):\n\n"
            f"{cells}\n![the regime map]({PLOT.relative_to(RESULTS.parent)})\n\n"
            "**Primary endpoints** (named before the run; one family, Holm over both endpoints, the cells and the slices):\n\n"
            f"{primary_table(slices)}\n\nSecondary: every variant's gain and transfer ratio per cell:\n\n{lift_table(slices)}\n")


def _threads(frame: pl.DataFrame) -> dict[int, list[str]]:
    """Torch threads → the cells run with them (the CSV's `threads` column)."""
    found: dict[int, list[str]] = {}
    for cell, n in frame.select("cell", "threads").unique(maintain_order=True).iter_rows():
        found.setdefault(int(n), []).append(cell)
    return found


def earlier_rows(cells: list[str], variants: list[str]) -> pl.DataFrame | None:
    """The CSV's rows of every (cell, variant) this run does not train, all their seeds (None: no CSV yet)."""
    if not CSV.exists():
        return None
    earlier = pl.read_csv(CSV, infer_schema_length=None)
    return earlier.filter(~(pl.col("cell").is_in(cells) & pl.col("variant").is_in(variants)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the variants to run (vanilla KD always runs: every gain ratio's reference)")
    parser.add_argument("--from-csv", action="store_true", help=f"analyse {shown(CSV)} again instead of running")
    args = parser.parse_args()
    if args.from_csv:
        frame, minutes, ran = pl.read_csv(CSV, infer_schema_length=None), None, None
    else:
        start = time.perf_counter()
        chosen = [v for v in VARIANTS if v in args.variants or v == VANILLA]
        fresh = run(args.cells, list(range(args.seeds)), chosen).with_columns(pl.lit(torch.get_num_threads()).alias("threads"))
        minutes = (time.perf_counter() - start) / 60
        write_csv(fresh.select("cell", "variant", "seed", "model", "role", "slice", "NE", "recal NE", "eval positives", "FLOPs vs teacher",
                               "threads"), CSV,
                  kept=earlier_rows(args.cells, chosen))
        ran = args.cells
        frame = pl.read_csv(CSV, infer_schema_length=None)
    text = body(frame, minutes, ran)
    print(text)
    write_section(SECTION, command_line(), text)


if __name__ == "__main__":
    main()

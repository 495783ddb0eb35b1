"""The headroom gate, checked before any transfer claim is tested: on a claim slice, the teacher must
lead the strong baseline VM by at least `MIN_LEAD` NE points, with the 95 % lower bound at least
`MIN_LOW`, over at least `MIN_SEEDS` seeds that vary the data. Transfer cannot show where the teacher knows little the VM does not;
a slice that fails the gate is not studied, and the table says why.

The lead of a seed is 100 · (NE_baseline − NE_teacher) on the VM's eval slice (raw NE, what the student
distils; the recalibrated lead is reported beside it). Both models are the same for every variant of a
seed, so the gate reads them from any transfer-ablation CSV.

    python benchmarks/headroom.py                       # the gate on the current transfer-ablation CSVs
    python benchmarks/headroom.py --csv PATH [PATH ...] # on other runs
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_file import shown, study_dir, write_csv, write_section  # noqa: E402
from transfer.evaluation.intervals import SeedInterval, seed_interval  # noqa: E402

MIN_LEAD = 3.0  # NE points: the teacher's mean lead over the baseline VM…
MIN_LOW = 2.0  # …and its 95 % lower bound over seeds
MIN_SEEDS = 5
SECTION = "headroom-gate"
CURRENT_CSVS = [study_dir("transfer") / f"transfer_ablation_{study}_best_epoch.csv" for study in ("synthetic", "movielens", "domains")]
TRAFFIC_CSV = study_dir("transfer") / "transfer_ablation_synthetic_best_epoch_400k_traffic.csv"
BENCH_TRAFFIC_CSV = study_dir("transfer") / "transfer_ablation_synthetic_best_epoch_traffic.csv"
ML1M_TRAFFIC_CSV = study_dir("transfer") / "transfer_ablation_movielens1m_best_epoch_traffic.csv"
CURRENT_CSVS += [BENCH_TRAFFIC_CSV, TRAFFIC_CSV, ML1M_TRAFFIC_CSV]
# a CSV whose runs are of another world or protocol than its dataset name says: its rows are gated apart, under this label
LABELS = {TRAFFIC_CSV: "quickstart world, knowledge from training traffic", BENCH_TRAFFIC_CSV: "knowledge from training traffic"}


@dataclass(frozen=True)
class SliceHeadroom:
    """The teacher's lead over the baseline VM on one slice of one dataset, over seeds (NE points)."""

    dataset: str
    slice: str
    lead: SeedInterval  # raw NE
    recal_lead: SeedInterval  # NE after each model's one-parameter recalibration

    @property
    def problem(self) -> str:
        """Why the slice fails the gate ("" when it passes)."""
        lead = self.lead
        if lead.seeds < MIN_SEEDS:
            return f"{lead.seeds} seeds; the gate needs {MIN_SEEDS}"
        if lead.mean < MIN_LEAD:
            return f"mean lead {lead.mean:+.2f} NE points, below {MIN_LEAD:g}"
        if lead.low < MIN_LOW:
            return f"95% lower bound {lead.low:+.2f} NE points, below {MIN_LOW:g}"
        return ""


def headroom(frame: pl.DataFrame) -> list[SliceHeadroom]:
    """Per dataset and slice, the teacher's lead over the baseline VM from a transfer-ablation CSV's rows
    (columns dataset, seed, role, slice, NE, recal NE; each seed's teacher and baseline taken once)."""
    models = (frame.filter(pl.col("role").is_in(["teacher", "baseline"]))
              .unique(subset=["dataset", "seed", "slice", "role"], keep="first", maintain_order=True))
    paired = (models.pivot(on="role", index=["dataset", "seed", "slice"], values=["NE", "recal NE"])
              .drop_nulls().sort(["dataset", "slice", "seed"]))
    found = []
    for (dataset, slice_), group in paired.group_by(["dataset", "slice"], maintain_order=True):
        lead = ((group["NE_baseline"] - group["NE_teacher"]) * 100).to_list()
        recal = ((group["recal NE_baseline"] - group["recal NE_teacher"]) * 100).to_list()
        found.append(SliceHeadroom(dataset, slice_, seed_interval(lead), seed_interval(recal)))
    return found


def headroom_table(slices: list[SliceHeadroom]) -> pl.DataFrame:
    """One row per slice: its lead with the interval, the recalibrated lead, and the gate's verdict."""
    cell = lambda i: "n/a (recal NE missing)" if math.isnan(i.mean) else f"{i.mean:+.2f} [{i.low:+.2f}, {i.high:+.2f}]"  # noqa: E731
    return pl.DataFrame([{
        "dataset": s.dataset, "slice": s.slice, "seeds": s.lead.seeds,
        "teacher lead (NE points, 95% CI)": cell(s.lead), "recalibrated lead": cell(s.recal_lead),
        "gate": "passes" if not s.problem else f"fails: {s.problem}",
    } for s in slices])


def section_body(slices: list[SliceHeadroom], sources: list[Path]) -> str:
    passing = [f"{s.dataset} {s.slice}" for s in slices if not s.problem]
    verdict = (f"**{len(passing)} of {len(slices)} slices pass**: {', '.join(passing)}." if passing else
               f"**No slice passes** ({len(slices)} checked): no transfer claim can be tested on these runs; the teacher "
               "must first lead by more, from its own side (never by weakening the baseline VM).")
    table = headroom_table(slices)
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=-1, tbl_cols=-1,
                   tbl_width_chars=10_000, fmt_str_lengths=200, tbl_formatting="ASCII_MARKDOWN"):
        shown_table = str(table)
    return (f"The gate (primary, one per slice; no multiplicity adjustment: each slice is gated on its own): teacher − "
            f"baseline VM ≥ {MIN_LEAD:g} NE points with the 95% t-interval's lower bound ≥ {MIN_LOW:g}, over ≥ {MIN_SEEDS} "
            f"seeds that vary the data. From {', '.join(f'`{shown(p)}`' for p in sources)}.\n\n{shown_table}\n\n{verdict}\n")


def labelled(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """`frame` (one CSV's rows) with its dataset named by its label where `LABELS` gives one, so
    runs of another world or protocol are never pooled with the dataset's own."""
    label = LABELS.get(path.resolve())
    return frame if label is None else frame.with_columns(pl.col("dataset") + f" ({label})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, nargs="+", default=CURRENT_CSVS, help="transfer-ablation CSVs (default: the current ones)")
    parser.add_argument("--section", default=SECTION, help="the RESULTS.md section to write")
    args = parser.parse_args()
    missing = [path for path in args.csv if not path.is_file()]
    if missing:
        parser.exit(2, f"headroom: {missing[0]}: no such CSV; allowed: a transfer-ablation CSV (benchmarks/results/transfer/)\n")
    frame = pl.concat([labelled(pl.read_csv(path, infer_schema_length=None).select("dataset", "seed", "role", "slice", "NE", "recal NE"), path)
                       for path in args.csv])
    slices = headroom(frame)
    write_csv(headroom_table(slices), study_dir("transfer") / "headroom_gate.csv")
    body = section_body(slices, args.csv)
    print(body)
    write_section(args.section, "python benchmarks/headroom.py" + ("" if args.csv == CURRENT_CSVS else " --csv " + " ".join(map(shown, args.csv))), body)


if __name__ == "__main__":
    main()
